//! The bundle event stream, `GET /v2/bundles/events` (docs/PROTOCOL.md §5): server-sent events
//! (the WHATWG HTML "event stream" format) whose data is a bundle id, with empty-line
//! heartbeats. Useful to wake up instead of polling `GET /v2/bundles`.
//!
//! What conductr-cli's sse_client.py expects, and so what ConductR sends: events end with a
//! blank line (`\r\n\r\n`, `\r\r` or `\n\n`), a line is `event:<type>` or `data:<value>`, and a
//! bare blank line is a heartbeat. [`EventStream`] reads that and the rest of the format: CRLF,
//! LF and CR line ends (split anywhere between chunks), one optional space after the colon,
//! `:` comment lines (ignored), `id`, `retry` and unknown fields (ignored), several `data`
//! lines joined with `\n` as the HTML standard says.
//!
//! Two choices where the standard and the official client differ: a blank line that ends no
//! field at all is yielded as [`Item::Heartbeat`] (the standard ignores it; the client counts
//! it, and re-reads the bundles every third one); an event with an `event` line and no `data`
//! is yielded with empty data (the standard drops it; the client acts on any named event). A
//! byte-order mark at the start of the stream is not skipped (ConductR sends none): it would
//! make the first line an unknown field.

use core::fmt;

use crate::bundle::BundleId;
use crate::text::{Cursor, utf8_prefix};

/// The longest event type [`EventStream`] keeps (ConductR's longest,
/// `bundleInstallationRemoved`, has 25 characters).
pub const MAX_EVENT_NAME_LEN: usize = 64;

/// The type of a bundle event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EventKind<'a> {
    /// `bundleInstallationAdded`: the bundle's files reached a node (a load progresses).
    BundleInstallationAdded,
    /// `bundleInstallationRemoved`.
    BundleInstallationRemoved,
    /// `bundleExecutionAdded`: an instance was started (or is starting).
    BundleExecutionAdded,
    /// `bundleExecutionRemoved`: an instance stopped.
    BundleExecutionRemoved,
    /// No `event` line: the standard's default type, `message`.
    Message,
    /// Any other type, kept as sent.
    Other(&'a str),
}

impl<'a> EventKind<'a> {
    /// The kind named `name` (an empty name is [`EventKind::Message`], as the standard says).
    pub fn parse(name: &'a str) -> Self {
        match name {
            "bundleInstallationAdded" => Self::BundleInstallationAdded,
            "bundleInstallationRemoved" => Self::BundleInstallationRemoved,
            "bundleExecutionAdded" => Self::BundleExecutionAdded,
            "bundleExecutionRemoved" => Self::BundleExecutionRemoved,
            "" | "message" => Self::Message,
            other => Self::Other(other),
        }
    }

    /// The type as written on the wire.
    pub const fn as_str(&self) -> &'a str {
        match self {
            Self::BundleInstallationAdded => "bundleInstallationAdded",
            Self::BundleInstallationRemoved => "bundleInstallationRemoved",
            Self::BundleExecutionAdded => "bundleExecutionAdded",
            Self::BundleExecutionRemoved => "bundleExecutionRemoved",
            Self::Message => "message",
            Self::Other(name) => name,
        }
    }
}

/// One dispatched event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Event<'a> {
    /// Its type.
    pub kind: EventKind<'a>,
    /// Its data: the `data` lines joined with `\n` (empty when there were none).
    pub data: &'a str,
}

impl Event<'_> {
    /// The data read as a bundle id, if it is one (ConductR's bundle events carry the id).
    pub fn bundle_id(&self) -> Option<BundleId> {
        BundleId::parse(self.data).ok()
    }
}

/// What the stream yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Item<'a> {
    /// An event.
    Event(Event<'a>),
    /// A blank line that ended no field: the server is alive.
    Heartbeat,
}

/// Why an event stream is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SseError {
    /// A line longer than the buffer.
    LineTooLong,
    /// An event's data, its lines joined, longer than the buffer.
    EventTooLarge,
    /// An event type longer than [`MAX_EVENT_NAME_LEN`].
    EventNameTooLong,
    /// An event's type or data is not UTF-8.
    InvalidUtf8,
    /// The stream ended inside a line or an event.
    Truncated,
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LineTooLong => f.write_str("event stream line longer than the buffer"),
            Self::EventTooLarge => f.write_str("event data larger than the buffer"),
            Self::EventNameTooLong => {
                write!(f, "event type longer than {MAX_EVENT_NAME_LEN} characters")
            }
            Self::InvalidUtf8 => f.write_str("event stream is not valid UTF-8"),
            Self::Truncated => f.write_str("event stream ends inside an event"),
        }
    }
}

impl core::error::Error for SseError {}

/// Which field a line's value goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Data,
    Event,
    Ignored,
}

/// Where the parser stands in a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    /// In the field name: this many bytes so far.
    Name(usize),
    /// In the value; `first` until a byte of it was seen (one leading space is dropped).
    Value { target: Target, first: bool },
    /// In a `:` comment.
    Comment,
}

/// A push parser of a server-sent event stream, with a caller-owned buffer for the event's
/// data (which bounds each line, too).
///
/// Feed it with [`next`](Self::next) until it answers `Ok(None)` (the chunk is used up). An
/// event's strings stay valid until the next call. At the end of the stream,
/// [`finish`](Self::finish) says whether it was cut inside an event. After an error, every
/// call answers it.
pub struct EventStream<'b> {
    /// The event's data.
    data: Cursor<'b>,
    has_data: bool,
    /// The event's type.
    kind: heapless::Vec<u8, MAX_EVENT_NAME_LEN>,
    has_kind: bool,
    /// The field name's first bytes (enough to tell `data` and `event`).
    name: [u8; 5],
    line: Line,
    line_len: usize,
    /// The last byte was a CR: a LF right after it ends nothing more.
    after_cr: bool,
    /// The last call dispatched an event: clear it on the next one.
    dispatched: bool,
    error: Option<SseError>,
}

impl fmt::Debug for EventStream<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("capacity", &self.data.capacity())
            .field("line", &self.line)
            .field("error", &self.error)
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for EventStream<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "EventStream {{ capacity: {=usize} }}",
            self.data.capacity()
        );
    }
}

impl<'b> EventStream<'b> {
    /// A parser whose events' data (and lines) may be up to `buf.len()` bytes long.
    pub fn new(buf: &'b mut [u8]) -> Self {
        Self {
            data: Cursor::new(buf),
            has_data: false,
            kind: heapless::Vec::new(),
            has_kind: false,
            name: [0; 5],
            line: Line::Name(0),
            line_len: 0,
            after_cr: false,
            dispatched: false,
            error: None,
        }
    }

    /// Consumes `input` from its start until an event or a heartbeat, and yields it; or
    /// consumes all of `input` and answers `Ok(None)`. `input` is advanced past what was
    /// consumed.
    pub fn next(&mut self, input: &mut &[u8]) -> Result<Option<Item<'_>>, SseError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.dispatched {
            self.dispatched = false;
            self.data.clear();
            self.has_data = false;
            self.kind.clear();
            self.has_kind = false;
        }
        match self.run(input) {
            Ok(false) => Ok(None),
            Ok(true) => {
                self.dispatched = true;
                let utf8 = |bytes: &[u8]| core::str::from_utf8(bytes).is_ok();
                if !utf8(&self.kind) || !utf8(self.data.written()) {
                    self.error = Some(SseError::InvalidUtf8);
                    return Err(SseError::InvalidUtf8);
                }
                Ok(Some(self.item()))
            }
            Err(e) => {
                self.error = Some(e);
                Err(e)
            }
        }
    }

    /// Checks that the stream did not end inside a line or an event.
    pub fn finish(&self) -> Result<(), SseError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let pending = !self.dispatched && (self.has_data || self.has_kind);
        if pending || self.line != Line::Name(0) {
            Err(SseError::Truncated)
        } else {
            Ok(())
        }
    }

    /// The dispatched item; its texts were checked to be UTF-8.
    fn item(&self) -> Item<'_> {
        if !self.has_data && !self.has_kind {
            return Item::Heartbeat;
        }
        // `next` checked both: the readings are the whole texts.
        Item::Event(Event {
            kind: EventKind::parse(utf8_prefix(&self.kind)),
            data: utf8_prefix(self.data.written()),
        })
    }

    /// Runs until a blank line dispatches (`true`) or `input` is used up (`false`), advancing
    /// `input` past the bytes consumed.
    fn run(&mut self, input: &mut &[u8]) -> Result<bool, SseError> {
        while let Some((&b, rest)) = input.split_first() {
            *input = rest;
            let after_cr = core::mem::replace(&mut self.after_cr, b == b'\r');
            if b == b'\n' && after_cr {
                continue;
            }
            if b == b'\r' || b == b'\n' {
                if self.end_line()? {
                    return Ok(true);
                }
                continue;
            }
            self.line_len = self.line_len.saturating_add(1);
            if self.line_len > self.data.capacity() {
                return Err(SseError::LineTooLong);
            }
            self.line_byte(b)?;
        }
        Ok(false)
    }

    fn line_byte(&mut self, b: u8) -> Result<(), SseError> {
        match self.line {
            Line::Name(0) if b == b':' => self.line = Line::Comment,
            Line::Name(len) if b == b':' => {
                let target = self.field(len)?;
                self.line = Line::Value {
                    target,
                    first: true,
                };
            }
            Line::Name(len) => {
                if let Some(slot) = self.name.get_mut(len) {
                    *slot = b;
                }
                self.line = Line::Name(len.saturating_add(1));
            }
            Line::Value { target, first } => {
                self.line = Line::Value {
                    target,
                    first: false,
                };
                if !(first && b == b' ') {
                    self.push(target, b)?;
                }
            }
            Line::Comment => {}
        }
        Ok(())
    }

    /// The field a name of `len` bytes selects, its value buffer readied.
    fn field(&mut self, len: usize) -> Result<Target, SseError> {
        // Only the first bytes are kept: a longer name is neither `data` nor `event`.
        let name = self.name.get(..len);
        Ok(if name == Some(b"data") {
            if self.has_data {
                self.push(Target::Data, b'\n')?;
            }
            self.has_data = true;
            Target::Data
        } else if name == Some(b"event") {
            self.kind.clear();
            self.has_kind = true;
            Target::Event
        } else {
            Target::Ignored
        })
    }

    fn push(&mut self, target: Target, b: u8) -> Result<(), SseError> {
        match target {
            Target::Data => self
                .data
                .write_bytes(&[b])
                .map_err(|_| SseError::EventTooLarge)?,
            Target::Event => self.kind.push(b).map_err(|_| SseError::EventNameTooLong)?,
            Target::Ignored => {}
        }
        Ok(())
    }

    /// Ends a line; `true` when it was blank (dispatch).
    fn end_line(&mut self) -> Result<bool, SseError> {
        let line = core::mem::replace(&mut self.line, Line::Name(0));
        self.line_len = 0;
        match line {
            Line::Name(0) => return Ok(true),
            // A field name alone: its value is empty.
            Line::Name(len) => {
                self.field(len)?;
            }
            Line::Value { .. } | Line::Comment => {}
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use std::format;
    use std::string::{String, ToString};
    use std::vec::Vec;

    use super::*;

    const ID: &str = "6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c-0f1e2d3c4b5a69788796a5b4c3d2e1f0";

    /// (kind, data) per event; `None` for a heartbeat.
    type Items = Vec<Option<(String, String)>>;

    fn parse_with(stream: &[u8], chunk: usize, buf: &mut [u8]) -> Result<Items, SseError> {
        let mut parser = EventStream::new(buf);
        let mut items = Vec::new();
        for piece in stream.chunks(chunk.max(1)) {
            let mut rest = piece;
            while let Some(item) = parser.next(&mut rest)? {
                items.push(match item {
                    Item::Heartbeat => None,
                    Item::Event(e) => Some((e.kind.as_str().to_string(), e.data.to_string())),
                });
            }
            assert!(rest.is_empty());
        }
        parser.finish()?;
        Ok(items)
    }

    fn parse(stream: &[u8], chunk: usize) -> Result<Items, SseError> {
        let mut buf = [0u8; 256];
        parse_with(stream, chunk, &mut buf)
    }

    fn event(kind: &str, data: &str) -> Option<(String, String)> {
        Some((kind.into(), data.into()))
    }

    // What conductr-cli's sse_client.py parses: `event:` and `data:` lines without a space,
    // events ended by `\n\n`, `\r\n\r\n` or `\r\r`, bare blank lines as heartbeats
    // (docs/PROTOCOL.md §5: "empty-line heartbeats"). `\r\r\n` is a line ended by CR, then a
    // blank line ended by CRLF.
    #[test]
    fn test_parse_conductr_stream() {
        let stream = format!(
            "\n\nevent:bundleInstallationAdded\ndata:{ID}\n\n\r\n\
             event:bundleExecutionAdded\r\ndata:{ID}\r\n\r\n\
             event:bundleExecutionRemoved\rdata:{ID}\r\r\
             \n:\n\nevent:bundleInstallationRemoved\ndata:{ID}\n\n"
        );
        let expected = [
            None,
            None,
            event("bundleInstallationAdded", ID),
            None,
            event("bundleExecutionAdded", ID),
            event("bundleExecutionRemoved", ID),
            None,
            event("bundleInstallationRemoved", ID),
        ];
        for chunk in 1..stream.len() + 1 {
            assert_eq!(
                parse(stream.as_bytes(), chunk).unwrap(),
                expected,
                "{chunk}"
            );
        }
    }

    #[test]
    fn test_parse_event_and_bundle_id() {
        let mut buf = [0u8; 128];
        let mut parser = EventStream::new(&mut buf);
        let stream = format!("event: bundleExecutionAdded\ndata: {ID}\n\n");
        let mut rest = stream.as_bytes();
        let Some(Item::Event(e)) = parser.next(&mut rest).unwrap() else {
            panic!("no event");
        };
        assert_eq!(e.kind, EventKind::BundleExecutionAdded);
        assert_eq!(e.bundle_id().unwrap().to_text().as_str(), ID);
        assert!(rest.is_empty());
        assert_eq!(parser.next(&mut rest), Ok(None));
    }

    // The HTML standard's rules: one space after the colon is dropped (only one); `data` lines
    // are joined with `\n`; a field name alone has an empty value; comments, `id`, `retry` and
    // unknown fields are ignored; the last `event` line wins; no `event` line is `message`.
    #[test]
    fn test_parse_standard_fields() {
        let stream = b": comment\nid: 7\nretry: 100\nfoo: bar\ndata:  two spaces\ndata\ndata:x:y\nevent:a\nevent: fancyThing\n\ndata:plain\n\nevent:named\n\n";
        let expected = [
            event("fancyThing", " two spaces\n\nx:y"),
            event("message", "plain"),
            event("named", ""),
        ];
        for chunk in [1, 2, 5, stream.len()] {
            assert_eq!(parse(stream, chunk).unwrap(), expected);
        }
        assert_eq!(
            EventKind::parse("bundleExecutionAdded").as_str(),
            "bundleExecutionAdded"
        );
        assert_eq!(EventKind::parse("x"), EventKind::Other("x"));
        assert_eq!(EventKind::parse(""), EventKind::Message);
    }

    // lockstep's own heartbeat (docs/PROTOCOL.md §2: `:\n\n`) is one heartbeat.
    #[test]
    fn test_parse_comment_heartbeat() {
        assert_eq!(parse(b":\n\n:\r\n\r\n", 1).unwrap(), [None, None]);
    }

    #[test]
    fn test_reject_sizes() {
        let mut four = [0u8; 4];
        assert_eq!(
            parse_with(b"data:abcd\n\n", 1, &mut four),
            Err(SseError::LineTooLong)
        );
        let mut nine = [0u8; 9];
        assert_eq!(
            parse_with(b"data:abcd\n\n", 1, &mut nine).unwrap(),
            [event("message", "abcd")]
        );
        assert_eq!(
            parse_with(b"data:abcd\ndata:efgh\ndata\n\n", 3, &mut nine),
            Err(SseError::EventTooLarge)
        );
        assert_eq!(
            parse_with(b"data:abcd\ndata:efgh\n\n", 3, &mut nine).unwrap(),
            [event("message", "abcd\nefgh")]
        );
        let long = format!("event:{}\n\n", "e".repeat(MAX_EVENT_NAME_LEN + 1));
        let mut buf = [0u8; 256];
        assert_eq!(
            parse_with(long.as_bytes(), 7, &mut buf),
            Err(SseError::EventNameTooLong)
        );
        let fits = format!("event:{}\n\n", "e".repeat(MAX_EVENT_NAME_LEN));
        assert!(parse_with(fits.as_bytes(), 7, &mut buf).is_ok());
        assert_eq!(parse(b"data:\xff\n\n", 1), Err(SseError::InvalidUtf8));
    }

    #[test]
    fn test_truncated_stream() {
        let stream = format!("event:bundleExecutionAdded\ndata:{ID}\n\n");
        for len in 0..stream.len() {
            let r = parse(&stream.as_bytes()[..len], 3);
            match len {
                0 => assert_eq!(r, Ok(Vec::new())),
                _ => assert_eq!(r, Err(SseError::Truncated), "{len}"),
            }
        }
        assert!(parse(stream.as_bytes(), 3).is_ok());
        // A stream may end between events, and after a lone CR.
        assert!(parse(b"\r", 1).is_ok());
    }

    #[test]
    fn test_reject_after_error_sticks() {
        let mut buf = [0u8; 2];
        let mut parser = EventStream::new(&mut buf);
        let mut rest = &b"data:x\n"[..];
        assert_eq!(parser.next(&mut rest), Err(SseError::LineTooLong));
        let mut more = &b"\n"[..];
        assert_eq!(parser.next(&mut more), Err(SseError::LineTooLong));
        assert_eq!(parser.finish(), Err(SseError::LineTooLong));
    }
}
