//! Time as an argument: milliseconds, monotonic ([`Instant`]) and wall-clock ([`UnixTime`]).
//!
//! Nothing in core reads a clock. The runtime passes `now` into every call that needs it, so
//! tests run on a virtual clock and a time-out is an input like any other. Arithmetic
//! saturates: an instant never wraps, a duration never goes negative.

use core::fmt;

/// A span of time in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Duration {
    millis: u64,
}

impl Duration {
    /// No time at all.
    pub const ZERO: Self = Self { millis: 0 };
    /// The longest representable span.
    pub const MAX: Self = Self { millis: u64::MAX };

    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self { millis }
    }

    /// A duration of `secs` seconds, saturating at [`Duration::MAX`].
    pub const fn from_secs(secs: u64) -> Self {
        Self {
            millis: secs.saturating_mul(1000),
        }
    }

    /// The whole milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    /// The whole seconds, rounded down.
    pub const fn as_secs(self) -> u64 {
        self.millis / 1000
    }

    /// `self + other`, saturating.
    #[must_use]
    pub const fn saturating_add(self, other: Self) -> Self {
        Self {
            millis: self.millis.saturating_add(other.millis),
        }
    }

    /// `self * factor`, saturating.
    #[must_use]
    pub const fn saturating_mul(self, factor: u64) -> Self {
        Self {
            millis: self.millis.saturating_mul(factor),
        }
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis.is_multiple_of(1000) {
            write!(f, "{}s", self.millis / 1000)
        } else {
            write!(f, "{}ms", self.millis)
        }
    }
}

/// A point on a monotonic clock, in milliseconds since an origin the runtime chooses (its
/// start, usually). Only differences between instants of one clock mean anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant {
    millis: u64,
}

impl Instant {
    /// The clock's origin.
    pub const ZERO: Self = Self { millis: 0 };

    /// The instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Self { millis }
    }

    /// Milliseconds since the origin.
    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    /// The instant `d` later, saturating at the end of time.
    #[must_use]
    pub const fn saturating_add(self, d: Duration) -> Self {
        Self {
            millis: self.millis.saturating_add(d.millis),
        }
    }

    /// The time elapsed from `earlier` to `self`, or zero when `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration {
            millis: self.millis.saturating_sub(earlier.millis),
        }
    }
}

/// Wall-clock time: milliseconds since the Unix epoch, as the runtime's clock says.
///
/// Used where a time leaves the process: the signature window (seconds of the signer's clock)
/// and the `startedAt` / `endedAt` of a deployment listing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UnixTime {
    millis: u64,
}

impl UnixTime {
    /// The epoch, 1970-01-01T00:00:00Z.
    pub const EPOCH: Self = Self { millis: 0 };

    /// `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Self { millis }
    }

    /// `secs` seconds after the epoch, saturating.
    pub const fn from_secs(secs: u64) -> Self {
        Self {
            millis: secs.saturating_mul(1000),
        }
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    /// Whole seconds since the epoch, rounded down.
    pub const fn as_secs(self) -> u64 {
        self.millis / 1000
    }
}

/// The two clocks at one moment, as the runtime passes them into the deployer: the monotonic
/// one for deadlines, the wall clock for the times a listing shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Now {
    /// Monotonic time.
    pub instant: Instant,
    /// Wall-clock time.
    pub unix: UnixTime,
}

impl Now {
    /// Both clocks at one moment.
    pub const fn new(instant: Instant, unix: UnixTime) -> Self {
        Self { instant, unix }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_duration_saturates() {
        assert_eq!(Duration::from_secs(u64::MAX), Duration::MAX);
        assert_eq!(
            Duration::MAX.saturating_add(Duration::from_millis(1)),
            Duration::MAX
        );
        assert_eq!(Duration::from_millis(7).saturating_mul(3).as_millis(), 21);
    }

    #[test]
    fn test_instant_arithmetic_saturates() {
        let t = Instant::from_millis(u64::MAX - 1);
        assert_eq!(
            t.saturating_add(Duration::from_secs(1)).as_millis(),
            u64::MAX
        );
        let early = Instant::from_millis(5);
        let late = Instant::from_millis(12);
        assert_eq!(
            late.saturating_duration_since(early),
            Duration::from_millis(7)
        );
        assert_eq!(early.saturating_duration_since(late), Duration::ZERO);
    }

    #[test]
    fn test_unix_time_seconds_round_down() {
        assert_eq!(UnixTime::from_millis(1_999).as_secs(), 1);
        assert_eq!(UnixTime::from_secs(3).as_millis(), 3_000);
    }

    #[test]
    fn test_duration_display() {
        extern crate std;
        use std::string::ToString;
        assert_eq!(Duration::from_secs(30).to_string(), "30s");
        assert_eq!(Duration::from_millis(1_500).to_string(), "1500ms");
    }
}
