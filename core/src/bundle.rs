//! Identifiers of bundles (PROTOCOL.md §4): the SHA-256 [`Digest`] of a bundle or configuration
//! zip, the [`Segment`] that names an organisation, repository, package or tag, and the
//! published [`Version`] `<tag>-<digest>`.

use core::fmt;

use crate::json::hex_value;

/// The SHA-256 of a bundle or configuration zip file.
///
/// Parsed from 64 hexadecimal characters of either case; always written as lowercase hex, which
/// is how ConductR and the registry spell it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Digest([u8; 32]);

/// Why a string is not a [`Digest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DigestError {
    /// Not exactly 64 characters long.
    Length,
    /// A character that is not a hexadecimal digit.
    NotHex,
}

impl fmt::Display for DigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Length => "a digest must be 64 hexadecimal characters",
            Self::NotHex => "a digest may hold only hexadecimal characters",
        })
    }
}

impl Digest {
    /// The number of hex characters of a digest.
    pub const HEX_LEN: usize = 64;

    /// A digest from its 32 raw bytes (what a SHA-256 implementation outputs).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 hex characters of either case.
    pub fn parse(hex: &str) -> Result<Self, DigestError> {
        let hex = hex.as_bytes();
        if hex.len() != Self::HEX_LEN {
            return Err(DigestError::Length);
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            let [hi, lo] = pair else {
                return Err(DigestError::Length);
            };
            let (Some(hi), Some(lo)) = (hex_value(*hi), hex_value(*lo)) else {
                return Err(DigestError::NotHex);
            };
            *byte = (hi << 4) | lo;
        }
        Ok(Self(bytes))
    }

    /// The lowercase hex spelling.
    pub fn to_hex(&self) -> DigestHex {
        let mut out = [0u8; 64];
        write_hex(&self.0, &mut out);
        DigestHex(out)
    }
}

/// Writes `bytes` as lowercase hex into `out` (which should be twice as long; extra bytes of
/// either are left alone).
pub(crate) fn write_hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        if let [hi, lo] = pair {
            *hi = DIGITS.get(usize::from(byte >> 4)).copied().unwrap_or(b'0');
            *lo = DIGITS.get(usize::from(byte & 0xf)).copied().unwrap_or(b'0');
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_hex().as_str())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// A digest spelled as 64 lowercase hex characters, on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DigestHex([u8; 64]);

impl DigestHex {
    /// The hex text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written here.
        core::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Debug for DigestHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The longest [`Segment`], in bytes.
pub const MAX_SEGMENT_LEN: usize = 64;

/// A name that may become part of a file path or URL: an organisation, repository, package or
/// tag. 1 to [`MAX_SEGMENT_LEN`] characters of `[A-Za-z0-9._-]`, never `.` or `..`.
///
/// Nothing is decoded: a `%` or a JSON escape is simply not one of the allowed characters, so
/// what is checked is exactly what is used.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Segment<'a>(&'a str);

/// Why a string is not a [`Segment`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SegmentError {
    /// The empty string.
    Empty,
    /// Longer than [`MAX_SEGMENT_LEN`] bytes.
    TooLong,
    /// `.` or `..`, which would walk a path.
    Dots,
    /// A character outside `[A-Za-z0-9._-]` (this includes `%`, `/` and `\`).
    BadChar,
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("is empty"),
            Self::TooLong => write!(f, "is longer than {MAX_SEGMENT_LEN} characters"),
            Self::Dots => f.write_str("may not be `.` or `..`"),
            Self::BadChar => f.write_str("may hold only the characters A-Z a-z 0-9 . _ -"),
        }
    }
}

impl<'a> Segment<'a> {
    /// Checks `s` against the segment rules.
    pub fn parse(s: &'a str) -> Result<Self, SegmentError> {
        if s.is_empty() {
            return Err(SegmentError::Empty);
        }
        if s.len() > MAX_SEGMENT_LEN {
            return Err(SegmentError::TooLong);
        }
        if s == "." || s == ".." {
            return Err(SegmentError::Dots);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(SegmentError::BadChar);
        }
        Ok(Self(s))
    }

    /// The text.
    pub const fn as_str(&self) -> &'a str {
        self.0
    }
}

impl fmt::Display for Segment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for Segment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

/// A published version, `<tag>-<digest>` (PROTOCOL.md §1, §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Version<'a> {
    /// The tag, which may itself contain `-` (`v2-rc-1`).
    pub tag: Segment<'a>,
    /// The SHA-256 of the bundle zip.
    pub digest: Digest,
}

/// Why a string is not a [`Version`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum VersionError {
    /// No `-` separates a tag from a digest.
    NoDigest,
    /// The part before the last `-` is not a valid tag.
    Tag(SegmentError),
    /// The part after the last `-` is not a digest.
    Digest(DigestError),
}

impl fmt::Display for VersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDigest => f.write_str("a version must be <tag>-<64 hex digest>"),
            Self::Tag(e) => write!(f, "the tag of a version {e}"),
            Self::Digest(e) => write!(f, "in a version, {e}"),
        }
    }
}

impl<'a> Version<'a> {
    /// Splits `<tag>-<digest>` at the LAST `-`: the tag may itself contain `-`.
    pub fn parse(s: &'a str) -> Result<Self, VersionError> {
        let (tag, digest) = s.rsplit_once('-').ok_or(VersionError::NoDigest)?;
        let digest = Digest::parse(digest).map_err(VersionError::Digest)?;
        let tag = Segment::parse(tag).map_err(VersionError::Tag)?;
        Ok(Self { tag, digest })
    }
}

impl fmt::Display for Version<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.tag, self.digest)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use std::string::ToString;

    use super::*;

    // SHA-256 of the empty string (FIPS 180-4 examples).
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn test_parse_digest_either_case() {
        let lower = Digest::parse(EMPTY).unwrap();
        let upper = Digest::parse(&EMPTY.to_ascii_uppercase()).unwrap();
        assert_eq!(lower, upper);
        assert_eq!(upper.to_hex().as_str(), EMPTY);
        assert_eq!(lower.as_bytes()[0], 0xe3);
    }

    #[test]
    fn test_reject_digest_length_and_chars() {
        assert_eq!(Digest::parse(&EMPTY[..63]), Err(DigestError::Length));
        let long = [EMPTY, "0"].concat();
        assert_eq!(Digest::parse(&long), Err(DigestError::Length));
        let bad = ["g", &EMPTY[1..]].concat();
        assert_eq!(Digest::parse(&bad), Err(DigestError::NotHex));
        // 64 bytes but not 64 characters.
        let multibyte = ["é", &EMPTY[2..]].concat();
        assert_eq!(Digest::parse(&multibyte), Err(DigestError::NotHex));
    }

    #[test]
    fn test_parse_segment_edges() {
        assert_eq!(Segment::parse("visualizer").unwrap().as_str(), "visualizer");
        assert!(Segment::parse("a.b_c-D9").is_ok());
        assert!(Segment::parse("...").is_ok());
        assert!(Segment::parse(&"a".repeat(64)).is_ok());
        assert_eq!(Segment::parse(&"a".repeat(65)), Err(SegmentError::TooLong));
        assert_eq!(Segment::parse(""), Err(SegmentError::Empty));
        assert_eq!(Segment::parse("."), Err(SegmentError::Dots));
        assert_eq!(Segment::parse(".."), Err(SegmentError::Dots));
        for bad in [
            "a%2e", "a/b", "a b", "a\\u0061", "é", "a+b", "a?b", "a#b", "a:b",
        ] {
            assert_eq!(Segment::parse(bad), Err(SegmentError::BadChar), "{bad:?}");
        }
    }

    #[test]
    fn test_parse_version_splits_at_last_dash() {
        let text = std::format!("v2-rc-1-{EMPTY}");
        let v = Version::parse(&text).unwrap();
        assert_eq!(v.tag.as_str(), "v2-rc-1");
        assert_eq!(v.digest, Digest::parse(EMPTY).unwrap());
        let upper = std::format!("v2-{}", EMPTY.to_ascii_uppercase());
        assert_eq!(
            Version::parse(&upper).unwrap().to_string(),
            std::format!("v2-{EMPTY}")
        );
    }

    #[test]
    fn test_reject_version_forms() {
        assert_eq!(Version::parse("v2"), Err(VersionError::NoDigest));
        assert_eq!(Version::parse(EMPTY), Err(VersionError::NoDigest));
        assert_eq!(
            Version::parse(&std::format!("-{EMPTY}")),
            Err(VersionError::Tag(SegmentError::Empty))
        );
        assert_eq!(
            Version::parse(&std::format!("v2-{}", &EMPTY[1..])),
            Err(VersionError::Digest(DigestError::Length))
        );
        assert_eq!(
            Version::parse(&std::format!("v2-{EMPTY}0")),
            Err(VersionError::Digest(DigestError::Length))
        );
        assert_eq!(
            Version::parse("v2-"),
            Err(VersionError::Digest(DigestError::Length))
        );
    }
}
