//! A bounded reader for the HOCON subset that bundle.conf and settings.conf use (docs/PROTOCOL.md
//! §3, §4), after the Lightbend HOCON specification.
//!
//! No tree is built and nothing is allocated: [`Document::parse`] checks the whole text once
//! (syntax, [limits](MAX_DEPTH), refusals) and keeps the `&str`; every look-up
//! ([`Document::get`]) scans the text again from the start. That costs one pass over at most
//! [`MAX_TEXT_LEN`] bytes per look-up, which is fine for documents this small that are read a
//! handful of times. After `parse` returns `Ok`, look-ups cannot fail and never panic: they
//! answer `Option`.
//!
//! # What is read
//! - `#` and `//` comments; a root object with or without braces.
//! - Fields `key = value`, `key : value` and `key { ... }`, separated by newlines or commas (one
//!   trailing comma allowed, as in arrays).
//! - Dotted keys `a.b.c = 1`; each segment unquoted or quoted, and a quoted segment is one key
//!   even when it holds dots (`"a.b"`). A segment may join quoted and unquoted pieces (`a"b"`).
//! - Quoted strings with JSON escapes (surrogate pairs included), triple-quoted raw strings
//!   (`"""a""""` is `a"`, as in Scala), unquoted strings, and unquoted concatenation on one line:
//!   `a = foo  bar` reads `foo  bar`, the whitespace between the tokens kept as written.
//! - Numbers (JSON's grammar), `true`, `false`, `null`, arrays of any values, nested objects.
//! - Duplicate keys as HOCON merges them: a later value wins; when both are objects they merge;
//!   a later non-object replaces an object (`a { b = 1 }` then `a = 2` makes `a.b` absent) and a
//!   later object replaces a non-object.
//!
//! # What is refused
//! Each with its own error, with the line where it is:
//! - `include` at the start of a key ([`HoconError::Include`]; quote the key `"include"` to use
//!   it as a name), substitutions `${x}` and `${?x}` outside quoted strings
//!   ([`HoconError::Substitution`]; a `$` inside a quoted string is ordinary text).
//! - Valid HOCON this reader does not support ([`HoconError::Unsupported`], see [`Feature`]):
//!   `+=`, a quoted string, array or object concatenated with another value on the same line
//!   (`a = "x" y`, `a = [1] [2]`), whitespace inside a key (`a b = 1`), a triple-quoted key.
//! - A root that is an array.
//!
//! # Look-up
//! A path is dot-separated plain segments (no quoting: a segment cannot name a key that holds a
//! dot). A camelCase segment also finds its kebab-case spelling (`compatibilityVersion` finds
//! `compatibility-version`, `nrOfCpus` finds `nr-of-cpus`): to ConductR they are one key, so when
//! both occur the later one wins. A kebab-case or plain segment finds only itself. Objects inside
//! arrays are not reachable by path; [`Array::iter`] yields them as [`Value::Object`].

use core::fmt;

use crate::json;
use crate::status::Status;

/// The longest text [`Document::parse`] accepts: 64 KiB. A bundle.conf is a few hundred bytes.
pub const MAX_TEXT_LEN: usize = 64 * 1024;

/// The longest path to a value: key segments (each segment of a dotted key, each enclosing
/// field) plus array levels. `a.b { c = [1] }` puts `1` at depth 4 (`a`, `b`, `c`, the array's
/// element). Deeper input is refused with [`HoconError::TooDeep`].
pub const MAX_DEPTH: usize = 32;

/// Containers open at once: the root and one per depth level.
const FRAMES: usize = MAX_DEPTH + 1;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a text is not a HOCON document this reader accepts.
///
/// Lines count from 1. No error holds any of the text: settings.conf and a configuration's
/// bundle.conf hold secrets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum HoconError {
    /// Longer than [`MAX_TEXT_LEN`] bytes.
    TooLarge,
    /// The bytes are not UTF-8 ([`Document::parse_bytes`] only).
    InvalidUtf8,
    /// The root is an array: a document must be an object.
    RootNotObject,
    /// A character that cannot start or continue what is expected at that point.
    Syntax {
        /// Where.
        line: usize,
    },
    /// A key not followed by `=`, `:` or `{`.
    ExpectedSeparator {
        /// Where the key ends.
        line: usize,
    },
    /// A `=` or `:` with no value after it.
    MissingValue {
        /// Where the value is missing.
        line: usize,
    },
    /// A quoted string without its closing quote on the same line, or a triple-quoted string
    /// without its closing `"""`.
    UnterminatedString {
        /// Where the string opens.
        line: usize,
    },
    /// A `{` never closed.
    UnterminatedObject {
        /// Where the object opens.
        line: usize,
    },
    /// A `[` never closed.
    UnterminatedArray {
        /// Where the array opens.
        line: usize,
    },
    /// A backslash escape JSON does not define, or a lone surrogate, in a quoted string.
    InvalidEscape {
        /// Where the string opens.
        line: usize,
    },
    /// A control character (a tab included) written as is in a quoted string: JSON wants it
    /// escaped.
    ControlCharacter {
        /// Where.
        line: usize,
    },
    /// A value deeper than [`MAX_DEPTH`].
    TooDeep {
        /// Where the key or element that goes too deep is.
        line: usize,
    },
    /// An `include` (refused: a bundle.conf is read alone).
    Include {
        /// Where.
        line: usize,
    },
    /// A substitution `${...}` or `${?...}` outside a quoted string (refused: nothing is
    /// resolved).
    Substitution {
        /// Where.
        line: usize,
    },
    /// Valid HOCON this reader does not support.
    Unsupported {
        /// Where.
        line: usize,
        /// What.
        feature: Feature,
    },
}

/// HOCON this reader refuses although it is valid, in [`HoconError::Unsupported`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Feature {
    /// `key += value`.
    AppendField,
    /// A quoted string, array or object concatenated with another value on the same line
    /// (`a = "x" y`, `a = [1] [2]`, `a = {} {}`). Unquoted tokens do concatenate.
    Concatenation,
    /// Whitespace inside a key (`a b = 1`).
    KeyWhitespace,
    /// A key written as a triple-quoted string.
    TripleQuotedKey,
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AppendField => "`+=`",
            Self::Concatenation => {
                "a quoted string, array or object followed by another value on the same line \
                 (separate fields with a newline or comma)"
            }
            Self::KeyWhitespace => "whitespace inside a key (quote the key)",
            Self::TripleQuotedKey => "a triple-quoted key",
        })
    }
}

impl HoconError {
    /// The line the problem is on, when there is one.
    pub const fn line(self) -> Option<usize> {
        match self {
            Self::TooLarge | Self::InvalidUtf8 | Self::RootNotObject => None,
            Self::Syntax { line }
            | Self::ExpectedSeparator { line }
            | Self::MissingValue { line }
            | Self::UnterminatedString { line }
            | Self::UnterminatedObject { line }
            | Self::UnterminatedArray { line }
            | Self::InvalidEscape { line }
            | Self::ControlCharacter { line }
            | Self::TooDeep { line }
            | Self::Include { line }
            | Self::Substitution { line }
            | Self::Unsupported { line, .. } => Some(line),
        }
    }

    /// A document lockstep cannot read is well-formed input with meaningless contents: 422.
    pub const fn status(self) -> Status {
        Status::UnprocessableEntity
    }
}

impl fmt::Display for HoconError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line() {
            write!(f, "line {line}: ")?;
        }
        match self {
            Self::TooLarge => write!(f, "HOCON text longer than {MAX_TEXT_LEN} bytes"),
            Self::InvalidUtf8 => f.write_str("HOCON text is not valid UTF-8"),
            Self::RootNotObject => f.write_str("the root of a HOCON document must be an object"),
            Self::Syntax { .. } => f.write_str("invalid HOCON"),
            Self::ExpectedSeparator { .. } => f.write_str("expected `=`, `:` or `{` after a key"),
            Self::MissingValue { .. } => f.write_str("a key without a value"),
            Self::UnterminatedString { .. } => f.write_str("string never closed"),
            Self::UnterminatedObject { .. } => f.write_str("`{` never closed"),
            Self::UnterminatedArray { .. } => f.write_str("`[` never closed"),
            Self::InvalidEscape { .. } => f.write_str("invalid escape in a quoted string"),
            Self::ControlCharacter { .. } => {
                f.write_str("control character in a quoted string (escape it)")
            }
            Self::TooDeep { .. } => write!(f, "nested deeper than {MAX_DEPTH} levels"),
            Self::Include { .. } => {
                f.write_str("`include` is not supported (quote \"include\" to use it as a key)")
            }
            Self::Substitution { .. } => {
                f.write_str("substitutions `${...}` are not supported (quote the text)")
            }
            Self::Unsupported { feature, .. } => write!(f, "{feature} is not supported"),
        }
    }
}

impl core::error::Error for HoconError {}

/// Text that does not fit the buffer it was asked into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TooLong;

impl fmt::Display for TooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("text longer than its buffer")
    }
}

impl core::error::Error for TooLong {}

// ---------------------------------------------------------------------------------------------
// The document
// ---------------------------------------------------------------------------------------------

/// A validated HOCON document: the text, checked once, and look-ups that re-scan it.
///
/// Its `Debug` shows only the length: settings.conf and a configuration's bundle.conf hold
/// secrets.
#[derive(Clone, Copy)]
pub struct Document<'a> {
    text: &'a str,
}

impl fmt::Debug for Document<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Document")
            .field("len", &self.text.len())
            .finish_non_exhaustive()
    }
}

impl<'a> Document<'a> {
    /// Checks the whole of `text`: at most [`MAX_TEXT_LEN`] bytes, the supported syntax, at most
    /// [`MAX_DEPTH`] deep, nothing refused.
    pub fn parse(text: &'a str) -> Result<Self, HoconError> {
        if text.len() > MAX_TEXT_LEN {
            return Err(HoconError::TooLarge);
        }
        let mut reader = Reader::document(text);
        while reader.next()?.is_some() {}
        Ok(Self { text })
    }

    /// [`Document::parse`] for bytes, which must be UTF-8 (checked after the size).
    pub fn parse_bytes(bytes: &'a [u8]) -> Result<Self, HoconError> {
        if bytes.len() > MAX_TEXT_LEN {
            return Err(HoconError::TooLarge);
        }
        let text = core::str::from_utf8(bytes).map_err(|_| HoconError::InvalidUtf8)?;
        Self::parse(text)
    }

    /// The text, as given to `parse`.
    pub const fn as_str(&self) -> &'a str {
        self.text
    }

    /// The value at `path` (dot-separated plain segments; camelCase segments also find their
    /// kebab-case spelling), after HOCON's merging: [`Value::Object`] when the path holds an
    /// object, `None` when it holds nothing. Paths of more than [`MAX_DEPTH`] segments hold
    /// nothing.
    pub fn get(&self, path: &str) -> Option<Value<'a>> {
        if path.split('.').count() > MAX_DEPTH {
            return None;
        }
        let mut reader = Reader::document(self.text);
        let mut found = None;
        // The path length of each object being walked, every one on the way to `path`.
        let mut walking: heapless::Vec<usize, MAX_DEPTH> = heapless::Vec::new();
        // Every field's value is consumed right after its key, so this loop only meets keys and
        // the ends of the objects it walks into.
        while let Ok(Some(event)) = reader.next() {
            match event {
                Event::Key(key) => {
                    let walked = walking.last().copied().unwrap_or(0);
                    match relate(key, path, walked) {
                        Relation::Exact => found = reader.whole_value(),
                        Relation::Descendant => {
                            found = Some(Value::Object);
                            reader.whole_value();
                        }
                        Relation::Ancestor(len) => match reader.next() {
                            // Objects merge: walk into it.
                            Ok(Some(Event::Open(Container::Object, _))) => {
                                if walking.push(len).is_err() {
                                    return None;
                                }
                            }
                            // Anything else replaces the object that held `path`.
                            Ok(Some(Event::Open(Container::Array, _))) => {
                                found = None;
                                reader.skip_open();
                            }
                            _ => found = None,
                        },
                        Relation::Unrelated => {
                            reader.whole_value();
                        }
                    }
                }
                Event::Close(_) => {
                    walking.pop();
                }
                Event::Open(..) | Event::Scalar(_) => {}
            }
        }
        found
    }

    /// The text at `path`, unescaped into a buffer of `N` bytes. A number or boolean reads as
    /// written (`compatibilityVersion = 2` is the string `2`), as HOCON converts them. `None`
    /// when the path holds nothing, `null`, an array or an object ([`Document::get`] tells
    /// which).
    pub fn get_str<const N: usize>(
        &self,
        path: &str,
    ) -> Option<Result<heapless::String<N>, TooLong>> {
        self.get(path)?.as_text().map(|text| text.to_heapless())
    }

    /// The boolean at `path`: `true` or `false`, or a string HOCON converts (`true`, `yes`,
    /// `on`, `false`, `no`, `off`). `None` when absent or anything else.
    pub fn get_bool(&self, path: &str) -> Option<bool> {
        self.get(path)?.to_bool()
    }

    /// The non-negative integer at `path`: a number or a string of decimal digits only, that
    /// fits a `u64`. `None` when absent or anything else (`0.1`, `1e5`, `-3`, `384M`).
    pub fn get_u64(&self, path: &str) -> Option<u64> {
        self.get(path)?.to_u64()
    }
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// What a path or an array element holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Value<'a> {
    /// A string: quoted, triple-quoted, or unquoted tokens.
    String(Text<'a>),
    /// A number, as written (`0.1`, `402653184`, `-3`, `1e5`).
    Number(&'a str),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// An array.
    Array(Array<'a>),
    /// An object, merged from every place that defines it; look inside with a longer path.
    Object,
}

impl<'a> Value<'a> {
    /// The value as text, as HOCON converts it to a string: a string itself, a number as
    /// written, `true` or `false`. `None` for `null`, arrays and objects.
    pub fn as_text(&self) -> Option<Text<'a>> {
        match *self {
            Self::String(text) => Some(text),
            Self::Number(raw) => Some(Text::unquoted(raw)),
            Self::Bool(true) => Some(Text::unquoted("true")),
            Self::Bool(false) => Some(Text::unquoted("false")),
            Self::Null | Self::Array(_) | Self::Object => None,
        }
    }

    /// See [`Document::get_bool`].
    pub fn to_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            Self::String(text) => {
                if ["true", "yes", "on"].iter().any(|s| text.eq_str(s)) {
                    Some(true)
                } else if ["false", "no", "off"].iter().any(|s| text.eq_str(s)) {
                    Some(false)
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// See [`Document::get_u64`].
    pub fn to_u64(&self) -> Option<u64> {
        let text = match *self {
            Self::Number(raw) => Text::unquoted(raw),
            Self::String(text) => text,
            _ => return None,
        };
        let mut n: u64 = 0;
        let mut digits = 0usize;
        for c in text.chars() {
            let digit = c.to_digit(10)?;
            n = n.checked_mul(10)?.checked_add(u64::from(digit))?;
            digits = digits.saturating_add(1);
        }
        (digits > 0).then_some(n)
    }
}

/// How a [`Text`] is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TextKind {
    /// `"..."`, with JSON escapes.
    Quoted,
    /// `"""..."""`, raw.
    TripleQuoted,
    /// Unquoted tokens, raw (and the text of a number or boolean).
    Unquoted,
}

/// A string value as written, decoded on demand.
///
/// Two texts are equal when they decode to the same characters, however written.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Text<'a> {
    raw: &'a str,
    kind: TextKind,
}

impl<'a> Text<'a> {
    const fn unquoted(raw: &'a str) -> Self {
        Self {
            raw,
            kind: TextKind::Unquoted,
        }
    }

    /// The text between the quotes (or the unquoted tokens), escapes not decoded.
    pub const fn as_raw(&self) -> &'a str {
        self.raw
    }

    /// How it is written.
    pub const fn kind(&self) -> TextKind {
        self.kind
    }

    /// The characters, escapes decoded.
    pub fn chars(&self) -> Chars<'a> {
        Chars(match self.kind {
            TextKind::Quoted if self.raw.contains('\\') => {
                CharsInner::Escaped(json::Unescape::new(self.raw))
            }
            _ => CharsInner::Raw(self.raw.chars()),
        })
    }

    /// Whether the text decodes to exactly `s` (no buffer needed).
    pub fn eq_str(&self, s: &str) -> bool {
        match self.kind {
            TextKind::Quoted => json::unescaped_eq(self.raw, s),
            TextKind::TripleQuoted | TextKind::Unquoted => self.raw == s,
        }
    }

    /// The text, decoded, in a buffer of `N` bytes.
    pub fn to_heapless<const N: usize>(&self) -> Result<heapless::String<N>, TooLong> {
        let mut out = heapless::String::new();
        match self.kind {
            // The escapes were checked by `parse`: only the length can fail.
            TextKind::Quoted => json::unescape_into(self.raw, &mut out).map_err(|_| TooLong)?,
            TextKind::TripleQuoted | TextKind::Unquoted => {
                out.push_str(self.raw).map_err(|_| TooLong)?;
            }
        }
        Ok(out)
    }
}

impl PartialEq for Text<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.chars().eq(other.chars())
    }
}

impl Eq for Text<'_> {}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.chars().try_for_each(|c| fmt::Write::write_char(f, c))
    }
}

/// The characters of a [`Text`], escapes decoded.
#[derive(Clone, Debug)]
pub struct Chars<'a>(CharsInner<'a>);

#[derive(Clone, Debug)]
enum CharsInner<'a> {
    Raw(core::str::Chars<'a>),
    Escaped(json::Unescape<'a>),
}

impl Iterator for Chars<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        match &mut self.0 {
            CharsInner::Raw(chars) => chars.next(),
            // `parse` checked every escape; the iterator stops at an invalid one regardless.
            CharsInner::Escaped(unescape) => unescape.next()?.ok(),
        }
    }
}

/// An array, as written from `[` to `]`; its elements are read on demand.
///
/// Two arrays are equal when they are written identically.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Array<'a> {
    raw: &'a str,
}

impl<'a> Array<'a> {
    /// The elements in order. An object element yields [`Value::Object`].
    pub fn iter(&self) -> ArrayIter<'a> {
        ArrayIter {
            reader: Reader::array(self.raw),
        }
    }

    /// The number of elements (counted by reading them).
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The text from `[` to `]`.
    pub const fn as_raw(&self) -> &'a str {
        self.raw
    }
}

impl<'a> IntoIterator for Array<'a> {
    type Item = Value<'a>;
    type IntoIter = ArrayIter<'a>;

    fn into_iter(self) -> ArrayIter<'a> {
        self.iter()
    }
}

/// The elements of an [`Array`], read one at a time.
#[derive(Clone, Debug)]
pub struct ArrayIter<'a> {
    reader: Reader<'a>,
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        // The array's own `]` ends the reader: only its elements come out at this level.
        self.reader.whole_value()
    }
}

// ---------------------------------------------------------------------------------------------
// Look-up: a field's key against the wanted path
// ---------------------------------------------------------------------------------------------

enum Relation {
    /// The field is the path.
    Exact,
    /// The field is below the path: the path holds an object.
    Descendant,
    /// The field is above the path, at this path length.
    Ancestor(usize),
    /// Neither.
    Unrelated,
}

/// How the field `key`, in an object at path length `walked` on the way to `path`, relates to
/// `path`.
fn relate(key: &str, path: &str, walked: usize) -> Relation {
    let mut wanted = path.split('.').skip(walked);
    let mut len = walked;
    for segment in (KeySegments { rest: Some(key) }) {
        let Some(want) = wanted.next() else {
            return Relation::Descendant;
        };
        if !segment_matches(segment, want) {
            return Relation::Unrelated;
        }
        len = len.saturating_add(1);
    }
    if wanted.next().is_none() {
        Relation::Exact
    } else {
        Relation::Ancestor(len)
    }
}

/// Whether a key segment as written (`raw`, quotes and escapes included) names `want`, or its
/// kebab-case spelling when `want` is camelCase.
fn segment_matches(raw: &str, want: &str) -> bool {
    if SegmentChars::new(raw).eq(want.chars()) {
        return true;
    }
    let camel = want.starts_with(|c: char| c.is_ascii_lowercase())
        && want.bytes().any(|b| b.is_ascii_uppercase());
    camel
        && SegmentChars::new(raw).eq(want
            .chars()
            .flat_map(|c| {
                if c.is_ascii_uppercase() {
                    [Some('-'), Some(c.to_ascii_lowercase())]
                } else {
                    [None, Some(c)]
                }
            })
            .flatten())
}

/// The segments of a key as written, split at the dots outside quotes.
struct KeySegments<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for KeySegments<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        let mut quoted = false;
        let mut escaped = false;
        for (i, b) in rest.bytes().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                b'.' if !quoted => {
                    self.rest = rest.get(i.saturating_add(1)..);
                    return rest.get(..i);
                }
                _ => {}
            }
        }
        self.rest = None;
        Some(rest)
    }
}

/// The characters of one key segment as written: unquoted pieces as they are, quoted pieces
/// unescaped.
struct SegmentChars<'a> {
    rest: &'a str,
    quoted: Option<json::Unescape<'a>>,
}

impl<'a> SegmentChars<'a> {
    fn new(raw: &'a str) -> Self {
        Self {
            rest: raw,
            quoted: None,
        }
    }
}

impl Iterator for SegmentChars<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        loop {
            if let Some(quoted) = &mut self.quoted {
                match quoted.next() {
                    Some(Ok(c)) => return Some(c),
                    Some(Err(_)) => {
                        self.quoted = None;
                        self.rest = "";
                        return None;
                    }
                    None => self.quoted = None,
                }
            }
            let mut chars = self.rest.chars();
            let c = chars.next()?;
            self.rest = chars.as_str();
            if c != '"' {
                return Some(c);
            }
            let (contents, after) = split_quoted(self.rest);
            self.quoted = Some(json::Unescape::new(contents));
            self.rest = after;
        }
    }
}

/// A quoted string's contents and what follows its closing quote, `s` starting just after the
/// opening quote; all of `s` and nothing when it is not closed.
fn split_quoted(s: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            // `i` is where a character starts: a boundary of `s`.
            '"' => return (s.split_at(i).0, chars.as_str()),
            _ => {}
        }
    }
    (s, "")
}

// ---------------------------------------------------------------------------------------------
// The reader: one pass over the text, as events
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

#[derive(Clone, Copy, Debug)]
struct Frame {
    container: Container,
    /// `false` only for a root object written without braces.
    braced: bool,
    /// The path length of the container itself.
    depth: usize,
    /// Offset of its opening bracket, for errors.
    at: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Start,
    /// In an object, before a field or its end.
    Field,
    /// After a key, before `=`, `:` or `{`.
    AfterKey,
    /// Before a field's value.
    Value,
    /// In an array, before an element or its end.
    Element,
    /// After a value, before a separator or the end of its container.
    After,
    /// After the root's closing bracket.
    AfterRoot,
    Done,
}

/// What the reader meets. The root's own brackets are not events.
#[derive(Clone, Copy, Debug)]
enum Event<'a> {
    /// A field's key as written; its value follows.
    Key(&'a str),
    /// An object or array opens, at this offset.
    Open(Container, usize),
    /// The innermost open object or array closes, just before this offset.
    Close(usize),
    /// A value that is neither an object nor an array.
    Scalar(Value<'a>),
}

/// HOCON's whitespace, except the newline (which separates fields).
fn is_space(c: char) -> bool {
    c != '\n' && (c.is_whitespace() || matches!(c, '\u{1c}'..='\u{1f}' | '\u{feff}'))
}

/// Whether `c` may be part of an unquoted string (the `//` of a comment aside).
fn is_unquoted(c: char) -> bool {
    !is_space(c) && c != '\n' && !"$\"{}[]:=,+#`^?!@*&\\".contains(c)
}

/// Whether `s` is a number by JSON's grammar.
fn is_number(s: &str) -> bool {
    fn digits(mut b: &[u8]) -> (usize, &[u8]) {
        let mut n = 0usize;
        while let [digit, rest @ ..] = b
            && digit.is_ascii_digit()
        {
            n = n.saturating_add(1);
            b = rest;
        }
        (n, b)
    }
    let b = s.as_bytes();
    let b = b.strip_prefix(b"-").unwrap_or(b);
    let (n, rest) = digits(b);
    if n == 0 || (n > 1 && b.first() == Some(&b'0')) {
        return false;
    }
    let rest = match rest.strip_prefix(b".") {
        Some(fraction) => match digits(fraction) {
            (0, _) => return false,
            (_, rest) => rest,
        },
        None => rest,
    };
    match rest {
        [] => true,
        [b'e' | b'E', exponent @ ..] => {
            let exponent = match exponent {
                [b'+' | b'-', e @ ..] => e,
                e => e,
            };
            matches!(digits(exponent), (1.., []))
        }
        _ => false,
    }
}

#[derive(Clone, Debug)]
struct Reader<'a> {
    text: &'a str,
    /// What is left to read: always a suffix of `text`.
    rest: &'a str,
    frames: heapless::Vec<Frame, FRAMES>,
    state: State,
    /// The path length of the value the last key introduced.
    value_depth: usize,
}

impl<'a> Reader<'a> {
    fn document(text: &'a str) -> Self {
        Self {
            text,
            rest: text,
            frames: heapless::Vec::new(),
            state: State::Start,
            value_depth: 0,
        }
    }

    /// A reader of the elements of `raw`, an array from `[` to `]` already checked.
    fn array(raw: &'a str) -> Self {
        let mut reader = Self::document(raw);
        let root = Frame {
            container: Container::Array,
            braced: true,
            depth: 0,
            at: 0,
        };
        if let Some(elements) = raw.strip_prefix('[')
            && reader.frames.push(root).is_ok()
        {
            reader.rest = elements;
            reader.state = State::Element;
        } else {
            reader.state = State::Done;
        }
        reader
    }

    /// The offset of what is left to read.
    fn pos(&self) -> usize {
        self.text.len().saturating_sub(self.rest.len())
    }

    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn at(&self, s: &str) -> bool {
        self.rest.starts_with(s)
    }

    /// Moves past the character [`peek`](Self::peek) showed.
    fn skip_char(&mut self) {
        let mut chars = self.rest.chars();
        chars.next();
        self.rest = chars.as_str();
    }

    /// What was read from `from` (an earlier `rest`) to now.
    fn read_since(&self, from: &'a str) -> Result<&'a str, HoconError> {
        from.get(..from.len().saturating_sub(self.rest.len()))
            .ok_or_else(|| self.syntax())
    }

    fn line_at(&self, at: usize) -> usize {
        self.text
            .bytes()
            .take(at)
            .filter(|&b| b == b'\n')
            .count()
            .saturating_add(1)
    }

    fn line(&self) -> usize {
        self.line_at(self.pos())
    }

    fn syntax(&self) -> HoconError {
        HoconError::Syntax { line: self.line() }
    }

    fn at_comment(&self) -> bool {
        self.at("#") || self.at("//")
    }

    fn at_substitution(&self) -> bool {
        self.at("${")
    }

    fn skip_spaces(&mut self) {
        self.rest = self.rest.trim_start_matches(is_space);
    }

    /// Skips whitespace, newlines and comments; tells whether a newline was among them.
    fn skip_blank(&mut self) -> bool {
        let mut newline = false;
        loop {
            self.skip_spaces();
            if self.at_comment() {
                // To the end of the line (or of the text).
                self.rest = self.rest.trim_start_matches(|c| c != '\n');
            } else if self.at("\n") {
                self.skip_char();
                newline = true;
            } else {
                return newline;
            }
        }
    }

    /// What is left after the unquoted token starting here (all of it when there is none).
    fn after_unquoted(&self, stop_at_dot: bool) -> &'a str {
        let mut rest = self.rest;
        loop {
            let mut chars = rest.chars();
            let Some(c) = chars.next() else {
                return rest;
            };
            let comment = c == '/' && chars.as_str().starts_with('/');
            if !is_unquoted(c) || (stop_at_dot && c == '.') || comment {
                return rest;
            }
            rest = chars.as_str();
        }
    }

    fn top(&self) -> Result<Frame, HoconError> {
        self.frames.last().copied().ok_or_else(|| self.syntax())
    }

    /// The next event; `None` at the end of the document.
    fn next(&mut self) -> Result<Option<Event<'a>>, HoconError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Start => {
                    self.skip_blank();
                    match self.peek() {
                        None => self.state = State::Done,
                        Some('{') => {
                            self.open(Container::Object, 0)?;
                        }
                        Some('[') => return Err(HoconError::RootNotObject),
                        Some(_) => {
                            let root = Frame {
                                container: Container::Object,
                                braced: false,
                                depth: 0,
                                at: self.pos(),
                            };
                            self.frames.push(root).map_err(|_| self.syntax())?;
                            self.state = State::Field;
                        }
                    }
                }
                State::Field => {
                    self.skip_blank();
                    let frame = self.top()?;
                    match self.peek() {
                        None if frame.braced => {
                            return Err(HoconError::UnterminatedObject {
                                line: self.line_at(frame.at),
                            });
                        }
                        None => self.state = State::Done,
                        Some('}') if frame.braced => {
                            if let Some(event) = self.close() {
                                return Ok(Some(event));
                            }
                        }
                        Some(_) => return self.key(frame.depth).map(Some),
                    }
                }
                State::AfterKey => {
                    self.skip_spaces();
                    match self.peek() {
                        Some('=' | ':') => {
                            self.skip_char();
                            self.state = State::Value;
                        }
                        Some('{') => self.state = State::Value,
                        _ if self.at("+=") => return Err(self.unsupported(Feature::AppendField)),
                        Some(c) if c == '"' || (is_unquoted(c) && !self.at_comment()) => {
                            return Err(self.unsupported(Feature::KeyWhitespace));
                        }
                        _ => return Err(HoconError::ExpectedSeparator { line: self.line() }),
                    }
                }
                State::Value => {
                    self.skip_blank();
                    if matches!(self.peek(), None | Some(',' | '}' | ']')) {
                        return Err(HoconError::MissingValue { line: self.line() });
                    }
                    return self.value(self.value_depth).map(Some);
                }
                State::Element => {
                    self.skip_blank();
                    let frame = self.top()?;
                    match self.peek() {
                        None => {
                            return Err(HoconError::UnterminatedArray {
                                line: self.line_at(frame.at),
                            });
                        }
                        Some(']') => {
                            if let Some(event) = self.close() {
                                return Ok(Some(event));
                            }
                        }
                        Some(',') => return Err(self.syntax()),
                        Some(_) => {
                            let depth = frame.depth.saturating_add(1);
                            if depth > MAX_DEPTH {
                                return Err(HoconError::TooDeep { line: self.line() });
                            }
                            return self.value(depth).map(Some);
                        }
                    }
                }
                State::After => {
                    let newline = self.skip_blank();
                    let frame = self.top()?;
                    let next_item = match frame.container {
                        Container::Object => State::Field,
                        Container::Array => State::Element,
                    };
                    match (self.peek(), frame.container) {
                        (Some(','), _) => {
                            self.skip_char();
                            self.state = next_item;
                        }
                        (Some('}'), Container::Object) if frame.braced => {
                            if let Some(event) = self.close() {
                                return Ok(Some(event));
                            }
                        }
                        (Some(']'), Container::Array) => {
                            if let Some(event) = self.close() {
                                return Ok(Some(event));
                            }
                        }
                        (None, Container::Object) if !frame.braced => self.state = State::Done,
                        (None, Container::Object) => {
                            return Err(HoconError::UnterminatedObject {
                                line: self.line_at(frame.at),
                            });
                        }
                        (None, Container::Array) => {
                            return Err(HoconError::UnterminatedArray {
                                line: self.line_at(frame.at),
                            });
                        }
                        (Some(_), _) if newline => self.state = next_item,
                        _ if self.at_substitution() => {
                            return Err(HoconError::Substitution { line: self.line() });
                        }
                        (Some(c), _) if matches!(c, '"' | '{' | '[') || is_unquoted(c) => {
                            return Err(self.unsupported(Feature::Concatenation));
                        }
                        _ => return Err(self.syntax()),
                    }
                }
                State::AfterRoot => {
                    self.skip_blank();
                    if self.peek().is_some() {
                        return Err(self.syntax());
                    }
                    self.state = State::Done;
                }
            }
        }
    }

    fn unsupported(&self, feature: Feature) -> HoconError {
        HoconError::Unsupported {
            line: self.line(),
            feature,
        }
    }

    /// Opens an object or array whose path length is `depth`, at its bracket.
    fn open(&mut self, container: Container, depth: usize) -> Result<Event<'a>, HoconError> {
        let at = self.pos();
        let frame = Frame {
            container,
            braced: true,
            depth,
            at,
        };
        // Each frame but the root is at least one level deeper than its parent, and no level
        // exceeds MAX_DEPTH, so this cannot fail.
        self.frames.push(frame).map_err(|_| HoconError::TooDeep {
            line: self.line_at(at),
        })?;
        self.skip_char();
        self.state = match container {
            Container::Object => State::Field,
            Container::Array => State::Element,
        };
        Ok(Event::Open(container, at))
    }

    /// Closes the innermost container at its bracket; no event for the root.
    fn close(&mut self) -> Option<Event<'a>> {
        self.skip_char();
        self.frames.pop();
        if self.frames.is_empty() {
            self.state = State::AfterRoot;
            None
        } else {
            self.state = State::After;
            Some(Event::Close(self.pos()))
        }
    }

    /// A field's key, in an object at path length `depth`.
    fn key(&mut self, depth: usize) -> Result<Event<'a>, HoconError> {
        let start = self.rest;
        let start_pos = self.pos();
        if self.at_substitution() {
            return Err(HoconError::Substitution { line: self.line() });
        }
        let token = start.len().saturating_sub(self.after_unquoted(false).len());
        if start.get(..token) == Some("include") {
            return Err(HoconError::Include { line: self.line() });
        }
        let mut value_depth = depth;
        loop {
            let segment = self.rest.len();
            loop {
                if self.at("\"\"\"") {
                    return Err(self.unsupported(Feature::TripleQuotedKey));
                } else if self.at("\"") {
                    self.quoted()?;
                } else {
                    let after = self.after_unquoted(true);
                    if after.len() == self.rest.len() {
                        break;
                    }
                    self.rest = after;
                }
            }
            if self.rest.len() == segment {
                // Nothing that can be a key, or an empty segment (`a..b`, `.a`, `a.`).
                return Err(self.syntax());
            }
            value_depth = value_depth.saturating_add(1);
            if value_depth > MAX_DEPTH {
                return Err(HoconError::TooDeep {
                    line: self.line_at(start_pos),
                });
            }
            if !self.at(".") {
                break;
            }
            self.skip_char();
        }
        let key = self.read_since(start)?;
        self.value_depth = value_depth;
        self.state = State::AfterKey;
        Ok(Event::Key(key))
    }

    /// A value at path length `depth`, the cursor on its first character.
    fn value(&mut self, depth: usize) -> Result<Event<'a>, HoconError> {
        if self.at("{") {
            return self.open(Container::Object, depth);
        }
        if self.at("[") {
            return self.open(Container::Array, depth);
        }
        if self.at_substitution() {
            return Err(HoconError::Substitution { line: self.line() });
        }
        let value = if self.at("\"\"\"") {
            Value::String(Text {
                raw: self.triple_quoted()?,
                kind: TextKind::TripleQuoted,
            })
        } else if self.at("\"") {
            Value::String(Text {
                raw: self.quoted()?,
                kind: TextKind::Quoted,
            })
        } else {
            let start = self.rest;
            let mut end = self.after_unquoted(false);
            if end.len() == start.len() {
                return Err(self.syntax());
            }
            // Unquoted tokens separated by spaces on one line are one string.
            loop {
                self.rest = end;
                self.skip_spaces();
                let next = self.after_unquoted(false);
                if next.len() == self.rest.len() {
                    break;
                }
                end = next;
            }
            self.rest = end;
            let raw = self.read_since(start)?;
            match raw {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ if is_number(raw) => Value::Number(raw),
                _ => Value::String(Text::unquoted(raw)),
            }
        };
        self.state = State::After;
        Ok(Event::Scalar(value))
    }

    /// A `"..."` string: checks it and returns its contents, escapes not decoded.
    fn quoted(&mut self) -> Result<&'a str, HoconError> {
        let open = self.pos();
        let contents = self.rest.strip_prefix('"').ok_or_else(|| self.syntax())?;
        let mut chars = contents.char_indices();
        let end = loop {
            match chars.next() {
                None | Some((_, '\n')) => {
                    return Err(HoconError::UnterminatedString {
                        line: self.line_at(open),
                    });
                }
                Some((i, '"')) => break i,
                // The escaped character is not the end, whatever it is.
                Some((_, '\\')) => {
                    chars.next();
                }
                Some((i, '\0'..='\u{1f}')) => {
                    return Err(HoconError::ControlCharacter {
                        line: self.line_at(open.saturating_add(1).saturating_add(i)),
                    });
                }
                Some(_) => {}
            }
        };
        let raw = contents.get(..end).ok_or_else(|| self.syntax())?;
        if json::Unescape::new(raw).any(|c| c.is_err()) {
            return Err(HoconError::InvalidEscape {
                line: self.line_at(open),
            });
        }
        self.rest = chars.as_str();
        Ok(raw)
    }

    /// A `"""..."""` string: its contents, raw. Quotes beyond the closing three belong to it.
    fn triple_quoted(&mut self) -> Result<&'a str, HoconError> {
        let open = self.pos();
        let contents = self
            .rest
            .strip_prefix("\"\"\"")
            .ok_or_else(|| self.syntax())?;
        let Some(mut end) = contents.find("\"\"\"") else {
            return Err(HoconError::UnterminatedString {
                line: self.line_at(open),
            });
        };
        while contents.as_bytes().get(end.saturating_add(3)) == Some(&b'"') {
            end = end.saturating_add(1);
        }
        let raw = contents.get(..end).ok_or_else(|| self.syntax())?;
        self.rest = contents
            .get(end.saturating_add(3)..)
            .ok_or_else(|| self.syntax())?;
        Ok(raw)
    }

    /// Reads one whole value where one starts (after a key, or an array's next element):
    /// objects and arrays are read to their end. `None` at the end of an array (or on an error,
    /// which a checked document does not have).
    fn whole_value(&mut self) -> Option<Value<'a>> {
        match self.next() {
            Ok(Some(Event::Scalar(value))) => Some(value),
            Ok(Some(Event::Open(Container::Object, _))) => {
                self.skip_open()?;
                Some(Value::Object)
            }
            Ok(Some(Event::Open(Container::Array, at))) => {
                let end = self.skip_open()?;
                let raw = self.text.get(at..end)?;
                Some(Value::Array(Array { raw }))
            }
            _ => None,
        }
    }

    /// Reads to the end of the object or array just opened; the offset after its bracket.
    fn skip_open(&mut self) -> Option<usize> {
        let mut open = 1usize;
        loop {
            match self.next() {
                Ok(Some(Event::Open(..))) => open = open.saturating_add(1),
                Ok(Some(Event::Close(end))) => {
                    open = open.saturating_sub(1);
                    if open == 0 {
                        return Some(end);
                    }
                }
                Ok(Some(_)) => {}
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::string::{String, ToString};
    use std::vec;
    use std::vec::Vec;

    use super::*;

    fn doc(text: &str) -> Document<'_> {
        Document::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn err(text: &str) -> HoconError {
        match Document::parse(text) {
            Ok(_) => panic!("{text:?} accepted"),
            Err(e) => e,
        }
    }

    fn string(d: &Document<'_>, path: &str) -> String {
        let text = d.get_str::<256>(path);
        text.unwrap_or_else(|| panic!("{path}: no text"))
            .unwrap()
            .as_str()
            .to_string()
    }

    fn number<'a>(d: &Document<'a>, path: &str) -> &'a str {
        match d.get(path) {
            Some(Value::Number(n)) => n,
            other => panic!("{path}: {other:?}"),
        }
    }

    fn strings(value: Option<Value<'_>>) -> Vec<String> {
        let Some(Value::Array(array)) = value else {
            panic!("not an array: {value:?}");
        };
        array
            .iter()
            .map(|v| v.as_text().unwrap().to_string())
            .collect()
    }

    // docs/PROTOCOL.md §4, verbatim.
    const BUNDLE_CONF: &str = r#"version              = "1"
name                 = "visualizer"
compatibilityVersion = "2"
system               = "visualizer"
systemVersion        = "2"
nrOfCpus             = 0.1
memory               = 402653184
diskSpace            = 200000000
roles                = ["web"]
tags                 = ["2.1.0"]
annotations          = {}
components = {
  visualizer = {
    description      = "visualizer"
    file-system-type = "universal"
    start-command    = ["visualizer/bin/visualizer", "-Dhttp.port=$VISUALIZER_BIND_PORT"]
    endpoints = {
      "visualizer" = {
        bind-protocol = "http"
        bind-port     = 0
        services      = ["http://:9999/visualizer"]
      }
    }
  }
}
"#;

    fn check_bundle_conf(d: &Document<'_>) {
        assert_eq!(string(d, "version"), "1");
        assert_eq!(string(d, "name"), "visualizer");
        assert_eq!(string(d, "compatibilityVersion"), "2");
        assert_eq!(string(d, "system"), "visualizer");
        assert_eq!(string(d, "systemVersion"), "2");
        assert_eq!(number(d, "nrOfCpus"), "0.1");
        assert_eq!(d.get_u64("nrOfCpus"), None);
        assert_eq!(number(d, "memory"), "402653184");
        assert_eq!(d.get_u64("memory"), Some(402_653_184));
        assert_eq!(d.get_u64("diskSpace"), Some(200_000_000));
        assert_eq!(strings(d.get("roles")), ["web"]);
        assert_eq!(strings(d.get("tags")), ["2.1.0"]);
        assert_eq!(d.get("annotations"), Some(Value::Object));
        assert_eq!(d.get("components"), Some(Value::Object));
        assert_eq!(d.get("components.visualizer"), Some(Value::Object));
        assert_eq!(
            string(d, "components.visualizer.file-system-type"),
            "universal"
        );
        assert_eq!(
            strings(d.get("components.visualizer.start-command")),
            [
                "visualizer/bin/visualizer",
                "-Dhttp.port=$VISUALIZER_BIND_PORT"
            ]
        );
        assert_eq!(
            strings(d.get("components.visualizer.endpoints.visualizer.services")),
            ["http://:9999/visualizer"]
        );
        assert_eq!(
            d.get_u64("components.visualizer.endpoints.visualizer.bind-port"),
            Some(0)
        );
        assert_eq!(d.get("annotations.x"), None);
        assert_eq!(d.get("components.other"), None);
        assert_eq!(d.get("missing"), None);
        assert_eq!(d.get("name.x"), None);
    }

    #[test]
    fn test_parse_bundle_conf() {
        // docs/PROTOCOL.md §4.
        check_bundle_conf(&doc(BUNDLE_CONF));
    }

    #[test]
    fn test_parse_bundle_conf_kebab() {
        // docs/PROTOCOL.md §4 with the `compatibility-version` alias it names.
        let kebab = BUNDLE_CONF.replace("compatibilityVersion", "compatibility-version");
        let d = doc(&kebab);
        check_bundle_conf(&d);
        assert_eq!(string(&d, "compatibility-version"), "2");
        // The same with CRLF line ends and a braced root.
        let crlf = std::format!("{{\r\n{}}}\r\n", kebab.replace('\n', "\r\n"));
        check_bundle_conf(&doc(&crlf));
    }

    #[test]
    fn test_parse_settings_conf() {
        // docs/PROTOCOL.md §3, nested form, then the dotted form it calls equivalent.
        let nested =
            "conductr {\n  continuous-delivery {\n    bintray-webhook-secret = bt-secret\n  }\n}\n";
        let dotted = "conductr.continuous-delivery.bintray-webhook-secret = \"bt-secret\"\n";
        for text in [nested, dotted] {
            let d = doc(text);
            assert_eq!(
                string(&d, "conductr.continuous-delivery.bintray-webhook-secret"),
                "bt-secret"
            );
            assert_eq!(d.get("conductr.continuous-delivery"), Some(Value::Object));
            assert_eq!(d.get("conductr.bintray-webhook-secret"), None);
        }
    }

    #[test]
    fn test_lookup_camel_finds_kebab() {
        // docs/PROTOCOL.md §4: `compatibilityVersion` (alias `compatibility-version`); the later
        // wins.
        let d = doc(
            "compatibility-version = 1\ncompatibilityVersion = 2\nnr-of-cpus = 1\ndisk-space = 3",
        );
        assert_eq!(string(&d, "compatibilityVersion"), "2");
        assert_eq!(string(&d, "compatibility-version"), "1");
        assert_eq!(number(&d, "nrOfCpus"), "1");
        assert_eq!(number(&d, "diskSpace"), "3");
        let d = doc("compatibilityVersion = 2\ncompatibility-version = 1");
        assert_eq!(string(&d, "compatibilityVersion"), "1");
        // Kebab and plain segments find only themselves.
        let d = doc("diskSpace = 3\nNrOfCpus = 1");
        assert_eq!(d.get("disk-space"), None);
        assert_eq!(d.get("diskspace"), None);
        assert_eq!(d.get("nr-of-cpus"), None);
        assert_eq!(number(&d, "NrOfCpus"), "1");
        // In every segment of a path.
        let d = doc("a-b { c-d = 1 }");
        assert_eq!(number(&d, "aB.cD"), "1");
    }

    #[test]
    fn test_parse_comments() {
        // Lightbend HOCON spec, "Comments": `#` and `//`, anywhere, to the end of the line.
        let d = doc(
            "# head\n// also\na = 1 # after\nb = \"x\" // after\nc { # open\n d = 2 // in\n} # end\ne = [1, # in array\n 2]\nf = true # no newline at the end",
        );
        assert_eq!(number(&d, "a"), "1");
        assert_eq!(string(&d, "b"), "x");
        assert_eq!(number(&d, "c.d"), "2");
        assert_eq!(
            d.get("e")
                .map(|v| matches!(v, Value::Array(a) if a.len() == 2)),
            Some(true)
        );
        assert_eq!(d.get_bool("f"), Some(true));
        assert_eq!(string(&doc("a = b//c"), "a"), "b");
        assert_eq!(string(&doc("a = b/c"), "a"), "b/c");
        assert_eq!(
            string(&doc("a = \"#not // a comment\""), "a"),
            "#not // a comment"
        );
        // Only comments: an empty document.
        assert_eq!(doc("# nothing\n// here").get("a"), None);
        assert_eq!(doc("a = 1 //").get_u64("a"), Some(1));
    }

    #[test]
    fn test_parse_separators() {
        // Lightbend HOCON spec, "Omit root braces", "Key-value separator", "Commas".
        for text in [
            "a = 1\nb = 2",
            "a : 1\nb : 2",
            "a=1,b=2",
            "a:1, b:2,",
            "{a = 1, b = 2}",
            " \n{ a = 1\n b = 2 }\n\n",
            "{\"a\": 1, \"b\": 2}",
            "a = 1\n\n\n,b = 2",
        ] {
            let d = doc(text);
            assert_eq!(d.get_u64("a"), Some(1), "{text:?}");
            assert_eq!(d.get_u64("b"), Some(2), "{text:?}");
        }
        // `key { }` without a separator, and with one.
        for text in ["a { b = 1 }", "a={b=1}", "a : { b : 1 }", "a\t{\tb = 1\t}"] {
            assert_eq!(doc(text).get_u64("a.b"), Some(1), "{text:?}");
        }
        // The value may start on the next line.
        assert_eq!(doc("a =\n  1").get_u64("a"), Some(1));
    }

    #[test]
    fn test_parse_arrays() {
        // Lightbend HOCON spec, "Commas" and "Arrays without commas or newlines".
        for text in [
            "a = [1, 2, 3]",
            "a = [1, 2, 3,]",
            "a = [1\n2\n3]",
            "a = [\n  1,\n  2\n  3\n]",
            "a = [1\n,2\n,3]",
        ] {
            let d = doc(text);
            let Some(Value::Array(array)) = d.get("a") else {
                panic!("{text:?}");
            };
            let n: Vec<_> = array.iter().filter_map(|v| v.to_u64()).collect();
            assert_eq!(n, [1, 2, 3], "{text:?}");
            assert_eq!(array.len(), 3);
        }
        assert_eq!(strings(doc("a = [ 1 2 3 4 ]").get("a")), ["1 2 3 4"]);
        let d = doc("a = [[1, [2]], {b = 1}, [], null, true, \"x\", y z]");
        let Some(Value::Array(array)) = d.get("a") else {
            panic!()
        };
        let items: Vec<_> = array.iter().collect();
        assert_eq!(items.len(), 7);
        assert!(
            matches!(items[0], Value::Array(inner) if inner.as_raw() == "[1, [2]]" && inner.len() == 2)
        );
        assert_eq!(items[1], Value::Object);
        assert!(matches!(items[2], Value::Array(inner) if inner.is_empty()));
        assert_eq!(items[3], Value::Null);
        assert_eq!(items[4], Value::Bool(true));
        assert!(items[5].as_text().unwrap().eq_str("x"));
        assert!(items[6].as_text().unwrap().eq_str("y z"));
        let empty = doc("a = []");
        assert!(
            matches!(empty.get("a"), Some(Value::Array(a)) if a.is_empty() && a.iter().count() == 0)
        );
        // Objects inside arrays are not reachable by path.
        assert_eq!(d.get("a.b"), None);
    }

    #[test]
    fn test_reject_commas() {
        // Lightbend HOCON spec, "Commas": invalid examples.
        for text in [
            "a = [1,2,3,,]",
            "a = [,1,2,3]",
            "a = [1,,2,3]",
            "a = [,]",
            "{a = 1,,}",
            "{,a = 1}",
            ",a = 1",
            "a = 1,,b = 2",
            "a = 1\n,\n,b = 2",
        ] {
            assert!(matches!(err(text), HoconError::Syntax { .. }), "{text:?}");
        }
    }

    #[test]
    fn test_lookup_duplicates() {
        // Lightbend HOCON spec, "Duplicate keys and object merging".
        assert_eq!(doc("a = 1\na = 2").get_u64("a"), Some(2));
        let merged = doc("foo { a = 42 }\nfoo { b = 43 }");
        assert_eq!(merged.get_u64("foo.a"), Some(42));
        assert_eq!(merged.get_u64("foo.b"), Some(43));
        // The null in between prevents the merge.
        let reset = doc("foo { a = 42 }\nfoo = null\nfoo { b = 43 }");
        assert_eq!(reset.get("foo.a"), None);
        assert_eq!(reset.get_u64("foo.b"), Some(43));
        assert_eq!(reset.get("foo"), Some(Value::Object));
        // A later scalar replaces an object; a later object replaces a scalar.
        let scalar = doc("a { b = 1 }\na = 2");
        assert_eq!(scalar.get("a.b"), None);
        assert_eq!(scalar.get_u64("a"), Some(2));
        let object = doc("a = 2\na { b = 1 }");
        assert_eq!(object.get("a"), Some(Value::Object));
        assert_eq!(object.get_u64("a.b"), Some(1));
        // An array replaces an object too, and is replaced in turn.
        let array = doc("a { b = 1 }\na = [1]\n");
        assert!(matches!(array.get("a"), Some(Value::Array(_))));
        assert_eq!(array.get("a.b"), None);
        assert_eq!(doc("a = [1]\na.b = 1").get_u64("a.b"), Some(1));
        // Deeper merges.
        let deep = doc("a { b { c = 1, d = 2 } }\na { b { c = 3 } }\na.b.e = 4");
        assert_eq!(deep.get_u64("a.b.c"), Some(3));
        assert_eq!(deep.get_u64("a.b.d"), Some(2));
        assert_eq!(deep.get_u64("a.b.e"), Some(4));
    }

    #[test]
    fn test_lookup_dotted_and_nested() {
        // Lightbend HOCON spec, "Paths as keys": `foo.bar : 42` is `foo { bar : 42 }`.
        let d = doc("a.b = 1\na { c = 2 }\na.d.e = 3\nx { y.z = 4 }");
        assert_eq!(d.get_u64("a.b"), Some(1));
        assert_eq!(d.get_u64("a.c"), Some(2));
        assert_eq!(d.get_u64("a.d.e"), Some(3));
        assert_eq!(d.get("a.d"), Some(Value::Object));
        assert_eq!(d.get_u64("x.y.z"), Some(4));
        assert_eq!(d.get("a"), Some(Value::Object));
        assert_eq!(d.get("a.b.c"), None);
        assert_eq!(d.get("b"), None);
        // `3.14 : 42` is `"3" : { "14" : 42 }`; `10.0foo` splits too.
        let n = doc("3.14 : 42\n10.0foo = 1");
        assert_eq!(n.get_u64("3.14"), Some(42));
        assert_eq!(n.get_u64("10.0foo"), Some(1));
        assert_eq!(n.get("3"), Some(Value::Object));
    }

    #[test]
    fn test_lookup_quoted_keys() {
        // Lightbend HOCON spec, "Path expressions": `foo.bar."hello.world"` is three elements.
        let d =
            doc("foo.bar.\"hello.world\" = 1\n\"a.b\" = 2\na\"c\" = 3\n\"\" = 4\n\"\\u0071\" = 5");
        assert_eq!(d.get("foo.bar.hello.world"), None);
        assert_eq!(d.get("foo.bar"), Some(Value::Object));
        assert_eq!(d.get("a.b"), None);
        assert_eq!(d.get("a"), None);
        assert_eq!(d.get_u64("ac"), Some(3));
        assert_eq!(d.get_u64(""), Some(4));
        assert_eq!(d.get_u64("q"), Some(5));
        // A quoted key with a dot is one segment: reached by the relation of its parent.
        let Some(Value::Object) = d.get("foo.bar") else {
            panic!()
        };
        assert!(matches!(
            relate("foo.bar.\"hello.world\"", "foo.bar", 0),
            Relation::Descendant
        ));
        assert!(matches!(
            relate("foo.bar.\"hello.world\"", "foo.bar.hello", 0),
            Relation::Unrelated
        ));
        // `"include"` is an ordinary key when quoted; `include.x` and `includes` too.
        let d = doc("\"include\" = 1\ninclude.x = 2\nincludes = 3");
        assert_eq!(d.get("include"), Some(Value::Object));
        assert_eq!(d.get_u64("include.x"), Some(2));
        assert_eq!(doc("\"include\" = 1").get_u64("include"), Some(1));
        assert_eq!(d.get_u64("includes"), Some(3));
    }

    #[test]
    fn test_parse_escapes() {
        // RFC 8259 §7 escapes, which HOCON quoted strings use.
        let d = doc(r#"a = "q\"b\\s\/n\nt\tu\u00e9\ud83d\ude00""#);
        assert_eq!(string(&d, "a"), "q\"b\\s/n\nt\tué😀");
        let Some(Value::String(text)) = d.get("a") else {
            panic!()
        };
        assert_eq!(text.kind(), TextKind::Quoted);
        assert_eq!(text.as_raw(), r#"q\"b\\s\/n\nt\tu\u00e9\ud83d\ude00"#);
        assert!(text.eq_str("q\"b\\s/n\nt\tué😀"));
        assert!(!text.eq_str("q"));
        assert_eq!(text.chars().count(), 13);
        assert_eq!(text.to_string(), "q\"b\\s/n\nt\tué😀");
        assert_eq!(text.to_heapless::<8>(), Err(TooLong));
        assert_eq!(
            text,
            Text {
                raw: "q\"b\\s/n\nt\tué😀",
                kind: TextKind::TripleQuoted
            }
        );
        for (bad, line) in [
            ("a = \"\\x\"", 1),
            ("a = 1\na = \"\\ud800\"", 2),
            ("a = \"\\udc00\"", 1),
            ("a = \"\\ud800\\u0041\"", 1),
            ("a = \"\\u12\"", 1),
            ("a = \"\\u12G4\"", 1),
        ] {
            assert_eq!(err(bad), HoconError::InvalidEscape { line }, "{bad:?}");
        }
        assert_eq!(
            err("a = \"tab\there\""),
            HoconError::ControlCharacter { line: 1 }
        );
        // In keys too.
        assert_eq!(err("\"\\x\" = 1"), HoconError::InvalidEscape { line: 1 });
    }

    #[test]
    fn test_parse_triple_quotes() {
        // Lightbend HOCON spec, "Multi-line strings": raw, and `"""foo""""` is `foo"`.
        let d = doc(
            "a = \"\"\"line 1\n  \"quoted\" \\n ${x}\nend\"\"\"\nb = \"\"\"foo\"\"\"\"\nc = \"\"\"\"\"\"\nd = \"\"",
        );
        assert_eq!(string(&d, "a"), "line 1\n  \"quoted\" \\n ${x}\nend");
        assert_eq!(string(&d, "b"), "foo\"");
        assert_eq!(string(&d, "c"), "");
        assert_eq!(string(&d, "d"), "");
        let Some(Value::String(text)) = d.get("a") else {
            panic!()
        };
        assert_eq!(text.kind(), TextKind::TripleQuoted);
        assert_eq!(
            err("a = 1\nb = \"\"\"never\nclosed\"\""),
            HoconError::UnterminatedString { line: 2 }
        );
        assert_eq!(
            err("\"\"\"k\"\"\" = 1"),
            HoconError::Unsupported {
                line: 1,
                feature: Feature::TripleQuotedKey
            }
        );
    }

    #[test]
    fn test_parse_unquoted() {
        // Lightbend HOCON spec, "Unquoted strings" and "String value concatenation".
        let d =
            doc("a = foo bar\nb = foo   bar  \nc = 1 2\nd = true false\ne = truefoo\nf = 10.0bar");
        assert_eq!(string(&d, "a"), "foo bar");
        assert_eq!(string(&d, "b"), "foo   bar");
        assert!(matches!(d.get("c"), Some(Value::String(t)) if t.eq_str("1 2")));
        assert!(matches!(d.get("d"), Some(Value::String(t)) if t.eq_str("true false")));
        assert_eq!(string(&d, "e"), "truefoo");
        assert_eq!(string(&d, "f"), "10.0bar");
        assert!(matches!(err("g = -Dx=1"), HoconError::Syntax { line: 1 }));
        let d = doc(
            "n = 0.1\nm = -3\ne = 1e5\nE = 2.5E-3\nz = 0\nl = 007\nt = true\nf = false\nu = null\ns = bt-secret\nx = .5",
        );
        assert_eq!(number(&d, "n"), "0.1");
        assert_eq!(number(&d, "m"), "-3");
        assert_eq!(number(&d, "e"), "1e5");
        assert_eq!(number(&d, "E"), "2.5E-3");
        assert_eq!(number(&d, "z"), "0");
        assert!(matches!(d.get("l"), Some(Value::String(_))));
        assert_eq!(d.get("t"), Some(Value::Bool(true)));
        assert_eq!(d.get("f"), Some(Value::Bool(false)));
        assert_eq!(d.get("u"), Some(Value::Null));
        assert_eq!(d.get_str::<8>("u"), None);
        assert_eq!(string(&d, "s"), "bt-secret");
        assert_eq!(string(&d, "x"), ".5");
        // Unicode whitespace separates tokens and is trimmed.
        assert_eq!(
            string(&doc("a =\u{a0}x\u{2003}y\u{feff}"), "a"),
            "x\u{2003}y"
        );
    }

    #[test]
    fn test_lookup_conversions() {
        // Lightbend HOCON spec, "Automatic type conversions".
        let d = doc(
            "v = 1\nb = yes\nc = \"off\"\nn = \"402653184\"\nbig = 18446744073709551616\nmax = 18446744073709551615\nneg = -1\nt = true\nnull = null\narr = [1]\nobj {}",
        );
        assert_eq!(string(&d, "v"), "1");
        assert_eq!(string(&d, "t"), "true");
        assert_eq!(d.get_bool("b"), Some(true));
        assert_eq!(d.get_bool("c"), Some(false));
        assert_eq!(d.get_bool("v"), None);
        assert_eq!(d.get_u64("n"), Some(402_653_184));
        assert_eq!(d.get_u64("big"), None);
        assert_eq!(d.get_u64("max"), Some(u64::MAX));
        assert_eq!(d.get_u64("neg"), None);
        assert_eq!(d.get_u64("t"), None);
        for absent in ["null", "arr", "obj", "nothing"] {
            assert_eq!(d.get_str::<8>(absent), None, "{absent}");
        }
        assert_eq!(d.get_str::<3>("n"), Some(Err(TooLong)));
        assert_eq!(d.get_u64("\"n\""), None);
    }

    #[test]
    fn test_reject_concatenation() {
        // Valid HOCON (spec, "Value concatenation") that this reader refuses.
        for (text, line) in [
            ("a = \"x\" y", 1),
            ("a = x \"y\"", 1),
            ("a = \"x\"\"y\"", 1),
            ("b = 1\na = [1] [2]", 2),
            ("a = {} {}", 1),
            ("a = { b = 1 } c = 2", 1),
            ("a = [x \"y\"]", 1),
        ] {
            assert_eq!(
                err(text),
                HoconError::Unsupported {
                    line,
                    feature: Feature::Concatenation
                },
                "{text:?}"
            );
        }
    }

    #[test]
    fn test_reject_include_and_substitutions() {
        // Lightbend HOCON spec, "Includes" and "Substitutions".
        for (text, line) in [
            ("include \"other.conf\"", 1),
            ("a = 1\ninclude required(\"x\")", 2),
            ("a { include \"x\" }", 1),
            ("include\"x\"", 1),
            ("include = 1", 1),
        ] {
            assert_eq!(err(text), HoconError::Include { line }, "{text:?}");
        }
        for (text, line) in [
            ("a = ${x}", 1),
            ("a = ${?x}", 1),
            ("a = foo${x}", 1),
            ("a = foo ${x}", 1),
            ("a = \"foo\" ${x}", 1),
            ("a = 1\nb = [1, ${x}]", 2),
            ("${x} = 1", 1),
            ("a = [\n${?X}\n]", 2),
        ] {
            assert_eq!(err(text), HoconError::Substitution { line }, "{text:?}");
        }
        // docs/PROTOCOL.md §4: a `$` inside a quoted string is text.
        let d = doc("a = \"-Dhttp.port=$VISUALIZER_BIND_PORT ${x} ${?y}\"");
        assert_eq!(
            string(&d, "a"),
            "-Dhttp.port=$VISUALIZER_BIND_PORT ${x} ${?y}"
        );
        // A `$` alone is no substitution, and not an unquoted character either.
        assert_eq!(err("a = $x"), HoconError::Syntax { line: 1 });
    }

    #[test]
    fn test_reject_unsupported() {
        // Lightbend HOCON spec, "The `+=` field separator" and "Paths as keys" (`a b c : 42`).
        assert_eq!(
            err("a = [1]\na += 2"),
            HoconError::Unsupported {
                line: 2,
                feature: Feature::AppendField
            }
        );
        assert_eq!(
            err("a b c : 42"),
            HoconError::Unsupported {
                line: 1,
                feature: Feature::KeyWhitespace
            }
        );
        assert_eq!(
            err("a \"b\" = 1"),
            HoconError::Unsupported {
                line: 1,
                feature: Feature::KeyWhitespace
            }
        );
        assert_eq!(err("a + 1"), HoconError::ExpectedSeparator { line: 1 });
        assert_eq!(err("[1, 2]"), HoconError::RootNotObject);
        assert_eq!(err("\n # c\n [a]"), HoconError::RootNotObject);
    }

    #[test]
    fn test_reject_unterminated() {
        // Lightbend HOCON spec, "Syntax" (JSON's brackets and quotes): each unterminated
        // construct, reported at the line where it opens (ours).
        assert_eq!(
            err("a = 1\nb = \"open"),
            HoconError::UnterminatedString { line: 2 }
        );
        assert_eq!(
            err("a = \"open\nb = 1\""),
            HoconError::UnterminatedString { line: 1 }
        );
        assert_eq!(err("a = \"\\"), HoconError::UnterminatedString { line: 1 });
        assert_eq!(
            err("a = 1\nb {\n c = 1\n"),
            HoconError::UnterminatedObject { line: 2 }
        );
        assert_eq!(err("{ a = 1"), HoconError::UnterminatedObject { line: 1 });
        assert_eq!(err("{"), HoconError::UnterminatedObject { line: 1 });
        assert_eq!(
            err("a {\n b = {\n"),
            HoconError::UnterminatedObject { line: 2 }
        );
        assert_eq!(err("a = [1,\n2"), HoconError::UnterminatedArray { line: 1 });
        assert_eq!(err("a = [1,"), HoconError::UnterminatedArray { line: 1 });
        assert_eq!(err("a = ["), HoconError::UnterminatedArray { line: 1 });
        assert_eq!(err("a = [{"), HoconError::UnterminatedObject { line: 1 });
        // Closers that close nothing.
        assert_eq!(err("a = 1\n}"), HoconError::Syntax { line: 2 });
        assert_eq!(err("a = 1]"), HoconError::Syntax { line: 1 });
        assert_eq!(err("{a = 1}}"), HoconError::Syntax { line: 1 });
        assert_eq!(err("{a = 1} b = 2"), HoconError::Syntax { line: 1 });
        assert_eq!(err("a = [1}"), HoconError::Syntax { line: 1 });
        assert_eq!(err("a { b = 1 ]"), HoconError::Syntax { line: 1 });
    }

    #[test]
    fn test_reject_missing_value_and_separator() {
        // RFC 8259 §4 members, as the Lightbend HOCON spec relaxes them: fields missing a part.
        for (text, line) in [
            ("a =", 1),
            ("a = \n", 2),
            ("a = # comment", 1),
            ("a :,b = 1", 1),
            ("x { a = }", 1),
            ("a = [1]\nb =\n", 3),
        ] {
            assert_eq!(err(text), HoconError::MissingValue { line }, "{text:?}");
        }
        for (text, line) in [("a", 1), ("a\n= 1", 1), ("b = 1\na # c", 2), ("a\n{ }", 1)] {
            assert_eq!(
                err(text),
                HoconError::ExpectedSeparator { line },
                "{text:?}"
            );
        }
        for text in [
            "= 1",
            ".a = 1",
            "a. = 1",
            "a..b = 1",
            "a = ?",
            "a = `x`",
            "a = 1 = 2",
        ] {
            assert!(
                matches!(err(text), HoconError::Syntax { line: 1 }),
                "{text:?}"
            );
        }
    }

    fn dotted(segments: usize) -> String {
        let mut s = vec!["a"; segments].join(".");
        s.push_str(" = 1");
        s
    }

    fn nested(levels: usize) -> String {
        "a { ".repeat(levels - 1) + "a = 1" + &" }".repeat(levels - 1)
    }

    #[test]
    fn test_reject_depth() {
        // lockstep's MAX_DEPTH at its edge: dotted keys, nested objects, arrays, and a mix.
        let path = vec!["a"; MAX_DEPTH].join(".");
        assert_eq!(doc(&dotted(MAX_DEPTH)).get_u64(&path), Some(1));
        assert_eq!(err(&dotted(MAX_DEPTH + 1)), HoconError::TooDeep { line: 1 });
        assert_eq!(doc(&nested(MAX_DEPTH)).get_u64(&path), Some(1));
        assert_eq!(err(&nested(MAX_DEPTH + 1)), HoconError::TooDeep { line: 1 });
        // `a = [[...[1]...]]`: the key is one level, each array one more.
        let arrays = |n: usize| std::format!("a = {}1{}", "[".repeat(n), "]".repeat(n));
        assert!(Document::parse(&arrays(MAX_DEPTH - 1)).is_ok());
        assert_eq!(err(&arrays(MAX_DEPTH)), HoconError::TooDeep { line: 1 });
        // Empty containers at the edge hold nothing deeper.
        let empty = |n: usize| std::format!("a = {}{}", "[".repeat(n), "]".repeat(n));
        assert!(Document::parse(&empty(MAX_DEPTH)).is_ok());
        assert_eq!(err(&empty(MAX_DEPTH + 1)), HoconError::TooDeep { line: 1 });
        // Mixed: 16 dotted segments in an object 16 deep.
        let half = vec!["b"; 16].join(".");
        let mixed = |inner: &str| std::format!("{} {{ {inner} = 1 }}", vec!["a"; 16].join("."));
        let at_edge = mixed(&half);
        let d = doc(&at_edge);
        let path = std::format!("{}.{half}", vec!["a"; 16].join("."));
        assert_eq!(d.get_u64(&path), Some(1));
        assert_eq!(err(&mixed(&(half + ".b"))), HoconError::TooDeep { line: 1 });
        // Far beyond the limit: refused without recursion.
        assert_eq!(
            err(&("a = ".to_string() + &"[".repeat(60_000))),
            HoconError::TooDeep { line: 1 }
        );
        assert_eq!(err(&"a {".repeat(20_000)), HoconError::TooDeep { line: 1 });
        // A path longer than the limit is absent.
        assert_eq!(doc("a = 1").get(&vec!["a"; MAX_DEPTH + 1].join(".")), None);
    }

    #[test]
    fn test_reject_size() {
        // lockstep's MAX_TEXT_LEN at its edge: a comment pads the document to exactly the limit.
        let mut text = String::from("a = 1\n#");
        text.push_str(&"x".repeat(MAX_TEXT_LEN - text.len()));
        assert_eq!(text.len(), MAX_TEXT_LEN);
        assert_eq!(doc(&text).get_u64("a"), Some(1));
        assert_eq!(
            Document::parse_bytes(text.as_bytes()).unwrap().get_u64("a"),
            Some(1)
        );
        text.push('x');
        assert_eq!(err(&text), HoconError::TooLarge);
        assert_eq!(
            Document::parse_bytes(text.as_bytes()).unwrap_err(),
            HoconError::TooLarge
        );
    }

    #[test]
    fn test_reject_invalid_utf8() {
        // RFC 3629 §3 and §10: a byte never valid in UTF-8, and an encoded surrogate.
        assert_eq!(
            Document::parse_bytes(b"a = \"\xff\"").unwrap_err(),
            HoconError::InvalidUtf8
        );
        assert_eq!(
            Document::parse_bytes(b"a = \xed\xa0\x80").unwrap_err(),
            HoconError::InvalidUtf8
        );
        assert!(Document::parse_bytes("a = \"é\"".as_bytes()).is_ok());
    }

    #[test]
    fn test_parse_empty() {
        // Lightbend HOCON spec, "Omit root braces": an empty file is an empty object.
        for text in [
            "",
            " \n\t\n",
            "# only a comment",
            "{}",
            " { } \n# c",
            "\u{feff}",
        ] {
            let d = doc(text);
            assert_eq!(d.get("a"), None, "{text:?}");
            assert_eq!(d.get(""), None, "{text:?}");
            assert_eq!(d.get_str::<8>("name"), None, "{text:?}");
        }
    }

    #[test]
    fn test_reject_error_display() {
        // docs/DESIGN.md conventions: one line each, with the line number when there is one, and
        // never any of the text (secrets live in these files).
        let e = err("secret = \"s3cr3t\nx");
        assert_eq!(e.to_string(), "line 1: string never closed");
        assert_eq!(e.line(), Some(1));
        assert_eq!(e.status(), Status::UnprocessableEntity);
        assert_eq!(
            err("a = \"x\" y").to_string(),
            "line 1: a quoted string, array or object followed by another value on the same \
             line (separate fields with a newline or comma) is not supported"
        );
        assert_eq!(
            HoconError::TooLarge.to_string(),
            "HOCON text longer than 65536 bytes"
        );
        assert_eq!(HoconError::TooLarge.line(), None);
        let d = doc("secret = s3cr3t");
        assert!(!std::format!("{d:?}").contains("s3cr3t"));
    }
}
