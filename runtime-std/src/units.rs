//! Durations, sizes and addresses as an operator writes them, on a command line or in a
//! configuration file: `500ms`, `30s`, `2m`; `8192`, `8KiB`, `512MiB`; `127.0.0.1:9010`.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// A value that is not what was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueError {
    /// The text, trimmed.
    pub text: String,
    /// What is wrong with it.
    pub kind: ValueErrorKind,
}

/// What is wrong with a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueErrorKind {
    /// A duration without a unit.
    NoDurationUnit,
    /// Not a whole number followed by a unit.
    NotDuration,
    /// A duration's unit is not `ms`, `s`, `m` or `h`.
    DurationUnit,
    /// More milliseconds than a `u64` holds.
    DurationTooLong,
    /// Not a whole number, optionally followed by a unit.
    NotSize,
    /// A size's unit is not `B`, `KiB`, `MiB` or `GiB`.
    SizeUnit,
    /// More bytes than a `usize` holds.
    SizeTooLarge,
    /// Not `IP:PORT`.
    NotAddress,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = &self.text;
        match self.kind {
            ValueErrorKind::NoDurationUnit => {
                write!(f, "`{text}` needs a unit: ms, s, m or h (as in 30s)")
            }
            ValueErrorKind::NotDuration => {
                write!(f, "`{text}` is not a duration (as in 500ms, 30s, 2m)")
            }
            ValueErrorKind::DurationUnit => write!(f, "`{text}`: the unit is ms, s, m or h"),
            ValueErrorKind::DurationTooLong => write!(f, "`{text}` is too long a duration"),
            ValueErrorKind::NotSize => {
                write!(f, "`{text}` is not a size (as in 8192, 8KiB, 512MiB)")
            }
            ValueErrorKind::SizeUnit => write!(f, "`{text}`: the unit is B, KiB, MiB or GiB"),
            ValueErrorKind::SizeTooLarge => write!(f, "`{text}` is too large"),
            ValueErrorKind::NotAddress => write!(f, "`{text}` is not an IP:PORT address"),
        }
    }
}

impl std::error::Error for ValueError {}

impl ValueErrorKind {
    fn of(self, text: &str) -> ValueError {
        ValueError {
            text: text.to_owned(),
            kind: self,
        }
    }
}

/// Parses a duration: a whole number followed by `ms`, `s`, `m` or `h` (`500ms`, `30s`, `2m`).
pub fn parse_duration(text: &str) -> Result<Duration, ValueError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| ValueErrorKind::NoDurationUnit.of(text))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| ValueErrorKind::NotDuration.of(text))?;
    let millis = match unit {
        "ms" => Some(number),
        "s" => number.checked_mul(1_000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        _ => return Err(ValueErrorKind::DurationUnit.of(text)),
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| ValueErrorKind::DurationTooLong.of(text))
}

/// Parses a size in bytes: a whole number, optionally followed by `KiB`, `MiB` or `GiB`.
pub fn parse_size(text: &str) -> Result<usize, ValueError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| ValueErrorKind::NotSize.of(text))?;
    let factor: usize = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(ValueErrorKind::SizeUnit.of(text)),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| ValueErrorKind::SizeTooLarge.of(text))
}

/// Parses an `IP:PORT` address (an IPv6 address in brackets).
pub fn parse_address(text: &str) -> Result<SocketAddr, ValueError> {
    text.parse()
        .map_err(|_| ValueErrorKind::NotAddress.of(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_duration() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for (bad, kind) in [
            ("", ValueErrorKind::NoDurationUnit),
            ("30", ValueErrorKind::NoDurationUnit),
            ("s", ValueErrorKind::NotDuration),
            ("-1s", ValueErrorKind::NotDuration),
            ("3x", ValueErrorKind::DurationUnit),
            ("1.5s", ValueErrorKind::DurationUnit),
            ("99999999999999999999h", ValueErrorKind::NotDuration),
            ("9999999999999999h", ValueErrorKind::DurationTooLong),
        ] {
            assert_eq!(parse_duration(bad).map_err(|e| e.kind), Err(kind), "{bad}");
        }
        assert_eq!(
            parse_duration(" 3x ").unwrap_err().to_string(),
            "`3x`: the unit is ms, s, m or h"
        );
    }

    #[test]
    fn test_parse_size() {
        assert_eq!(parse_size("8192"), Ok(8192));
        assert_eq!(parse_size("8KiB"), Ok(8192));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        for (bad, kind) in [
            ("", ValueErrorKind::NotSize),
            ("KiB", ValueErrorKind::NotSize),
            ("-1", ValueErrorKind::NotSize),
            ("8kb", ValueErrorKind::SizeUnit),
            ("18446744073709551615GiB", ValueErrorKind::SizeTooLarge),
        ] {
            assert_eq!(parse_size(bad).map_err(|e| e.kind), Err(kind), "{bad}");
        }
    }

    #[test]
    fn test_parse_address() {
        assert_eq!(
            parse_address("127.0.0.1:9010"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 9010)))
        );
        assert!(parse_address("[::1]:0").is_ok());
        assert_eq!(
            parse_address("here").unwrap_err().to_string(),
            "`here` is not an IP:PORT address"
        );
    }
}
