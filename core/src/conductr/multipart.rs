//! `multipart/form-data` (RFC 7578 over RFC 2046): the framing of a load request
//! (`POST /v2/bundles`, docs/PROTOCOL.md §5) and a streaming reader for the same format, which
//! `GET /v2/bundles/{id}` answers with `Accept: multipart/form-data`.
//!
//! Writing: the file bytes are the caller's to stream (the agent reads them from its store);
//! [`Multipart`] writes only the framing around them, a part's header block before its bytes
//! and the close delimiter after the last, and knows the exact `Content-Length` before a byte
//! is sent. The bytes are those conductr-cli sends (requests_toolbelt's `MultipartEncoder`):
//!
//! ```text
//! --B\r\nContent-Disposition: form-data; name="bundleConf"; filename="bundle.conf"\r\n\r\n
//! <bundle.conf>\r\n--B\r\nContent-Disposition: form-data; name="bundle"; filename="<name>-<digest>.zip"\r\n\r\n
//! <zip>\r\n--B--\r\n
//! ```
//!
//! No part carries a `Content-Type`: conductr-cli gives none, and ConductR accepts that.
//!
//! Reading: [`MultipartReader`] is fed the body in chunks of any size and yields
//! [`Event`]s; a part's data is handed out as it arrives (borrowed from the chunk), never
//! gathered, so a bundle of any size passes through in the memory of one part header block.

use core::fmt;

use crate::bundle::{Digest, MAX_SEGMENT_LEN, Segment};
use crate::status::Status;
use crate::text::{self, Cursor, is_tchar};

/// The longest boundary RFC 2046 allows.
pub const MAX_BOUNDARY_LEN: usize = 70;

/// The longest field name [`Multipart`] writes.
pub const MAX_FIELD_NAME_LEN: usize = 64;

/// The longest file name [`Multipart`] writes: a bundle's, `<name>-<64 hex>.zip`.
pub const MAX_FILE_NAME_LEN: usize = MAX_SEGMENT_LEN + 1 + Digest::HEX_LEN + ZIP.len();

const CONTENT_TYPE_PREFIX: &str = "multipart/form-data; boundary=";

/// The longest `Content-Type` value [`ContentType`] writes (a boundary that must be quoted).
pub const MAX_CONTENT_TYPE_LEN: usize = CONTENT_TYPE_PREFIX.len() + 2 + MAX_BOUNDARY_LEN;

const DISPOSITION: &str = "Content-Disposition: form-data; name=\"";
const FILENAME: &str = "\"; filename=\"";
const HEAD_END: &str = "\"\r\n\r\n";
const ZIP: &str = ".zip";
const CONFIG_PREFIX: &str = "config-";

/// The longest header block [`Multipart::write_head`] writes, delimiter included.
pub const MAX_PART_HEAD_LEN: usize = 4
    + MAX_BOUNDARY_LEN
    + 2
    + DISPOSITION.len()
    + MAX_FIELD_NAME_LEN
    + FILENAME.len()
    + MAX_FILE_NAME_LEN
    + HEAD_END.len();

/// The longest close delimiter [`Multipart::write_close`] writes.
pub const MAX_CLOSE_LEN: usize = 2 + 2 + MAX_BOUNDARY_LEN + 4;

/// A part header block size every sender we know stays well under (conductr-cli's longest is
/// under 200 bytes; akka-http adds a `Content-Type` line): the runtimes give
/// [`MultipartReader`] a buffer this long.
pub const HEAD_BUFFER_LEN: usize = 1024;

// ---------------------------------------------------------------------------------------------
// The boundary
// ---------------------------------------------------------------------------------------------

/// A multipart boundary: 1 to [`MAX_BOUNDARY_LEN`] of RFC 2046's `bchars` (letters, digits and
/// `'()+_,-./:=?` and space), not ending with a space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Boundary<'a>(&'a str);

/// Why a string is not a [`Boundary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BoundaryError {
    /// The empty string.
    Empty,
    /// Longer than [`MAX_BOUNDARY_LEN`] characters.
    TooLong,
    /// A character outside RFC 2046's `bchars`.
    BadChar,
    /// A space at the end.
    TrailingSpace,
}

impl fmt::Display for BoundaryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("a multipart boundary may not be empty"),
            Self::TooLong => write!(
                f,
                "a multipart boundary is at most {MAX_BOUNDARY_LEN} characters"
            ),
            Self::BadChar => f.write_str("a multipart boundary holds a character RFC 2046 forbids"),
            Self::TrailingSpace => f.write_str("a multipart boundary may not end with a space"),
        }
    }
}

impl core::error::Error for BoundaryError {}

const fn is_bchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'\''
                | b'('
                | b')'
                | b'+'
                | b'_'
                | b','
                | b'-'
                | b'.'
                | b'/'
                | b':'
                | b'='
                | b'?'
                | b' '
        )
}

impl<'a> Boundary<'a> {
    /// Checks `s` against RFC 2046's boundary grammar.
    pub fn new(s: &'a str) -> Result<Self, BoundaryError> {
        if s.is_empty() {
            return Err(BoundaryError::Empty);
        }
        if s.len() > MAX_BOUNDARY_LEN {
            return Err(BoundaryError::TooLong);
        }
        if !s.bytes().all(is_bchar) {
            return Err(BoundaryError::BadChar);
        }
        if s.ends_with(' ') {
            return Err(BoundaryError::TrailingSpace);
        }
        Ok(Self(s))
    }

    /// The boundary.
    pub const fn as_str(&self) -> &'a str {
        self.0
    }

    /// The `Content-Type` of a form with this boundary.
    pub const fn content_type(self) -> ContentType<'a> {
        ContentType(self)
    }
}

impl fmt::Display for Boundary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Writes `multipart/form-data; boundary=<boundary>`, the boundary quoted when it holds a
/// character a token may not (at most [`MAX_CONTENT_TYPE_LEN`] bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ContentType<'a>(pub Boundary<'a>);

impl fmt::Display for ContentType<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let boundary = self.0.as_str();
        if boundary.bytes().all(is_tchar) {
            write!(f, "{CONTENT_TYPE_PREFIX}{boundary}")
        } else {
            // bchars hold neither `"` nor `\`: nothing to escape.
            write!(f, "{CONTENT_TYPE_PREFIX}\"{boundary}\"")
        }
    }
}

/// The `boundary` parameter of a `multipart/*` `Content-Type` value, quoted or not (the
/// quotes removed), its name in any case. `None` when the media type is not multipart, the
/// value is malformed, or there is no single `boundary` parameter. Check it with
/// [`Boundary::new`].
pub fn boundary_from_content_type(content_type: &str) -> Option<&str> {
    let bytes = content_type.as_bytes();
    let end = bytes.iter().position(|&b| b == b';').unwrap_or(bytes.len());
    let media = content_type.get(..end)?.trim_matches([' ', '\t']);
    let (kind, subtype) = media.split_once('/')?;
    if !kind.eq_ignore_ascii_case("multipart")
        || subtype.is_empty()
        || !subtype.bytes().all(is_tchar)
    {
        return None;
    }
    let mut found = None;
    for param in Params::new(bytes, end) {
        let (attr, value) = param.ok()?;
        let attr = content_type.get(attr.0..attr.1)?;
        if attr.eq_ignore_ascii_case("boundary") {
            if found.is_some() {
                return None;
            }
            found = Some(content_type.get(value.0..value.1)?);
        }
    }
    found
}

/// A byte range `(start, end)`.
type Span = (usize, usize);

/// `*( OWS ";" OWS attr "=" value )`, from an offset: yields the spans of each attribute and
/// value (a quoted value's span is inside its quotes; quoted text is taken literally, without
/// backslash escapes, as HTML forms and requests_toolbelt write it).
struct Params<'a> {
    s: &'a [u8],
    i: usize,
    failed: bool,
}

impl<'a> Params<'a> {
    fn new(s: &'a [u8], i: usize) -> Self {
        Self {
            s,
            i,
            failed: false,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn bump(&mut self) {
        self.i = self.i.saturating_add(1);
    }

    fn skip_ows(&mut self) {
        while let Some(b' ' | b'\t') = self.peek() {
            self.bump();
        }
    }

    fn param(&mut self) -> Option<Result<(Span, Span), ()>> {
        loop {
            self.skip_ows();
            match self.peek() {
                None => return None,
                Some(b';') => self.bump(),
                Some(_) => return Some(Err(())),
            }
            self.skip_ows();
            match self.peek() {
                // A trailing or doubled `;`.
                None => return None,
                Some(b';') => continue,
                Some(_) => break,
            }
        }
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.bump();
        }
        let attr = (start, self.i);
        self.skip_ows();
        if attr.0 == attr.1 || self.peek() != Some(b'=') {
            return Some(Err(()));
        }
        self.bump();
        self.skip_ows();
        let value = if self.peek() == Some(b'"') {
            self.bump();
            let start = self.i;
            while self.peek().is_some_and(|b| b != b'"') {
                self.bump();
            }
            if self.peek() != Some(b'"') {
                return Some(Err(()));
            }
            let value = (start, self.i);
            self.bump();
            value
        } else {
            let start = self.i;
            while self.peek().is_some_and(is_tchar) {
                self.bump();
            }
            if start == self.i {
                return Some(Err(()));
            }
            (start, self.i)
        };
        Some(Ok((attr, value)))
    }
}

impl Iterator for Params<'_> {
    type Item = Result<(Span, Span), ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.param();
        if matches!(item, Some(Err(()))) {
            self.failed = true;
        }
        item
    }
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// The file name of a part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FileName<'a> {
    /// Written as is (`bundle.conf`).
    Plain(&'a str),
    /// A bundle zip: `<name>-<64 hex digest>.zip`.
    Bundle {
        /// The bundle's name.
        name: Segment<'a>,
        /// The zip's SHA-256.
        digest: Digest,
    },
    /// A configuration zip: `config-<64 hex digest>.zip`.
    Configuration(Digest),
}

impl fmt::Display for FileName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain(name) => f.write_str(name),
            Self::Bundle { name, digest } => write!(f, "{name}-{digest}{ZIP}"),
            Self::Configuration(digest) => write!(f, "{CONFIG_PREFIX}{digest}{ZIP}"),
        }
    }
}

/// Splits a zip's file name `<prefix>-<64 hex digest>.zip` (a bundle's or a configuration's,
/// as ConductR and conductr-cli name them) into the prefix and the digest.
pub fn split_zip_name(file_name: &str) -> Option<(&str, Digest)> {
    let stem = file_name.strip_suffix(ZIP)?;
    let (prefix, digest) = stem.rsplit_once('-')?;
    Some((prefix, Digest::parse(digest).ok()?))
}

/// One part of a form: its field name, file name and the length of its content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Part<'a> {
    /// The field name.
    pub name: &'a str,
    /// The file name, if the part is a file.
    pub filename: Option<FileName<'a>>,
    /// The length of the content the caller streams after the part's head.
    pub len: u64,
}

/// Why a form cannot be framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FramingError {
    /// A field or plain file name that is empty, too long, or holds `"`, `\` or a control
    /// character.
    BadName,
    /// The total length does not fit in a `u64`.
    TooLong,
    /// The output buffer is full.
    BufferFull,
    /// No part with this index.
    NoSuchPart,
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadName => "a multipart field or file name is empty, too long or not plain text",
            Self::TooLong => "the multipart body is too long",
            Self::BufferFull => "the buffer is too small for the multipart framing",
            Self::NoSuchPart => "no multipart part with this index",
        })
    }
}

impl core::error::Error for FramingError {}

fn plain_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && !name
            .bytes()
            .any(|b| b == b'"' || b == b'\\' || b.is_ascii_control())
}

/// Counts what is written.
struct Counter(u64);

impl fmt::Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let len = u64::try_from(s.len()).map_err(|_| fmt::Error)?;
        self.0 = self.0.checked_add(len).ok_or(fmt::Error)?;
        Ok(())
    }
}

/// The framing of a `multipart/form-data` body whose parts' contents the caller streams.
///
/// Send [`content_type`](Self::content_type) and [`content_length`](Self::content_length) in
/// the request head; then, for each part in order, its head
/// ([`write_head`](Self::write_head)) and exactly [`Part::len`] bytes of content; then
/// [`write_close`](Self::write_close). The content must not contain `\r\n--<boundary>`: a random
/// boundary of some length makes that vanishingly unlikely.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Multipart<'a, 'p> {
    boundary: Boundary<'a>,
    parts: &'p [Part<'a>],
    content_length: u64,
}

impl<'a, 'p> Multipart<'a, 'p> {
    /// Frames `parts` with `boundary`: checks the names and computes the total length.
    pub fn new(boundary: Boundary<'a>, parts: &'p [Part<'a>]) -> Result<Self, FramingError> {
        let mut form = Self {
            boundary,
            parts,
            content_length: 0,
        };
        let mut total = 0u64;
        for (index, part) in parts.iter().enumerate() {
            let file_ok = match part.filename {
                Some(FileName::Plain(name)) => plain_name(name, MAX_FILE_NAME_LEN),
                _ => true,
            };
            if !plain_name(part.name, MAX_FIELD_NAME_LEN) || !file_ok {
                return Err(FramingError::BadName);
            }
            total = total
                .checked_add(form.head_len(index)?)
                .and_then(|t| t.checked_add(part.len))
                .ok_or(FramingError::TooLong)?;
        }
        let mut close = Counter(0);
        form.write_close(&mut close)
            .map_err(|_| FramingError::TooLong)?;
        form.content_length = total.checked_add(close.0).ok_or(FramingError::TooLong)?;
        Ok(form)
    }

    /// The exact length of the body: heads, contents and close delimiter.
    pub const fn content_length(&self) -> u64 {
        self.content_length
    }

    /// The `Content-Type` header's value.
    pub const fn content_type(&self) -> ContentType<'a> {
        ContentType(self.boundary)
    }

    /// The parts, in order.
    pub const fn parts(&self) -> &'p [Part<'a>] {
        self.parts
    }

    /// The length of part `index`'s head.
    pub fn head_len(&self, index: usize) -> Result<u64, FramingError> {
        let mut counter = Counter(0);
        match self.write_head(index, &mut counter) {
            Err(FramingError::BufferFull) => Err(FramingError::TooLong),
            other => other.map(|()| counter.0),
        }
    }

    /// Writes the head of part `index`: the delimiter (after a CRLF that ends the previous
    /// part's content) and the `Content-Disposition` header; at most [`MAX_PART_HEAD_LEN`]
    /// bytes.
    pub fn write_head<W: fmt::Write>(&self, index: usize, out: &mut W) -> Result<(), FramingError> {
        let part = self.parts.get(index).ok_or(FramingError::NoSuchPart)?;
        let crlf = if index == 0 { "" } else { "\r\n" };
        let written = match &part.filename {
            Some(filename) => write!(
                out,
                "{crlf}--{}\r\n{DISPOSITION}{}{FILENAME}{filename}{HEAD_END}",
                self.boundary, part.name
            ),
            None => write!(
                out,
                "{crlf}--{}\r\n{DISPOSITION}{}{HEAD_END}",
                self.boundary, part.name
            ),
        };
        written.map_err(|_| FramingError::BufferFull)
    }

    /// Writes the close delimiter, after the last part's content: at most [`MAX_CLOSE_LEN`]
    /// bytes.
    pub fn write_close<W: fmt::Write>(&self, out: &mut W) -> Result<(), FramingError> {
        let crlf = if self.parts.is_empty() { "" } else { "\r\n" };
        write!(out, "{crlf}--{}--\r\n", self.boundary).map_err(|_| FramingError::BufferFull)
    }
}

/// The fields of a load request, in the order they must be sent (docs/PROTOCOL.md §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LoadField {
    /// `bundleConf`: the bundle's own bundle.conf (file name `bundle.conf`).
    BundleConf,
    /// `bundleConfOverlay`: the configuration's bundle.conf (optional).
    BundleConfOverlay,
    /// `bundle`: the bundle zip (file name `<name>-<digest>.zip`).
    Bundle,
    /// `configuration`: the configuration zip (optional; file name `config-<digest>.zip`).
    Configuration,
}

impl LoadField {
    /// Every field, in order.
    pub const ALL: [Self; 4] = [
        Self::BundleConf,
        Self::BundleConfOverlay,
        Self::Bundle,
        Self::Configuration,
    ];

    /// The form field name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::BundleConf => "bundleConf",
            Self::BundleConfOverlay => "bundleConfOverlay",
            Self::Bundle => "bundle",
            Self::Configuration => "configuration",
        }
    }

    /// The field with this form name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Whether a load request must have it.
    pub const fn is_required(self) -> bool {
        matches!(self, Self::BundleConf | Self::Bundle)
    }
}

/// A zip file to send: its digest (which names it) and its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ZipFile {
    /// The zip's SHA-256.
    pub digest: Digest,
    /// Its length in bytes.
    pub len: u64,
}

/// What a load request sends: each file's length, and what names the zips.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LoadFiles<'a> {
    /// The bundle's name (from its bundle.conf), which names the bundle file.
    pub bundle_name: Segment<'a>,
    /// The length of the bundle's bundle.conf.
    pub bundle_conf_len: u64,
    /// The length of the configuration's bundle.conf, when it has one.
    pub overlay_len: Option<u64>,
    /// The bundle zip.
    pub bundle: ZipFile,
    /// The configuration zip, when the bundle is loaded with one.
    pub configuration: Option<ZipFile>,
}

impl<'a> LoadFiles<'a> {
    /// The parts of the request, in the order ConductR expects them; frame them with
    /// [`Multipart::new`].
    pub fn parts(&self) -> heapless::Vec<Part<'a>, 4> {
        let conf = FileName::Plain("bundle.conf");
        let mut parts = heapless::Vec::new();
        let all = [
            Some(Part {
                name: LoadField::BundleConf.name(),
                filename: Some(conf),
                len: self.bundle_conf_len,
            }),
            self.overlay_len.map(|len| Part {
                name: LoadField::BundleConfOverlay.name(),
                filename: Some(conf),
                len,
            }),
            Some(Part {
                name: LoadField::Bundle.name(),
                filename: Some(FileName::Bundle {
                    name: self.bundle_name,
                    digest: self.bundle.digest,
                }),
                len: self.bundle.len,
            }),
            self.configuration.map(|c| Part {
                name: LoadField::Configuration.name(),
                filename: Some(FileName::Configuration(c.digest)),
                len: c.len,
            }),
        ];
        for part in all.into_iter().flatten() {
            // At most four: the capacity.
            let _ = parts.push(part);
        }
        parts
    }
}

/// The parts of `GET /v2/bundles/{id}` answered as `multipart/form-data` (what the sandbox
/// serves): the bundle zip, then the configuration zip when there is one, each under the file
/// name it was loaded with.
pub fn download_parts<'a>(
    bundle_name: Segment<'a>,
    bundle: ZipFile,
    configuration: Option<ZipFile>,
) -> heapless::Vec<Part<'a>, 2> {
    let mut parts = heapless::Vec::new();
    let _ = parts.push(Part {
        name: LoadField::Bundle.name(),
        filename: Some(FileName::Bundle {
            name: bundle_name,
            digest: bundle.digest,
        }),
        len: bundle.len,
    });
    if let Some(c) = configuration {
        let _ = parts.push(Part {
            name: LoadField::Configuration.name(),
            filename: Some(FileName::Configuration(c.digest)),
            len: c.len,
        });
    }
    parts
}

/// Why the fields of a load request are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum LoadOrderError {
    /// A field that is not one of [`LoadField`]'s.
    UnknownField,
    /// A field repeated, or after one that must follow it.
    OutOfOrder(LoadField),
    /// A required field is missing.
    Missing(LoadField),
}

impl LoadOrderError {
    /// Every refusal is a malformed request.
    pub const fn status(self) -> Status {
        Status::BadRequest
    }
}

impl fmt::Display for LoadOrderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownField => f.write_str("unknown field in a load request"),
            Self::OutOfOrder(field) => write!(f, "field `{}` out of order", field.name()),
            Self::Missing(field) => write!(f, "missing field `{}`", field.name()),
        }
    }
}

impl core::error::Error for LoadOrderError {}

/// Checks that the fields of a load request come in the order of [`LoadField::ALL`], each at
/// most once, the required ones present: what the sandbox enforces, as ConductR does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LoadOrder {
    /// How many of [`LoadField::ALL`] are behind us.
    next: usize,
}

impl LoadOrder {
    /// Before the first field.
    pub const fn new() -> Self {
        Self { next: 0 }
    }

    /// The next part is named `name`.
    pub fn accept(&mut self, name: &str) -> Result<LoadField, LoadOrderError> {
        let field = LoadField::from_name(name).ok_or(LoadOrderError::UnknownField)?;
        let index = field as usize;
        if index < self.next {
            return Err(LoadOrderError::OutOfOrder(field));
        }
        let mut skipped = LoadField::ALL.iter().take(index).skip(self.next);
        if let Some(&required) = skipped.find(|f| f.is_required()) {
            return Err(LoadOrderError::Missing(required));
        }
        self.next = index.saturating_add(1);
        Ok(field)
    }

    /// After the last part: the required fields were all there.
    pub fn finish(&self) -> Result<(), LoadOrderError> {
        let mut rest = LoadField::ALL.iter().skip(self.next);
        match rest.find(|f| f.is_required()) {
            Some(&required) => Err(LoadOrderError::Missing(required)),
            None => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// What the reader found next in a multipart body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event<'a> {
    /// A part begins: its `Content-Disposition` name and file name.
    PartStart {
        /// The `name` parameter.
        name: &'a str,
        /// The `filename` parameter, if any.
        filename: Option<&'a str>,
    },
    /// Some of the current part's content (never empty).
    Data(&'a [u8]),
    /// The current part's content is complete.
    PartEnd,
    /// The close delimiter: the body is complete.
    End,
}

/// Why a multipart body is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum MultipartError {
    /// A boundary followed by something other than `--` or (padding and) CRLF.
    BadDelimiter,
    /// A part's header block is longer than the head buffer.
    HeadersTooLarge,
    /// A header line that is not `Name: value`, or a `Content-Disposition` that cannot be
    /// parsed (or comes twice, or names a part twice, or not in UTF-8).
    MalformedHeader,
    /// A part without a `Content-Disposition` header, or without a `name` in it.
    MissingName,
    /// A `Content-Transfer-Encoding` other than `7bit`, `8bit` or `binary`.
    UnsupportedEncoding,
    /// The body ended before the close delimiter.
    Truncated,
    /// Something other than a final CRLF after the close delimiter.
    DataAfterClose,
}

impl MultipartError {
    /// Every refusal is a malformed request.
    pub const fn status(self) -> Status {
        Status::BadRequest
    }
}

impl fmt::Display for MultipartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadDelimiter => "malformed multipart delimiter",
            Self::HeadersTooLarge => "multipart part headers too large",
            Self::MalformedHeader => "malformed multipart part header",
            Self::MissingName => "multipart part without a Content-Disposition name",
            Self::UnsupportedEncoding => "unsupported multipart Content-Transfer-Encoding",
            Self::Truncated => "multipart body ends before its close delimiter",
            Self::DataAfterClose => "data after the multipart close delimiter",
        })
    }
}

impl core::error::Error for MultipartError {}

/// Where the reader stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Read {
    /// Before the first delimiter (a preamble is skipped), this many bytes of the delimiter
    /// matched: the body's start stands for the CRLF before the first one.
    Preamble(usize),
    /// After a boundary: `--`, or padding and CRLF.
    AfterBoundary,
    /// After `--<boundary>-`.
    CloseDash,
    /// Transport padding after a boundary.
    Padding,
    /// After the CR that ends a delimiter line.
    LineFeed,
    /// In a part's header block.
    Headers,
    /// In a part's content, this many bytes of the next delimiter matched.
    Body(usize),
    /// After the close delimiter: padding, then an optional CRLF.
    Epilogue,
    /// After the close delimiter's CR.
    EpilogueLf,
    /// After the close delimiter's CRLF.
    Done,
}

/// What a step produced (the event is built from it at the end).
enum Out<'c> {
    /// The input is used up.
    Need,
    /// The part's headers are parsed.
    PartStart,
    /// Content from the input.
    Input(&'c [u8]),
    /// Content that was a prefix of the delimiter, held in the reader: this many bytes of it,
    /// fewer than all.
    Delimiter(usize),
    PartEnd,
    End,
}

const DELIMITER_CAP: usize = 4 + MAX_BOUNDARY_LEN;

/// A push parser of a `multipart/form-data` (or any `multipart/*`) body.
///
/// Feed it the body in chunks with [`next`](Self::next) until it answers `Ok(None)` (the chunk
/// is used up); at the end of the body call [`finish`](Self::finish). Events come in the order
/// `(PartStart Data* PartEnd)* End`. The headers of each part are gathered in the caller's
/// buffer (a block longer than it is refused); content is handed out as it passes, borrowed
/// from the chunk (or, for bytes that looked like the start of a delimiter across two chunks,
/// from the reader). A preamble before the first delimiter is skipped; after the close
/// delimiter only padding and one CRLF may follow. After an error, every call answers it.
pub struct MultipartReader<'h> {
    /// The current part's header block.
    head: Cursor<'h>,
    /// CRLF, `--` and the boundary.
    delimiter: heapless::Vec<u8, DELIMITER_CAP>,
    state: Read,
    /// Spans of the header block that `parse_headers` checked: within it, and UTF-8.
    name: Span,
    filename: Option<Span>,
    parts: u32,
    error: Option<MultipartError>,
}

impl fmt::Debug for MultipartReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultipartReader")
            .field("head_capacity", &self.head.capacity())
            .field("state", &self.state)
            .field("parts", &self.parts)
            .field("error", &self.error)
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for MultipartReader<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "MultipartReader {{ head_capacity: {=usize}, parts: {=u32} }}",
            self.head.capacity(),
            self.parts
        );
    }
}

/// How many bytes `a` and `b` have in common at their start.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// `data` split where `delimiter` starts, or where a prefix of it ends `data`; all of `data`
/// and nothing if neither.
fn split_at_candidate<'d>(data: &'d [u8], delimiter: &[u8]) -> (&'d [u8], &'d [u8]) {
    for (at, _) in data.iter().enumerate().filter(|&(_, &b)| b == b'\r') {
        // An index of `data`: the split is within it.
        let (content, tail) = data.split_at(at);
        let n = common_prefix(tail, delimiter);
        if n == delimiter.len() || n == tail.len() {
            return (content, tail);
        }
    }
    (data, &[])
}

/// The text of a span that `parse_headers` checked (within `block`, UTF-8), read without a
/// failure to handle.
fn checked_text(block: &[u8], (start, end): Span) -> &str {
    let (before_end, _) = block.split_at(end.min(block.len()));
    text::utf8_prefix(before_end.split_at(start.min(before_end.len())).1)
}

impl<'h> MultipartReader<'h> {
    /// A reader of a body with `boundary`, gathering each part's header block in `head` (see
    /// [`HEAD_BUFFER_LEN`]).
    pub fn new(boundary: Boundary<'_>, head: &'h mut [u8]) -> Self {
        let mut delimiter = heapless::Vec::new();
        // A boundary has at most MAX_BOUNDARY_LEN bytes: the four before it fit too.
        for &b in b"\r\n--".iter().chain(boundary.as_str().as_bytes()) {
            if delimiter.push(b).is_err() {
                break;
            }
        }
        Self {
            head: Cursor::new(head),
            delimiter,
            state: Read::Preamble(2),
            name: (0, 0),
            filename: None,
            parts: 0,
            error: None,
        }
    }

    /// How many parts have started.
    pub const fn parts(&self) -> u32 {
        self.parts
    }

    /// Whether the close delimiter was read.
    pub fn is_done(&self) -> bool {
        matches!(self.state, Read::Epilogue | Read::EpilogueLf | Read::Done)
    }

    /// Checks that the body was complete; call it at its end.
    pub fn finish(&self) -> Result<(), MultipartError> {
        match self.error {
            Some(e) => Err(e),
            None if self.is_done() => Ok(()),
            None => Err(MultipartError::Truncated),
        }
    }

    /// Consumes `input` from its start until the next event, and answers it; or consumes all
    /// of `input` and answers `Ok(None)`. `input` is advanced past what was consumed.
    pub fn next<'e, 'c: 'e>(
        &'e mut self,
        input: &mut &'c [u8],
    ) -> Result<Option<Event<'e>>, MultipartError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let out = match self.step(input) {
            Ok(out) => out,
            Err(e) => {
                self.error = Some(e);
                return Err(e);
            }
        };
        Ok(match out {
            Out::Need => None,
            Out::PartStart => {
                let block = self.head.written();
                Some(Event::PartStart {
                    name: checked_text(block, self.name),
                    filename: self.filename.map(|span| checked_text(block, span)),
                })
            }
            Out::Input(content) => Some(Event::Data(content)),
            Out::Delimiter(seen) => {
                // Fewer bytes than the delimiter holds: the split is within it.
                let (seen, _) = self.delimiter.split_at(seen.min(self.delimiter.len()));
                Some(Event::Data(seen))
            }
            Out::PartEnd => Some(Event::PartEnd),
            Out::End => Some(Event::End),
        })
    }

    /// Runs until there is something to report, advancing `input` past what it consumed.
    fn step<'c>(&mut self, input: &mut &'c [u8]) -> Result<Out<'c>, MultipartError> {
        loop {
            match self.state {
                Read::Preamble(matched) | Read::Body(matched) => {
                    let body = matches!(self.state, Read::Body(_));
                    match self.scan(input, matched, body) {
                        // The preamble is skipped.
                        Out::Input(_) | Out::Delimiter(_) | Out::PartEnd if !body => {}
                        other => return Ok(other),
                    }
                }
                _ => {
                    let Some((&b, rest)) = input.split_first() else {
                        return Ok(Out::Need);
                    };
                    *input = rest;
                    if let Some(out) = self.byte(b)? {
                        return Ok(out);
                    }
                }
            }
        }
    }

    /// Scans content (or the preamble) for the delimiter, `matched` bytes of it already seen,
    /// advancing `input` past what it consumed.
    fn scan<'c>(&mut self, input: &mut &'c [u8], matched: usize, body: bool) -> Out<'c> {
        let set = |matched| {
            if body {
                Read::Body(matched)
            } else {
                Read::Preamble(matched)
            }
        };
        let rest = *input;
        let delimiter = self.delimiter.as_slice();
        if matched == 0 {
            if rest.is_empty() {
                return Out::Need;
            }
            let (content, after) = split_at_candidate(rest, delimiter);
            if !content.is_empty() {
                *input = after;
                return Out::Input(content);
            }
        }
        let want = delimiter.iter().skip(matched);
        let want_len = want.len();
        let n = rest.iter().zip(want).take_while(|(x, y)| x == y).count();
        // At most `rest`'s length: the split is within it.
        *input = rest.split_at(n).1;
        if n == want_len {
            self.state = Read::AfterBoundary;
            return Out::PartEnd;
        }
        let seen = matched.saturating_add(n);
        if n == rest.len() {
            self.state = set(seen);
            return Out::Need;
        }
        // Not a delimiter after all: what matched was content (no delimiter starts inside
        // it, since only its first byte is a CR).
        self.state = set(0);
        Out::Delimiter(seen)
    }

    /// One byte outside content.
    fn byte<'c>(&mut self, b: u8) -> Result<Option<Out<'c>>, MultipartError> {
        let pad = b == b' ' || b == b'\t';
        match (self.state, b) {
            (Read::AfterBoundary, b'-') => self.state = Read::CloseDash,
            (Read::CloseDash, b'-') => {
                self.state = Read::Epilogue;
                return Ok(Some(Out::End));
            }
            (Read::AfterBoundary | Read::Padding, _) if pad => self.state = Read::Padding,
            (Read::AfterBoundary | Read::Padding, b'\r') => self.state = Read::LineFeed,
            (Read::LineFeed, b'\n') => {
                self.state = Read::Headers;
                self.head.clear();
            }
            (Read::AfterBoundary | Read::Padding | Read::LineFeed | Read::CloseDash, _) => {
                return Err(MultipartError::BadDelimiter);
            }
            (Read::Headers, _) => {
                self.head
                    .write_bytes(&[b])
                    .map_err(|_| MultipartError::HeadersTooLarge)?;
                let block = self.head.written();
                if block == b"\r\n" || block.ends_with(b"\r\n\r\n") {
                    self.parse_headers()?;
                    self.parts = self.parts.saturating_add(1);
                    self.state = Read::Body(0);
                    return Ok(Some(Out::PartStart));
                }
            }
            (Read::Epilogue, _) if pad => {}
            (Read::Epilogue, b'\r') => self.state = Read::EpilogueLf,
            (Read::EpilogueLf, b'\n') => self.state = Read::Done,
            (Read::Epilogue | Read::EpilogueLf | Read::Done, _) => {
                return Err(MultipartError::DataAfterClose);
            }
            // Content is scanned elsewhere.
            (Read::Preamble(_) | Read::Body(_), _) => {}
        }
        Ok(None)
    }

    /// Parses the header block in `head`: finds the part's name and file name.
    fn parse_headers(&mut self) -> Result<(), MultipartError> {
        let block = self.head.written();
        // The header lines, without the CRLF of the last one and the blank line (`byte` calls
        // this only on a block that ends so).
        let region = if block == b"\r\n" {
            &[][..]
        } else {
            block
                .strip_suffix(b"\r\n\r\n")
                .ok_or(MultipartError::MalformedHeader)?
        };
        let mut disposition = None;
        let mut rest = region;
        while !rest.is_empty() {
            // Where the line starts in the block, which the region begins.
            let start = region.len().saturating_sub(rest.len());
            let line_len = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .unwrap_or(rest.len());
            // A position in `rest`, or its length: the split is within it.
            let (line, after) = rest.split_at(line_len);
            rest = match after {
                [b'\r', b'\n', next @ ..] => next,
                // The last line.
                _ => &[],
            };
            let mut halves = line.splitn(2, |&b| b == b':');
            let (Some(name), Some(value)) = (halves.next(), halves.next()) else {
                return Err(MultipartError::MalformedHeader);
            };
            let colon = name.len();
            let line_end = start.saturating_add(line_len);
            if name.is_empty()
                || !name.iter().copied().all(is_tchar)
                || value.iter().any(|&b| b != b'\t' && b.is_ascii_control())
            {
                return Err(MultipartError::MalformedHeader);
            }
            if name.eq_ignore_ascii_case(b"content-disposition") {
                if disposition.is_some() {
                    return Err(MultipartError::MalformedHeader);
                }
                disposition = Some((start.saturating_add(colon).saturating_add(1), line_end));
            } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
                let encoding = value.trim_ascii();
                if ![&b"7bit"[..], b"8bit", b"binary"]
                    .iter()
                    .any(|e| encoding.eq_ignore_ascii_case(e))
                {
                    return Err(MultipartError::UnsupportedEncoding);
                }
            }
        }
        let (value_start, value_end) = disposition.ok_or(MultipartError::MissingName)?;
        let (name, filename) = parse_disposition(block, value_start, value_end)?;
        self.name = name.ok_or(MultipartError::MissingName)?;
        self.filename = filename;
        Ok(())
    }
}

/// The `name` and `filename` spans of a `Content-Disposition` value at `block[start..end]`.
fn parse_disposition(
    block: &[u8],
    start: usize,
    end: usize,
) -> Result<(Option<Span>, Option<Span>), MultipartError> {
    let value = block.get(..end).ok_or(MultipartError::MalformedHeader)?;
    let mut i = start;
    while let Some(b' ' | b'\t') = value.get(i) {
        i = i.saturating_add(1);
    }
    let type_start = i;
    while value.get(i).copied().is_some_and(is_tchar) {
        i = i.saturating_add(1);
    }
    if i == type_start {
        return Err(MultipartError::MalformedHeader);
    }
    let (mut name, mut filename) = (None, None);
    for param in Params::new(value, i) {
        let (attr, span) = param.map_err(|()| MultipartError::MalformedHeader)?;
        let attr = value
            .get(attr.0..attr.1)
            .ok_or(MultipartError::MalformedHeader)?;
        let slot = if attr.eq_ignore_ascii_case(b"name") {
            &mut name
        } else if attr.eq_ignore_ascii_case(b"filename") {
            &mut filename
        } else {
            continue;
        };
        let text = value
            .get(span.0..span.1)
            .ok_or(MultipartError::MalformedHeader)?;
        if slot.is_some() || core::str::from_utf8(text).is_err() {
            return Err(MultipartError::MalformedHeader);
        }
        *slot = Some(span);
    }
    Ok((name, filename))
}

#[cfg(test)]
mod tests {
    use std::string::String;
    use std::vec::Vec;
    use std::{format, vec};

    use super::*;
    use crate::text::Cursor;

    const BUNDLE_DIGEST: &str = "6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c00112233445566778899aabbccddeeff";
    const CONFIG_DIGEST: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0ffeeddccbbaa99887766554433221100";

    /// What the reader saw: (name, filename, content) per part, and whether `End` came.
    type Parts = Vec<(String, Option<String>, Vec<u8>)>;

    fn read(boundary: &str, body: &[u8], chunk: usize) -> Result<Parts, MultipartError> {
        let mut head = [0u8; HEAD_BUFFER_LEN];
        read_with(boundary, body, chunk, &mut head)
    }

    fn read_with(
        boundary: &str,
        body: &[u8],
        chunk: usize,
        head: &mut [u8],
    ) -> Result<Parts, MultipartError> {
        let mut reader = MultipartReader::new(Boundary::new(boundary).unwrap(), head);
        let mut parts: Parts = Vec::new();
        let mut open = false;
        let mut ended = false;
        for piece in body.chunks(chunk.max(1)) {
            let mut rest = piece;
            while let Some(event) = reader.next(&mut rest)? {
                assert!(!ended, "event after End");
                match event {
                    Event::PartStart { name, filename } => {
                        assert!(!open);
                        open = true;
                        parts.push((name.into(), filename.map(Into::into), Vec::new()));
                    }
                    Event::Data(data) => {
                        assert!(open && !data.is_empty());
                        parts.last_mut().unwrap().2.extend_from_slice(data);
                    }
                    Event::PartEnd => {
                        assert!(open);
                        open = false;
                    }
                    Event::End => {
                        assert!(!open);
                        ended = true;
                    }
                }
            }
            assert!(rest.is_empty());
        }
        reader.finish()?;
        assert!(ended);
        Ok(parts)
    }

    /// Frames `contents` as a load request with the writer, into one body.
    fn frame(boundary: &str, files: &LoadFiles<'_>, contents: &[&[u8]]) -> (Vec<u8>, u64) {
        let parts = files.parts();
        let form = Multipart::new(Boundary::new(boundary).unwrap(), &parts).unwrap();
        let mut body = Vec::new();
        for (index, content) in contents.iter().enumerate() {
            let mut buf = [0u8; MAX_PART_HEAD_LEN];
            let mut cursor = Cursor::new(&mut buf);
            form.write_head(index, &mut cursor).unwrap();
            assert_eq!(cursor.len() as u64, form.head_len(index).unwrap());
            body.extend_from_slice(cursor.written());
            assert_eq!(content.len() as u64, parts[index].len);
            body.extend_from_slice(content);
        }
        let mut buf = [0u8; MAX_CLOSE_LEN];
        let mut cursor = Cursor::new(&mut buf);
        form.write_close(&mut cursor).unwrap();
        body.extend_from_slice(cursor.written());
        (body, form.content_length())
    }

    fn load_files<'a>(
        conf: &[u8],
        overlay: Option<&[u8]>,
        zip: &[u8],
        config: Option<&[u8]>,
    ) -> LoadFiles<'a> {
        LoadFiles {
            bundle_name: Segment::parse("visualizer").unwrap(),
            bundle_conf_len: conf.len() as u64,
            overlay_len: overlay.map(|o| o.len() as u64),
            bundle: ZipFile {
                digest: Digest::parse(BUNDLE_DIGEST).unwrap(),
                len: zip.len() as u64,
            },
            configuration: config.map(|c| ZipFile {
                digest: Digest::parse(CONFIG_DIGEST).unwrap(),
                len: c.len() as u64,
            }),
        }
    }

    // ---- the boundary -----------------------------------------------------------------------

    // RFC 2046 §5.1.1's grammar; requests_toolbelt's boundaries are 32 hex characters.
    #[test]
    fn test_parse_boundary() {
        for ok in [
            "b0undary",
            "3f1c8e5d9a2b4c6d8e0f1a3b5c7d9e1f",
            "gc0pJq0M:08jU534c0p",
            "a b",
            "'()+_,-./:=?",
            &"x".repeat(70),
        ] {
            assert_eq!(Boundary::new(ok).unwrap().as_str(), ok);
        }
        for (bad, e) in [
            ("", BoundaryError::Empty),
            (&*"x".repeat(71), BoundaryError::TooLong),
            ("a\"b", BoundaryError::BadChar),
            ("a;b", BoundaryError::BadChar),
            ("a\\b", BoundaryError::BadChar),
            ("a\r\nb", BoundaryError::BadChar),
            ("é", BoundaryError::BadChar),
            ("ab ", BoundaryError::TrailingSpace),
        ] {
            assert_eq!(Boundary::new(bad), Err(e), "{bad:?}");
        }
    }

    #[test]
    fn test_parse_content_type() {
        let ct = |b: &str| format!("{}", Boundary::new(b).unwrap().content_type());
        // requests_toolbelt's `MultipartEncoder.content_type`.
        assert_eq!(ct("b0undary"), "multipart/form-data; boundary=b0undary");
        assert_eq!(ct("a:b"), "multipart/form-data; boundary=\"a:b\"");
        let longest = ct(&"(".repeat(70));
        assert_eq!(longest.len(), MAX_CONTENT_TYPE_LEN);
        for (value, boundary) in [
            ("multipart/form-data; boundary=b0undary", Some("b0undary")),
            ("multipart/form-data;boundary=b0undary", Some("b0undary")),
            ("Multipart/Form-Data; BOUNDARY=\"a:b c\"", Some("a:b c")),
            ("multipart/mixed; charset=utf-8; boundary=x; q=1", Some("x")),
            (
                "multipart/form-data; a=\"x;boundary=y\"; boundary=z",
                Some("z"),
            ),
            ("multipart/form-data ; boundary = x ;", Some("x")),
            ("multipart/form-data", None),
            ("multipart/form-data; boundary=", None),
            ("multipart/form-data; boundary=\"x", None),
            ("multipart/form-data; boundary=x; boundary=y", None),
            ("multipart/form-data; boundary=x y", None),
            ("application/json; boundary=x", None),
            ("multipart; boundary=x", None),
            ("multipart/; boundary=x", None),
        ] {
            assert_eq!(boundary_from_content_type(value), boundary, "{value}");
        }
        // What we write, we read.
        for b in ["b0undary", "a:b", "a b", "'()+_,-./:=?"] {
            assert_eq!(boundary_from_content_type(&ct(b)), Some(b));
        }
    }

    // ---- writing ----------------------------------------------------------------------------

    // The body conductr-cli 1.2.25's conduct_load.py sends for a bundle with a configuration,
    // captured with requests_toolbelt 1.0.0 by core/tests/data/conductr/capture.py, in short:
    //
    //     files = [("bundleConf", ("bundle.conf", io.StringIO(bundle_conf))),
    //              ("bundleConfOverlay", ("bundle.conf", io.StringIO(overlay))),
    //              ("bundle", ("visualizer-<digest>.zip", io.BytesIO(bundle))),
    //              ("configuration", ("config-<digest>.zip", io.BytesIO(configuration)))]
    //     MultipartEncoder(files, boundary="2a1f8c3e5b7d9f0e4c6a8b1d3f5e7c9a").to_string()
    //
    // Our framing of the same files is byte for byte the same, and reads back.
    #[test]
    fn test_parse_requests_toolbelt_capture() {
        let captured = include_bytes!("../../tests/data/conductr/load-request.multipart");
        let boundary = "2a1f8c3e5b7d9f0e4c6a8b1d3f5e7c9a";
        let conf = include_bytes!("../../tests/data/conductr/bundle.conf");
        let overlay = b"name = \"visualizer\"\ncompatibilityVersion = \"2\"\n";
        let zip =
            b"PK\x03\x04 the bundle \r\n-- not a delimiter \r\n--2a1f8c3e5b7d9f0e4c6a8b1d3f5e7c9b";
        let config = b"PK\x03\x04 the configuration\r";
        let files = load_files(conf, Some(overlay), zip, Some(config));
        let contents: [&[u8]; 4] = [conf, overlay, zip, config];
        let (body, length) = frame(boundary, &files, &contents);
        assert_eq!(body, captured);
        assert_eq!(length, captured.len() as u64);
        for chunk in [1, 2, 3, 7, 64, captured.len()] {
            let parts = read(boundary, captured, chunk).unwrap();
            let names: Vec<_> = parts.iter().map(|p| p.0.as_str()).collect();
            assert_eq!(
                names,
                ["bundleConf", "bundleConfOverlay", "bundle", "configuration"]
            );
            assert_eq!(parts[0].1.as_deref(), Some("bundle.conf"));
            assert_eq!(parts[1].1.as_deref(), Some("bundle.conf"));
            assert_eq!(
                parts[2].1.as_deref(),
                Some(format!("visualizer-{BUNDLE_DIGEST}.zip").as_str())
            );
            assert_eq!(
                parts[3].1.as_deref(),
                Some(format!("config-{CONFIG_DIGEST}.zip").as_str())
            );
            for (part, content) in parts.iter().zip(contents) {
                assert_eq!(part.2, content, "{chunk}");
            }
            let mut order = LoadOrder::new();
            for part in &parts {
                order.accept(&part.0).unwrap();
            }
            order.finish().unwrap();
        }
        let file_name = format!("visualizer-{BUNDLE_DIGEST}.zip");
        let (name, digest) = split_zip_name(&file_name).unwrap();
        assert_eq!(
            (name, digest.to_hex().as_str()),
            ("visualizer", BUNDLE_DIGEST)
        );
    }

    // Writer → reader, with and without the optional fields, at every chunk size up to 9 and
    // a few more: the parts come back in order, and Content-Length is the bytes produced.
    #[test]
    fn test_parse_round_trip() {
        let conf: &[u8] = b"name = \"visualizer\"\r\n";
        let zip: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
        let tricky: &[u8] = b"\r\n-\r\n--\r\n--b\r\r\n--b0undar\r\n";
        for (overlay, config) in [
            (None, None),
            (Some(b"x = 1".as_slice()), None),
            (None, Some(tricky)),
            (Some(b"".as_slice()), Some(b"".as_slice())),
        ] {
            let files = load_files(conf, overlay, &zip, config);
            let mut contents: Vec<&[u8]> = vec![conf];
            contents.extend(overlay);
            contents.push(&zip);
            contents.extend(config);
            let (body, length) = frame("b0undary", &files, &contents);
            assert_eq!(length, body.len() as u64);
            for chunk in (1..10).chain([100, 4096]) {
                let parts = read("b0undary", &body, chunk).unwrap();
                assert_eq!(parts.len(), contents.len());
                let mut order = LoadOrder::new();
                for (part, content) in parts.iter().zip(&contents) {
                    assert_eq!(part.2, *content);
                    order.accept(&part.0).unwrap();
                }
                order.finish().unwrap();
            }
        }
    }

    #[test]
    fn test_parse_download_parts() {
        let name = Segment::parse("visualizer").unwrap();
        let bundle = ZipFile {
            digest: Digest::parse(BUNDLE_DIGEST).unwrap(),
            len: 3,
        };
        let config = ZipFile {
            digest: Digest::parse(CONFIG_DIGEST).unwrap(),
            len: 2,
        };
        let parts = download_parts(name, bundle, Some(config));
        let form = Multipart::new(Boundary::new("q").unwrap(), &parts).unwrap();
        let mut body = Vec::new();
        for (i, content) in [&b"zip"[..], b"cf"].iter().enumerate() {
            let mut s = String::new();
            form.write_head(i, &mut s).unwrap();
            body.extend_from_slice(s.as_bytes());
            body.extend_from_slice(content);
        }
        let mut s = String::new();
        form.write_close(&mut s).unwrap();
        body.extend_from_slice(s.as_bytes());
        assert_eq!(body.len() as u64, form.content_length());
        let parts = read("q", &body, 5).unwrap();
        assert_eq!(parts[0].0, "bundle");
        assert_eq!(parts[1].0, "configuration");
        assert_eq!(
            split_zip_name(parts[1].1.as_deref().unwrap()).unwrap().0,
            "config"
        );
        assert_eq!(download_parts(name, bundle, None).len(), 1);
    }

    #[test]
    fn test_parse_longest_head_fits() {
        let boundary = "b".repeat(MAX_BOUNDARY_LEN);
        let name = "n".repeat(MAX_FIELD_NAME_LEN);
        let segment = "s".repeat(MAX_SEGMENT_LEN);
        let parts = [
            Part {
                name: "a",
                filename: None,
                len: 0,
            },
            Part {
                name: &name,
                filename: Some(FileName::Bundle {
                    name: Segment::parse(&segment).unwrap(),
                    digest: Digest::parse(BUNDLE_DIGEST).unwrap(),
                }),
                len: 0,
            },
        ];
        let form = Multipart::new(Boundary::new(&boundary).unwrap(), &parts).unwrap();
        assert_eq!(form.head_len(1).unwrap(), MAX_PART_HEAD_LEN as u64);
        let mut buf = [0u8; MAX_PART_HEAD_LEN];
        form.write_head(1, &mut Cursor::new(&mut buf)).unwrap();
        let mut short = [0u8; MAX_PART_HEAD_LEN - 1];
        assert_eq!(
            form.write_head(1, &mut Cursor::new(&mut short)),
            Err(FramingError::BufferFull)
        );
        let mut close = [0u8; MAX_CLOSE_LEN];
        form.write_close(&mut Cursor::new(&mut close)).unwrap();
        assert_eq!(
            form.write_head(2, &mut Cursor::new(&mut buf)),
            Err(FramingError::NoSuchPart)
        );
        // A part without a file name, and a form without parts.
        let mut s = String::new();
        form.write_head(0, &mut s).unwrap();
        assert!(s.ends_with("name=\"a\"\r\n\r\n"));
        let empty = Multipart::new(Boundary::new("b").unwrap(), &[]).unwrap();
        assert_eq!(empty.content_length(), 7);
        assert!(read("b", b"--b--\r\n", 1).unwrap().is_empty());
    }

    #[test]
    fn test_reject_framing() {
        let b = Boundary::new("b").unwrap();
        for name in [
            "",
            "a\"b",
            "a\\b",
            "a\r\nb",
            &"n".repeat(MAX_FIELD_NAME_LEN + 1),
        ] {
            let parts = [Part {
                name,
                filename: None,
                len: 0,
            }];
            assert_eq!(
                Multipart::new(b, &parts),
                Err(FramingError::BadName),
                "{name:?}"
            );
            if name.len() <= MAX_FIELD_NAME_LEN {
                let parts = [Part {
                    name: "a",
                    filename: Some(FileName::Plain(name)),
                    len: 0,
                }];
                assert_eq!(
                    Multipart::new(b, &parts),
                    Err(FramingError::BadName),
                    "{name:?}"
                );
            }
        }
        let long = "f".repeat(MAX_FILE_NAME_LEN + 1);
        let parts = [Part {
            name: "a",
            filename: Some(FileName::Plain(&long)),
            len: 0,
        }];
        assert_eq!(Multipart::new(b, &parts), Err(FramingError::BadName));
        let parts = [
            Part {
                name: "a",
                filename: None,
                len: u64::MAX - 100,
            },
            Part {
                name: "b",
                filename: None,
                len: 50,
            },
        ];
        assert_eq!(Multipart::new(b, &parts), Err(FramingError::TooLong));
    }

    #[test]
    fn test_reject_load_order() {
        let accept_all = |names: &[&str]| {
            let mut order = LoadOrder::new();
            for name in names {
                order.accept(name)?;
            }
            order.finish()
        };
        assert_eq!(accept_all(&["bundleConf", "bundle"]), Ok(()));
        assert_eq!(
            accept_all(&["bundle", "bundleConf"]),
            Err(LoadOrderError::Missing(LoadField::BundleConf))
        );
        assert_eq!(
            accept_all(&["bundleConf", "configuration"]),
            Err(LoadOrderError::Missing(LoadField::Bundle))
        );
        assert_eq!(
            accept_all(&["bundleConf", "bundle", "bundleConfOverlay"]),
            Err(LoadOrderError::OutOfOrder(LoadField::BundleConfOverlay))
        );
        assert_eq!(
            accept_all(&["bundleConf", "bundleConf"]),
            Err(LoadOrderError::OutOfOrder(LoadField::BundleConf))
        );
        assert_eq!(
            accept_all(&["bundleConf", "nrOfCpus"]),
            Err(LoadOrderError::UnknownField)
        );
        assert_eq!(
            accept_all(&["bundleConf"]),
            Err(LoadOrderError::Missing(LoadField::Bundle))
        );
        assert_eq!(
            accept_all(&[]),
            Err(LoadOrderError::Missing(LoadField::BundleConf))
        );
    }

    // ---- reading ----------------------------------------------------------------------------

    // RFC 2046 §5.1.1: a preamble, transport padding after a boundary, headers in any case,
    // parameters unquoted; the epilogue's CRLF.
    #[test]
    fn test_parse_preamble_padding_and_headers() {
        let body = b"This is the preamble.\r\n--xx \t\r\ncontent-disposition: FORM-DATA; NAME=a; Filename=\"f \\ g.zip\"\r\nContent-Type: application/zip\r\nContent-Transfer-Encoding: binary\r\n\r\nabc\r\n--xx\r\nContent-Disposition: form-data;name=\"b\"\r\n\r\n\r\n--xx--";
        for chunk in 1..body.len() {
            let parts = read("xx", body, chunk).unwrap();
            assert_eq!(parts.len(), 2);
            assert_eq!(
                parts[0],
                ("a".into(), Some("f \\ g.zip".into()), b"abc".to_vec())
            );
            assert_eq!(parts[1], ("b".into(), None, Vec::new()));
        }
        // A body that starts with the CRLF of an empty preamble line.
        assert_eq!(read("xx", b"\r\n--xx--", 1).unwrap().len(), 0);
    }

    #[test]
    fn test_reject_malformed() {
        let head = "Content-Disposition: form-data; name=\"a\"\r\n\r\n";
        for (body, e) in [
            (format!("--bx\r\n{head}--b--"), MultipartError::BadDelimiter),
            (format!("--b\n{head}--b--"), MultipartError::BadDelimiter),
            (format!("--b \rx{head}"), MultipartError::BadDelimiter),
            ("--b-x".into(), MultipartError::BadDelimiter),
            (format!("--b\r\n{head}1\r\n--b-x"), MultipartError::BadDelimiter),
            ("--b\r\nContent-Type: text/plain\r\n\r\n\r\n--b--".into(), MultipartError::MissingName),
            ("--b\r\n\r\n\r\n--b--".into(), MultipartError::MissingName),
            ("--b\r\nContent-Disposition: form-data; filename=\"x\"\r\n\r\n\r\n--b--".into(), MultipartError::MissingName),
            ("--b\r\nContent-Disposition form-data\r\n\r\n".into(), MultipartError::MalformedHeader),
            ("--b\r\nContent-Disposition: form-data; name=\"a\r\n\r\n".into(), MultipartError::MalformedHeader),
            ("--b\r\nContent-Disposition: form-data; name=\"a\"; name=b\r\n\r\n".into(), MultipartError::MalformedHeader),
            (format!("--b\r\n{}{head}", "Content-Disposition: form-data; name=\"z\"\r\n"), MultipartError::MalformedHeader),
            ("--b\r\nContent-Disposition: ; name=a\r\n\r\n".into(), MultipartError::MalformedHeader),
            ("--b\r\nContent-Disposition: form-data; name=\r\n\r\n".into(), MultipartError::MalformedHeader),
            ("--b\r\nX Y: 1\r\nContent-Disposition: form-data; name=a\r\n\r\n".into(), MultipartError::MalformedHeader),
            ("--b\r\nX: 1\n2\r\nContent-Disposition: form-data; name=a\r\n\r\n".into(), MultipartError::MalformedHeader),
            ("--b\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: form-data; name=a\r\n\r\n".into(), MultipartError::UnsupportedEncoding),
            (format!("--b\r\n{head}data"), MultipartError::Truncated),
            (format!("--b\r\n{head}data\r\n--b"), MultipartError::Truncated),
            (format!("--b\r\n{head}data\r\n--b-"), MultipartError::Truncated),
            (format!("--b\r\n{head}"), MultipartError::Truncated),
            ("--b\r\nContent-Disposition: form-data; name=a\r\n".into(), MultipartError::Truncated),
            ("".into(), MultipartError::Truncated),
            ("preamble only".into(), MultipartError::Truncated),
            (format!("--b\r\n{head}\r\n--b--\r\nx"), MultipartError::DataAfterClose),
            (format!("--b\r\n{head}\r\n--b--x"), MultipartError::DataAfterClose),
            (format!("--b\r\n{head}\r\n--b--\r\n\r\n"), MultipartError::DataAfterClose),
            (format!("--b\r\n{head}\r\n--b--\r\r"), MultipartError::DataAfterClose),
        ] {
            for chunk in [1, 2, 5, 1000] {
                assert_eq!(read("b", body.as_bytes(), chunk), Err(e), "{body:?} {chunk}");
            }
        }
        // Padding then CRLF after the close delimiter are fine.
        assert!(read("b", format!("--b\r\n{head}\r\n--b-- \t\r\n").as_bytes(), 1).is_ok());
    }

    #[test]
    fn test_reject_headers_too_large() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nxyz\r\n--b--\r\n";
        let head_len = body.len() - 5 - 12;
        let mut exact = vec![0u8; head_len];
        assert_eq!(read_with("b", body, 3, &mut exact).unwrap()[0].2, b"xyz");
        let mut short = vec![0u8; head_len - 1];
        assert_eq!(
            read_with("b", body, 3, &mut short),
            Err(MultipartError::HeadersTooLarge)
        );
    }

    #[test]
    fn test_truncated_at_every_length() {
        let files = load_files(b"conf", Some(b"ov"), b"zip\r\n--", Some(b"c"));
        let contents: [&[u8]; 4] = [b"conf", b"ov", b"zip\r\n--", b"c"];
        let (body, _) = frame("b0undary", &files, &contents);
        // The body without its final CRLF is complete; any shorter prefix is cut short.
        let complete = body.len() - 2;
        for len in 0..body.len() {
            for chunk in [1, 3, 1000] {
                let r = read("b0undary", &body[..len], chunk);
                if len >= complete {
                    assert!(r.is_ok());
                } else {
                    assert_eq!(r, Err(MultipartError::Truncated), "{len} {chunk}");
                }
            }
        }
    }

    #[test]
    fn test_reject_after_error_sticks() {
        let mut head = [0u8; 64];
        let mut reader = MultipartReader::new(Boundary::new("b").unwrap(), &mut head);
        let mut rest = &b"--b?"[..];
        assert_eq!(reader.next(&mut rest), Err(MultipartError::BadDelimiter));
        let mut more = &b"\r\n"[..];
        assert_eq!(reader.next(&mut more), Err(MultipartError::BadDelimiter));
        assert_eq!(reader.finish(), Err(MultipartError::BadDelimiter));
    }

    #[test]
    fn test_error_messages_are_one_line() {
        for text in [
            format!("{}", MultipartError::HeadersTooLarge),
            format!("{}", FramingError::BadName),
            format!("{}", BoundaryError::TooLong),
            format!("{}", LoadOrderError::Missing(LoadField::Bundle)),
        ] {
            assert!(!text.is_empty() && !text.contains('\n'), "{text}");
        }
    }
}
