//! Hexadecimal, as digests, bundle ids and MACs are spelled: read in either case, written in
//! lowercase.

use core::fmt;

/// Why bytes are not the hex spelling of `N` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HexError {
    /// Not exactly `2 * N` characters.
    Length,
    /// A character that is not a hexadecimal digit.
    NotHex,
}

/// The value of one hexadecimal digit of either case.
pub(crate) const fn value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b.wrapping_sub(b'0')),
        b'a'..=b'f' => Some(b.wrapping_sub(b'a').wrapping_add(10)),
        b'A'..=b'F' => Some(b.wrapping_sub(b'A').wrapping_add(10)),
        _ => None,
    }
}

/// Exactly `2 * N` hex digits of either case → `N` bytes.
pub(crate) fn decode<const N: usize>(hex: &[u8]) -> Result<[u8; N], HexError> {
    if hex.len() != N.saturating_mul(2) {
        return Err(HexError::Length);
    }
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
        let [hi, lo] = pair else {
            return Err(HexError::Length);
        };
        let (Some(hi), Some(lo)) = (value(*hi), value(*lo)) else {
            return Err(HexError::NotHex);
        };
        *byte = (hi << 4) | lo;
    }
    Ok(bytes)
}

/// Writes its bytes as lowercase hex.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lower<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Lower<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A chunk at a time into a stack buffer: one `write_str` per 32 bytes, not two
        // `write_char`s per byte (this is on the request path: ids and digests in answers).
        let mut text = [0u8; 64];
        self.0.chunks(32).try_for_each(|chunk| {
            let out = text
                .get_mut(..chunk.len().saturating_mul(2))
                .unwrap_or_default();
            encode(chunk, out);
            f.write_str(core::str::from_utf8(out).unwrap_or_default())
        })
    }
}

/// The lowercase hex digit of the low four bits of `nibble`.
const fn digit(nibble: u8) -> u8 {
    let n = nibble & 0xf;
    if n < 10 {
        b'0'.wrapping_add(n)
    } else {
        b'a'.wrapping_add(n.wrapping_sub(10))
    }
}

/// Writes `bytes` as lowercase hex into `out` (which should be twice as long; extra bytes of
/// either are left alone).
pub(crate) fn encode(bytes: &[u8], out: &mut [u8]) {
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        if let [hi, lo] = pair {
            *hi = digit(byte >> 4);
            *lo = digit(*byte);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_decode_either_case_and_encode_lowercase() {
        assert_eq!(decode::<2>(b"aB0f"), Ok([0xab, 0x0f]));
        let mut out = [0u8; 4];
        encode(&[0xab, 0x0f], &mut out);
        assert_eq!(&out, b"ab0f");
    }

    #[test]
    fn test_lower_writes_every_byte_across_its_chunks() {
        use std::string::ToString;
        for len in [0, 1, 31, 32, 33, 64, 65] {
            let bytes: std::vec::Vec<u8> = (0..len).map(|i| (i * 37) as u8).collect();
            let want: std::string::String = bytes.iter().map(|b| std::format!("{b:02x}")).collect();
            assert_eq!(Lower(&bytes).to_string(), want, "{len} bytes");
        }
    }

    #[test]
    fn test_reject_hex() {
        assert_eq!(decode::<2>(b"ab0"), Err(HexError::Length));
        assert_eq!(decode::<2>(b"ab0f0"), Err(HexError::Length));
        assert_eq!(decode::<2>(b"ab0g"), Err(HexError::NotHex));
        assert_eq!(decode::<1>("é".as_bytes()), Err(HexError::NotHex));
    }
}
