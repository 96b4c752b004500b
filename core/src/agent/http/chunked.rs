//! The framing of a chunked body (RFC 9112 §7.1): chunk-size lines with extensions, the CRLF
//! after each chunk's data, the trailer section. A push decoder over byte slices; the data
//! itself is the client's to move.

use super::{HttpError, MAX_CHUNK_LINE_LEN, MAX_TRAILERS_LEN};

/// Where a chunked body stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Chunked {
    /// In a chunk-size line: the size so far, whether a digit was seen, whether the digits
    /// ended (extensions or whitespace follow), the line's length so far.
    Size {
        size: u64,
        digits: bool,
        ext: bool,
        len: usize,
    },
    /// After the chunk-size line's CR.
    SizeLf { size: u64 },
    /// In a chunk's data: this many bytes left (never 0).
    Data(u64),
    /// After a chunk's data: its CR.
    DataCr,
    /// After a chunk's data and CR: its LF.
    DataLf,
    /// In the trailer section (after the last chunk): its length so far, whether the current
    /// line is still empty.
    Trailer { len: usize, empty: bool },
    /// After a CR in the trailer section.
    TrailerLf { len: usize, empty: bool },
    /// The body ended.
    Done,
}

impl Chunked {
    /// The start of a body.
    pub(super) const START: Self = Self::Size {
        size: 0,
        digits: false,
        ext: false,
        len: 0,
    };

    /// Consumes framing bytes from the start of `input` until chunk data is next
    /// ([`Chunked::Data`]), the body ended ([`Chunked::Done`]) or `input` is used up; returns
    /// how many were consumed. On an error the state is left as it was before the bad byte.
    pub(super) fn framing(&mut self, input: &[u8]) -> Result<usize, HttpError> {
        for (used, &b) in input.iter().enumerate() {
            if matches!(self, Self::Data(_) | Self::Done) {
                return Ok(used);
            }
            *self = self.next(b)?;
        }
        Ok(input.len())
    }

    /// The state after one framing byte.
    fn next(self, b: u8) -> Result<Self, HttpError> {
        const BAD: HttpError = HttpError::Malformed;
        Ok(match self {
            Self::Size {
                size,
                digits,
                ext,
                len,
            } => {
                // Below the limit: the LF to come makes it at most the limit.
                let len = len.checked_add(1).filter(|&l| l < MAX_CHUNK_LINE_LEN);
                let len = len.ok_or(BAD)?;
                match b {
                    b'\r' if digits => Self::SizeLf { size },
                    _ if ext => {
                        // Extensions are skipped, not interpreted; a bare LF or a control
                        // character is refused, so a line cannot be mis-split.
                        if b == b'\n' || (b.is_ascii_control() && b != b'\t') {
                            return Err(BAD);
                        }
                        Self::Size {
                            size,
                            digits,
                            ext,
                            len,
                        }
                    }
                    b';' | b' ' | b'\t' if digits => Self::Size {
                        size,
                        digits,
                        ext: true,
                        len,
                    },
                    _ => {
                        let digit = crate::hex::value(b).ok_or(BAD)?;
                        let size = size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(u64::from(digit)))
                            .ok_or(BAD)?;
                        Self::Size {
                            size,
                            digits: true,
                            ext,
                            len,
                        }
                    }
                }
            }
            Self::SizeLf { size } => match (b, size) {
                (b'\n', 0) => Self::Trailer {
                    len: 0,
                    empty: true,
                },
                (b'\n', size) => Self::Data(size),
                _ => return Err(BAD),
            },
            Self::DataCr if b == b'\r' => Self::DataLf,
            Self::DataLf if b == b'\n' => Self::START,
            Self::Trailer { len, empty } => {
                let len = len.checked_add(1).filter(|&l| l < MAX_TRAILERS_LEN);
                let len = len.ok_or(BAD)?;
                match b {
                    b'\r' => Self::TrailerLf { len, empty },
                    b'\n' => return Err(BAD),
                    _ => Self::Trailer { len, empty: false },
                }
            }
            Self::TrailerLf { len, empty } => match (b, empty) {
                (b'\n', true) => Self::Done,
                (b'\n', false) => Self::Trailer {
                    len: len
                        .checked_add(1)
                        .filter(|&l| l < MAX_TRAILERS_LEN)
                        .ok_or(BAD)?,
                    empty: true,
                },
                _ => return Err(BAD),
            },
            Self::DataCr | Self::DataLf | Self::Data(_) | Self::Done => return Err(BAD),
        })
    }

    /// After `n` bytes of a chunk's data were taken (at most what is left).
    pub(super) fn took(self, n: u64) -> Self {
        match self {
            Self::Data(left) => match left.saturating_sub(n) {
                0 => Self::DataCr,
                left => Self::Data(left),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use super::*;

    /// Decodes a whole chunked body fed `step` bytes at a time: the data and what followed.
    fn decode(body: &[u8], step: usize) -> Result<(Vec<u8>, usize), HttpError> {
        let mut state = Chunked::START;
        let mut data = Vec::new();
        let mut at = 0;
        while state != Chunked::Done {
            let end = (at + step).min(body.len());
            if at == end {
                return Err(HttpError::Io);
            }
            let mut window = &body[at..end];
            while !window.is_empty() && state != Chunked::Done {
                if let Chunked::Data(left) = state {
                    let n = window.len().min(usize::try_from(left).unwrap());
                    data.extend_from_slice(&window[..n]);
                    state = state.took(n as u64);
                    window = &window[n..];
                    at += n;
                } else {
                    let used = state.framing(window)?;
                    window = &window[used..];
                    at += used;
                }
            }
        }
        Ok((data, body.len() - at))
    }

    // RFC 9112 §7.1's grammar: sizes in either case, extensions with and without values,
    // whitespace before `;`, a trailer field.
    #[test]
    fn test_parse_chunked_with_extensions_and_trailer() {
        let body = b"4;a=b\r\nWiki\r\n5 ; x\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0;end\r\nX-Sum: 1\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, body.len()] {
            let (data, rest) = decode(body, step).unwrap();
            assert_eq!(data, b"Wikipedia in\r\n\r\nchunks.");
            assert_eq!(&body[body.len() - rest..], b"NEXT", "step {step}");
        }
        assert_eq!(decode(b"0\r\n\r\n", 1).unwrap().0, b"");
        assert_eq!(
            decode(b"000a\r\n0123456789\r\n0\r\n\r\n", 4).unwrap().0,
            b"0123456789"
        );
    }

    #[test]
    fn test_reject_bad_chunk_sizes() {
        for body in [
            &b"\r\n"[..],
            b"g\r\n",
            b"-1\r\n",
            b";x\r\n0\r\n\r\n",
            b"4\nWiki\r\n0\r\n\r\n",
            b"4\r\nWikiX\r\n0\r\n\r\n",
            b"4\r\nWiki\n0\r\n\r\n",
            b"0\r\nX: 1\n\r\n",
            b"0\r\n\n",
            b"1;a\x00\r\nx\r\n0\r\n\r\n",
            b"1;a\nb\r\nx\r\n0\r\n\r\n",
            b"0x10\r\n",
        ] {
            assert_eq!(
                decode(body, 1),
                Err(HttpError::Malformed),
                "{:?}",
                std::string::String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn test_reject_chunk_size_overflow() {
        // 16 hex digits fit a u64; a 17th significant one does not. Leading zeros are fine.
        let mut state = Chunked::START;
        assert_eq!(state.framing(b"ffffffffffffffff\r\n"), Ok(18));
        assert_eq!(state, Chunked::Data(u64::MAX));
        let mut state = Chunked::START;
        assert_eq!(state.framing(b"00000000000000000000001\r\n"), Ok(25));
        assert_eq!(state, Chunked::Data(1));
        let mut state = Chunked::START;
        assert_eq!(
            state.framing(b"10000000000000000\r\n"),
            Err(HttpError::Malformed)
        );
    }

    #[test]
    fn test_reject_long_framing() {
        let mut line = std::vec![b'1', b';'];
        line.resize(MAX_CHUNK_LINE_LEN - 2, b'x');
        line.extend_from_slice(b"\r\n");
        let mut state = Chunked::START;
        assert_eq!(state.framing(&line), Ok(MAX_CHUNK_LINE_LEN));
        let mut state = Chunked::START;
        line.insert(2, b'x');
        assert_eq!(state.framing(&line), Err(HttpError::Malformed));

        let mut state = Chunked::START;
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..MAX_TRAILERS_LEN / 8 {
            trailers.extend_from_slice(b"X: 1234\r\n");
        }
        assert_eq!(state.framing(&trailers), Err(HttpError::Malformed));
    }
}
