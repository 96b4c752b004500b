//! Wall-clock time as text: RFC 3339, for log lines and repository indexes.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A time that RFC 3339 cannot write: before the year 0000 or after 9999.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeOutOfRange;

impl fmt::Display for TimeOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the time is outside the years 0000 to 9999")
    }
}

impl std::error::Error for TimeOutOfRange {}

/// 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z, in Unix milliseconds.
const MIN_MILLIS: i64 = -62_167_219_200_000;
const MAX_MILLIS: i64 = 253_402_300_799_999;
const MILLIS_PER_DAY: i64 = 86_400_000;

/// `time` in RFC 3339, UTC, to the millisecond (truncated towards the past), `Z` for the
/// offset: `2016-12-16T10:01:02.345Z`.
pub fn rfc3339(time: SystemTime) -> Result<String, TimeOutOfRange> {
    Rfc3339::new(time).map(|t| t.to_string())
}

/// A time RFC 3339 can write, written by its `Display` without allocating (see [`rfc3339`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rfc3339 {
    millis: i64,
}

impl Rfc3339 {
    /// `time`, if RFC 3339 can write it.
    pub fn new(time: SystemTime) -> Result<Self, TimeOutOfRange> {
        let millis = unix_millis(time).ok_or(TimeOutOfRange)?;
        if !(MIN_MILLIS..=MAX_MILLIS).contains(&millis) {
            return Err(TimeOutOfRange);
        }
        Ok(Self { millis })
    }
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (days, of_day) = (
            self.millis.div_euclid(MILLIS_PER_DAY),
            self.millis.rem_euclid(MILLIS_PER_DAY),
        );
        let (year, month, day) = civil_from_days(days);
        let (seconds, millis) = (of_day / 1000, of_day % 1000);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        )
    }
}

/// Milliseconds since the Unix epoch, rounded towards the past; `None` beyond an `i64`.
fn unix_millis(time: SystemTime) -> Option<i64> {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).ok(),
        Err(before) => {
            let nanos = before.duration().as_nanos();
            let millis = nanos.div_ceil(1_000_000);
            i64::try_from(millis).ok().map(|m| -m)
        }
    }
}

/// The proleptic Gregorian date of a day counted from 1970-01-01: Howard Hinnant's
/// `civil_from_days` (<https://howardhinnant.github.io/date_algorithms.html>), which counts in
/// 400-year eras of 146,097 days starting on March 1st, so that the leap day ends a year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // [0, 399]
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let month_from_march = (5 * day_of_year + 2) / 153; // [0, 11]
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1; // [1, 31]
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    }; // [1, 12]
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both are within their ranges above: the conversions cannot fail.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn test_rfc3339_known_instants() {
        let cases: [(i64, &str); 11] = [
            (0, "1970-01-01T00:00:00.000Z"),
            (1_481_882_462_345, "2016-12-16T10:01:02.345Z"),
            // A leap day, and the days around it.
            (1_709_164_800_000, "2024-02-29T00:00:00.000Z"),
            (1_709_164_800_000 - 1, "2024-02-28T23:59:59.999Z"),
            (
                1_709_164_800_000 + MILLIS_PER_DAY,
                "2024-03-01T00:00:00.000Z",
            ),
            // 2000 is a leap year (divisible by 400), 1900 is not.
            (951_868_799_999, "2000-02-29T23:59:59.999Z"),
            (-2_203_891_200_000, "1900-03-01T00:00:00.000Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (-62_135_596_800_000, "0001-01-01T00:00:00.000Z"),
            (MIN_MILLIS, "0000-01-01T00:00:00.000Z"),
            (MAX_MILLIS, "9999-12-31T23:59:59.999Z"),
        ];
        for (millis, text) in cases {
            let time = if millis >= 0 {
                UNIX_EPOCH + Duration::from_millis(millis.unsigned_abs())
            } else {
                UNIX_EPOCH - Duration::from_millis(millis.unsigned_abs())
            };
            assert_eq!(rfc3339(time).unwrap(), text, "{millis}");
        }
    }

    #[test]
    fn test_rfc3339_truncates_to_the_past() {
        let half = Duration::from_micros(500);
        assert_eq!(
            rfc3339(UNIX_EPOCH + half).unwrap(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH - half).unwrap(),
            "1969-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn test_rfc3339_out_of_range() {
        let after = UNIX_EPOCH + Duration::from_millis(MAX_MILLIS as u64 + 1);
        assert_eq!(rfc3339(after), Err(TimeOutOfRange));
        let before = UNIX_EPOCH - Duration::from_millis(MIN_MILLIS.unsigned_abs() + 1);
        assert_eq!(rfc3339(before), Err(TimeOutOfRange));
    }

    #[test]
    fn test_civil_from_days_round_trip() {
        // Every day for 800 years around the epoch follows the previous one.
        let mut previous = civil_from_days(-146_097 - 1);
        for days in -146_097..146_097 {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = previous;
            let next_day = (y, m, d) == (py, pm, pd + 1);
            let next_month = (y, m, d) == (py, pm + 1, 1);
            let next_year = (y, m, d) == (py + 1, 1, 1) && (pm, pd) == (12, 31);
            assert!(
                next_day || next_month || next_year,
                "{previous:?} → {y}-{m}-{d}"
            );
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            if (m, d) == (2, 29) {
                assert!(leap, "{y}");
            }
            previous = (y, m, d);
        }
    }
}
