//! Identifiers of bundles (docs/PROTOCOL.md §3, §4): the SHA-256 [`Digest`] of a bundle or
//! configuration zip, the [`BundleId`] ConductR derives from them with its short form and
//! prefix matching ([`IdPrefix`]), the [`Segment`] that names an organisation, repository,
//! package or tag, the published [`Version`] `<tag>-<digest>`, and the operator's bundle
//! [`Shorthand`] `[urn:x-bundle:][org/][repo/]package[:tag[-digest]]`.

use core::fmt;

use crate::hex::{self, HexError};
use crate::text::{self, InlineStr};

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

impl core::error::Error for DigestError {}

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
        hex::decode(hex.as_bytes()).map(Self).map_err(|e| match e {
            HexError::Length => DigestError::Length,
            HexError::NotHex => DigestError::NotHex,
        })
    }

    /// The first [`SHORT_ID_LEN`] hex characters, as the official client shows a digest.
    pub fn short(&self) -> heapless::String<SHORT_ID_LEN> {
        // The string holds exactly the first SHORT_ID_LEN of the 64.
        text::collect_truncated(self.to_hex().as_str().chars())
    }

    /// The lowercase hex spelling.
    pub fn to_hex(&self) -> DigestHex {
        let mut out = [0u8; 64];
        hex::encode(&self.0, &mut out);
        DigestHex(out)
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
        // `to_hex` writes all 64 bytes, as ASCII hex digits: the prefix is the whole.
        text::utf8_prefix(&self.0)
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

impl core::error::Error for SegmentError {}

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

/// A published version, `<tag>-<digest>` (docs/PROTOCOL.md §1, §4).
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

impl core::error::Error for VersionError {}

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

// ---------------------------------------------------------------------------------------------
// Bundle ids
// ---------------------------------------------------------------------------------------------

/// How many hex characters of each part a short id keeps (docs/PROTOCOL.md §3).
pub const SHORT_ID_LEN: usize = 7;

/// A ConductR bundle id: the first 32 hex characters of the bundle's digest, then, when the
/// bundle was loaded with a configuration, `-` and the first 32 of the configuration's digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BundleId {
    bundle: [u8; 16],
    config: Option<[u8; 16]>,
}

/// Why a string is not a [`BundleId`] or an [`IdPrefix`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BundleIdError {
    /// A part of the wrong length: 32 for an id, 7 to 32 for a prefix.
    Length,
    /// A character that is not a hexadecimal digit.
    NotHex,
    /// More than two `-`-separated parts.
    TooManyParts,
}

impl fmt::Display for BundleIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Length => "each part of a bundle id is 32 hex characters (7 to 32 as a prefix)",
            Self::NotHex => "a bundle id may hold only hexadecimal characters and one `-`",
            Self::TooManyParts => "a bundle id has at most two `-`-separated parts",
        })
    }
}

impl core::error::Error for BundleIdError {}

/// Splits `<a>[-<b>]`; more than one `-` is refused.
fn id_parts(s: &str) -> Result<(&str, Option<&str>), BundleIdError> {
    match s.split_once('-') {
        None => Ok((s, None)),
        Some((_, second)) if second.contains('-') => Err(BundleIdError::TooManyParts),
        Some((first, second)) => Ok((first, Some(second))),
    }
}

/// 32 hex characters of either case → 16 bytes.
fn id_part(hex: &str) -> Result<[u8; 16], BundleIdError> {
    hex::decode(hex.as_bytes()).map_err(|e| match e {
        HexError::Length => BundleIdError::Length,
        HexError::NotHex => BundleIdError::NotHex,
    })
}

/// One part of a bundle id, as 32 lowercase hex digits.
fn part_hex(part: &[u8; 16]) -> [u8; 32] {
    let mut hex = [0u8; 32];
    hex::encode(part, &mut hex);
    hex
}

/// The first 16 bytes of a digest: its first 32 hex characters.
fn half(digest: &Digest) -> [u8; 16] {
    let mut part = [0u8; 16];
    for (dst, src) in part.iter_mut().zip(digest.as_bytes()) {
        *dst = *src;
    }
    part
}

impl BundleId {
    /// The id ConductR gives a bundle with this digest, loaded with this configuration.
    pub fn of(bundle: &Digest, config: Option<&Digest>) -> Self {
        Self {
            bundle: half(bundle),
            config: config.map(half),
        }
    }

    /// Parses `<32 hex>` or `<32 hex>-<32 hex>`, either case.
    pub fn parse(s: &str) -> Result<Self, BundleIdError> {
        let (bundle, config) = id_parts(s)?;
        Ok(Self {
            bundle: id_part(bundle)?,
            config: config.map(id_part).transpose()?,
        })
    }

    /// Whether the id has a configuration part.
    pub const fn has_config(&self) -> bool {
        self.config.is_some()
    }

    /// The same bundle without its configuration part.
    #[must_use]
    pub const fn without_config(&self) -> Self {
        Self {
            bundle: self.bundle,
            config: None,
        }
    }

    /// Whether this bundle was made from a zip with `digest`.
    pub fn is_of_bundle(&self, digest: &Digest) -> bool {
        self.bundle == half(digest)
    }

    /// Whether this bundle was loaded with the configuration zip with `digest`.
    pub fn is_of_config(&self, digest: &Digest) -> bool {
        self.config == Some(half(digest))
    }

    /// The full lowercase spelling.
    pub fn to_text(&self) -> heapless::String<65> {
        let bundle = part_hex(&self.bundle);
        let config = self.config.as_ref().map(part_hex);
        let config = config
            .iter()
            .flat_map(|hex| core::iter::once('-').chain(text::utf8_prefix(hex).chars()));
        // 32 hex digits, then `-` and 32 more: the string is sized for both.
        text::collect_truncated(text::utf8_prefix(&bundle).chars().chain(config))
    }

    /// The short id: each part cut to [`SHORT_ID_LEN`] characters (`d073991-a53237c`).
    pub fn short(&self) -> heapless::String<15> {
        let full = self.to_text();
        let parts = full.split('-').enumerate().flat_map(|(i, part)| {
            let dash = (i > 0).then_some('-');
            dash.into_iter().chain(part.chars().take(SHORT_ID_LEN))
        });
        // Two parts of SHORT_ID_LEN and a dash: the string is sized for them.
        text::collect_truncated(parts)
    }

    /// Whether `prefix` names this bundle: its first part prefixes this id's bundle part and,
    /// when it has a second part, that prefixes this id's configuration part (an id without one
    /// does not match). A full id is its own prefix.
    pub fn matches(&self, prefix: &IdPrefix) -> bool {
        let full = self.to_text();
        let Ok((bundle, config)) = id_parts(&full) else {
            return false;
        };
        let part_matches = |have: &str, want: &HexPrefix| have.starts_with(want.as_str());
        part_matches(bundle, &prefix.bundle)
            && match (&prefix.config, config) {
                (None, _) => true,
                (Some(want), Some(have)) => part_matches(have, want),
                (Some(_), None) => false,
            }
    }
}

impl fmt::Display for BundleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Debug for BundleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BundleId({self})")
    }
}

/// Up to 32 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct HexPrefix(InlineStr<32>);

impl HexPrefix {
    fn parse(s: &str) -> Result<Self, BundleIdError> {
        if !(SHORT_ID_LEN..=32).contains(&s.len()) {
            return Err(BundleIdError::Length);
        }
        lowercase_hex(s)
            .ok_or(BundleIdError::NotHex)?
            .map(Self)
            .map_err(|_| BundleIdError::Length)
    }

    fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// `s` in lowercase, or `None` when it holds a character that is not a hex digit; `TooLong`
/// when it does not fit in `N` bytes.
fn lowercase_hex<const N: usize>(s: &str) -> Option<Result<InlineStr<N>, text::TooLong>> {
    let mut hex = InlineStr::EMPTY;
    for c in s.chars() {
        if !c.is_ascii_hexdigit() {
            return None;
        }
        if let Err(e) = hex.push(c.to_ascii_lowercase()) {
            return Some(Err(e));
        }
    }
    Some(Ok(hex))
}

/// A bundle id as an operator or the control API may give it (`idOrName`, docs/PROTOCOL.md §5): a
/// full id, or a prefix of at least [`SHORT_ID_LEN`] characters of each part, either case.
///
/// A string that is not one (`visualizer`, `cafe`) names a bundle by its name instead.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct IdPrefix {
    bundle: HexPrefix,
    config: Option<HexPrefix>,
}

impl IdPrefix {
    /// Parses `<7-32 hex>[-<7-32 hex>]`.
    pub fn parse(s: &str) -> Result<Self, BundleIdError> {
        let (bundle, config) = id_parts(s)?;
        Ok(Self {
            bundle: HexPrefix::parse(bundle)?,
            config: config.map(HexPrefix::parse).transpose()?,
        })
    }
}

impl fmt::Display for IdPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.bundle.as_str())?;
        if let Some(config) = &self.config {
            write!(f, "-{}", config.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for IdPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdPrefix({self})")
    }
}

// ---------------------------------------------------------------------------------------------
// Bundle shorthand
// ---------------------------------------------------------------------------------------------

/// The organisation of a shorthand that names none.
pub const DEFAULT_ORG: &str = "typesafe";
/// The repository of a shorthand that names none.
pub const DEFAULT_REPO: &str = "bundle";
/// The optional prefix of a shorthand.
pub const URN_PREFIX: &str = "urn:x-bundle:";

/// A digest given by a prefix of 7 to 64 hex characters (docs/PROTOCOL.md §3): identifies a version
/// when exactly one published digest starts with it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DigestPrefix(InlineStr<64>);

impl DigestPrefix {
    /// The shortest prefix accepted.
    pub const MIN_LEN: usize = SHORT_ID_LEN;

    /// 7 to 64 hex characters of either case, or `None`.
    pub fn parse(s: &str) -> Option<Self> {
        if !(Self::MIN_LEN..=Digest::HEX_LEN).contains(&s.len()) {
            return None;
        }
        lowercase_hex(s)?.ok().map(Self)
    }

    /// The prefix in lowercase.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Whether `digest` starts with this prefix.
    pub fn matches(&self, digest: &Digest) -> bool {
        digest.to_hex().as_str().starts_with(self.as_str())
    }

    /// The digest itself, when all 64 characters were given.
    pub fn full(&self) -> Option<Digest> {
        Digest::parse(self.as_str()).ok()
    }
}

impl fmt::Display for DigestPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for DigestPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DigestPrefix({self})")
    }
}

/// Which version a shorthand asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum VersionSelector<'a> {
    /// No `:tag`: the latest published version.
    Latest,
    /// `:tag`: the latest version published with that tag.
    Tag(Segment<'a>),
    /// `:tag-digest`: exactly the version with that tag whose digest starts with the prefix.
    Exact {
        /// The tag.
        tag: Segment<'a>,
        /// The digest, or a prefix of at least 7 characters of it.
        digest: DigestPrefix,
    },
}

/// A bundle shorthand, `[urn:x-bundle:][org/][repo/]package[:tag[-digest]]` (docs/PROTOCOL.md §3),
/// with the defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Shorthand<'a> {
    /// The organisation ([`DEFAULT_ORG`] unless given).
    pub org: Segment<'a>,
    /// The repository ([`DEFAULT_REPO`] unless given).
    pub repo: Segment<'a>,
    /// The package: the bundle name.
    pub package: Segment<'a>,
    /// The version asked for.
    pub version: VersionSelector<'a>,
}

/// Why a string is not a bundle shorthand. Every malformed case of docs/PROTOCOL.md §3 has its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ShorthandError {
    /// Nothing (or only the `urn:x-bundle:` prefix).
    Empty,
    /// An empty `/`-separated part (`a//b`, `/b`, `b/`).
    EmptyPart,
    /// More than three `/`-separated parts.
    TooManyParts,
    /// More than one `:` after the optional prefix.
    TooManyColons,
    /// The organisation is not a valid segment.
    Org(SegmentError),
    /// The repository is not a valid segment.
    Repo(SegmentError),
    /// The package is not a valid segment.
    Package(SegmentError),
    /// A `:` with nothing after it.
    EmptyVersion,
    /// A `-` that ends the version: a digest was started but not given.
    EmptyDigest,
    /// The tag is not a valid segment.
    Tag(SegmentError),
}

impl fmt::Display for ShorthandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("no bundle named"),
            Self::EmptyPart => f.write_str("an empty part between `/`"),
            Self::TooManyParts => f.write_str("at most org/repo/package before the `:`"),
            Self::TooManyColons => f.write_str("at most one `:`, before the version"),
            Self::Org(e) => write!(f, "the organisation {e}"),
            Self::Repo(e) => write!(f, "the repository {e}"),
            Self::Package(e) => write!(f, "the package {e}"),
            Self::EmptyVersion => f.write_str("nothing after the `:`"),
            Self::EmptyDigest => f.write_str("nothing after the last `-` of the version"),
            Self::Tag(e) => write!(f, "the tag {e}"),
        }
    }
}

impl core::error::Error for ShorthandError {}

impl<'a> Shorthand<'a> {
    /// Parses a shorthand; see the type's doc for the form and defaults.
    ///
    /// The version is split at its last `-`: when what follows is 7 to 64 hex characters it is
    /// a digest (prefix) and what precedes it the tag; otherwise the whole version is the tag
    /// (`v2-rc-1` is a tag). A tag whose last part looks like a digest prefix (`rc-1234567`)
    /// must therefore be given with its digest.
    pub fn parse(s: &'a str) -> Result<Self, ShorthandError> {
        let s = s.strip_prefix(URN_PREFIX).unwrap_or(s);
        if s.is_empty() {
            return Err(ShorthandError::Empty);
        }
        let (path, version) = match s.split_once(':') {
            Some((_, version)) if version.contains(':') => {
                return Err(ShorthandError::TooManyColons);
            }
            Some((path, version)) => (path, Some(version)),
            None => (s, None),
        };
        let mut parts = path.split('/');
        let (first, second, third) = (parts.next(), parts.next(), parts.next());
        if parts.next().is_some() {
            return Err(ShorthandError::TooManyParts);
        }
        let (org, repo, package) = match (first, second, third) {
            (Some(package), None, None) => (DEFAULT_ORG, DEFAULT_REPO, package),
            (Some(repo), Some(package), None) => (DEFAULT_ORG, repo, package),
            (Some(org), Some(repo), Some(package)) => (org, repo, package),
            _ => return Err(ShorthandError::Empty),
        };
        if [org, repo, package].iter().any(|part| part.is_empty()) {
            return Err(ShorthandError::EmptyPart);
        }
        Ok(Self {
            org: Segment::parse(org).map_err(ShorthandError::Org)?,
            repo: Segment::parse(repo).map_err(ShorthandError::Repo)?,
            package: Segment::parse(package).map_err(ShorthandError::Package)?,
            version: match version {
                None => VersionSelector::Latest,
                Some(version) => parse_selector(version)?,
            },
        })
    }
}

fn parse_selector(version: &str) -> Result<VersionSelector<'_>, ShorthandError> {
    if version.is_empty() {
        return Err(ShorthandError::EmptyVersion);
    }
    if version.ends_with('-') {
        return Err(ShorthandError::EmptyDigest);
    }
    if let Some((tag, digest)) = version.rsplit_once('-')
        && let Some(digest) = DigestPrefix::parse(digest)
    {
        let tag = Segment::parse(tag).map_err(ShorthandError::Tag)?;
        return Ok(VersionSelector::Exact { tag, digest });
    }
    Segment::parse(version)
        .map(VersionSelector::Tag)
        .map_err(ShorthandError::Tag)
}

impl fmt::Display for Shorthand<'_> {
    /// The canonical long form, `org/repo/package[:tag[-digest]]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.org, self.repo, self.package)?;
        match &self.version {
            VersionSelector::Latest => Ok(()),
            VersionSelector::Tag(tag) => write!(f, ":{tag}"),
            VersionSelector::Exact { tag, digest } => write!(f, ":{tag}-{digest}"),
        }
    }
}

#[cfg(test)]
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

    // ---- bundle ids ---------------------------------------------------------------------

    // docs/PROTOCOL.md §5's example element: a bundle with a configuration.
    const ID: &str = "6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c-0f1e2d3c4b5a69788796a5b4c3d2e1f0";

    #[test]
    fn test_parse_bundle_id() {
        let id = BundleId::parse(ID).unwrap();
        assert!(id.has_config());
        assert_eq!(id.to_string(), ID);
        assert_eq!(BundleId::parse(&ID.to_ascii_uppercase()).unwrap(), id);
        let bare = BundleId::parse(&ID[..32]).unwrap();
        assert!(!bare.has_config());
        assert_eq!(bare.to_string(), &ID[..32]);
        assert_eq!(id.without_config(), bare);
    }

    #[test]
    fn test_bundle_id_of_digests() {
        let bundle = Digest::parse(&[&ID[..32], &ID[..32]].concat()).unwrap();
        let config = Digest::parse(&[&ID[33..], &ID[33..]].concat()).unwrap();
        assert_eq!(BundleId::of(&bundle, Some(&config)).to_string(), ID);
        assert_eq!(BundleId::of(&bundle, None).to_string(), &ID[..32]);
        assert!(BundleId::of(&bundle, Some(&config)).is_of_bundle(&bundle));
        assert!(!BundleId::of(&config, None).is_of_bundle(&bundle));
    }

    #[test]
    fn test_reject_bundle_ids() {
        assert_eq!(BundleId::parse(""), Err(BundleIdError::Length));
        assert_eq!(BundleId::parse(&ID[..31]), Err(BundleIdError::Length));
        assert_eq!(BundleId::parse(&ID[..33]), Err(BundleIdError::Length));
        assert_eq!(BundleId::parse(&ID[..64]), Err(BundleIdError::Length));
        assert_eq!(
            BundleId::parse(&[ID, "-0"].concat()),
            Err(BundleIdError::TooManyParts)
        );
        let bad = ["g", &ID[1..]].concat();
        assert_eq!(BundleId::parse(&bad), Err(BundleIdError::NotHex));
    }

    // docs/PROTOCOL.md §3: "every `-`-separated part cut to 7 characters (`d073991-a53237c`)".
    #[test]
    fn test_short_ids() {
        let id =
            BundleId::parse("d073991e7e3c5f2a9b8c7d6e5f4a3b2c-a53237c1d2e3f4a5b6c7d8e9f0a1b2c3")
                .unwrap();
        assert_eq!(id.short().as_str(), "d073991-a53237c");
        assert_eq!(id.without_config().short().as_str(), "d073991");
        assert_eq!(Digest::parse(EMPTY).unwrap().short().as_str(), "e3b0c44");
    }

    #[test]
    fn test_id_prefix_matching() {
        let id = BundleId::parse(ID).unwrap();
        let bare = id.without_config();
        let matches = |prefix: &str| id.matches(&IdPrefix::parse(prefix).unwrap());
        assert!(matches(ID));
        assert!(matches("6a1e3b5"));
        assert!(matches("6A1E3B5C9D"));
        assert!(matches("6a1e3b5-0f1e2d3"));
        assert!(matches(&ID[..32]));
        assert!(!matches("6a1e3b6"));
        assert!(!matches("6a1e3b5-0f1e2d4"));
        assert!(!bare.matches(&IdPrefix::parse("6a1e3b5-0f1e2d3").unwrap()));
        assert!(bare.matches(&IdPrefix::parse("6a1e3b5").unwrap()));
        assert_eq!(
            IdPrefix::parse("6a1e3b5-0F1E2D3").unwrap().to_string(),
            "6a1e3b5-0f1e2d3"
        );
    }

    #[test]
    fn test_reject_id_prefixes() {
        // Shorter than 7 characters: a name, not an id (`cafe`, `visualizer`).
        assert_eq!(IdPrefix::parse("6a1e3b"), Err(BundleIdError::Length));
        assert_eq!(
            IdPrefix::parse("6a1e3b5-0f1e2d"),
            Err(BundleIdError::Length)
        );
        assert_eq!(IdPrefix::parse("visualizer"), Err(BundleIdError::NotHex));
        assert_eq!(
            IdPrefix::parse(&[&ID[..32], "0"].concat()),
            Err(BundleIdError::Length)
        );
        assert_eq!(
            IdPrefix::parse("6a1e3b5-0f1e2d3-1"),
            Err(BundleIdError::TooManyParts)
        );
        assert_eq!(IdPrefix::parse("-0f1e2d3"), Err(BundleIdError::Length));
    }

    // ---- shorthand ----------------------------------------------------------------------

    fn shorthand(s: &str) -> std::string::String {
        Shorthand::parse(s).unwrap().to_string()
    }

    // docs/PROTOCOL.md §3: one part = package, two = repo/package, three = org/repo/package.
    #[test]
    fn test_parse_shorthand_defaults() {
        assert_eq!(shorthand("visualizer"), "typesafe/bundle/visualizer");
        assert_eq!(
            shorthand("urn:x-bundle:visualizer"),
            "typesafe/bundle/visualizer"
        );
        assert_eq!(
            shorthand("bundles/visualizer"),
            "typesafe/bundles/visualizer"
        );
        assert_eq!(
            shorthand("acme/bundles/visualizer"),
            "acme/bundles/visualizer"
        );
        assert_eq!(
            shorthand("urn:x-bundle:acme/bundles/visualizer:v2"),
            "acme/bundles/visualizer:v2"
        );
        assert_eq!(
            Shorthand::parse("visualizer").unwrap().version,
            VersionSelector::Latest
        );
    }

    #[test]
    fn test_parse_shorthand_versions() {
        let v = Shorthand::parse("visualizer:v2").unwrap().version;
        assert_eq!(v, VersionSelector::Tag(Segment::parse("v2").unwrap()));
        // A tag with `-` whose last part is no digest prefix stays a tag.
        let v = Shorthand::parse("visualizer:v2-rc-1").unwrap().version;
        assert_eq!(v, VersionSelector::Tag(Segment::parse("v2-rc-1").unwrap()));
        let VersionSelector::Exact { tag, digest } = Shorthand::parse("visualizer:v2-rc-1-E3B0C44")
            .unwrap()
            .version
        else {
            panic!("not exact");
        };
        assert_eq!((tag.as_str(), digest.as_str()), ("v2-rc-1", "e3b0c44"));
        assert!(digest.matches(&Digest::parse(EMPTY).unwrap()));
        assert!(digest.full().is_none());
        let full = std::format!("visualizer:v2-{EMPTY}");
        let VersionSelector::Exact { digest, .. } = Shorthand::parse(&full).unwrap().version else {
            panic!("not exact");
        };
        assert_eq!(digest.full(), Some(Digest::parse(EMPTY).unwrap()));
        // Six hex characters are no digest prefix: the whole is a tag.
        let v = Shorthand::parse("visualizer:v2-e3b0c4").unwrap().version;
        assert_eq!(
            v,
            VersionSelector::Tag(Segment::parse("v2-e3b0c4").unwrap())
        );
        // 65 hex characters are no digest either: the whole is a tag, here too long for one.
        let long = std::format!("visualizer:v2-{EMPTY}0");
        assert_eq!(
            Shorthand::parse(&long),
            Err(ShorthandError::Tag(SegmentError::TooLong))
        );
    }

    #[test]
    fn test_reject_shorthand_forms() {
        let long = "p".repeat(65);
        let cases = [
            ("", ShorthandError::Empty),
            ("urn:x-bundle:", ShorthandError::Empty),
            ("a//b", ShorthandError::EmptyPart),
            ("/visualizer", ShorthandError::EmptyPart),
            ("visualizer/", ShorthandError::EmptyPart),
            (":v2", ShorthandError::EmptyPart),
            ("a/b/c/d", ShorthandError::TooManyParts),
            ("visualizer:v2:x", ShorthandError::TooManyColons),
            ("visualizer:", ShorthandError::EmptyVersion),
            ("visualizer:v2-", ShorthandError::EmptyDigest),
            (
                "visualizer:-e3b0c44",
                ShorthandError::Tag(SegmentError::Empty),
            ),
            ("visualizer:v 2", ShorthandError::Tag(SegmentError::BadChar)),
            ("visualizer:..", ShorthandError::Tag(SegmentError::Dots)),
            ("a%b/c/d", ShorthandError::Org(SegmentError::BadChar)),
            ("../visualizer", ShorthandError::Repo(SegmentError::Dots)),
            (
                "vis ualizer",
                ShorthandError::Package(SegmentError::BadChar),
            ),
            (
                long.as_str(),
                ShorthandError::Package(SegmentError::TooLong),
            ),
        ];
        for (text, e) in cases {
            assert_eq!(Shorthand::parse(text), Err(e), "{text:?}");
            assert!(!e.to_string().is_empty());
        }
    }
}
