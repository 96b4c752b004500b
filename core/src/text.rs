//! Small text tools without allocation: [`InlineStr`], a `Copy` string of bounded length for
//! records; [`Cursor`], a [`fmt::Write`] into a caller's buffer; [`JsonStr`] and
//! [`JsonEscaped`] to write JSON strings through it.
//!
//! Both buffers check what comes in once, when it is written, and read it back with accessors
//! that cannot fail: a length is clamped to the buffer it counts (which it never exceeds) and
//! text is read up to its first invalid byte (there is none). Without `unsafe` the compiler
//! cannot be told either invariant, so the accessors spell out a total reading of the bytes,
//! rather than an error no caller could meet or a default a caller could mistake for data.

use core::fmt;

/// A string of at most `N` bytes stored inline, so that the records holding it stay `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InlineStr<const N: usize> {
    bytes: [u8; N],
    len: u8,
}

/// A string longer than an [`InlineStr`] can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TooLong;

impl fmt::Display for TooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("text too long")
    }
}

impl core::error::Error for TooLong {}

impl<const N: usize> InlineStr<N> {
    /// The empty string.
    pub const EMPTY: Self = Self {
        bytes: [0; N],
        len: 0,
    };

    /// A copy of `s`, if it has at most `N` bytes (and at most 255).
    pub fn new(s: &str) -> Result<Self, TooLong> {
        let mut copy = Self::EMPTY;
        for c in s.chars() {
            copy.push(c)?;
        }
        Ok(copy)
    }

    /// `s`, cut at a character boundary to at most `N` bytes (and at most 255): `s` itself
    /// when it fits.
    pub fn truncated(s: &str) -> Self {
        let mut copy = Self::EMPTY;
        for c in s.chars() {
            if copy.push(c).is_err() {
                break;
            }
        }
        copy
    }

    /// Appends `c`, if it fits in `N` bytes (and 255); else changes nothing.
    pub fn push(&mut self, c: char) -> Result<(), TooLong> {
        // Four bytes hold any character.
        let mut utf8 = [0u8; 4];
        let c = c.encode_utf8(&mut utf8).as_bytes();
        let start = usize::from(self.len);
        let end = start.checked_add(c.len()).ok_or(TooLong)?;
        let len = u8::try_from(end).map_err(|_| TooLong)?;
        self.bytes
            .get_mut(start..end)
            .ok_or(TooLong)?
            .copy_from_slice(c);
        self.len = len;
        Ok(())
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // `push` is the only writer: `len` counts whole characters within `bytes`.
        let (text, _) = self.bytes.split_at(usize::from(self.len).min(N));
        utf8_prefix(text)
    }

    /// Whether it is empty.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> Default for InlineStr<N> {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl<const N: usize> fmt::Display for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(feature = "defmt")]
impl<const N: usize> defmt::Format for InlineStr<N> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{=str}", self.as_str());
    }
}

/// The longest prefix of `bytes` that is UTF-8: all of them for bytes copied from a `&str` or
/// written as ASCII, which is how every buffer of this crate that is read as text is filled.
pub(crate) fn utf8_prefix(bytes: &[u8]) -> &str {
    // An empty `bytes` has no chunk, and is the empty text.
    bytes.utf8_chunks().next().map_or("", |chunk| chunk.valid())
}

/// Collects `chars` into a string of `N` bytes, up to the first that does not fit: all of them
/// when the caller sized `N` for them, the first `N` bytes' worth when that is what it wants.
pub(crate) fn collect_truncated<const N: usize>(
    chars: impl IntoIterator<Item = char>,
) -> heapless::String<N> {
    let mut out = heapless::String::new();
    for c in chars {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

/// A byte count as a `u64`, the unit of lengths on the wire and in files: exact, since `usize`
/// is at most 64 bits on every target Rust supports (it would saturate on a wider one).
pub(crate) fn len_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The smaller of a count and a buffer's length: exact, since a count that does not fit a
/// `usize` is larger than any length.
pub(crate) fn min_len(count: u64, len: usize) -> usize {
    usize::try_from(count).map_or(len, |count| count.min(len))
}

/// RFC 9110's `tchar`: what a header name, or an unquoted parameter value, is made of.
pub(crate) const fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// A [`fmt::Write`] into a caller's buffer that fails, rather than truncates, when full.
#[derive(Debug)]
pub struct Cursor<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> Cursor<'b> {
    /// Writes will go into `buf`, from its start.
    pub fn new(buf: &'b mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// How many bytes were written.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The size of the buffer: the most bytes it takes.
    pub const fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Forgets what was written: the next write goes to the buffer's start again.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Where the bytes written end. `write_bytes` and `advance` move `len` only within `buf`:
    /// the clamp changes nothing, and makes every split at it total.
    fn end(&self) -> usize {
        self.len.min(self.buf.len())
    }

    /// The bytes written.
    pub fn written(&self) -> &[u8] {
        self.buf.split_at(self.end()).0
    }

    /// The room after the bytes written, to fill before [`advance`](Self::advance).
    pub fn spare(&mut self) -> &mut [u8] {
        let end = self.end();
        self.buf.split_at_mut(end).1
    }

    /// Counts `n` more bytes written, into [`spare`](Self::spare); fails, counting nothing, if
    /// there is less room.
    pub fn advance(&mut self, n: usize) -> fmt::Result {
        self.len = self
            .len
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or(fmt::Error)?;
        Ok(())
    }

    /// The bytes written, for as long as the buffer is borrowed.
    pub fn into_written(self) -> &'b [u8] {
        let end = self.end();
        let buf: &'b [u8] = self.buf;
        buf.split_at(end).0
    }

    /// Writes raw bytes.
    pub fn write_bytes(&mut self, bytes: &[u8]) -> fmt::Result {
        let end = self.len.checked_add(bytes.len()).ok_or(fmt::Error)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
}

impl fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes())
    }
}

/// Writes its text as a JSON string literal, quotes included (`"a\"b"`).
#[derive(Clone, Copy, Debug)]
pub struct JsonStr<'a>(pub &'a str);

impl fmt::Display for JsonStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        escape_json(f, self.0)?;
        f.write_str("\"")
    }
}

/// A [`fmt::Write`] adapter that JSON-escapes everything written through it (without quotes),
/// so that `write!(JsonEscaped(&mut out), "{value}")` puts any `Display` inside a JSON string.
#[derive(Debug)]
pub struct JsonEscaped<'w, W: fmt::Write>(pub &'w mut W);

impl<W: fmt::Write> fmt::Write for JsonEscaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_json(self.0, s)
    }
}

/// Writes `s` with JSON's escapes: `"`, `\\` and control characters.
fn escape_json(out: &mut (impl fmt::Write + ?Sized), s: &str) -> fmt::Result {
    let mut rest = s;
    while let Some(at) = rest.find(|c: char| c == '"' || c == '\\' || c < ' ') {
        let (plain, tail) = rest.split_at(at);
        out.write_str(plain)?;
        let mut chars = tail.chars();
        match chars.next() {
            Some('"') => out.write_str("\\\"")?,
            Some('\\') => out.write_str("\\\\")?,
            Some('\n') => out.write_str("\\n")?,
            Some('\r') => out.write_str("\\r")?,
            Some('\t') => out.write_str("\\t")?,
            Some(c) => write!(out, "\\u{:04x}", u32::from(c))?,
            None => {}
        }
        rest = chars.as_str();
    }
    out.write_str(rest)
}

#[cfg(test)]
mod tests {
    use core::fmt::Write as _;
    use std::format;

    use super::*;

    #[test]
    fn test_inline_str_bounds() {
        let s = InlineStr::<4>::new("abcd").unwrap();
        assert_eq!(s.as_str(), "abcd");
        assert_eq!(InlineStr::<4>::new("abcde"), Err(TooLong));
        assert!(InlineStr::<4>::new("").unwrap().is_empty());
        assert_eq!(InlineStr::<4>::new("é").unwrap().as_str(), "é");
        assert_eq!(format!("{s:?}"), "\"abcd\"");
    }

    #[test]
    fn test_cursor_fails_when_full() {
        let mut buf = [0u8; 4];
        let mut c = Cursor::new(&mut buf);
        assert!(c.write_str("abc").is_ok());
        assert!(c.write_str("de").is_err());
        assert_eq!(c.written(), b"abc");
        assert!(c.write_str("d").is_ok());
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn test_inline_str_push_and_truncated() {
        let mut s = InlineStr::<3>::new("a").unwrap();
        assert_eq!(s.push('é'), Ok(()));
        assert_eq!(s.push('b'), Err(TooLong));
        assert_eq!(s.as_str(), "aé");
        // Cut at a character boundary; the identity when it fits.
        assert_eq!(InlineStr::<2>::truncated("aé").as_str(), "a");
        assert_eq!(InlineStr::<4>::truncated("abc").as_str(), "abc");
        // No more than its u8 length counts, whatever N.
        let long = "x".repeat(300);
        assert_eq!(InlineStr::<300>::truncated(&long).as_str().len(), 255);
        assert_eq!(InlineStr::<300>::new(&long), Err(TooLong));
    }

    #[test]
    fn test_cursor_spare_advance_and_clear() {
        let mut buf = [0u8; 4];
        let mut c = Cursor::new(&mut buf);
        c.write_str("a").unwrap();
        c.spare()[..2].copy_from_slice(b"bc");
        assert!(c.advance(2).is_ok());
        assert!(c.advance(2).is_err());
        assert_eq!((c.spare().len(), c.capacity()), (1, 4));
        assert_eq!(c.written(), b"abc");
        c.clear();
        assert!(c.is_empty());
        c.write_str("xy").unwrap();
        assert_eq!(c.into_written(), b"xy");
    }

    #[test]
    fn test_total_helpers() {
        assert_eq!(utf8_prefix(b"ab"), "ab");
        assert_eq!(utf8_prefix(b""), "");
        assert_eq!(utf8_prefix(b"a\xffb"), "a");
        let s: heapless::String<3> = collect_truncated("abcd".chars());
        assert_eq!(s.as_str(), "abc");
        assert_eq!(min_len(u64::MAX, 7), 7);
        assert_eq!(min_len(3, 7), 3);
        assert_eq!(len_u64(5), 5);
    }

    #[test]
    fn test_json_str_escapes() {
        let text = format!("{}", JsonStr("a\"b\\c\nd\u{1}é"));
        assert_eq!(text, r#""a\"b\\c\nd\u0001é""#);
        assert_eq!(format!("{}", JsonStr("")), "\"\"");
        let mut out = std::string::String::new();
        let quote = "a\"";
        write!(JsonEscaped(&mut out), "{quote}-{}", 1).unwrap();
        assert_eq!(out, "a\\\"-1");
    }
}
