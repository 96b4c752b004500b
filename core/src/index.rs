//! A package's `versions.json` (docs/PROTOCOL.md §4), read as it streams by, to answer one
//! question: was the notified version published BEFORE the running one?
//!
//! The index is a JSON array of objects, oldest first; each has a `version` member
//! `<tag>-<64 hex>`. [`IndexScan`] is fed the body in chunks of any size (it is an
//! [`embedded_io_async::Write`], so a [`Repository`](crate::agent::Repository) streams the
//! body straight into it), splits the array with [`ArraySplitter`] into one caller-owned
//! buffer, and reads each element's `version` with the crate's strict JSON reading
//! ([`json::validate`], then serde-json-core with a visitor). Memory is that buffer, whatever
//! the index's length.
//!
//! The rules:
//!
//! 1. The body must be one JSON array (whitespace around it allowed) of objects, each with a
//!    `version` string that is a [`Version`]: split at its LAST `-`, the tag a
//!    [`Segment`](crate::bundle::Segment), the digest 64 hex digits of either case. The string
//!    is read exactly as sent: a JSON escape in it is not one of a segment's characters, and is
//!    refused. Other members (`published` among them) are ignored; a `version` given twice in
//!    one object is refused. Anything else is [`IndexError::Malformed`]: an empty body, a body
//!    that is not an array, an element that is not such an object, an array cut short, data
//!    after its `]`.
//! 2. An element longer than the buffer is [`IndexError::ElementTooLarge`] (one entry as
//!    lockstep writes it is about 150 bytes).
//! 3. A body longer than [`MAX_INDEX_LEN`] bytes is [`IndexError::TooLarge`]; exactly
//!    [`MAX_INDEX_LEN`] is accepted.
//! 4. Let `i_new` be the index of the FIRST entry whose digest is the notified one, and `i_old`
//!    that of the FIRST entry whose digest is of the running bundle (its id's first part is the
//!    digest's first 32 hex characters, [`BundleId::is_of_bundle`]). [`IndexScan::finish`]
//!    answers `Some(tag of the old entry)` when both exist and `i_new < i_old`: the notified
//!    version was published before the running one, so deploying it would be a downgrade.
//!    Otherwise `None`: not a downgrade (`i_new > i_old`), or nothing to tell (either is
//!    absent; one entry is both, as when the digests are the same).
//! 5. An absent index is the caller's to handle: it is an empty one (docs/PROTOCOL.md §4), so
//!    its answer is `None`, as `[]`'s is.
//! 6. After an error, every call answers that error; no input makes anything panic.
//!
//! This reader asks less of an entry than `lockstep publish` writes (a `published` string is not
//! required): what it decides needs only the order of the versions.

use core::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::bundle::{BundleId, Digest, MAX_SEGMENT_LEN, Version};
use crate::conductr::bundles::{ArraySplitter, SplitError};
use crate::json::{self, RawStr};
use crate::text::{InlineStr, len_u64};

/// The longest `versions.json` read, in bytes: at about 150 bytes an entry, over 100,000
/// versions. An index is read whole on every check, so a larger one is refused rather than
/// read for ever.
pub const MAX_INDEX_LEN: u64 = 16 * 1024 * 1024;

/// A tag, as the deployer names it ([`crate::deployer::Name`] is this type: a format does not
/// import the deciding modules, so it is spelt out here).
pub type Tag = InlineStr<MAX_SEGMENT_LEN>;

/// Why a `versions.json` could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum IndexError {
    /// Not an index: not one JSON array, or an element that is not an object with a `version`
    /// string `<tag>-<64 hex>`, or an array cut short or followed by other data.
    Malformed,
    /// An element is longer than the element buffer.
    ElementTooLarge,
    /// The body is longer than [`MAX_INDEX_LEN`] bytes.
    TooLarge,
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str(
                "versions.json is not an array of objects with a `version` <tag>-<64 hex>",
            ),
            Self::ElementTooLarge => f.write_str("an entry of versions.json is too long"),
            Self::TooLarge => write!(f, "versions.json is longer than {MAX_INDEX_LEN} bytes"),
        }
    }
}

impl core::error::Error for IndexError {}

impl embedded_io::Error for IndexError {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::InvalidData
    }
}

impl From<SplitError> for IndexError {
    fn from(e: SplitError) -> Self {
        match e {
            SplitError::ElementTooLarge => Self::ElementTooLarge,
            _ => Self::Malformed,
        }
    }
}

/// The most running bundles [`IndexScan::among`] compares with (as many as an observation
/// keeps).
pub const MAX_OLDS: usize = 16;

/// Reads a `versions.json` as it streams by, and answers whether the notified version was
/// published before the running one (the module doc's rules).
///
/// Feed it the body with [`feed`](Self::feed) or as an [`embedded_io_async::Write`] (whose
/// `write` consumes all it is given at once, and never waits), then call
/// [`finish`](Self::finish).
///
/// ```
/// use lockstep_core::bundle::{BundleId, Digest};
/// use lockstep_core::index::IndexScan;
///
/// let old = "9f8928a01e3c4fe0bd04e70cca3b1604ba013dbd494578572959ebfc9331e4c7";
/// let new = "31a429beecdb00b6d192a96bf9cf6b129abc96c1f0c763db8c36494d8e878d47";
/// let body = format!(r#"[{{"version": "1.0.0-{new}"}}, {{"version": "1.1.0-{old}"}}]"#);
/// let mut buf = [0u8; 256];
/// let running = BundleId::of(&Digest::parse(old)?, None);
/// let mut scan = IndexScan::new(&mut buf, Digest::parse(new)?, running);
/// scan.feed(body.as_bytes())?;
/// let tag = scan.finish()?;
/// assert_eq!(tag.as_ref().map(|t| t.as_str()), Some("1.1.0"));
/// # Ok::<(), Box<dyn core::error::Error>>(())
/// ```
pub struct IndexScan<'b> {
    splitter: ArraySplitter<'b>,
    new: Digest,
    /// The running bundles ([`among`](Self::among)); their earliest entry is the one compared.
    olds: heapless::Vec<BundleId, MAX_OLDS>,
    /// Bytes of the body fed so far.
    received: u64,
    /// Elements read so far.
    elements: u64,
    /// The first entry of the notified digest.
    new_at: Option<u64>,
    /// The earliest entry of a running bundle: where, its tag, and which bundle.
    old_at: Option<(u64, Tag, BundleId)>,
    error: Option<IndexError>,
}

impl fmt::Debug for IndexScan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexScan")
            .field("new", &self.new)
            .field("olds", &self.olds)
            .field("received", &self.received)
            .field("elements", &self.elements)
            .field("new_at", &self.new_at)
            .field("old_at", &self.old_at.map(|(at, _, _)| at))
            .field("error", &self.error)
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for IndexScan<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "IndexScan {{ received: {=u64}, elements: {=u64} }}",
            self.received,
            self.elements
        );
    }
}

impl<'b> IndexScan<'b> {
    /// A scan whose entries may be up to `buf.len()` bytes long, asking whether `new` was
    /// published before the bundle `old`.
    pub fn new(buf: &'b mut [u8], new: Digest, old: BundleId) -> Self {
        Self::among(buf, new, &[old])
    }

    /// A scan asking whether `new` was published before EVERY bundle of `olds` that the index
    /// lists (the first [`MAX_OLDS`] of them; none listed: `None`): compared with the one listed
    /// earliest, whose tag [`finish_which`](Self::finish_which) names with its id.
    pub fn among(buf: &'b mut [u8], new: Digest, olds: &[BundleId]) -> Self {
        Self {
            splitter: ArraySplitter::new(buf),
            new,
            olds: olds.iter().take(MAX_OLDS).copied().collect(),
            received: 0,
            elements: 0,
            new_at: None,
            old_at: None,
            error: None,
        }
    }

    /// Reads the next bytes of the body.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), IndexError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let result = self.run(bytes);
        if let Err(e) = result {
            self.error = Some(e);
        }
        result
    }

    /// The answer, once the whole body was fed: `Some(tag of the running version)` when the
    /// notified version was published before it, `None` otherwise (the module doc's rule 4).
    pub fn finish(self) -> Result<Option<Tag>, IndexError> {
        self.finish_which().map(|which| which.map(|(tag, _)| tag))
    }

    /// As [`finish`](Self::finish), with the running bundle it compared with: the one of
    /// [`among`](Self::among)'s that the index lists earliest.
    pub fn finish_which(self) -> Result<Option<(Tag, BundleId)>, IndexError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.splitter.finish()?;
        Ok(match (self.new_at, self.old_at) {
            (Some(new_at), Some((old_at, tag, old))) if new_at < old_at => Some((tag, old)),
            _ => None,
        })
    }

    fn run(&mut self, mut input: &[u8]) -> Result<(), IndexError> {
        let received = self.received.saturating_add(len_u64(input.len()));
        if received > MAX_INDEX_LEN {
            return Err(IndexError::TooLarge);
        }
        self.received = received;
        while let Some(element) = self.splitter.next_element(&mut input)? {
            let version = entry_version(element)?;
            let at = self.elements;
            self.elements = at.saturating_add(1);
            if self.new_at.is_none() && version.digest == self.new {
                self.new_at = Some(at);
            }
            if self.old_at.is_none()
                && let Some(old) = self.olds.iter().find(|o| o.is_of_bundle(&version.digest))
            {
                // A segment is at most MAX_SEGMENT_LEN bytes: it fits.
                let tag = Tag::new(version.tag.as_str()).map_err(|_| IndexError::Malformed)?;
                self.old_at = Some((at, tag, *old));
            }
        }
        Ok(())
    }
}

impl embedded_io::ErrorType for IndexScan<'_> {
    type Error = IndexError;
}

impl embedded_io_async::Write for IndexScan<'_> {
    /// Consumes all of `buf` at once: never waits, never answers less than `buf.len()`.
    async fn write(&mut self, buf: &[u8]) -> Result<usize, IndexError> {
        self.feed(buf).map(|()| buf.len())
    }

    async fn flush(&mut self) -> Result<(), IndexError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The `version` of one element (valid JSON, as the splitter checked).
fn entry_version(element: &[u8]) -> Result<Version<'_>, IndexError> {
    if element.first() != Some(&b'{') {
        return Err(IndexError::Malformed);
    }
    let (Entry(version), _) =
        serde_json_core::from_slice::<Entry<'_>>(element).map_err(|_| IndexError::Malformed)?;
    let version = version.ok_or(IndexError::Malformed)?;
    Version::parse(version).map_err(|_| IndexError::Malformed)
}

/// An entry's `version`, raw (escapes not decoded); `None` when absent. The read fails when it
/// is not a string or is given twice.
struct Entry<'a>(Option<&'a str>);

impl<'de> Deserialize<'de> for Entry<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;

        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = Entry<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an entry of versions.json")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut version = None;
                while let Some(RawStr(key)) = map.next_key::<RawStr<'de>>()? {
                    if !json::unescaped_eq(key, "version") {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    if version.is_some() {
                        return Err(de::Error::duplicate_field("version"));
                    }
                    let RawStr(value) = map.next_value::<RawStr<'de>>()?;
                    version = Some(value);
                }
                Ok(Entry(version))
            }
        }

        deserializer.deserialize_map(EntryVisitor)
    }
}

#[cfg(test)]
mod tests {
    use core::future::Future;
    use core::pin::pin;
    use core::task::{Context, Poll, Waker};
    use std::format;
    use std::string::String;
    use std::vec::Vec;

    use super::*;

    // docs/PROTOCOL.md §4, "versions.json": the sandbox demo's index, verbatim.
    const EXAMPLE: &str = r#"[
  {"version": "1.0.0-9f8928a01e3c4fe0bd04e70cca3b1604ba013dbd494578572959ebfc9331e4c7", "published": "2026-12-01T14:59:13.023Z"},
  {"version": "1.1.0-31a429beecdb00b6d192a96bf9cf6b129abc96c1f0c763db8c36494d8e878d47", "published": "2026-12-01T14:59:13.023Z"},
  {"version": "1.2.0-eb909f16301014f133af54598ba7e7141a49387cc9ad58518003f26f661f1bc9", "published": "2026-12-01T14:59:13.023Z"},
  {"version": "2.0.0-0a6b23cc86c4eb15ebba7d70a620756f6eb25dbc4ed42a5cb12b309d7cfca9cb", "published": "2026-12-01T14:59:13.023Z"}
]
"#;
    const V100: &str = "9f8928a01e3c4fe0bd04e70cca3b1604ba013dbd494578572959ebfc9331e4c7";
    const V110: &str = "31a429beecdb00b6d192a96bf9cf6b129abc96c1f0c763db8c36494d8e878d47";
    const V120: &str = "eb909f16301014f133af54598ba7e7141a49387cc9ad58518003f26f661f1bc9";
    const V200: &str = "0a6b23cc86c4eb15ebba7d70a620756f6eb25dbc4ed42a5cb12b309d7cfca9cb";
    // SHA-256 of the empty string (FIPS 180-4 examples): in no index here.
    const ABSENT: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn digest(hex: &str) -> Digest {
        Digest::parse(hex).unwrap()
    }

    fn id(hex: &str) -> BundleId {
        BundleId::of(&digest(hex), None)
    }

    /// The answer for `body` fed in chunks cut at `cuts`, with an element buffer of `buf_len`.
    fn scan_cut(
        body: &[u8],
        cuts: &[usize],
        buf_len: usize,
        new: &str,
        old: BundleId,
    ) -> Result<Option<String>, IndexError> {
        let mut buf = std::vec![0u8; buf_len];
        let mut scan = IndexScan::new(&mut buf, digest(new), old);
        let mut from = 0;
        for &cut in cuts.iter().chain([&body.len()]) {
            scan.feed(&body[from..cut])?;
            from = cut;
        }
        scan.finish().map(|tag| tag.map(|t: Tag| t.as_str().into()))
    }

    fn scan(body: &str, new: &str, old: BundleId) -> Result<Option<String>, IndexError> {
        scan_cut(body.as_bytes(), &[], 1024, new, old)
    }

    fn tag(s: &str) -> Result<Option<String>, IndexError> {
        Ok(Some(s.into()))
    }

    // ---- the answer --------------------------------------------------------------------------

    // Every ordered pair of the four versions: a downgrade exactly when the notified one is
    // older; its answer names the running one's tag.
    #[test]
    fn test_protocol_example_every_pair() {
        let versions = [
            ("1.0.0", V100),
            ("1.1.0", V110),
            ("1.2.0", V120),
            ("2.0.0", V200),
        ];
        for (i, (_, new)) in versions.iter().enumerate() {
            for (j, (old_tag, old)) in versions.iter().enumerate() {
                let expected = if i < j { tag(old_tag) } else { Ok(None) };
                assert_eq!(scan(EXAMPLE, new, id(old)), expected, "new {i}, old {j}");
            }
        }
    }

    // Among several running bundles, the notified version must come before every one the index
    // lists; the answer names the earliest of them, and which bundle it is.
    #[test]
    fn test_among_several_running_bundles() {
        let among = |new: &str, olds: &[BundleId]| {
            let mut buf = [0u8; 1024];
            let mut scan = IndexScan::among(&mut buf, digest(new), olds);
            scan.feed(EXAMPLE.as_bytes()).unwrap();
            scan.finish_which()
                .unwrap()
                .map(|(t, old)| (String::from(t.as_str()), old))
        };
        // 1.0.0 before both 1.2.0 and 2.0.0: compared with 1.2.0, listed first.
        assert_eq!(
            among(V100, &[id(V200), id(V120)]),
            Some(("1.2.0".into(), id(V120)))
        );
        // 1.1.0 is before 2.0.0 but after 1.0.0: not before every one.
        assert_eq!(among(V110, &[id(V200), id(V100)]), None);
        // A running bundle the index does not list is not compared.
        assert_eq!(
            among(V110, &[id(ABSENT), id(V200)]),
            Some(("2.0.0".into(), id(V200)))
        );
        assert_eq!(among(V110, &[id(ABSENT)]), None);
        assert_eq!(among(V110, &[]), None);
    }

    #[test]
    fn test_absent_versions_tell_nothing() {
        assert_eq!(scan(EXAMPLE, ABSENT, id(V200)), Ok(None));
        assert_eq!(scan(EXAMPLE, V100, id(ABSENT)), Ok(None));
        assert_eq!(scan("[]", V100, id(V200)), Ok(None));
        assert_eq!(scan(" [ ] \n", V100, id(V200)), Ok(None));
    }

    // The running bundle's id, with a configuration part: its bundle part decides.
    #[test]
    fn test_old_is_matched_by_its_bundle_part() {
        let config = digest(ABSENT);
        let old = BundleId::of(&digest(V200), Some(&config));
        assert_eq!(scan(EXAMPLE, V110, old), tag("2.0.0"));
    }

    // A digest sharing the running bundle's first 32 hex characters is of that bundle (that is
    // all an id says); only the exact digest is the notified one.
    #[test]
    fn test_old_by_first_half_new_by_whole_digest() {
        let twin = format!("{}{}", &V200[..32], &V100[32..]);
        let body = format!(r#"[{{"version": "t-{twin}"}}, {{"version": "u-{V110}"}}]"#);
        assert_eq!(scan(&body, V110, id(V200)), Ok(None));
        assert_eq!(scan(&body, V200, id(V110)), Ok(None));
        let body = format!(r#"[{{"version": "a-{V110}"}}, {{"version": "t-{twin}"}}]"#);
        assert_eq!(scan(&body, V110, id(V200)), tag("t"));
    }

    // The first entry of each counts: a digest published again later does not move it.
    #[test]
    fn test_first_entries_count() {
        let body = format!(
            r#"[{{"version": "a-{V100}"}}, {{"version": "b-{V200}"}}, {{"version": "c-{V100}"}},
                {{"version": "d-{V200}"}}]"#
        );
        assert_eq!(scan(&body, V100, id(V200)), tag("b"));
        assert_eq!(scan(&body, V200, id(V100)), Ok(None));
    }

    #[test]
    fn test_same_digest_is_no_downgrade() {
        assert_eq!(scan(EXAMPLE, V110, id(V110)), Ok(None));
    }

    #[test]
    fn test_tag_with_dashes_and_upper_case_hex() {
        let body = format!(
            r#"[{{"version": "v2-rc-1-{}"}}, {{"version": "v2-rc-2-{}", "x": [1, {{"y": null}}]}}]"#,
            V100.to_ascii_uppercase(),
            V200.to_ascii_uppercase()
        );
        assert_eq!(scan(&body, V100, id(V200)), tag("v2-rc-2"));
    }

    // Other members, in any order, of any kind, are ignored; an escaped key is still `version`.
    #[test]
    fn test_other_members_ignored() {
        let body = format!(
            r#"[{{"published": 3, "vers\u0069on": "a-{V100}", "n": {{"version": 1}}}},
                {{"extra": [true, false], "version": "b-{V200}"}}]"#
        );
        assert_eq!(scan(&body, V100, id(V200)), tag("b"));
    }

    // Cut at every byte boundary, and byte by byte: the same answer.
    #[test]
    fn test_every_chunking_same_answer() {
        let body = EXAMPLE.as_bytes();
        for cut in 0..=body.len() {
            assert_eq!(
                scan_cut(body, &[cut], 1024, V110, id(V200)),
                tag("2.0.0"),
                "cut at {cut}"
            );
        }
        let every: Vec<usize> = (1..body.len()).collect();
        assert_eq!(scan_cut(body, &every, 1024, V110, id(V200)), tag("2.0.0"));
    }

    // A Repository streams the body through `embedded_io_async::Write`; no write waits.
    #[test]
    fn test_written_as_embedded_io() {
        use embedded_io_async::Write as _;
        let mut buf = [0u8; 256];
        let mut scan = IndexScan::new(&mut buf, digest(V100), id(V120));
        for chunk in EXAMPLE.as_bytes().chunks(37) {
            let written = poll_once(scan.write(chunk)).unwrap();
            assert_eq!(written, Ok(chunk.len()));
        }
        assert_eq!(poll_once(scan.flush()).unwrap(), Ok(()));
        assert_eq!(scan.finish().unwrap().unwrap().as_str(), "1.2.0");

        let mut scan = IndexScan::new(&mut buf, digest(V100), id(V120));
        assert_eq!(
            poll_once(scan.write(b"{")).unwrap(),
            Err(IndexError::Malformed)
        );
        assert_eq!(poll_once(scan.flush()).unwrap(), Err(IndexError::Malformed));
    }

    fn poll_once<F: Future>(fut: F) -> Option<F::Output> {
        let mut cx = Context::from_waker(Waker::noop());
        match pin!(fut).poll(&mut cx) {
            Poll::Ready(out) => Some(out),
            Poll::Pending => None,
        }
    }

    // ---- refusals ----------------------------------------------------------------------------

    #[test]
    fn test_reject_malformed() {
        let entry = format!(r#"{{"version": "a-{V100}"}}"#);
        for bad in [
            String::new(),
            "   ".into(),
            // Not an array.
            entry.clone(),
            format!(r#""a-{V100}""#),
            "null".into(),
            // Elements that are not objects.
            format!(r#"["a-{V100}"]"#),
            format!("[{entry}, 1]"),
            format!("[{entry}, [{entry}]]"),
            "[null]".into(),
            // No version, or not a string.
            "[{}]".into(),
            format!(r#"[{{"Version": "a-{V100}"}}]"#),
            r#"[{"version": 1}]"#.into(),
            r#"[{"version": null}]"#.into(),
            format!(r#"[{{"version": ["a-{V100}"]}}]"#),
            // Twice in one object.
            format!(r#"[{{"version": "a-{V100}", "version": "b-{V200}"}}]"#),
            // Not <tag>-<64 hex>.
            format!(r#"[{{"version": "{V100}"}}]"#),
            format!(r#"[{{"version": "-{V100}"}}]"#),
            format!(r#"[{{"version": "a-{}"}}]"#, &V100[1..]),
            format!(r#"[{{"version": "a-{V100}0"}}]"#),
            format!(r#"[{{"version": "a-{}g"}}]"#, &V100[1..]),
            format!(r#"[{{"version": "a/b-{V100}"}}]"#),
            format!(r#"[{{"version": "a\u002d{V100}"}}]"#),
            format!(r#"[{{"version": "{}-{V100}"}}]"#, "a".repeat(65)),
            // Cut short, bad syntax, trailing garbage.
            format!("[{entry}"),
            format!("[{entry},"),
            format!("[{entry},]"),
            format!("[{entry} {entry}]"),
            format!("[{entry}] x"),
            format!("[{entry}]]"),
            format!("[{entry}][]"),
            format!(r#"[{{"version": "a-{V100}",}}]"#),
        ] {
            assert_eq!(
                scan(&bad, V100, id(V200)),
                Err(IndexError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            scan_cut(b"[\xff]", &[], 64, V100, id(V200)),
            Err(IndexError::Malformed)
        );
    }

    // A bad entry anywhere fails the whole index, even after the answer is known.
    #[test]
    fn test_reject_bad_entry_after_the_answer() {
        let body = format!(r#"[{{"version": "a-{V100}"}}, {{"version": "b-{V200}"}}, {{}}]"#);
        assert_eq!(scan(&body, V100, id(V200)), Err(IndexError::Malformed));
    }

    #[test]
    fn test_reject_element_longer_than_the_buffer() {
        let entry = format!(r#"{{"version": "a-{V100}"}}"#);
        let body = format!("[{entry}]");
        let fits = scan_cut(body.as_bytes(), &[], entry.len(), V100, id(V200));
        assert_eq!(fits, Ok(None));
        let short = scan_cut(body.as_bytes(), &[], entry.len() - 1, V100, id(V200));
        assert_eq!(short, Err(IndexError::ElementTooLarge));
    }

    // After an error, every call answers it.
    #[test]
    fn test_error_sticks() {
        let mut buf = [0u8; 64];
        let mut scan = IndexScan::new(&mut buf, digest(V100), id(V200));
        assert_eq!(scan.feed(b"{"), Err(IndexError::Malformed));
        assert_eq!(scan.feed(b"[]"), Err(IndexError::Malformed));
        assert_eq!(scan.finish(), Err(IndexError::Malformed));
    }

    // MAX_INDEX_LEN bytes are read (whitespace inside the array, fed in chunks); one more
    // byte is refused.
    #[test]
    fn test_max_index_len_edge() {
        let chunk = [b' '; 64 * 1024];
        let fill = |scan: &mut IndexScan<'_>, mut left: u64| {
            while left > 0 {
                let n = left.min(len_u64(chunk.len()));
                scan.feed(&chunk[..usize::try_from(n).unwrap()]).unwrap();
                left -= n;
            }
        };
        let entry = format!(r#"[{{"version": "a-{V100}"}},{{"version": "b-{V200}"}}"#);
        let entry = entry.as_bytes();
        let mut buf = [0u8; 256];

        let mut scan = IndexScan::new(&mut buf, digest(V100), id(V200));
        scan.feed(entry).unwrap();
        fill(&mut scan, MAX_INDEX_LEN - len_u64(entry.len()) - 1);
        scan.feed(b"]").unwrap();
        assert_eq!(scan.finish().unwrap().unwrap().as_str(), "b");

        let mut scan = IndexScan::new(&mut buf, digest(V100), id(V200));
        scan.feed(entry).unwrap();
        fill(&mut scan, MAX_INDEX_LEN - len_u64(entry.len()));
        assert_eq!(scan.feed(b"]"), Err(IndexError::TooLarge));
        assert_eq!(scan.finish(), Err(IndexError::TooLarge));

        // One write past the limit is refused whole, before any of it is read.
        let mut scan = IndexScan::new(&mut buf, digest(V100), id(V200));
        scan.feed(b"[").unwrap();
        let big = std::vec![b' '; usize::try_from(MAX_INDEX_LEN).unwrap()];
        assert_eq!(scan.feed(&big), Err(IndexError::TooLarge));
    }
}
