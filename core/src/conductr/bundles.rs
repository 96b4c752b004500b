//! The bundle list of `GET /v2/bundles` (docs/PROTOCOL.md §5), element by element, and the small
//! answer of a load or a scale.
//!
//! [`ArraySplitter`] is fed the list's body in chunks of any size and copies each top-level
//! element into the one buffer it was given, checking the array's own syntax (brackets,
//! commas, whitespace, strings and their escapes, nesting) as the bytes pass and every element
//! with [`json::validate`] before yielding it: memory is that buffer, whatever the list's
//! length. [`BundleInfo::parse`] then reads one element: [`json::validate`] first, then
//! serde-json-core with hand-written visitors (it has no recursion limit and skips unknown
//! fields without looking; the scan has checked both).
//!
//! Names are borrowed exactly as sent: `bundleName`, `compatibilityVersion`, the tags and the
//! request id are refused when they hold a JSON escape ([`BundleError::Escaped`]); ConductR's
//! names are plain, and a name the deployer compares must be the bytes it was given.

use core::cell::Cell;
use core::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::bundle::{BundleId, BundleIdError, Digest, DigestError};
use crate::json::{self, RawStr, ScanError};
use crate::limits::MAX_BUNDLE_TAGS;
use crate::text::{Cursor, len_u64};

// ---------------------------------------------------------------------------------------------
// The array splitter
// ---------------------------------------------------------------------------------------------

/// The deepest an element may nest: the array around it is one level of [`json::MAX_DEPTH`].
const ELEMENT_DEPTH: usize = json::MAX_DEPTH - 1;

/// Why a JSON array body could not be split into its elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SplitError {
    /// The first byte after leading whitespace is not `[`.
    NotAnArray,
    /// The array or one of its elements is not JSON: the grammar fails at this byte.
    Syntax {
        /// Offset of the first byte that does not fit, from the start of the body.
        at: u64,
    },
    /// An element is not UTF-8.
    InvalidUtf8,
    /// Nesting deeper than [`json::MAX_DEPTH`] levels, the array included.
    TooDeep,
    /// An element is longer than the element buffer.
    ElementTooLarge,
    /// Something other than whitespace follows the array's closing `]`.
    DataAfterEnd,
    /// The body ended before the array's closing `]`.
    Truncated,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnArray => f.write_str("the body is not a JSON array"),
            Self::Syntax { at } => write!(f, "invalid JSON at byte {at}"),
            Self::InvalidUtf8 => f.write_str("an array element is not valid UTF-8"),
            Self::TooDeep => write!(f, "JSON nested deeper than {} levels", json::MAX_DEPTH),
            Self::ElementTooLarge => f.write_str("an array element is larger than its buffer"),
            Self::DataAfterEnd => f.write_str("data after the end of the array"),
            Self::Truncated => f.write_str("the array ends before its closing `]`"),
        }
    }
}

impl core::error::Error for SplitError {}

/// Where the splitter stands in the array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Split {
    /// Before the `[`.
    Start,
    /// After the `[`: an element or `]`.
    First,
    /// After a `,`: an element.
    Next,
    /// Inside an element.
    Element(Scope),
    /// After an element: `,` or `]`.
    After,
    /// After the `]`: whitespace only.
    Done,
}

/// What kind of element is being copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// An object or an array: ends when its last bracket closes.
    Container,
    /// A string: ends at its closing quote.
    String,
    /// A number or a literal: ends before a byte that cannot be part of one.
    Scalar,
}

/// Splits a JSON array fed in chunks into its top-level elements, each copied into one
/// caller-owned buffer, so that a list of any length is read in the memory of its largest
/// element.
///
/// Drive it with [`next_element`](Self::next_element) until it answers `Ok(None)` (the chunk
/// is used up), for every chunk of the body; then call [`finish`](Self::finish), which fails if
/// the array was cut short. An element is yielded only once it is complete and valid JSON
/// ([`json::validate`]); it stays in the buffer until the next call. After an error, every call
/// answers that error.
///
/// ```
/// use lockstep_core::conductr::bundles::ArraySplitter;
///
/// let mut buf = [0u8; 64];
/// let mut splitter = ArraySplitter::new(&mut buf);
/// let mut count = 0;
/// for chunk in [&b"[{\"a\": [1, 2]}, \"x"[..], b"y\", 3]"] {
///     let mut rest = chunk;
///     while let Some(element) = splitter.next_element(&mut rest)? {
///         assert!(matches!(element, b"{\"a\": [1, 2]}" | b"\"xy\"" | b"3"));
///         count += 1;
///     }
/// }
/// splitter.finish()?;
/// assert_eq!(count, 3);
/// # Ok::<(), lockstep_core::conductr::bundles::SplitError>(())
/// ```
pub struct ArraySplitter<'b> {
    /// The current element.
    element: Cursor<'b>,
    state: Split,
    /// Containers open inside the current element.
    depth: usize,
    /// One bit per open container of the element: 1 = object, 0 = array.
    stack: u32,
    in_string: bool,
    escaped: bool,
    /// Bytes of the body consumed so far.
    offset: u64,
    /// Offset of the current element's first byte.
    start: u64,
    elements: u64,
    /// The last call yielded an element: clear the buffer on the next one.
    yielded: bool,
    error: Option<SplitError>,
}

impl fmt::Debug for ArraySplitter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArraySplitter")
            .field("capacity", &self.element.capacity())
            .field("offset", &self.offset)
            .field("elements", &self.elements)
            .field("state", &self.state)
            .field("error", &self.error)
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for ArraySplitter<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "ArraySplitter {{ capacity: {=usize}, offset: {=u64}, elements: {=u64} }}",
            self.element.capacity(),
            self.offset,
            self.elements
        );
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl<'b> ArraySplitter<'b> {
    /// A splitter whose elements may be up to `buf.len()` bytes long.
    pub fn new(buf: &'b mut [u8]) -> Self {
        Self {
            element: Cursor::new(buf),
            state: Split::Start,
            depth: 0,
            stack: 0,
            in_string: false,
            escaped: false,
            offset: 0,
            start: 0,
            elements: 0,
            yielded: false,
            error: None,
        }
    }

    /// Consumes `input` from its start until an element is complete, and yields it; or consumes
    /// all of `input` and answers `Ok(None)`: feed the next chunk. `input` is advanced past
    /// what was consumed.
    pub fn next_element(&mut self, input: &mut &[u8]) -> Result<Option<&[u8]>, SplitError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.yielded {
            self.element.clear();
            self.yielded = false;
        }
        match self.run(input).and_then(|complete| {
            if complete {
                self.check_element().map(|()| true)
            } else {
                Ok(false)
            }
        }) {
            Ok(true) => {
                self.yielded = true;
                self.elements = self.elements.saturating_add(1);
                Ok(Some(self.element.written()))
            }
            Ok(false) => Ok(None),
            Err(e) => {
                self.error = Some(e);
                Err(e)
            }
        }
    }

    /// Checks that the array was closed (and nothing but whitespace followed); call it at the
    /// end of the body.
    pub fn finish(&self) -> Result<(), SplitError> {
        match (self.error, self.state) {
            (Some(e), _) => Err(e),
            (None, Split::Done) => Ok(()),
            (None, _) => Err(SplitError::Truncated),
        }
    }

    /// How many elements were yielded.
    pub const fn elements(&self) -> u64 {
        self.elements
    }

    /// How many bytes of the body were consumed.
    pub const fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether the closing `]` was seen.
    pub fn is_done(&self) -> bool {
        self.state == Split::Done
    }

    /// The largest element this splitter can hold.
    pub const fn capacity(&self) -> usize {
        self.element.capacity()
    }

    /// Runs until an element is complete (`true`) or `input` is used up (`false`), advancing
    /// `input` past the bytes consumed.
    fn run(&mut self, input: &mut &[u8]) -> Result<bool, SplitError> {
        while let Some((&b, rest)) = input.split_first() {
            if let Split::Element(scope) = self.state {
                if scope == Scope::Scalar
                    && !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
                {
                    // What ends a number or a literal belongs to the array: left for the next
                    // state.
                    self.state = Split::After;
                    return Ok(true);
                }
                self.append(b)?;
                self.consume(input, rest);
                if scope != Scope::Scalar && self.element_byte(b)? {
                    self.state = Split::After;
                    return Ok(true);
                }
                continue;
            }
            if is_ws(b) {
                self.consume(input, rest);
                continue;
            }
            let syntax = SplitError::Syntax { at: self.offset };
            match (self.state, b) {
                (Split::Start, b'[') => self.state = Split::First,
                (Split::Start, _) => return Err(SplitError::NotAnArray),
                (Split::First | Split::After, b']') => self.state = Split::Done,
                (Split::After, b',') => self.state = Split::Next,
                (Split::After, _) => return Err(syntax),
                (Split::Done, _) => return Err(SplitError::DataAfterEnd),
                (Split::First | Split::Next | Split::Element(_), _) => {
                    let scope = match b {
                        b'{' | b'[' => Scope::Container,
                        b'"' => Scope::String,
                        b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => Scope::Scalar,
                        _ => return Err(syntax),
                    };
                    self.state = Split::Element(scope);
                    self.start = self.offset;
                    // The byte is the element's first: not consumed here.
                    continue;
                }
            }
            self.consume(input, rest);
        }
        Ok(false)
    }

    /// Moves `input` on to `rest`, past its first byte.
    fn consume<'i>(&mut self, input: &mut &'i [u8], rest: &'i [u8]) {
        *input = rest;
        self.offset = self.offset.saturating_add(1);
    }

    fn append(&mut self, b: u8) -> Result<(), SplitError> {
        self.element
            .write_bytes(&[b])
            .map_err(|_| SplitError::ElementTooLarge)
    }

    /// Tracks strings and brackets; `true` when the byte ends the element.
    fn element_byte(&mut self, b: u8) -> Result<bool, SplitError> {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
                return Ok(self.depth == 0);
            }
            return Ok(false);
        }
        // `b` was consumed: its offset is one less.
        let at = self.offset.saturating_sub(1);
        match b {
            b'"' => self.in_string = true,
            b'{' | b'[' => {
                if self.depth >= ELEMENT_DEPTH {
                    return Err(SplitError::TooDeep);
                }
                self.stack = (self.stack << 1) | u32::from(b == b'{');
                self.depth = self.depth.saturating_add(1);
            }
            b'}' | b']' => {
                let object = self.stack & 1 == 1;
                if self.depth == 0 || object != (b == b'}') {
                    return Err(SplitError::Syntax { at });
                }
                self.stack >>= 1;
                self.depth = self.depth.saturating_sub(1);
                return Ok(self.depth == 0);
            }
            _ => {}
        }
        Ok(false)
    }

    fn check_element(&self) -> Result<(), SplitError> {
        json::validate(self.element.written(), ELEMENT_DEPTH)
            .map(|_| ())
            .map_err(|e| match e {
                ScanError::InvalidUtf8 => SplitError::InvalidUtf8,
                ScanError::TooDeep => SplitError::TooDeep,
                ScanError::Syntax { at } => SplitError::Syntax {
                    at: self.start.saturating_add(len_u64(at)),
                },
            })
    }
}

// ---------------------------------------------------------------------------------------------
// One bundle
// ---------------------------------------------------------------------------------------------

/// The fields lockstep reads from the control API's answers, for errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Field {
    /// `bundleId`
    BundleId,
    /// `bundleDigest`
    BundleDigest,
    /// `configurationDigest`
    ConfigurationDigest,
    /// `attributes`
    Attributes,
    /// `attributes.bundleName`
    BundleName,
    /// `attributes.compatibilityVersion`
    CompatibilityVersion,
    /// `attributes.tags`
    Tags,
    /// `bundleScale`
    BundleScale,
    /// `bundleScale.scale`
    Scale,
    /// `bundleExecutions`
    BundleExecutions,
    /// `bundleExecutions[].isStarted`
    IsStarted,
    /// `bundleInstallations`
    BundleInstallations,
    /// `hasError`
    HasError,
    /// `requestId`, of a load or scale answer.
    RequestId,
}

impl Field {
    /// The field's path in the JSON document.
    pub const fn path(self) -> &'static str {
        match self {
            Self::BundleId => "bundleId",
            Self::BundleDigest => "bundleDigest",
            Self::ConfigurationDigest => "configurationDigest",
            Self::Attributes => "attributes",
            Self::BundleName => "attributes.bundleName",
            Self::CompatibilityVersion => "attributes.compatibilityVersion",
            Self::Tags => "attributes.tags",
            Self::BundleScale => "bundleScale",
            Self::Scale => "bundleScale.scale",
            Self::BundleExecutions => "bundleExecutions",
            Self::IsStarted => "bundleExecutions[].isStarted",
            Self::BundleInstallations => "bundleInstallations",
            Self::HasError => "hasError",
            Self::RequestId => "requestId",
        }
    }

    /// The field's key in its own object.
    const fn key(self) -> &'static str {
        match self {
            Self::BundleName => "bundleName",
            Self::CompatibilityVersion => "compatibilityVersion",
            Self::Tags => "tags",
            Self::Scale => "scale",
            Self::IsStarted => "isStarted",
            _ => self.path(),
        }
    }

    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// Why an element of the bundle list, or an answer of the control API, is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BundleError {
    /// Not UTF-8, not JSON, or nested too deep.
    Json(ScanError),
    /// Valid JSON, but not an object.
    NotAnObject,
    /// A required field is absent or `null`.
    Missing(Field),
    /// A field appears twice in its object.
    Duplicate(Field),
    /// A field holds a value of the wrong type (a scale that is not a `u32` included).
    WrongType(Field),
    /// A name holds a JSON escape: names are used exactly as sent.
    Escaped(Field),
    /// `bundleId` is not a bundle id.
    Id(BundleIdError),
    /// A digest field is not 64 hex characters.
    Digest(Field, DigestError),
    /// `bundleId` is not the id of `bundleDigest` and `configurationDigest`.
    IdMismatch,
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(e) => e.fmt(f),
            Self::NotAnObject => f.write_str("expected a JSON object"),
            Self::Missing(field) => write!(f, "missing field `{}`", field.path()),
            Self::Duplicate(field) => write!(f, "duplicate field `{}`", field.path()),
            Self::WrongType(field) => write!(f, "field `{}` has the wrong type", field.path()),
            Self::Escaped(field) => {
                write!(f, "field `{}` holds a JSON escape", field.path())
            }
            Self::Id(e) => write!(f, "bundleId: {e}"),
            Self::Digest(field, e) => write!(f, "{}: {e}", field.path()),
            Self::IdMismatch => f.write_str("bundleId does not match the bundle's digests"),
        }
    }
}

impl core::error::Error for BundleError {}

impl From<ScanError> for BundleError {
    fn from(e: ScanError) -> Self {
        Self::Json(e)
    }
}

impl From<BundleIdError> for BundleError {
    fn from(e: BundleIdError) -> Self {
        Self::Id(e)
    }
}

/// One bundle of `GET /v2/bundles`, as lockstep needs it. Strings are borrowed from the
/// element.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BundleInfo<'a> {
    /// `bundleId`; always the id of [`digest`](Self::digest) and
    /// [`configuration_digest`](Self::configuration_digest).
    pub id: BundleId,
    /// `bundleDigest`: the SHA-256 of the bundle zip.
    pub digest: Digest,
    /// `configurationDigest`, when the bundle was loaded with a configuration.
    pub configuration_digest: Option<Digest>,
    /// `attributes.bundleName`.
    pub name: &'a str,
    /// `attributes.compatibilityVersion`.
    pub compatibility_version: &'a str,
    /// `attributes.tags`: the first [`MAX_BUNDLE_TAGS`]; more are ignored.
    pub tags: heapless::Vec<&'a str, MAX_BUNDLE_TAGS>,
    /// `bundleScale.scale`: `None` when no run was ever requested.
    pub scale: Option<u32>,
    /// Executions with `isStarted: true`.
    pub started: u32,
    /// Executions not started yet (`isStarted` false or absent).
    pub starting: u32,
    /// How many `bundleInstallations` (replicas of the bundle's files) there are: conductr-cli
    /// waits for at least one after a load.
    pub installations: u32,
    /// `hasError` (false when absent).
    pub has_error: bool,
}

impl<'a> BundleInfo<'a> {
    /// Parses one element of the bundle list.
    ///
    /// Required: `bundleId`, `bundleDigest`, `attributes.bundleName`,
    /// `attributes.compatibilityVersion`. Absent (or `null`) `bundleScale`,
    /// `bundleExecutions`, `bundleInstallations`, `tags` and `hasError` read as none, empty and
    /// false. Unknown fields are ignored at every level. `bundleScale` must be an object (the
    /// bare integer an older API wrote, which conductr-cli's `info` also accepts, is refused as
    /// [`BundleError::WrongType`]).
    pub fn parse(element: &'a [u8]) -> Result<Self, BundleError> {
        scan_object(element)?;
        let ctx = Ctx::default();
        let raw = deserialize(element, &ctx, BundleSeed { ctx: &ctx })?;
        let id = BundleId::parse(raw.id.ok_or(BundleError::Missing(Field::BundleId))?)?;
        let digest = parse_digest(raw.digest, Field::BundleDigest)?
            .ok_or(BundleError::Missing(Field::BundleDigest))?;
        let configuration_digest = parse_digest(raw.config, Field::ConfigurationDigest)?;
        if BundleId::of(&digest, configuration_digest.as_ref()) != id {
            return Err(BundleError::IdMismatch);
        }
        let attributes = raw
            .attributes
            .ok_or(BundleError::Missing(Field::Attributes))?;
        Ok(Self {
            id,
            digest,
            configuration_digest,
            name: plain(attributes.name, Field::BundleName)?,
            compatibility_version: plain(
                attributes.compatibility_version,
                Field::CompatibilityVersion,
            )?,
            tags: attributes.tags,
            scale: raw.scale,
            started: raw.started,
            starting: raw.starting,
            installations: raw.installations,
            has_error: raw.has_error,
        })
    }
}

/// The answer of `POST /v2/bundles` and `PUT /v2/bundles/{id}?scale=N`:
/// `{"requestId": "...", "bundleId": "..."}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RequestAnswer<'a> {
    /// `requestId`, exactly as sent; absent in some answers (conductr-cli never reads it).
    pub request_id: Option<&'a str>,
    /// `bundleId`: the bundle loaded or scaled.
    pub bundle_id: BundleId,
}

impl<'a> RequestAnswer<'a> {
    /// Parses the answer's body. Unknown fields are ignored; `bundleId` is required.
    pub fn parse(body: &'a [u8]) -> Result<Self, BundleError> {
        scan_object(body)?;
        let ctx = Ctx::default();
        let raw = deserialize(body, &ctx, AnswerSeed { ctx: &ctx })?;
        let id = raw.bundle_id.ok_or(BundleError::Missing(Field::BundleId))?;
        Ok(Self {
            request_id: raw
                .request_id
                .map(|s| plain(Some(s), Field::RequestId))
                .transpose()?,
            bundle_id: BundleId::parse(id)?,
        })
    }
}

fn scan_object(body: &[u8]) -> Result<(), BundleError> {
    if json::validate(body, json::MAX_DEPTH)? == json::Kind::Object {
        Ok(())
    } else {
        Err(BundleError::NotAnObject)
    }
}

/// Runs a seed over a scanned body; a failure is blamed on the field being read.
fn deserialize<'de, S: DeserializeSeed<'de>>(
    body: &'de [u8],
    ctx: &Ctx,
    seed: S,
) -> Result<S::Value, BundleError> {
    let mut de = serde_json_core::de::Deserializer::new(body, None);
    let value = seed.deserialize(&mut de).and_then(|v| de.end().map(|_| v));
    if let Some(problem) = ctx.problem.get() {
        return Err(problem);
    }
    value.map_err(|_| match ctx.at.get() {
        Some(field) => BundleError::WrongType(field),
        // The scan accepted the body: serde-json-core has nothing else to fail on.
        None => BundleError::Json(ScanError::Syntax { at: 0 }),
    })
}

/// A name, used exactly as sent.
fn plain(s: Option<&str>, field: Field) -> Result<&str, BundleError> {
    let s = s.ok_or(BundleError::Missing(field))?;
    if s.contains('\\') {
        return Err(BundleError::Escaped(field));
    }
    Ok(s)
}

fn parse_digest(s: Option<&str>, field: Field) -> Result<Option<Digest>, BundleError> {
    s.map(|s| Digest::parse(s).map_err(|e| BundleError::Digest(field, e)))
        .transpose()
}

// ---------------------------------------------------------------------------------------------
// The visitors
// ---------------------------------------------------------------------------------------------

/// Shared by the visitors of one parse: the field being read (to name it when serde-json-core
/// fails on its type) and the first problem found with the fields themselves.
#[derive(Default)]
struct Ctx {
    at: Cell<Option<Field>>,
    problem: Cell<Option<BundleError>>,
}

impl Ctx {
    fn report(&self, problem: BundleError) {
        if self.problem.get().is_none() {
            self.problem.set(Some(problem));
        }
    }

    /// Whether `field` is met for the first time in the object whose fields are `seen`.
    fn first(&self, seen: &mut u16, field: Field) -> bool {
        if *seen & field.bit() != 0 {
            self.report(BundleError::Duplicate(field));
            false
        } else {
            *seen |= field.bit();
            self.at.set(Some(field));
            true
        }
    }
}

/// The known field among `fields` that `key` (raw, escapes allowed) names.
fn known(key: &str, fields: &[Field]) -> Option<Field> {
    fields
        .iter()
        .copied()
        .find(|f| json::unescaped_eq(key, f.key()))
}

#[derive(Default)]
struct RawBundle<'a> {
    id: Option<&'a str>,
    digest: Option<&'a str>,
    config: Option<&'a str>,
    attributes: Option<Attributes<'a>>,
    scale: Option<u32>,
    started: u32,
    starting: u32,
    installations: u32,
    has_error: bool,
}

struct BundleSeed<'t> {
    ctx: &'t Ctx,
}

impl<'de> DeserializeSeed<'de> for BundleSeed<'_> {
    type Value = RawBundle<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BundleSeed<'_> {
    type Value = RawBundle<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a bundle")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        const FIELDS: [Field; 8] = [
            Field::BundleId,
            Field::BundleDigest,
            Field::ConfigurationDigest,
            Field::Attributes,
            Field::BundleScale,
            Field::BundleExecutions,
            Field::BundleInstallations,
            Field::HasError,
        ];
        let ctx = self.ctx;
        let mut raw = RawBundle::default();
        let mut seen = 0u16;
        while let Some(RawStr(key)) = map.next_key::<RawStr<'de>>()? {
            let Some(field) = known(key, &FIELDS).filter(|&f| ctx.first(&mut seen, f)) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            match field {
                Field::BundleId => raw.id = map.next_value::<Option<RawStr<'de>>>()?.map(|s| s.0),
                Field::BundleDigest => {
                    raw.digest = map.next_value::<Option<RawStr<'de>>>()?.map(|s| s.0);
                }
                Field::ConfigurationDigest => {
                    raw.config = map.next_value::<Option<RawStr<'de>>>()?.map(|s| s.0);
                }
                Field::Attributes => {
                    raw.attributes = map.next_value_seed(Nullable(AttributesSeed { ctx }))?;
                }
                Field::BundleScale => {
                    raw.scale = map.next_value_seed(Nullable(ScaleSeed { ctx }))?.flatten();
                }
                Field::BundleExecutions => {
                    let counts = map.next_value_seed(Nullable(ExecutionsSeed { ctx }))?;
                    (raw.started, raw.starting) = counts.unwrap_or((0, 0));
                }
                Field::BundleInstallations => {
                    raw.installations = map.next_value_seed(Nullable(CountSeed))?.unwrap_or(0);
                }
                Field::HasError => {
                    raw.has_error = map.next_value::<Option<bool>>()?.unwrap_or(false);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(raw)
    }
}

struct Attributes<'a> {
    name: Option<&'a str>,
    compatibility_version: Option<&'a str>,
    tags: heapless::Vec<&'a str, MAX_BUNDLE_TAGS>,
}

struct AttributesSeed<'t> {
    ctx: &'t Ctx,
}

impl<'de> DeserializeSeed<'de> for AttributesSeed<'_> {
    type Value = Attributes<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AttributesSeed<'_> {
    type Value = Attributes<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the attributes of a bundle")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        const FIELDS: [Field; 3] = [Field::BundleName, Field::CompatibilityVersion, Field::Tags];
        let ctx = self.ctx;
        let mut attributes = Attributes {
            name: None,
            compatibility_version: None,
            tags: heapless::Vec::new(),
        };
        let mut seen = 0u16;
        while let Some(RawStr(key)) = map.next_key::<RawStr<'de>>()? {
            match known(key, &FIELDS).filter(|&f| ctx.first(&mut seen, f)) {
                Some(Field::BundleName) => {
                    attributes.name = map.next_value::<Option<RawStr<'de>>>()?.map(|s| s.0);
                }
                Some(Field::CompatibilityVersion) => {
                    attributes.compatibility_version =
                        map.next_value::<Option<RawStr<'de>>>()?.map(|s| s.0);
                }
                Some(Field::Tags) => {
                    attributes.tags = map
                        .next_value_seed(Nullable(TagsSeed { ctx }))?
                        .unwrap_or_default();
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(attributes)
    }
}

struct TagsSeed<'t> {
    ctx: &'t Ctx,
}

impl<'de> DeserializeSeed<'de> for TagsSeed<'_> {
    type Value = heapless::Vec<&'de str, MAX_BUNDLE_TAGS>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for TagsSeed<'_> {
    type Value = heapless::Vec<&'de str, MAX_BUNDLE_TAGS>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of tags")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut tags = heapless::Vec::new();
        loop {
            if tags.is_full() {
                // More are ignored, whatever they are.
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                return Ok(tags);
            }
            let Some(RawStr(tag)) = seq.next_element::<RawStr<'de>>()? else {
                return Ok(tags);
            };
            if tag.contains('\\') {
                self.ctx.report(BundleError::Escaped(Field::Tags));
            }
            // Not full: checked above.
            let _ = tags.push(tag);
        }
    }
}

struct ScaleSeed<'t> {
    ctx: &'t Ctx,
}

impl<'de> DeserializeSeed<'de> for ScaleSeed<'_> {
    type Value = Option<u32>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ScaleSeed<'_> {
    type Value = Option<u32>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a bundle scale object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut scale = None;
        let mut seen = 0u16;
        while let Some(RawStr(key)) = map.next_key::<RawStr<'de>>()? {
            if known(key, &[Field::Scale]).is_some_and(|f| self.ctx.first(&mut seen, f)) {
                scale = map.next_value::<Option<u32>>()?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(scale)
    }
}

/// Counts the executions: (started, starting).
struct ExecutionsSeed<'t> {
    ctx: &'t Ctx,
}

impl<'de> DeserializeSeed<'de> for ExecutionsSeed<'_> {
    type Value = (u32, u32);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ExecutionsSeed<'_> {
    type Value = (u32, u32);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of executions")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let (mut started, mut starting) = (0u32, 0u32);
        loop {
            self.ctx.at.set(Some(Field::BundleExecutions));
            match seq.next_element_seed(ExecutionSeed { ctx: self.ctx })? {
                None => return Ok((started, starting)),
                Some(true) => started = started.saturating_add(1),
                Some(false) => starting = starting.saturating_add(1),
            }
        }
    }
}

/// One execution: whether it is started.
struct ExecutionSeed<'t> {
    ctx: &'t Ctx,
}

impl<'de> DeserializeSeed<'de> for ExecutionSeed<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ExecutionSeed<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an execution object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut started = false;
        let mut seen = 0u16;
        while let Some(RawStr(key)) = map.next_key::<RawStr<'de>>()? {
            if known(key, &[Field::IsStarted]).is_some_and(|f| self.ctx.first(&mut seen, f)) {
                started = map.next_value::<Option<bool>>()?.unwrap_or(false);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(started)
    }
}

/// Counts the elements of an array, whatever they are.
struct CountSeed;

impl<'de> DeserializeSeed<'de> for CountSeed {
    type Value = u32;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for CountSeed {
    type Value = u32;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut count = 0u32;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            count = count.saturating_add(1);
        }
        Ok(count)
    }
}

#[derive(Default)]
struct RawAnswer<'a> {
    request_id: Option<&'a str>,
    bundle_id: Option<&'a str>,
}

struct AnswerSeed<'t> {
    ctx: &'t Ctx,
}

impl<'de> DeserializeSeed<'de> for AnswerSeed<'_> {
    type Value = RawAnswer<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AnswerSeed<'_> {
    type Value = RawAnswer<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a request answer")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        const FIELDS: [Field; 2] = [Field::RequestId, Field::BundleId];
        let mut raw = RawAnswer::default();
        let mut seen = 0u16;
        while let Some(RawStr(key)) = map.next_key::<RawStr<'de>>()? {
            match known(key, &FIELDS).filter(|&f| self.ctx.first(&mut seen, f)) {
                Some(Field::RequestId) => {
                    raw.request_id = map.next_value::<Option<RawStr<'de>>>()?.map(|s| s.0);
                }
                Some(Field::BundleId) => {
                    raw.bundle_id = map.next_value::<Option<RawStr<'de>>>()?.map(|s| s.0);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(raw)
    }
}

/// `null` or what the inner seed reads.
struct Nullable<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Nullable<S> {
    type Value = Option<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Nullable<S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("null or a value")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(deserializer).map(Some)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::borrow::ToOwned;
    use std::format;
    use std::string::String;
    use std::vec::Vec;

    use super::*;

    pub(crate) const BUNDLE_DIGEST: &str =
        "6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c00112233445566778899aabbccddeeff";
    const CONFIG_DIGEST: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0ffeeddccbbaa99887766554433221100";

    /// docs/PROTOCOL.md §5's example element, verbatim but for its two `<32 more hex>` and the two
    /// `....` elisions of file names, filled in.
    pub(crate) fn protocol_example() -> String {
        format!(
            r#"{{"bundleId": "6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c-0f1e2d3c4b5a69788796a5b4c3d2e1f0",
       "bundleDigest": "{BUNDLE_DIGEST}",
       "configurationDigest": "{CONFIG_DIGEST}",
       "attributes": {{"system": "visualizer", "nrOfCpus": 0.1, "memory": 402653184,
                      "diskSpace": 200000000, "roles": ["web"], "bundleName": "visualizer",
                      "systemVersion": "2", "compatibilityVersion": "2", "tags": ["2.1.0"],
                      "annotations": {{}}}},
       "bundleConfig": {{"endpoints": {{"visualizer": {{"bindProtocol": "http",
                        "serviceName": "visualizer"}}}}}},
       "bundleScale": {{"scale": 2, "nrOfReschedules": 0}},
       "bundleExecutions": [
         {{"host": "10.0.0.11", "pid": 4711, "startTime": 1481886062345,
          "endpoints": {{"visualizer": {{"bindPort": 10457, "hostPort": 10457}}}},
          "isStarted": true, "isActive": true}},
         {{"host": "10.0.0.12", "pid": 815, "startTime": 1481886063001,
          "endpoints": {{"visualizer": {{"bindPort": 10233, "hostPort": 10233}}}},
          "isStarted": true, "isActive": true}}],
       "bundleInstallations": [
         {{"uniqueAddress": {{"address": "akka.tcp://conductr@10.0.0.11:9004", "uid": 1}},
          "bundleFile": "file:///var/lib/conductr/bundles/visualizer-{BUNDLE_DIGEST}.zip",
          "configurationFile": "file:///var/lib/conductr/bundles/config-{CONFIG_DIGEST}.zip"}}],
       "hasError": false}}"#
        )
    }

    /// A bundle without configuration, as `GET /v2/bundles` lists one loaded but never run.
    pub(crate) fn minimal(digest: &str, name: &str) -> String {
        format!(
            r#"{{"bundleId":"{}","bundleDigest":"{digest}","attributes":{{"bundleName":"{name}","compatibilityVersion":"1"}}}}"#,
            &digest[..32]
        )
    }

    fn parse(text: &str) -> Result<BundleInfo<'_>, BundleError> {
        BundleInfo::parse(text.as_bytes())
    }

    /// Splits `body` fed in chunks of `chunk` bytes; every element parsed as a bundle.
    fn split_all(body: &[u8], chunk: usize, buf: &mut [u8]) -> Result<Vec<Vec<u8>>, SplitError> {
        let mut splitter = ArraySplitter::new(buf);
        let mut elements = Vec::new();
        for piece in body.chunks(chunk.max(1)) {
            let mut rest = piece;
            while let Some(element) = splitter.next_element(&mut rest)? {
                elements.push(element.to_vec());
            }
            assert!(rest.is_empty());
        }
        splitter.finish()?;
        Ok(elements)
    }

    fn digest_of(i: usize) -> String {
        format!("{i:032x}{:032x}", i * 7919)
    }

    // ---- one bundle -----------------------------------------------------------------------

    // docs/PROTOCOL.md §5: "An example element of that array".
    #[test]
    fn test_parse_protocol_example() {
        let text = protocol_example();
        let b = parse(&text).unwrap();
        assert_eq!(
            b.id,
            BundleId::parse("6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c-0f1e2d3c4b5a69788796a5b4c3d2e1f0")
                .unwrap()
        );
        assert_eq!(b.digest, Digest::parse(BUNDLE_DIGEST).unwrap());
        assert_eq!(
            b.configuration_digest,
            Some(Digest::parse(CONFIG_DIGEST).unwrap())
        );
        assert_eq!(b.name, "visualizer");
        assert_eq!(b.compatibility_version, "2");
        assert_eq!(b.tags.as_slice(), ["2.1.0"]);
        assert_eq!(b.scale, Some(2));
        assert_eq!((b.started, b.starting), (2, 0));
        assert_eq!(b.installations, 1);
        assert!(!b.has_error);
    }

    // conductr-cli's conduct_info_list.py counts `isStarted` executions as running and the
    // others as starting (#RUN / #STR); bundle_installation.py counts `bundleInstallations`.
    #[test]
    fn test_parse_executions_started_and_starting() {
        let text = format!(
            r#"{{"bundleId":"{id}","bundleDigest":"{BUNDLE_DIGEST}","hasError":true,
                "attributes":{{"bundleName":"v","compatibilityVersion":"1"}},
                "bundleScale":{{"scale":3}},
                "bundleExecutions":[{{"isStarted":true}},{{"isStarted":false}},{{"host":"h"}},{{"isStarted":null}}],
                "bundleInstallations":[{{}},{{}},{{}}]}}"#,
            id = &BUNDLE_DIGEST[..32]
        );
        let b = parse(&text).unwrap();
        assert_eq!((b.started, b.starting, b.installations), (1, 3, 3));
        assert!(b.has_error);
        assert_eq!(b.configuration_digest, None);
        assert!(!b.id.has_config());
    }

    // What a bundle looks like before `conduct run`: no `bundleScale` (docs/PROTOCOL.md §5: "only
    // once a run was requested"); conductr-cli's bundle_core_info.py reads it as scale 0.
    #[test]
    fn test_parse_without_scale_or_arrays() {
        let text = minimal(BUNDLE_DIGEST, "visualizer");
        let b = parse(&text).unwrap();
        assert_eq!(b.scale, None);
        assert_eq!((b.started, b.starting, b.installations), (0, 0, 0));
        assert!(b.tags.is_empty());
        assert!(!b.has_error);
        // `null` reads as absent.
        let text = format!(
            r#"{{"bundleId":"{}","bundleDigest":"{BUNDLE_DIGEST}","configurationDigest":null,
                "attributes":{{"bundleName":"v","compatibilityVersion":"1","tags":null}},
                "bundleScale":null,"bundleExecutions":null,"bundleInstallations":null,"hasError":null}}"#,
            &BUNDLE_DIGEST[..32]
        );
        let b = parse(&text).unwrap();
        assert_eq!((b.scale, b.started, b.installations), (None, 0, 0));
        let text = format!(
            r#"{{"bundleId":"{}","bundleDigest":"{BUNDLE_DIGEST}","bundleScale":{{"scale":null}},
                "attributes":{{"bundleName":"v","compatibilityVersion":"1"}}}}"#,
            &BUNDLE_DIGEST[..32]
        );
        assert_eq!(parse(&text).unwrap().scale, None);
    }

    /// Unknown fields at every level, and a bundle at scale 0 with an instance still started.
    pub(crate) fn nested_unknown_fields() -> String {
        format!(
            r#"{{"x":{{"deep":[1,{{"y":[null,true,-1.5e3,"s\"]"]}}]}},"bundleId":"{id}",
                "bundleDigest":"{BUNDLE_DIGEST}","bundleScale":{{"nrOfReschedules":4,"scale":0,"z":{{}}}},
                "attributes":{{"roles":["web"],"annotations":{{"a":{{"b":[{{}}]}}}},"bundleName":"v",
                "comp\u0061tibilityVersion":"1","tags":["a","b"]}},"bundleExecutions":[{{"endpoints":{{"e":{{"bindPort":1}}}},"isStarted":true}}]}}"#,
            id = &BUNDLE_DIGEST[..32]
        )
    }

    #[test]
    fn test_parse_unknown_fields_and_nesting() {
        let text = nested_unknown_fields();
        let b = parse(&text).unwrap();
        assert_eq!(b.scale, Some(0));
        assert_eq!(b.compatibility_version, "1");
        assert_eq!(b.tags.as_slice(), ["a", "b"]);
        assert_eq!(b.started, 1);
    }

    #[test]
    fn test_parse_tags_beyond_the_first_ignored() {
        let tags: Vec<String> = (0..MAX_BUNDLE_TAGS + 3)
            .map(|i| format!("\"t{i}\""))
            .collect();
        let text = format!(
            r#"{{"bundleId":"{}","bundleDigest":"{BUNDLE_DIGEST}","attributes":{{"bundleName":"v","compatibilityVersion":"1","tags":[{},1,{{"a":"\\"}}]}}}}"#,
            &BUNDLE_DIGEST[..32],
            tags.join(",")
        );
        let b = parse(&text).unwrap();
        assert_eq!(b.tags.len(), MAX_BUNDLE_TAGS);
        assert_eq!(b.tags[MAX_BUNDLE_TAGS - 1], "t7");
    }

    #[test]
    fn test_reject_missing_fields() {
        let id = &BUNDLE_DIGEST[..32];
        let attrs = r#""attributes":{"bundleName":"v","compatibilityVersion":"1"}"#;
        for (text, field) in [
            (
                format!(r#"{{"bundleDigest":"{BUNDLE_DIGEST}",{attrs}}}"#),
                Field::BundleId,
            ),
            (
                format!(r#"{{"bundleId":null,"bundleDigest":"{BUNDLE_DIGEST}",{attrs}}}"#),
                Field::BundleId,
            ),
            (
                format!(r#"{{"bundleId":"{id}",{attrs}}}"#),
                Field::BundleDigest,
            ),
            (
                format!(r#"{{"bundleId":"{id}","bundleDigest":"{BUNDLE_DIGEST}"}}"#),
                Field::Attributes,
            ),
            (
                format!(
                    r#"{{"bundleId":"{id}","bundleDigest":"{BUNDLE_DIGEST}","attributes":{{"compatibilityVersion":"1"}}}}"#
                ),
                Field::BundleName,
            ),
            (
                format!(
                    r#"{{"bundleId":"{id}","bundleDigest":"{BUNDLE_DIGEST}","attributes":{{"bundleName":"v"}}}}"#
                ),
                Field::CompatibilityVersion,
            ),
        ] {
            assert_eq!(parse(&text), Err(BundleError::Missing(field)), "{text}");
        }
    }

    #[test]
    fn test_reject_wrong_types() {
        let base = minimal(BUNDLE_DIGEST, "v");
        let with = |extra: &str| format!("{},{extra}}}", &base[..base.len() - 1]);
        for (extra, field) in [
            (r#""bundleScale":2"#, Field::BundleScale),
            (r#""bundleScale":"2""#, Field::BundleScale),
            (r#""bundleScale":{"scale":-1}"#, Field::Scale),
            (r#""bundleScale":{"scale":4294967296}"#, Field::Scale),
            (r#""bundleScale":{"scale":1.5}"#, Field::Scale),
            (r#""bundleScale":{"scale":"1"}"#, Field::Scale),
            (r#""bundleExecutions":{}"#, Field::BundleExecutions),
            (r#""bundleExecutions":[1]"#, Field::BundleExecutions),
            (r#""bundleExecutions":[null]"#, Field::BundleExecutions),
            (
                r#""bundleExecutions":[{"isStarted":"yes"}]"#,
                Field::IsStarted,
            ),
            (r#""bundleInstallations":{}"#, Field::BundleInstallations),
            (r#""hasError":0"#, Field::HasError),
            (r#""configurationDigest":7"#, Field::ConfigurationDigest),
        ] {
            let text = with(extra);
            assert_eq!(parse(&text), Err(BundleError::WrongType(field)), "{text}");
        }
        let text = format!(
            r#"{{"bundleId":"{}","bundleDigest":"{BUNDLE_DIGEST}","attributes":{{"bundleName":1,"compatibilityVersion":"1"}}}}"#,
            &BUNDLE_DIGEST[..32]
        );
        assert_eq!(parse(&text), Err(BundleError::WrongType(Field::BundleName)));
        let text = format!(
            r#"{{"bundleId":"{}","bundleDigest":"{BUNDLE_DIGEST}","attributes":{{"bundleName":"v","compatibilityVersion":"1","tags":[1]}}}}"#,
            &BUNDLE_DIGEST[..32]
        );
        assert_eq!(parse(&text), Err(BundleError::WrongType(Field::Tags)));
        let text = format!(
            r#"{{"bundleId":"{}","bundleDigest":"{BUNDLE_DIGEST}","attributes":[]}}"#,
            &BUNDLE_DIGEST[..32]
        );
        assert_eq!(parse(&text), Err(BundleError::WrongType(Field::Attributes)));
    }

    #[test]
    fn test_reject_escaped_names() {
        let escaped = minimal(BUNDLE_DIGEST, r"vis\u0075alizer");
        assert_eq!(
            parse(&escaped),
            Err(BundleError::Escaped(Field::BundleName))
        );
        let text = format!(
            r#"{{"bundleId":"{}","bundleDigest":"{BUNDLE_DIGEST}","attributes":{{"bundleName":"v","compatibilityVersion":"\"1\"","tags":["a"]}}}}"#,
            &BUNDLE_DIGEST[..32]
        );
        assert_eq!(
            parse(&text),
            Err(BundleError::Escaped(Field::CompatibilityVersion))
        );
        let text = format!(
            r#"{{"bundleId":"{}","bundleDigest":"{BUNDLE_DIGEST}","attributes":{{"bundleName":"v","compatibilityVersion":"1","tags":["a\/b"]}}}}"#,
            &BUNDLE_DIGEST[..32]
        );
        assert_eq!(parse(&text), Err(BundleError::Escaped(Field::Tags)));
    }

    #[test]
    fn test_reject_duplicates() {
        let base = minimal(BUNDLE_DIGEST, "v");
        let text = format!(
            r#"{},"bundleDigest":"{BUNDLE_DIGEST}"}}"#,
            &base[..base.len() - 1]
        );
        assert_eq!(
            parse(&text),
            Err(BundleError::Duplicate(Field::BundleDigest))
        );
        let text = format!(
            r#"{},"bundleScale":{{"scale":1,"sc\u0061le":2}}}}"#,
            &base[..base.len() - 1]
        );
        assert_eq!(parse(&text), Err(BundleError::Duplicate(Field::Scale)));
        let text = format!(
            r#"{},"bundleExecutions":[{{"isStarted":true,"isStarted":false}}]}}"#,
            &base[..base.len() - 1]
        );
        assert_eq!(parse(&text), Err(BundleError::Duplicate(Field::IsStarted)));
        // Unknown fields may repeat.
        let text = format!(r#"{},"x":1,"x":2}}"#, &base[..base.len() - 1]);
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn test_reject_ids_and_digests() {
        let attrs = r#""attributes":{"bundleName":"v","compatibilityVersion":"1"}"#;
        let other = "ffffffffffffffffffffffffffffffff";
        for (id, digest, config, e) in [
            (
                "xyz",
                BUNDLE_DIGEST,
                None,
                BundleError::Id(BundleIdError::Length),
            ),
            (other, BUNDLE_DIGEST, None, BundleError::IdMismatch),
            (
                &BUNDLE_DIGEST[..32],
                &BUNDLE_DIGEST[1..],
                None,
                BundleError::Digest(Field::BundleDigest, DigestError::Length),
            ),
            (
                &BUNDLE_DIGEST[..32],
                BUNDLE_DIGEST,
                Some("z"),
                BundleError::Digest(Field::ConfigurationDigest, DigestError::Length),
            ),
            // A configuration digest the id does not name.
            (
                &BUNDLE_DIGEST[..32],
                BUNDLE_DIGEST,
                Some(CONFIG_DIGEST),
                BundleError::IdMismatch,
            ),
        ] {
            let config = config
                .map(|c| format!(r#""configurationDigest":"{c}","#))
                .unwrap_or_default();
            let text =
                format!(r#"{{"bundleId":"{id}",{config}"bundleDigest":"{digest}",{attrs}}}"#);
            assert_eq!(parse(&text), Err(e), "{text}");
        }
    }

    #[test]
    fn test_reject_not_an_object_or_json() {
        assert_eq!(parse("[]"), Err(BundleError::NotAnObject));
        assert_eq!(parse("\"x\""), Err(BundleError::NotAnObject));
        assert!(matches!(
            parse("{"),
            Err(BundleError::Json(ScanError::Syntax { .. }))
        ));
        // serde-json-core alone would skip these without looking.
        let base = minimal(BUNDLE_DIGEST, "v");
        for bad in ["tru", "01", "[1,]", "\"\\x\""] {
            let text = format!(r#"{},"x":{bad}}}"#, &base[..base.len() - 1]);
            assert!(matches!(parse(&text), Err(BundleError::Json(_))), "{bad}");
        }
        let deep = format!(
            r#"{},"x":{}{}}}"#,
            &base[..base.len() - 1],
            "[".repeat(16),
            "]".repeat(16)
        );
        assert_eq!(parse(&deep), Err(BundleError::Json(ScanError::TooDeep)));
    }

    #[test]
    fn test_truncated_element() {
        let text = protocol_example();
        for len in 0..text.len() {
            assert!(BundleInfo::parse(&text.as_bytes()[..len]).is_err(), "{len}");
        }
    }

    // ---- the answer -------------------------------------------------------------------------

    // docs/PROTOCOL.md §5: `POST /v2/bundles` → `{"requestId": "...", "bundleId": "..."}`;
    // conductr-cli's conduct_load.py reads `bundleId` from it.
    #[test]
    fn test_parse_request_answer() {
        let body = br#"{"requestId": "7c1f21a3-91d1-44fa-8875-cf9a316d68ce", "bundleId": "6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c-0f1e2d3c4b5a69788796a5b4c3d2e1f0"}"#;
        let a = RequestAnswer::parse(body).unwrap();
        assert_eq!(a.request_id, Some("7c1f21a3-91d1-44fa-8875-cf9a316d68ce"));
        assert_eq!(
            a.bundle_id.to_text().as_str(),
            "6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
        );
        let a = RequestAnswer::parse(br#"{"bundleId":"6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c","x":[]}"#)
            .unwrap();
        assert_eq!(a.request_id, None);
    }

    #[test]
    fn test_reject_request_answer() {
        assert_eq!(
            RequestAnswer::parse(br#"{"requestId":"r"}"#),
            Err(BundleError::Missing(Field::BundleId))
        );
        assert_eq!(
            RequestAnswer::parse(br#"{"bundleId":"cafe"}"#),
            Err(BundleError::Id(BundleIdError::Length))
        );
        assert_eq!(
            RequestAnswer::parse(br#"{"bundleId":1}"#),
            Err(BundleError::WrongType(Field::BundleId))
        );
        assert_eq!(
            RequestAnswer::parse(
                br#"{"requestId":"a\nb","bundleId":"6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c"}"#
            ),
            Err(BundleError::Escaped(Field::RequestId))
        );
        assert_eq!(RequestAnswer::parse(b"[]"), Err(BundleError::NotAnObject));
    }

    // ---- the splitter -----------------------------------------------------------------------

    #[test]
    fn test_parse_list_of_protocol_example() {
        let body = format!("[{}]", protocol_example());
        let mut buf = [0u8; 4096];
        let elements = split_all(body.as_bytes(), 4096, &mut buf).unwrap();
        assert_eq!(elements.len(), 1);
        assert_eq!(elements[0], protocol_example().as_bytes());
        assert_eq!(BundleInfo::parse(&elements[0]).unwrap().scale, Some(2));
    }

    // A 1,000-bundle list (what a large cluster's `GET /v2/bundles` answers), fed in chunks of
    // 1, 7 and 4096 bytes: the same bundles each way, read in a 4 KiB element buffer.
    #[test]
    fn test_parse_thousand_bundles_in_chunks() {
        let mut body = String::from("[\n");
        for i in 0..1000 {
            if i > 0 {
                body.push_str(",\n");
            }
            let digest = digest_of(i);
            body.push_str(&format!(
                r#"{{"bundleId": "{}", "bundleDigest": "{digest}",
                   "attributes": {{"bundleName": "b{}", "compatibilityVersion": "{}", "tags": ["t{i}"]}},
                   "bundleScale": {{"scale": {}, "nrOfReschedules": 0}},
                   "bundleExecutions": [{}], "bundleInstallations": [{{}}], "hasError": false}}"#,
                &digest[..32],
                i % 10,
                i % 3,
                i % 4,
                r#"{"isStarted": true}, "#.repeat(i % 4) + r#"{"isStarted": false}"#,
            ));
        }
        body.push_str("\n]\n");
        assert!(body.len() > 300_000);
        let mut results = Vec::new();
        for chunk in [1, 7, 4096] {
            let mut buf = [0u8; 4096];
            let mut splitter = ArraySplitter::new(&mut buf);
            let mut seen = Vec::new();
            for piece in body.as_bytes().chunks(chunk) {
                let mut rest = piece;
                while let Some(element) = splitter.next_element(&mut rest).unwrap() {
                    let b = BundleInfo::parse(element).unwrap();
                    seen.push((
                        b.id,
                        b.name.to_owned(),
                        b.scale,
                        b.started,
                        b.starting,
                        b.tags[0].to_owned(),
                    ));
                }
            }
            splitter.finish().unwrap();
            assert_eq!(splitter.elements(), 1000);
            assert_eq!(splitter.offset(), body.len() as u64);
            results.push(seen);
        }
        assert_eq!(results[0].len(), 1000);
        assert_eq!(results[0], results[1]);
        assert_eq!(results[0], results[2]);
        let (id, name, scale, started, starting, tag) = &results[0][999];
        assert_eq!(
            *id,
            BundleId::of(&Digest::parse(&digest_of(999)).unwrap(), None)
        );
        assert_eq!(
            (name.as_str(), *scale, *started, *starting, tag.as_str()),
            ("b9", Some(3), 3, 1, "t999")
        );
        // The memory: the element buffer, and a splitter of a few words.
        assert!(size_of::<ArraySplitter<'_>>() <= 96);
    }

    #[test]
    fn test_parse_scalars_strings_and_whitespace() {
        let body = b" \r\n\t[ 1 ,-2.5e3,\"a,]\\\"\" ,true,null,[],{},[[{}]] ]\t\n";
        for chunk in 1..body.len() {
            let mut buf = [0u8; 16];
            let elements = split_all(body, chunk, &mut buf).unwrap();
            let expected: [&[u8]; 8] = [
                b"1",
                b"-2.5e3",
                b"\"a,]\\\"\"",
                b"true",
                b"null",
                b"[]",
                b"{}",
                b"[[{}]]",
            ];
            assert_eq!(elements, expected, "{chunk}");
        }
        let mut buf = [0u8; 4];
        assert_eq!(split_all(b"[]", 1, &mut buf).unwrap().len(), 0);
        assert_eq!(split_all(b" [ ] ", 1, &mut buf).unwrap().len(), 0);
    }

    #[test]
    fn test_reject_element_too_large() {
        let element = minimal(BUNDLE_DIGEST, "v");
        let body = format!("[{element},{element}]");
        let mut exact = std::vec![0u8; element.len()];
        assert_eq!(split_all(body.as_bytes(), 5, &mut exact).unwrap().len(), 2);
        let mut short = std::vec![0u8; element.len() - 1];
        assert_eq!(
            split_all(body.as_bytes(), 5, &mut short),
            Err(SplitError::ElementTooLarge)
        );
        // A scalar exactly as long as the buffer fits; one byte more does not.
        let mut four = [0u8; 4];
        assert_eq!(split_all(b"[1234]", 1, &mut four).unwrap().len(), 1);
        assert_eq!(
            split_all(b"[12345]", 1, &mut four),
            Err(SplitError::ElementTooLarge)
        );
        assert_eq!(
            split_all(b"[\"abcd\"]", 1, &mut four),
            Err(SplitError::ElementTooLarge)
        );
    }

    #[test]
    fn test_reject_array_syntax() {
        for (body, e) in [
            (&b"{}"[..], SplitError::NotAnArray),
            (b"x[]", SplitError::NotAnArray),
            (b"[1,]", SplitError::Syntax { at: 3 }),
            (b"[,1]", SplitError::Syntax { at: 1 }),
            (b"[1 2]", SplitError::Syntax { at: 3 }),
            (b"[1}", SplitError::Syntax { at: 2 }),
            (b"[1\"a\"]", SplitError::Syntax { at: 2 }),
            (b"[{]", SplitError::Syntax { at: 2 }),
            (b"[[}]", SplitError::Syntax { at: 2 }),
            (b"[{\"a\":tru}]", SplitError::Syntax { at: 9 }),
            (b"[01]", SplitError::Syntax { at: 2 }),
            (b"[\"\\x\"]", SplitError::Syntax { at: 3 }),
            (b"[\"a\x01\"]", SplitError::Syntax { at: 3 }),
            (b"[] x", SplitError::DataAfterEnd),
            (b"[][]", SplitError::DataAfterEnd),
            (b"[\"\xff\"]", SplitError::InvalidUtf8),
        ] {
            let mut buf = [0u8; 64];
            for chunk in [1, 3, 64] {
                assert_eq!(
                    split_all(body, chunk, &mut buf),
                    Err(e),
                    "{:?} {chunk}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }

    #[test]
    fn test_reject_too_deep() {
        let mut buf = [0u8; 64];
        let ok = format!("{}{}", "[".repeat(16), "]".repeat(16));
        assert_eq!(split_all(ok.as_bytes(), 1, &mut buf).unwrap().len(), 1);
        let deep = format!("{}{}", "[".repeat(17), "]".repeat(17));
        assert_eq!(
            split_all(deep.as_bytes(), 1, &mut buf),
            Err(SplitError::TooDeep)
        );
        // Far deeper than the limit: refused without reading further, without recursion.
        let mut buf = [0u8; 4096];
        let deeper = "[".repeat(100_000);
        assert_eq!(
            split_all(deeper.as_bytes(), 4096, &mut buf),
            Err(SplitError::TooDeep)
        );
    }

    #[test]
    fn test_reject_after_error_sticks() {
        let mut buf = [0u8; 8];
        let mut splitter = ArraySplitter::new(&mut buf);
        let mut rest = &b"[1,,2]"[..];
        assert_eq!(splitter.next_element(&mut rest), Ok(Some(&b"1"[..])));
        assert_eq!(
            splitter.next_element(&mut rest),
            Err(SplitError::Syntax { at: 3 })
        );
        let mut more = &b"3]"[..];
        assert_eq!(
            splitter.next_element(&mut more),
            Err(SplitError::Syntax { at: 3 })
        );
        assert_eq!(splitter.finish(), Err(SplitError::Syntax { at: 3 }));
    }

    // Every prefix of a small list is refused as cut short, never accepted, never a panic.
    #[test]
    fn test_truncated_list_at_every_length() {
        let body = format!(
            "[{}, {}, 7, \"s\"]",
            protocol_example(),
            minimal(&digest_of(1), "other")
        );
        let mut buf = [0u8; 4096];
        let full = split_all(body.as_bytes(), 64, &mut buf).unwrap();
        assert_eq!(full.len(), 4);
        for len in 0..body.len() {
            for chunk in [1, 13, 4096] {
                let r = split_all(&body.as_bytes()[..len], chunk, &mut buf);
                assert_eq!(r, Err(SplitError::Truncated), "{len} {chunk}");
            }
        }
    }

    #[test]
    fn test_error_messages_are_one_line() {
        for e in [
            SplitError::Syntax { at: 3 },
            SplitError::ElementTooLarge,
            SplitError::Truncated,
        ] {
            let text = format!("{e}");
            assert!(!text.is_empty() && !text.contains('\n'));
        }
        for e in [
            BundleError::Missing(Field::BundleName),
            BundleError::Digest(Field::BundleDigest, DigestError::NotHex),
            BundleError::IdMismatch,
            BundleError::WrongType(Field::Scale),
        ] {
            let text = format!("{e}");
            assert!(!text.is_empty() && !text.contains('\n'));
        }
        assert_eq!(
            format!("{}", BundleError::Missing(Field::BundleName)),
            "missing field `attributes.bundleName`"
        );
    }
}
