//! The registry's notification (docs/PROTOCOL.md §1): request target and JSON body.
//!
//! ```text
//! POST /deployments/{org}/{repo}/{org}[?tag=T&tag=U]      (also under /v2/deployments)
//! {"package": "visualizer", "version": "v2-<64 hex>", "released": "...", "release_notes": "..."}
//! ```
//!
//! [`Target::parse`] reads the request target, [`parse_body`] the body. Both borrow the
//! caller's bytes and return validated values: after `Ok`, every segment is a valid
//! [`Segment`], the digest is a real [`Digest`], and nothing derived from them can fail.
//!
//! The body goes through three gates, in order: the size limit ([`BodyLimit`], 413), the strict
//! JSON scan with its nesting limit ([`json::validate`], 400), then serde-json-core, which only
//! ever sees valid JSON of bounded depth. Identifiers (`package`, the version) are used exactly
//! as sent: a JSON escape in them is not a segment character (422), so what a signature covers
//! and what names files are the same bytes. `released` and `release_notes` are free text and
//! are unescaped (surrogate pairs included) into bounded strings.
//!
//! [`Digest`]: crate::bundle::Digest

use core::cell::Cell;
use core::fmt;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};

use crate::bundle::{Segment, SegmentError, Version, VersionError};
use crate::json::{self, RawStr, ScanError};
use crate::limits::MAX_TAGS;
use crate::status::Status;

/// The body limit when none is configured: 8 KiB.
pub const DEFAULT_BODY_LIMIT: usize = 8 * 1024;

/// The largest body limit that can be configured: 16 KiB. It sizes
/// [`RELEASE_NOTES_CAPACITY`], so raising it makes every [`Notification`] bigger.
pub const MAX_BODY_LIMIT: usize = 16 * 1024;

/// Capacity of [`Notification::release_notes`]: unescaping never lengthens text, so the notes
/// of any body within [`MAX_BODY_LIMIT`] fit.
pub const RELEASE_NOTES_CAPACITY: usize = MAX_BODY_LIMIT;

/// Capacity of [`Notification::released`], a timestamp such as `2016-12-16T10:01:02.345Z`.
pub const RELEASED_CAPACITY: usize = 64;

// ---------------------------------------------------------------------------------------------
// The request target
// ---------------------------------------------------------------------------------------------

/// Which of the two path prefixes a request used; answers (the `Location` of a deployment)
/// use the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Prefix {
    /// `/deployments`, what the official client sends with `--api-version 1`.
    V1,
    /// `/v2/deployments`, the official client's default.
    V2,
}

impl Prefix {
    /// The prefix as it appears in a path, without a trailing `/`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "/deployments",
            Self::V2 => "/v2/deployments",
        }
    }

    /// Splits a path into its prefix and what follows it (without the separating `/`), or
    /// `None` when the path is not under either prefix. `/deployments` alone gives `""`.
    pub fn strip(path: &str) -> Option<(Self, &str)> {
        [Self::V2, Self::V1].into_iter().find_map(|prefix| {
            let rest = path.strip_prefix(prefix.as_str())?;
            if rest.is_empty() {
                Some((prefix, rest))
            } else {
                rest.strip_prefix('/').map(|rest| (prefix, rest))
            }
        })
    }
}

/// A webhook's request target, `/deployments/{org}/{repo}/{org}[?tag=T&tag=U]`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Target<'a> {
    /// The prefix the request used.
    pub prefix: Prefix,
    /// The organisation.
    pub org: Segment<'a>,
    /// The repository.
    pub repo: Segment<'a>,
    /// The third segment: the official client repeats the org there; its meaning was never
    /// documented, so any valid segment is accepted and nothing depends on it.
    pub third: Segment<'a>,
    /// The `tag` query parameters, in order: only running bundles carrying one of them are
    /// replaced. Empty: no narrowing.
    pub tags: heapless::Vec<Segment<'a>, MAX_TAGS>,
}

/// Why a request target is not a webhook's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TargetError {
    /// Not `{prefix}/{org}/{repo}/{org}`: some other path.
    NotWebhook,
    /// A path segment is not a valid [`Segment`].
    Segment(SegmentError),
    /// A query parameter other than `tag=<segment>`.
    UnknownParameter,
    /// A `tag` value that is not a valid [`Segment`].
    Tag(SegmentError),
    /// More than [`MAX_TAGS`] tags.
    TooManyTags,
}

impl TargetError {
    /// The status this refusal answers: 404 for another path, 400 for a malformed one.
    pub const fn status(self) -> Status {
        match self {
            Self::NotWebhook => Status::NotFound,
            Self::Segment(_) | Self::UnknownParameter | Self::Tag(_) | Self::TooManyTags => {
                Status::BadRequest
            }
        }
    }
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotWebhook => {
                f.write_str("not a webhook path: expected /deployments/{org}/{repo}/{org}")
            }
            Self::Segment(e) => write!(f, "a path segment {e}"),
            // A typo such as `?tags=` must not silently widen what is replaced.
            Self::UnknownParameter => f.write_str("the only query parameter is tag=<tag>"),
            Self::Tag(e) => write!(f, "a tag {e}"),
            Self::TooManyTags => write!(f, "at most {MAX_TAGS} tag parameters"),
        }
    }
}

impl core::error::Error for TargetError {}

impl<'a> Target<'a> {
    /// Parses a request target (path and optional query, as on the request line).
    pub fn parse(target: &'a str) -> Result<Self, TargetError> {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        let (prefix, rest) = Prefix::strip(path).ok_or(TargetError::NotWebhook)?;
        let mut parts = rest.split('/');
        let (Some(org), Some(repo), Some(third), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TargetError::NotWebhook);
        };
        let segment = |s| Segment::parse(s).map_err(TargetError::Segment);
        let mut parsed = Self {
            prefix,
            org: segment(org)?,
            repo: segment(repo)?,
            third: segment(third)?,
            tags: heapless::Vec::new(),
        };
        for param in query
            .filter(|q| !q.is_empty())
            .into_iter()
            .flat_map(|q| q.split('&'))
        {
            let tag = param
                .strip_prefix("tag=")
                .ok_or(TargetError::UnknownParameter)?;
            let tag = Segment::parse(tag).map_err(TargetError::Tag)?;
            parsed
                .tags
                .push(tag)
                .map_err(|_| TargetError::TooManyTags)?;
        }
        Ok(parsed)
    }
}

// ---------------------------------------------------------------------------------------------
// The body
// ---------------------------------------------------------------------------------------------

/// The configured body limit: 1 to [`MAX_BODY_LIMIT`] bytes, [`DEFAULT_BODY_LIMIT`] unless
/// configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BodyLimit(usize);

/// Why a body limit cannot be configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BodyLimitError {
    /// Zero would refuse every webhook.
    Zero,
    /// Above [`MAX_BODY_LIMIT`].
    AboveMaximum,
}

impl fmt::Display for BodyLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Zero => f.write_str("the body limit must be at least 1 byte"),
            Self::AboveMaximum => write!(f, "the body limit is at most {MAX_BODY_LIMIT} bytes"),
        }
    }
}

impl core::error::Error for BodyLimitError {}

impl BodyLimit {
    /// The limit of `bytes`, if it is configurable.
    pub const fn new(bytes: usize) -> Result<Self, BodyLimitError> {
        if bytes == 0 {
            Err(BodyLimitError::Zero)
        } else if bytes > MAX_BODY_LIMIT {
            Err(BodyLimitError::AboveMaximum)
        } else {
            Ok(Self(bytes))
        }
    }

    /// The limit in bytes.
    pub const fn bytes(self) -> usize {
        self.0
    }
}

impl Default for BodyLimit {
    fn default() -> Self {
        Self(DEFAULT_BODY_LIMIT)
    }
}

/// The fields of a notification, for errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Field {
    /// `package`
    Package,
    /// `version`
    Version,
    /// `released`
    Released,
    /// `release_notes`
    ReleaseNotes,
    /// `retry` (a boolean)
    Retry,
    /// `allow_downgrade` (a boolean)
    AllowDowngrade,
}

impl Field {
    /// The boolean fields, in [`RawBody`]'s order.
    const FLAGS: [Self; 2] = [Self::Retry, Self::AllowDowngrade];

    /// The string fields, in [`RawBody`]'s order.
    const ALL: [Self; 4] = [
        Self::Package,
        Self::Version,
        Self::Released,
        Self::ReleaseNotes,
    ];

    /// The field's JSON name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Package => "package",
            Self::Version => "version",
            Self::Released => "released",
            Self::ReleaseNotes => "release_notes",
            Self::Retry => "retry",
            Self::AllowDowngrade => "allow_downgrade",
        }
    }
}

/// Why a webhook body is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BodyError {
    /// Longer than the configured [`BodyLimit`].
    TooLarge,
    /// Not UTF-8, not JSON, or nested too deep.
    Json(ScanError),
    /// Valid JSON, but not an object.
    NotAnObject,
    /// A field appears twice.
    Duplicate(Field),
    /// A required field (`package`, `version`) is absent.
    Missing(Field),
    /// A field holds something other than a string (`null` is accepted for the optional ones).
    NotAString(Field),
    /// `retry` or `allow_downgrade` holds something other than `true`, `false` or `null`.
    NotABoolean(Field),
    /// `package` is not a valid segment.
    Package(SegmentError),
    /// `version` is not `<tag>-<64 hex digest>`.
    Version(VersionError),
    /// `released` is longer than [`RELEASED_CAPACITY`] characters.
    ReleasedTooLong,
}

impl BodyError {
    /// 413 for size, 400 for malformed, 422 for well-formed but meaningless.
    pub const fn status(self) -> Status {
        match self {
            Self::TooLarge => Status::PayloadTooLarge,
            Self::Json(_)
            | Self::NotAnObject
            | Self::Duplicate(_)
            | Self::Missing(_)
            | Self::NotAString(_)
            | Self::NotABoolean(_) => Status::BadRequest,
            Self::Package(_) | Self::Version(_) | Self::ReleasedTooLong => {
                Status::UnprocessableEntity
            }
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge => f.write_str("body over the size limit"),
            Self::Json(e) => e.fmt(f),
            Self::NotAnObject => f.write_str("body must be a JSON object"),
            Self::Duplicate(field) => write!(f, "duplicate field `{}`", field.name()),
            Self::Missing(field) => write!(f, "missing field `{}`", field.name()),
            Self::NotAString(field) => write!(f, "field `{}` must be a string", field.name()),
            Self::NotABoolean(field) => {
                write!(f, "field `{}` must be true or false", field.name())
            }
            Self::Package(e) => write!(f, "package {e}"),
            Self::Version(e) => e.fmt(f),
            Self::ReleasedTooLong => {
                write!(f, "released is longer than {RELEASED_CAPACITY} characters")
            }
        }
    }
}

impl core::error::Error for BodyError {}

impl From<ScanError> for BodyError {
    fn from(e: ScanError) -> Self {
        Self::Json(e)
    }
}

impl From<VersionError> for BodyError {
    fn from(e: VersionError) -> Self {
        Self::Version(e)
    }
}

/// A registry's notification: "version V of package P was published".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification<'a> {
    /// The bundle name.
    pub package: Segment<'a>,
    /// The published version.
    pub version: Version<'a>,
    /// When it was published, as the registry wrote it (not interpreted).
    pub released: Option<heapless::String<RELEASED_CAPACITY>>,
    /// The release notes, unescaped.
    pub release_notes: Option<heapless::String<RELEASE_NOTES_CAPACITY>>,
    /// `"retry": true`: deploy this version even though its last deployment failed (lockstep's
    /// own member, sent by `lockstep deploy --retry`; the service honours it only under
    /// lockstep's signature, which covers the body).
    pub retry: bool,
    /// `"allow_downgrade": true`: deploy this version even though it was published before the
    /// running one (lockstep's own member, sent by `lockstep deploy --allow-downgrade`; the
    /// service honours it only under lockstep's signature).
    pub allow_downgrade: bool,
}

/// Parses a webhook body within `limit`.
pub fn parse_body(body: &[u8], limit: BodyLimit) -> Result<Notification<'_>, BodyError> {
    if body.len() > limit.bytes() {
        return Err(BodyError::TooLarge);
    }
    if json::validate(body, json::MAX_DEPTH)? != json::Kind::Object {
        return Err(BodyError::NotAnObject);
    }
    // The scan accepted the body, so serde-json-core cannot fail on syntax; the visitor records
    // the first problem with the fields instead of failing, to say which field it was.
    // The flags (`retry`, `allow_downgrade`) are the members read as something else than a
    // string: a value of another type there is the only way the typed read can fail on a body
    // the scan accepted, and `reading` says which flag it was.
    let reading = Cell::new(Field::Retry);
    let mut de = serde_json_core::de::Deserializer::new(body, None);
    let raw = BodySeed { reading: &reading }
        .deserialize(&mut de)
        .and_then(|raw| de.end().map(|_| raw))
        .map_err(|e| match e {
            serde_json_core::de::Error::InvalidType => BodyError::NotABoolean(reading.get()),
            _ => BodyError::Json(ScanError::Syntax { at: 0 }),
        })?;
    if let Some(problem) = raw.problem {
        return Err(problem);
    }
    let [package, version, released, release_notes] = raw.fields;
    let package = package.ok_or(BodyError::Missing(Field::Package))?;
    let version = version.ok_or(BodyError::Missing(Field::Version))?;
    let package = Segment::parse(package).map_err(BodyError::Package)?;
    let version = Version::parse(version)?;
    let released = match released {
        Some(raw) => {
            let mut text = heapless::String::new();
            json::unescape_into(raw, &mut text).map_err(|_| BodyError::ReleasedTooLong)?;
            Some(text)
        }
        None => None,
    };
    let release_notes = match release_notes {
        Some(raw) => {
            let mut text = heapless::String::new();
            // Cannot fail: the body fits the capacity, and unescaping only shortens.
            json::unescape_into(raw, &mut text).map_err(|_| BodyError::TooLarge)?;
            Some(text)
        }
        None => None,
    };
    Ok(Notification {
        package,
        version,
        released,
        release_notes,
        retry: raw.flags[0].unwrap_or(false),
        allow_downgrade: raw.flags[1].unwrap_or(false),
    })
}

/// The body's known fields, as raw JSON string contents (escapes not decoded), in
/// [`Field::ALL`] order, and its flags, in [`Field::FLAGS`] order; `None` when absent or `null`.
struct RawBody<'a> {
    fields: [Option<&'a str>; 4],
    flags: [Option<bool>; 2],
    problem: Option<BodyError>,
}

/// Reads a [`RawBody`], telling `reading` which flag it reads: a read of a flag is the one
/// that fails on a value of another type.
struct BodySeed<'c> {
    reading: &'c Cell<Field>,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = RawBody<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        struct BodyVisitor<'c> {
            reading: &'c Cell<Field>,
        }

        impl<'de> Visitor<'de> for BodyVisitor<'_> {
            type Value = RawBody<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a webhook notification object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut body = RawBody {
                    fields: [None; 4],
                    flags: [None; 2],
                    problem: None,
                };
                let mut seen = [false; 4];
                let mut seen_flags = [false; 2];
                while let Some(RawStr(key)) = map.next_key::<RawStr<'de>>()? {
                    let flag = Field::FLAGS
                        .iter()
                        .zip(body.flags.iter_mut().zip(seen_flags.iter_mut()))
                        .find(|(field, _)| json::unescaped_eq(key, field.name()));
                    if let Some((&field, (slot, seen))) = flag {
                        // A value other than a boolean or `null` fails the read:
                        // `NotABoolean` (see `parse_body`).
                        self.reading.set(field);
                        let value = map.next_value::<Option<bool>>()?;
                        if *seen && body.problem.is_none() {
                            body.problem = Some(BodyError::Duplicate(field));
                        }
                        *seen = true;
                        *slot = value;
                        continue;
                    }
                    let known = Field::ALL
                        .iter()
                        .zip(body.fields.iter_mut().zip(seen.iter_mut()))
                        .find(|(field, _)| json::unescaped_eq(key, field.name()));
                    let Some((&field, (slot, seen))) = known else {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    };
                    let value = map.next_value::<Option<AnyValue<'de>>>()?;
                    let problem = if *seen {
                        Some(BodyError::Duplicate(field))
                    } else {
                        *seen = true;
                        match value {
                            Some(AnyValue::Str(s)) => {
                                *slot = Some(s);
                                None
                            }
                            // `null` reads as absent; a required field is then missing.
                            None => None,
                            Some(AnyValue::Other) => Some(BodyError::NotAString(field)),
                        }
                    };
                    if body.problem.is_none() {
                        body.problem = problem;
                    }
                }
                Ok(body)
            }
        }

        deserializer.deserialize_map(BodyVisitor {
            reading: self.reading,
        })
    }
}

/// Any JSON value: a string's raw contents, or something else (skipped).
enum AnyValue<'a> {
    Str(&'a str),
    Other,
}

impl<'de> Deserialize<'de> for AnyValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AnyVisitor;

        impl<'de> Visitor<'de> for AnyVisitor {
            type Value = AnyValue<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(AnyValue::Str(v))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(AnyValue::Other)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(AnyValue::Other)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(AnyValue::Other)
            }
        }

        // serde-json-core has no `deserialize_any`; its `ignored_any` hands strings over as
        // borrowed raw text, containers to the seq/map visitors and scalars as unit.
        deserializer.deserialize_ignored_any(AnyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::ToOwned;
    use std::format;
    use std::string::String;

    use super::*;
    use crate::bundle::{Digest, DigestError};

    const DIGEST: &str = "6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c";

    fn body(version: &str) -> String {
        format!(r#"{{"package": "visualizer", "version": "{version}"}}"#)
    }

    fn parse(body: &str) -> Result<Notification<'_>, BodyError> {
        parse_body(body.as_bytes(), BodyLimit::default())
    }

    /// A valid body of exactly `len` bytes, its release notes padded with `fill` (each `fill`
    /// must be one escape or character of `unit` bytes in the JSON).
    fn body_of_len(len: usize, fill: &str) -> String {
        let head = format!(r#"{{"package":"visualizer","version":"v2-{DIGEST}","release_notes":""#);
        let tail = "\"}";
        let room = len - head.len() - tail.len();
        let mut notes = fill.repeat(room / fill.len());
        notes.push_str(&"x".repeat(room % fill.len()));
        let s = format!("{head}{notes}{tail}");
        assert_eq!(s.len(), len);
        s
    }

    // ---- target -------------------------------------------------------------------------

    // The official client's webhook path (conductr-cli 1.2, `conduct deploy --webhook bintray`).
    #[test]
    fn test_parse_target() {
        let t = Target::parse("/deployments/typesafe/bundle/typesafe").unwrap();
        assert_eq!(t.prefix, Prefix::V1);
        assert_eq!(t.org.as_str(), "typesafe");
        assert_eq!(t.repo.as_str(), "bundle");
        assert_eq!(t.third.as_str(), "typesafe");
        assert!(t.tags.is_empty());
        let t = Target::parse("/v2/deployments/acme/bundles/other?tag=2.1.0&tag=v2-rc-1").unwrap();
        assert_eq!(t.prefix, Prefix::V2);
        assert_eq!(t.third.as_str(), "other");
        let tags: std::vec::Vec<_> = t.tags.iter().map(|t| t.as_str()).collect();
        assert_eq!(tags, ["2.1.0", "v2-rc-1"]);
        assert!(
            Target::parse("/deployments/a/b/a?")
                .unwrap()
                .tags
                .is_empty()
        );
    }

    #[test]
    fn test_reject_target_paths() {
        for path in [
            "/",
            "/deployments",
            "/deployments/",
            "/deployments/a/b",
            "/deployments/a/b/a/c",
            "/v2/deployments/a",
            "/v3/deployments/a/b/a",
            "/deploymentsx/a/b/a",
            "deployments/a/b/a",
            "/v2/deploymentsx/a/b/a",
        ] {
            assert_eq!(Target::parse(path), Err(TargetError::NotWebhook), "{path}");
        }
    }

    #[test]
    fn test_reject_target_segments() {
        let long = "a".repeat(65);
        let cases = [
            ("/deployments/a/b/", SegmentError::Empty),
            ("/deployments//b/a", SegmentError::Empty),
            ("/deployments/./b/a", SegmentError::Dots),
            ("/deployments/a/../a", SegmentError::Dots),
            ("/deployments/a%2e/b/a", SegmentError::BadChar),
            ("/deployments/a/b%2Fc/a", SegmentError::BadChar),
            ("/deployments/a/b c/a", SegmentError::BadChar),
            ("/deployments/a/b/a#x", SegmentError::BadChar),
        ];
        for (path, e) in cases {
            assert_eq!(Target::parse(path), Err(TargetError::Segment(e)), "{path}");
            assert_eq!(TargetError::Segment(e).status(), Status::BadRequest);
        }
        let path = format!("/deployments/{long}/b/a");
        assert_eq!(
            Target::parse(&path),
            Err(TargetError::Segment(SegmentError::TooLong))
        );
        let path = format!("/deployments/{}/b/a", &long[1..]);
        assert!(Target::parse(&path).is_ok());
    }

    #[test]
    fn test_reject_target_query() {
        let base = "/deployments/a/b/a";
        for (query, e) in [
            ("?tags=x", TargetError::UnknownParameter),
            ("?tag", TargetError::UnknownParameter),
            ("?tag=x&", TargetError::UnknownParameter),
            ("?&tag=x", TargetError::UnknownParameter),
            ("?tag=x&foo=1", TargetError::UnknownParameter),
            ("?tag=", TargetError::Tag(SegmentError::Empty)),
            ("?tag=a%20b", TargetError::Tag(SegmentError::BadChar)),
            ("?tag=..", TargetError::Tag(SegmentError::Dots)),
        ] {
            assert_eq!(Target::parse(&format!("{base}{query}")), Err(e), "{query}");
        }
        let eight = "?tag=a".to_owned() + &"&tag=a".repeat(MAX_TAGS - 1);
        assert_eq!(
            Target::parse(&format!("{base}{eight}")).unwrap().tags.len(),
            MAX_TAGS
        );
        let nine = eight + "&tag=a";
        assert_eq!(
            Target::parse(&format!("{base}{nine}")),
            Err(TargetError::TooManyTags)
        );
    }

    // ---- body ---------------------------------------------------------------------------

    // docs/PROTOCOL.md §1's example, as Bintray sends it.
    #[test]
    fn test_parse_body_bintray_example() {
        let text = format!(
            r#"{{"package": "visualizer", "version": "v2-{DIGEST}",
                "released": "2016-12-16T10:01:02.345Z", "release_notes": "Fixes \"x\"\n"}}"#
        );
        let n = parse(&text).unwrap();
        assert_eq!(n.package.as_str(), "visualizer");
        assert_eq!(n.version.tag.as_str(), "v2");
        assert_eq!(n.version.digest, Digest::parse(DIGEST).unwrap());
        assert_eq!(n.released.as_deref(), Some("2016-12-16T10:01:02.345Z"));
        assert_eq!(n.release_notes.as_deref(), Some("Fixes \"x\"\n"));
    }

    // What conductr-cli sends: only package and version (conduct_deploy.py).
    #[test]
    fn test_parse_body_cli_minimal() {
        let text = body(&format!("v2-rc-1-{DIGEST}"));
        let n = parse(&text).unwrap();
        assert_eq!(n.version.tag.as_str(), "v2-rc-1");
        assert_eq!(n.released, None);
        assert_eq!(n.release_notes, None);
    }

    #[test]
    fn test_parse_body_uppercase_digest_normalised() {
        let text = body(&format!("v2-{}", DIGEST.to_ascii_uppercase()));
        let n = parse(&text).unwrap();
        assert_eq!(n.version.digest.to_hex().as_str(), DIGEST);
    }

    #[test]
    fn test_parse_body_ignores_unknown_and_null() {
        let text = format!(
            r#"{{"x": {{"deep": [1, {{"y": null}}]}}, "package": "visualizer", "n": -1.5e3,
                "version": "v2-{DIGEST}", "released": null, "release_notes": null, "t": true}}"#
        );
        let n = parse(&text).unwrap();
        assert_eq!(n.released, None);
        assert_eq!(n.release_notes, None);
    }

    #[test]
    fn test_parse_body_escaped_key() {
        let text = format!(r#"{{"p\u0061ckage": "visualizer", "version": "v2-{DIGEST}"}}"#);
        assert_eq!(parse(&text).unwrap().package.as_str(), "visualizer");
    }

    #[test]
    fn test_parse_body_release_notes_unescaped() {
        let text = format!(
            r#"{{"package": "v", "version": "v1-{DIGEST}", "release_notes": "caf\u00e9 \ud83d\ude00 \/ \\"}}"#
        );
        assert_eq!(
            parse(&text).unwrap().release_notes.as_deref(),
            Some("café 😀 / \\")
        );
    }

    #[test]
    fn test_parse_body_size_edge() {
        let at = body_of_len(DEFAULT_BODY_LIMIT, "x");
        assert!(parse(&at).is_ok());
        let over = body_of_len(DEFAULT_BODY_LIMIT + 1, "x");
        assert_eq!(parse(&over), Err(BodyError::TooLarge));
        assert_eq!(BodyError::TooLarge.status(), Status::PayloadTooLarge);
    }

    #[test]
    fn test_parse_body_escapes_at_max_limit_fit() {
        let limit = BodyLimit::new(MAX_BODY_LIMIT).unwrap();
        // Worst cases for the notes buffer: unescaped ASCII is as long as its JSON...
        let plain = body_of_len(MAX_BODY_LIMIT, "x");
        let n = parse_body(plain.as_bytes(), limit).unwrap();
        assert!(n.release_notes.unwrap().len() > MAX_BODY_LIMIT - 128);
        // ...and escapes at the limit decode to shorter text.
        for fill in [r"\n", r"\u00e9", r"\ud83d\ude00", r#"\""#] {
            let escaped = body_of_len(MAX_BODY_LIMIT, fill);
            assert!(parse_body(escaped.as_bytes(), limit).is_ok(), "{fill}");
        }
        let over = body_of_len(MAX_BODY_LIMIT + 1, "x");
        assert_eq!(parse_body(over.as_bytes(), limit), Err(BodyError::TooLarge));
    }

    #[test]
    fn test_body_limit_edges() {
        assert_eq!(BodyLimit::default().bytes(), 8192);
        assert_eq!(BodyLimit::new(0), Err(BodyLimitError::Zero));
        assert_eq!(BodyLimit::new(1).unwrap().bytes(), 1);
        assert!(BodyLimit::new(MAX_BODY_LIMIT).is_ok());
        assert_eq!(
            BodyLimit::new(MAX_BODY_LIMIT + 1),
            Err(BodyLimitError::AboveMaximum)
        );
        let small = BodyLimit::new(10).unwrap();
        assert_eq!(
            parse_body(br#"{"a":1234}"#, small).map(|_| ()),
            Err(BodyError::Missing(Field::Package))
        );
        assert_eq!(
            parse_body(br#"{"a":12345}"#, small),
            Err(BodyError::TooLarge)
        );
    }

    #[test]
    fn test_depth_edge() {
        let nest = |depth: usize| {
            format!(
                r#"{{"package":"v","version":"v1-{DIGEST}","x":{}1{}}}"#,
                "[".repeat(depth - 1),
                "]".repeat(depth - 1)
            )
        };
        assert!(parse(&nest(16)).is_ok());
        assert_eq!(parse(&nest(17)), Err(BodyError::Json(ScanError::TooDeep)));
    }

    #[test]
    fn test_reject_invalid_json_and_utf8() {
        assert_eq!(parse(""), Err(BodyError::Json(ScanError::Syntax { at: 0 })));
        assert_eq!(
            parse_body(b"{\"package\":\"v\xff\"}", BodyLimit::default()),
            Err(BodyError::Json(ScanError::InvalidUtf8))
        );
        // serde-json-core alone would skip these unknown fields without looking.
        for skipped in ["tru", "01", "1.", "-", "nul", "\"\\x\"", "[1,]"] {
            let text = format!(r#"{{"package":"v","version":"v1-{DIGEST}","x":{skipped}}}"#);
            assert!(
                matches!(parse(&text), Err(BodyError::Json(ScanError::Syntax { .. }))),
                "{skipped}"
            );
        }
        for trailing in [" x", "}", " {}"] {
            let text = body(&format!("v1-{DIGEST}")) + trailing;
            assert!(
                matches!(parse(&text), Err(BodyError::Json(_))),
                "{trailing}"
            );
        }
        assert_eq!(
            BodyError::Json(ScanError::TooDeep).status(),
            Status::BadRequest
        );
    }

    #[test]
    fn test_reject_not_an_object() {
        for text in ["[]", "\"package\"", "1", "null"] {
            assert_eq!(parse(text), Err(BodyError::NotAnObject), "{text}");
        }
    }

    #[test]
    fn test_reject_duplicate_fields() {
        let text = format!(r#"{{"package":"a","package":"b","version":"v1-{DIGEST}"}}"#);
        assert_eq!(parse(&text), Err(BodyError::Duplicate(Field::Package)));
        let text = format!(r#"{{"package":"a","version":"v1-{DIGEST}","v\u0065rsion":"x"}}"#);
        assert_eq!(parse(&text), Err(BodyError::Duplicate(Field::Version)));
        let text =
            format!(r#"{{"package":"a","version":"v1-{DIGEST}","released":null,"released":"x"}}"#);
        assert_eq!(parse(&text), Err(BodyError::Duplicate(Field::Released)));
        // Unknown fields are ignored, repeated or not.
        let text = format!(r#"{{"package":"a","version":"v1-{DIGEST}","x":1,"x":2}}"#);
        assert!(parse(&text).is_ok());
        assert_eq!(
            BodyError::Duplicate(Field::Package).status(),
            Status::BadRequest
        );
    }

    #[test]
    fn test_reject_missing_and_mistyped_fields() {
        assert_eq!(parse("{}"), Err(BodyError::Missing(Field::Package)));
        assert_eq!(
            parse(r#"{"package":"a"}"#),
            Err(BodyError::Missing(Field::Version))
        );
        let text = format!(r#"{{"package":null,"version":"v1-{DIGEST}"}}"#);
        assert_eq!(parse(&text), Err(BodyError::Missing(Field::Package)));
        for value in ["1", "true", "[\"a\"]", "{\"a\":\"b\"}"] {
            let text = format!(r#"{{"package":{value},"version":"v1-{DIGEST}"}}"#);
            assert_eq!(
                parse(&text),
                Err(BodyError::NotAString(Field::Package)),
                "{value}"
            );
        }
        let text = format!(r#"{{"package":"a","version":"v1-{DIGEST}","release_notes":7}}"#);
        assert_eq!(
            parse(&text),
            Err(BodyError::NotAString(Field::ReleaseNotes))
        );
        assert_eq!(
            BodyError::Missing(Field::Version).status(),
            Status::BadRequest
        );
    }

    #[test]
    fn test_reject_package_segments() {
        let version = format!("v1-{DIGEST}");
        for (package, e) in [
            ("", SegmentError::Empty),
            ("..", SegmentError::Dots),
            ("a/b", SegmentError::BadChar),
            ("a\\u0062", SegmentError::BadChar),
            ("a b", SegmentError::BadChar),
        ] {
            let text = format!(r#"{{"package":"{package}","version":"{version}"}}"#);
            assert_eq!(parse(&text), Err(BodyError::Package(e)), "{package}");
        }
        let text = format!(
            r#"{{"package":"{}","version":"{version}"}}"#,
            "p".repeat(65)
        );
        assert_eq!(parse(&text), Err(BodyError::Package(SegmentError::TooLong)));
        assert_eq!(
            BodyError::Package(SegmentError::Empty).status(),
            Status::UnprocessableEntity
        );
    }

    #[test]
    fn test_reject_versions() {
        let cases = [
            ("v2".to_owned(), VersionError::NoDigest),
            (DIGEST.to_owned(), VersionError::NoDigest),
            (
                format!("v2-{}", &DIGEST[1..]),
                VersionError::Digest(DigestError::Length),
            ),
            (
                format!("v2-{DIGEST}a"),
                VersionError::Digest(DigestError::Length),
            ),
            (
                format!("v2-{}z", &DIGEST[1..]),
                VersionError::Digest(DigestError::NotHex),
            ),
            (format!("-{DIGEST}"), VersionError::Tag(SegmentError::Empty)),
            (
                format!("v/2-{DIGEST}"),
                VersionError::Tag(SegmentError::BadChar),
            ),
        ];
        for (version, e) in cases {
            assert_eq!(
                parse(&body(&version)),
                Err(BodyError::Version(e)),
                "{version}"
            );
        }
        assert_eq!(
            BodyError::Version(VersionError::NoDigest).status(),
            Status::UnprocessableEntity
        );
    }

    #[test]
    fn test_reject_released_too_long() {
        let released = "2".repeat(RELEASED_CAPACITY + 1);
        let text = format!(r#"{{"package":"a","version":"v1-{DIGEST}","released":"{released}"}}"#);
        assert_eq!(parse(&text), Err(BodyError::ReleasedTooLong));
        let released = "2".repeat(RELEASED_CAPACITY);
        let text = format!(r#"{{"package":"a","version":"v1-{DIGEST}","released":"{released}"}}"#);
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn test_error_messages_are_one_line() {
        let errors = [
            BodyError::TooLarge,
            BodyError::Json(ScanError::Syntax { at: 3 }),
            BodyError::Missing(Field::Version),
            BodyError::Version(VersionError::Digest(DigestError::Length)),
            BodyError::Package(SegmentError::BadChar),
        ];
        for e in errors {
            let text = format!("{e}");
            assert!(!text.is_empty() && !text.contains('\n'), "{text}");
        }
        assert_eq!(
            format!(
                "{}",
                BodyError::Version(VersionError::Digest(DigestError::Length))
            ),
            "in a version, a digest must be 64 hexadecimal characters"
        );
    }

    #[test]
    fn test_retry_is_a_boolean_member_false_when_absent() {
        let with =
            |value: &str| format!(r#"{{"package":"a","version":"v1-{DIGEST}","retry":{value}}}"#);
        assert!(!parse(&body(&format!("v1-{DIGEST}"))).unwrap().retry);
        assert!(parse(&with("true")).unwrap().retry);
        assert!(!parse(&with("false")).unwrap().retry);
        assert!(!parse(&with("null")).unwrap().retry);
        assert!(parse(&with(" true ")).unwrap().retry);
        for bad in [r#""true""#, "1", "[true]", r#"{"a":true}"#, "0"] {
            assert_eq!(
                parse(&with(bad)),
                Err(BodyError::NotABoolean(Field::Retry)),
                "{bad}"
            );
        }
        assert_eq!(
            format!("{}", BodyError::NotABoolean(Field::Retry)),
            "field `retry` must be true or false"
        );
        assert_eq!(
            BodyError::NotABoolean(Field::Retry).status(),
            Status::BadRequest
        );
        // Anywhere in the object, and never twice.
        let first = format!(r#"{{"retry":true,"package":"a","version":"v1-{DIGEST}"}}"#);
        assert!(parse(&first).unwrap().retry);
        let twice =
            format!(r#"{{"package":"a","version":"v1-{DIGEST}","retry":true,"retry":false}}"#);
        assert_eq!(parse(&twice), Err(BodyError::Duplicate(Field::Retry)));
        // An escaped key is the same member.
        let escaped = format!(r#"{{"package":"a","version":"v1-{DIGEST}","r\u0065try":true}}"#);
        assert!(parse(&escaped).unwrap().retry);
    }

    #[test]
    fn test_allow_downgrade_is_a_boolean_member_of_its_own() {
        let with =
            |members: &str| format!(r#"{{"package":"a","version":"v1-{DIGEST}",{members}}}"#);
        let flags = |body: &str| {
            let n = parse(body).unwrap();
            (n.retry, n.allow_downgrade)
        };
        assert_eq!(flags(&body(&format!("v1-{DIGEST}"))), (false, false));
        assert_eq!(flags(&with(r#""allow_downgrade":true"#)), (false, true));
        assert_eq!(flags(&with(r#""allow_downgrade":null"#)), (false, false));
        assert_eq!(flags(&with(r#""allow_downgrade":false"#)), (false, false));
        assert_eq!(
            flags(&with(r#""retry":true,"allow_downgrade":true"#)),
            (true, true)
        );
        // A bad value names the member it is in, whichever comes first.
        for (members, field) in [
            (
                r#""retry":true,"allow_downgrade":"yes""#,
                Field::AllowDowngrade,
            ),
            (r#""allow_downgrade":true,"retry":1"#, Field::Retry),
            (
                r#""allow_downgrade":[],"retry":true"#,
                Field::AllowDowngrade,
            ),
        ] {
            assert_eq!(
                parse(&with(members)),
                Err(BodyError::NotABoolean(field)),
                "{members}"
            );
        }
        assert_eq!(
            format!("{}", BodyError::NotABoolean(Field::AllowDowngrade)),
            "field `allow_downgrade` must be true or false"
        );
        assert_eq!(
            parse(&with(r#""allow_downgrade":true,"allow_downgrade":true"#)),
            Err(BodyError::Duplicate(Field::AllowDowngrade))
        );
    }
}
