//! A strict JSON scanner, and the unescaping serde-json-core does not do.
//!
//! serde-json-core has no recursion limit, and when it skips a field it does not look at the
//! bytes closely (an unknown field holding `tru` or `01` passes). So every JSON body is first
//! checked here against RFC 8259 — UTF-8, grammar, string escapes including surrogate pairs —
//! with a nesting limit, iteratively (the scanner itself cannot overflow a stack). Only a body
//! that passes reaches serde-json-core.
//!
//! [`Unescape`] decodes a JSON string's escapes, surrogate pairs included (serde-json-core's own
//! unescaper refuses `\ud83d\ude00`, which Python's `json.dumps` writes for every emoji).

use core::fmt;

use crate::hex;
use crate::status::Status;

/// The deepest nesting any of lockstep's JSON inputs may have: the outermost object or array
/// is depth 1.
pub const MAX_DEPTH: usize = 16;

/// Why a byte string is not acceptable JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ScanError {
    /// The bytes are not UTF-8.
    InvalidUtf8,
    /// Not JSON: the grammar fails at this byte offset (or at the end).
    Syntax {
        /// Offset of the first byte that does not fit.
        at: usize,
    },
    /// Objects and arrays nest deeper than the limit.
    TooDeep,
}

impl ScanError {
    /// Every scan failure is a malformed request.
    pub const fn status(self) -> Status {
        Status::BadRequest
    }
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUtf8 => f.write_str("body is not valid UTF-8"),
            Self::Syntax { at } => write!(f, "invalid JSON at byte {at}"),
            Self::TooDeep => write!(f, "JSON nested deeper than {MAX_DEPTH} levels"),
        }
    }
}

impl core::error::Error for ScanError {}

/// The kind of a JSON value, as the scanner saw its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Kind {
    /// `{ ... }`
    Object,
    /// `[ ... ]`
    Array,
    /// `"..."`
    String,
    /// A number.
    Number,
    /// `true`, `false` or `null`.
    Literal,
}

/// Checks that `input` is exactly one JSON value (surrounding whitespace allowed), valid UTF-8,
/// nesting at most `max_depth` levels (capped at [`MAX_DEPTH`]). Returns the value's kind.
pub fn validate(input: &[u8], max_depth: usize) -> Result<Kind, ScanError> {
    if core::str::from_utf8(input).is_err() {
        return Err(ScanError::InvalidUtf8);
    }
    let mut s = Scanner {
        input,
        pos: 0,
        // One bit per open container: 1 = object, 0 = array.
        stack: 0,
        depth: 0,
        max_depth: if max_depth < MAX_DEPTH {
            max_depth
        } else {
            MAX_DEPTH
        },
    };
    let kind = s.value_tree()?;
    s.skip_ws();
    if s.pos != input.len() {
        return Err(s.syntax());
    }
    Ok(kind)
}

struct Scanner<'a> {
    input: &'a [u8],
    pos: usize,
    stack: u32,
    depth: usize,
    max_depth: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn bump(&mut self) {
        self.pos = self.pos.saturating_add(1);
    }

    fn syntax(&self) -> ScanError {
        ScanError::Syntax { at: self.pos }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.bump();
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), ScanError> {
        if self.peek() == Some(byte) {
            self.bump();
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    fn push(&mut self, object: bool) -> Result<(), ScanError> {
        if self.depth >= self.max_depth {
            return Err(ScanError::TooDeep);
        }
        self.stack = (self.stack << 1) | u32::from(object);
        self.depth = self.depth.saturating_add(1);
        Ok(())
    }

    fn pop(&mut self) {
        self.stack >>= 1;
        self.depth = self.depth.saturating_sub(1);
    }

    fn in_object(&self) -> bool {
        self.stack & 1 == 1
    }

    /// One whole value with everything nested in it, without recursion.
    fn value_tree(&mut self) -> Result<Kind, ScanError> {
        self.skip_ws();
        let kind = match self.peek() {
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b'"') => Kind::String,
            Some(b't' | b'f' | b'n') => Kind::Literal,
            Some(b'-' | b'0'..=b'9') => Kind::Number,
            _ => return Err(self.syntax()),
        };
        'value: loop {
            self.skip_ws();
            match self.peek() {
                Some(b'{') => {
                    self.bump();
                    self.push(true)?;
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.bump();
                        self.pop();
                    } else {
                        self.member_key()?;
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    self.bump();
                    self.push(false)?;
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.bump();
                        self.pop();
                    } else {
                        continue 'value;
                    }
                }
                Some(b'"') => self.string()?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                _ => return Err(self.syntax()),
            }
            // After a complete value: close containers or move to the next element.
            loop {
                if self.depth == 0 {
                    return Ok(kind);
                }
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.bump();
                        if self.in_object() {
                            self.skip_ws();
                            self.member_key()?;
                        }
                        continue 'value;
                    }
                    Some(b'}') if self.in_object() => {
                        self.bump();
                        self.pop();
                    }
                    Some(b']') if !self.in_object() => {
                        self.bump();
                        self.pop();
                    }
                    _ => return Err(self.syntax()),
                }
            }
        }
    }

    /// `"key" :` — leaves the cursor before the member's value.
    fn member_key(&mut self) -> Result<(), ScanError> {
        if self.peek() != Some(b'"') {
            return Err(self.syntax());
        }
        self.string()?;
        self.skip_ws();
        self.expect(b':')
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), ScanError> {
        for &b in word {
            self.expect(b)?;
        }
        Ok(())
    }

    fn digits(&mut self) -> Result<(), ScanError> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.syntax());
        }
        while let Some(b'0'..=b'9') = self.peek() {
            self.bump();
        }
        Ok(())
    }

    fn number(&mut self) -> Result<(), ScanError> {
        if self.peek() == Some(b'-') {
            self.bump();
        }
        match self.peek() {
            Some(b'0') => self.bump(),
            Some(b'1'..=b'9') => self.digits()?,
            _ => return Err(self.syntax()),
        }
        if self.peek() == Some(b'.') {
            self.bump();
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.bump();
            if let Some(b'+' | b'-') = self.peek() {
                self.bump();
            }
            self.digits()?;
        }
        Ok(())
    }

    fn string(&mut self) -> Result<(), ScanError> {
        self.expect(b'"')?;
        loop {
            match self.peek() {
                None => return Err(self.syntax()),
                Some(b'"') => {
                    self.bump();
                    return Ok(());
                }
                Some(b'\\') => {
                    self.bump();
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.bump();
                        }
                        Some(b'u') => {
                            self.bump();
                            let unit = self.hex4()?;
                            if (0xD800..0xDC00).contains(&unit) {
                                // A high surrogate must be followed by an escaped low one.
                                self.expect(b'\\')?;
                                self.expect(b'u')?;
                                let low = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return Err(self.syntax());
                                }
                            } else if (0xDC00..0xE000).contains(&unit) {
                                return Err(self.syntax());
                            }
                        }
                        _ => return Err(self.syntax()),
                    }
                }
                // Control characters must be escaped.
                Some(0..=0x1f) => return Err(self.syntax()),
                Some(_) => self.bump(),
            }
        }
    }

    fn hex4(&mut self) -> Result<u16, ScanError> {
        let mut unit: u16 = 0;
        for _ in 0..4 {
            let digit = self
                .peek()
                .and_then(hex::value)
                .ok_or_else(|| self.syntax())?;
            unit = (unit << 4) | u16::from(digit);
            self.bump();
        }
        Ok(unit)
    }
}

/// An escape that is not valid JSON, or decoded text that does not fit its buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UnescapeError;

impl fmt::Display for UnescapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid JSON escape, or decoded text longer than its buffer")
    }
}

impl core::error::Error for UnescapeError {}

/// The characters of a JSON string's raw contents (between the quotes), escapes decoded.
///
/// Yields one [`UnescapeError`] and stops at an escape that is not valid JSON; after
/// [`validate`] accepted the document, that cannot happen.
#[derive(Clone, Debug)]
pub struct Unescape<'a> {
    rest: core::str::Chars<'a>,
    failed: bool,
}

impl<'a> Unescape<'a> {
    /// Decodes `raw`, the text between a JSON string's quotes.
    pub fn new(raw: &'a str) -> Self {
        Self {
            rest: raw.chars(),
            failed: false,
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let mut unit = 0u32;
        for _ in 0..4 {
            let c = self.rest.next()?;
            let digit = u8::try_from(c).ok().and_then(hex::value)?;
            unit = (unit << 4) | u32::from(digit);
        }
        Some(unit)
    }

    fn escaped(&mut self) -> Option<char> {
        Some(match self.rest.next()? {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let unit = self.hex4()?;
                if (0xD800..0xDC00).contains(&unit) {
                    if self.rest.next()? != '\\' || self.rest.next()? != 'u' {
                        return None;
                    }
                    let low = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return None;
                    }
                    let high_bits = unit.checked_sub(0xD800)?;
                    let low_bits = low.checked_sub(0xDC00)?;
                    char::from_u32(0x10000u32.checked_add((high_bits << 10) | low_bits)?)?
                } else {
                    char::from_u32(unit)?
                }
            }
            _ => return None,
        })
    }
}

impl Iterator for Unescape<'_> {
    type Item = Result<char, UnescapeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.rest.next()? {
            '\\' => match self.escaped() {
                Some(c) => Some(Ok(c)),
                None => {
                    self.failed = true;
                    Some(Err(UnescapeError))
                }
            },
            c => Some(Ok(c)),
        }
    }
}

/// Whether the raw contents of a JSON string decode to exactly `expected`.
pub fn unescaped_eq(raw: &str, expected: &str) -> bool {
    if !raw.contains('\\') {
        return raw == expected;
    }
    let mut want = expected.chars();
    for c in Unescape::new(raw) {
        match c {
            Ok(c) if want.next() == Some(c) => {}
            _ => return false,
        }
    }
    want.next().is_none()
}

/// Decodes the raw contents of a JSON string into `out`.
///
/// Fails when the decoded text does not fit or an escape is invalid; `out` then holds a prefix
/// of the text.
pub fn unescape_into<const N: usize>(
    raw: &str,
    out: &mut heapless::String<N>,
) -> Result<(), UnescapeError> {
    out.clear();
    if !raw.contains('\\') {
        return out.push_str(raw).map_err(|_| UnescapeError);
    }
    for c in Unescape::new(raw) {
        out.push(c?).map_err(|_| UnescapeError)?;
    }
    Ok(())
}

/// A JSON string's raw contents (escapes not decoded), borrowed from the input: what
/// serde-json-core hands a `Deserialize` when it has no unescape buffer.
pub(crate) struct RawStr<'a>(pub(crate) &'a str);

impl<'de> serde::Deserialize<'de> for RawStr<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;

        impl<'de> serde::de::Visitor<'de> for StrVisitor {
            type Value = RawStr<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(RawStr(v))
            }
        }

        deserializer.deserialize_str(StrVisitor)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::String;

    use super::*;

    fn ok(s: &str) -> Kind {
        validate(s.as_bytes(), MAX_DEPTH).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn nested(depth: usize) -> String {
        let mut s = String::new();
        for _ in 0..depth {
            s.push_str("{\"a\":");
        }
        s.push('1');
        for _ in 0..depth {
            s.push('}');
        }
        s
    }

    // Vectors from RFC 8259 §13 and the JSONTestSuite's y_/n_ naming (nst/JSONTestSuite).
    #[test]
    fn test_parse_values() {
        assert_eq!(
            ok(r#"{"a": [1, -2.5e+3, 0, true, false, null, "x"]}"#),
            Kind::Object
        );
        assert_eq!(ok(" [ ] "), Kind::Array);
        assert_eq!(ok("\"\""), Kind::String);
        assert_eq!(ok("-0.0E-0"), Kind::Number);
        assert_eq!(ok("null"), Kind::Literal);
        assert_eq!(ok(r#"{"":{}}"#), Kind::Object);
        assert_eq!(ok(r#""\u00e9\"\\\/\b\f\n\r\t""#), Kind::String);
        assert_eq!(ok(r#""\ud83d\ude00""#), Kind::String);
        assert_eq!(ok("\"é😀\""), Kind::String);
    }

    #[test]
    fn test_reject_grammar() {
        for bad in [
            "",
            " ",
            "tru",
            "nul",
            "True",
            "01",
            "1.",
            ".5",
            "-",
            "+1",
            "1e",
            "0x10",
            "[1,]",
            "[,1]",
            "{\"a\"}",
            "{\"a\":}",
            "{a:1}",
            "{\"a\":1,}",
            "{'a':1}",
            "[1 2]",
            "\"a",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\u12G4\"",
            "\"a\u{1}b\"",
            "{}}",
            "[]]",
            "{} {}",
            "[1}",
            "{\"a\":1]",
            "NaN",
            "Infinity",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
        ] {
            assert!(
                matches!(
                    validate(bad.as_bytes(), MAX_DEPTH),
                    Err(ScanError::Syntax { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn test_reject_invalid_utf8() {
        assert_eq!(
            validate(b"\"\xff\"", MAX_DEPTH),
            Err(ScanError::InvalidUtf8)
        );
        assert_eq!(
            validate(b"\"\xed\xa0\x80\"", MAX_DEPTH),
            Err(ScanError::InvalidUtf8)
        );
    }

    #[test]
    fn test_depth_edge() {
        assert_eq!(ok(&nested(16)), Kind::Object);
        assert_eq!(
            validate(nested(17).as_bytes(), MAX_DEPTH),
            Err(ScanError::TooDeep)
        );
        let arrays = |n| "[".repeat(n) + &"]".repeat(n);
        assert!(validate(arrays(16).as_bytes(), MAX_DEPTH).is_ok());
        assert_eq!(
            validate(arrays(17).as_bytes(), MAX_DEPTH),
            Err(ScanError::TooDeep)
        );
        // A smaller limit is honoured; a larger one is capped.
        assert_eq!(validate(b"[[1]]", 1), Err(ScanError::TooDeep));
        assert_eq!(validate(arrays(17).as_bytes(), 64), Err(ScanError::TooDeep));
        // Deep input far beyond the limit fails without recursion.
        assert_eq!(
            validate(arrays(100_000).as_bytes(), MAX_DEPTH),
            Err(ScanError::TooDeep)
        );
    }

    #[test]
    fn test_syntax_offset() {
        assert_eq!(
            validate(b"[1, x]", MAX_DEPTH),
            Err(ScanError::Syntax { at: 4 })
        );
        assert_eq!(validate(b"[1", MAX_DEPTH), Err(ScanError::Syntax { at: 2 }));
    }

    #[test]
    fn test_unescape() {
        let mut out = heapless::String::<32>::new();
        unescape_into(r#"a\"b\\c\/\n\u00e9\ud83d\ude00"#, &mut out).unwrap();
        assert_eq!(out.as_str(), "a\"b\\c/\né😀");
        assert!(unescape_into(r"\ud800x", &mut out).is_err());
        assert!(unescape_into(r"\q", &mut out).is_err());
        let mut small = heapless::String::<2>::new();
        assert!(unescape_into("abc", &mut small).is_err());
        assert!(unescape_into(r"\u0061\u0062", &mut small).is_ok());
        assert!(unescape_into(r"\u0061\u0062\u0063", &mut small).is_err());
    }

    #[test]
    fn test_unescaped_eq() {
        assert!(unescaped_eq("package", "package"));
        assert!(unescaped_eq(r"p\u0061ckage", "package"));
        assert!(!unescaped_eq(r"p\u0061ckag", "package"));
        assert!(!unescaped_eq(r"p\u0061ckages", "package"));
        assert!(!unescaped_eq(r"\q", "q"));
    }
}
