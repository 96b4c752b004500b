//! Small text tools without allocation: [`InlineStr`], a `Copy` string of bounded length for
//! records; [`Cursor`], a [`fmt::Write`] into a caller's buffer; [`JsonStr`] and
//! [`JsonEscaped`] to write JSON strings through it.

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

impl<const N: usize> InlineStr<N> {
    /// The empty string.
    pub const EMPTY: Self = Self {
        bytes: [0; N],
        len: 0,
    };

    /// A copy of `s`, if it has at most `N` bytes (and `N` is at most 255).
    pub fn new(s: &str) -> Result<Self, TooLong> {
        if s.len() > N {
            return Err(TooLong);
        }
        let len = u8::try_from(s.len()).map_err(|_| TooLong)?;
        let mut bytes = [0u8; N];
        for (dst, src) in bytes.iter_mut().zip(s.bytes()) {
            *dst = src;
        }
        Ok(Self { bytes, len })
    }

    /// `s`, cut at a character boundary to at most `N` bytes.
    pub fn truncated(s: &str) -> Self {
        let mut end = s.len().min(N);
        while !s.is_char_boundary(end) {
            end = end.saturating_sub(1);
        }
        Self::new(s.get(..end).unwrap_or("")).unwrap_or(Self::EMPTY)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in.
        core::str::from_utf8(self.bytes.get(..usize::from(self.len)).unwrap_or(&[])).unwrap_or("")
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

    /// The bytes written.
    pub fn written(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
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
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
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
