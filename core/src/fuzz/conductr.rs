//! The `conductr` target: the control API codec's push parsers, each fed the same input cut in
//! several ways (whole, in fixed chunks, byte by byte, in pseudo-random chunks), which must all
//! agree; and the framing, whose output must read back to what was framed.

use core::fmt::Write as _;
use core::num::NonZeroUsize;

use sha2::{Digest as _, Sha256};

use crate::bundle::{BundleId, Digest};
use crate::conductr::bundles::{ArraySplitter, BundleInfo, RequestAnswer, SplitError};
use crate::conductr::multipart::{
    Boundary, Event, FileName, LoadField, LoadOrder, MAX_CLOSE_LEN, MAX_PART_HEAD_LEN, Multipart,
    MultipartError, MultipartReader, Part, boundary_from_content_type, split_zip_name,
};
use crate::conductr::sse::{EventKind, EventStream, Item, SseError};
use crate::conductr::{BundlePath, MAX_BUNDLE_PATH_LEN, MAX_SCALE_TARGET_LEN, ScaleTarget};
use crate::deployer::BundleView;
use crate::json;
use crate::limits::MAX_BUNDLE_TAGS;
use crate::text::{Cursor, len_u64};

/// The element buffer of the list (a small one too, to reach `ElementTooLarge`).
const ELEMENT: usize = 4096;
const SMALL_ELEMENT: usize = 256;
/// The head buffer of the multipart reader.
const HEAD: usize = 512;
/// The event buffer of the stream (and a large one, that must agree when the small fits).
const EVENT: usize = 256;
const LARGE_EVENT: usize = 4096;
/// The most content the framing round trip frames.
const FRAMED: usize = 8 * 1024;

/// Input layout: byte 0 picks the sub-target (`% 4`: the bundle list, a multipart body, an
/// event stream, the small answers and targets); byte 1 seeds the chunk sizes; the rest is
/// the body. A multipart body starts with its boundary and a `\n`.
pub fn conductr(data: &[u8]) {
    let [selector, seed, body @ ..] = data else {
        return;
    };
    match selector % 4 {
        0 => bundle_list(body, *seed),
        1 => multipart(body, *seed),
        2 => event_stream(body, *seed),
        _ => small(body),
    }
}

/// How a body is cut into chunks (the `index` target cuts its bodies the same ways).
#[derive(Clone, Copy)]
pub(super) enum Cut {
    Whole,
    Fixed(usize),
    Random(u32),
}

impl Cut {
    pub(super) fn all(seed: u8, len: usize) -> [Self; 4] {
        let state = u32::from(seed)
            .wrapping_mul(0x9E37_79B9)
            // Any bits of the length do: they only vary the seed.
            .wrapping_add(len as u32)
            | 1;
        [
            Self::Whole,
            Self::Fixed(usize::from(seed % 17).saturating_add(1)),
            Self::Fixed(1),
            Self::Random(state),
        ]
    }

    fn next_len(&mut self, left: usize) -> usize {
        match self {
            Self::Whole => left,
            Self::Fixed(n) => *n,
            Self::Random(state) => {
                // xorshift32
                *state ^= *state << 13;
                *state ^= *state >> 17;
                *state ^= *state << 5;
                let [low, ..] = state.to_le_bytes();
                usize::from(low % 64).saturating_add(1)
            }
        }
    }

    /// Calls `each` with successive chunks of `body`.
    pub(super) fn chunks<'a>(mut self, body: &'a [u8], mut each: impl FnMut(&'a [u8])) {
        let mut rest = body;
        while !rest.is_empty() {
            let n = self.next_len(rest.len()).min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            each(chunk);
            rest = tail;
        }
    }
}

fn hash_len(hasher: &mut Sha256, len: usize) {
    hasher.update(len_u64(len).to_le_bytes());
}

// ---------------------------------------------------------------------------------------------
// The bundle list
// ---------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
struct ListOutcome {
    elements: [u8; 32],
    count: u64,
    longest: usize,
    result: Result<(), SplitError>,
}

fn bundle_list(body: &[u8], seed: u8) {
    // The parsers on the raw body: never a panic.
    if let Ok(bundle) = BundleInfo::parse(body) {
        check_bundle(&bundle);
    }
    let _ = RequestAnswer::parse(body);
    let mut first: Option<ListOutcome> = None;
    for cut in Cut::all(seed, body.len()) {
        let mut buf = [0u8; ELEMENT];
        let outcome = split(body, cut, &mut buf);
        match &first {
            None => first = Some(outcome),
            Some(first) => assert_eq!(first, &outcome),
        }
    }
    let Some(big) = first else {
        return;
    };
    // A smaller buffer gives the same answer, unless an element does not fit it.
    let mut small = [0u8; SMALL_ELEMENT];
    let outcome = split(body, Cut::Whole, &mut small);
    if outcome.result == Err(SplitError::ElementTooLarge) {
        // Some element, complete or cut short by an error, was larger than it.
        assert!(outcome.count <= big.count);
        assert!(big.longest > SMALL_ELEMENT || big.result.is_err());
    } else {
        assert_eq!(outcome, big);
    }
}

fn split(body: &[u8], cut: Cut, buf: &mut [u8]) -> ListOutcome {
    let capacity = buf.len();
    let mut splitter = ArraySplitter::new(buf);
    let mut hasher = Sha256::new();
    let mut longest = 0;
    let mut failed = None;
    cut.chunks(body, |chunk| {
        let mut rest = chunk;
        loop {
            match splitter.next_element(&mut rest) {
                Ok(Some(element)) => {
                    assert!(element.len() <= capacity);
                    assert!(json::validate(element, json::MAX_DEPTH).is_ok());
                    longest = longest.max(element.len());
                    hash_len(&mut hasher, element.len());
                    hasher.update(element);
                    if let Ok(bundle) = BundleInfo::parse(element) {
                        check_bundle(&bundle);
                    }
                }
                Ok(None) => {
                    assert!(rest.is_empty());
                    break;
                }
                Err(e) => {
                    // The error sticks.
                    assert_eq!(splitter.next_element(&mut rest), Err(e));
                    failed = Some(e);
                    break;
                }
            }
        }
    });
    let result = splitter.finish();
    if let Some(e) = failed {
        assert_eq!(result, Err(e));
    }
    if result.is_ok() {
        assert!(splitter.is_done());
        assert_eq!(splitter.offset(), len_u64(body.len()));
    }
    ListOutcome {
        elements: hasher.finalize().into(),
        count: splitter.elements(),
        longest,
        result,
    }
}

fn check_bundle(bundle: &BundleInfo<'_>) {
    assert_eq!(
        BundleId::of(&bundle.digest, bundle.configuration_digest.as_ref()),
        bundle.id
    );
    assert!(!bundle.name.contains('\\'));
    assert!(!bundle.compatibility_version.contains('\\'));
    assert!(bundle.tags.len() <= MAX_BUNDLE_TAGS);
    assert!(bundle.tags.iter().all(|t| !t.contains('\\')));
    let view = BundleView::from(bundle);
    assert_eq!(view.id, bundle.id);
    assert_eq!(view.tags, bundle.tags);
    assert!(view.is_of(&bundle.digest));
    assert_eq!(view.target_scale(), bundle.scale.unwrap_or(bundle.started));
}

// ---------------------------------------------------------------------------------------------
// Multipart
// ---------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
struct FormOutcome {
    events: [u8; 32],
    parts: u32,
    result: Result<(), MultipartError>,
}

fn multipart(input: &[u8], seed: u8) {
    let mut lines = input.splitn(2, |&b| b == b'\n');
    let (boundary, body) = match (lines.next(), lines.next()) {
        (Some(boundary), Some(body)) => (boundary, body),
        _ => (&b"b0undary"[..], input),
    };
    let Ok(default) = Boundary::new("b0undary") else {
        return;
    };
    let boundary = core::str::from_utf8(boundary)
        .ok()
        .and_then(|b| Boundary::new(b).ok())
        .unwrap_or(default);
    let mut first: Option<FormOutcome> = None;
    for cut in Cut::all(seed, body.len()) {
        let outcome = read_form(boundary, body, cut);
        match &first {
            None => first = Some(outcome),
            Some(first) => assert_eq!(first, &outcome),
        }
    }
    round_trip(boundary, body, seed);
}

fn read_form(boundary: Boundary<'_>, body: &[u8], cut: Cut) -> FormOutcome {
    let mut head = [0u8; HEAD];
    let mut reader = MultipartReader::new(boundary, &mut head);
    let mut events = Sha256::new();
    let mut content = Sha256::new();
    let mut open = false;
    let mut ended = false;
    let mut failed = None;
    cut.chunks(body, |chunk| {
        let mut rest = chunk;
        loop {
            match reader.next(&mut rest) {
                Ok(Some(event)) => {
                    assert!(!ended);
                    match event {
                        Event::PartStart { name, filename } => {
                            assert!(!open);
                            open = true;
                            events.update(b"S");
                            hash_len(&mut events, name.len());
                            events.update(name);
                            if let Some(filename) = filename {
                                hash_len(&mut events, filename.len());
                                events.update(filename);
                            }
                        }
                        Event::Data(data) => {
                            assert!(open && !data.is_empty());
                            content.update(data);
                        }
                        Event::PartEnd => {
                            assert!(open);
                            open = false;
                            events.update(b"E");
                            events.update(core::mem::take(&mut content).finalize());
                        }
                        Event::End => {
                            assert!(!open);
                            ended = true;
                            events.update(b"Z");
                        }
                    }
                }
                Ok(None) => {
                    assert!(rest.is_empty());
                    break;
                }
                Err(e) => {
                    assert_eq!(reader.next(&mut rest), Err(e));
                    failed = Some(e);
                    break;
                }
            }
        }
    });
    let result = reader.finish();
    if let Some(e) = failed {
        assert_eq!(result, Err(e));
    }
    assert_eq!(result.is_ok(), ended && failed.is_none());
    FormOutcome {
        events: events.finalize().into(),
        parts: reader.parts(),
        result,
    }
}

/// Frames up to four pieces of the input as a load request, and reads it back.
fn round_trip(boundary: Boundary<'_>, body: &[u8], seed: u8) {
    let (body, _) = body.split_at(FRAMED.min(body.len()));
    let mut delimiter = [0u8; 74];
    let mut cursor = Cursor::new(&mut delimiter);
    if write!(cursor, "\r\n--{boundary}").is_err() {
        return;
    }
    let delimiter = cursor.written();
    // Cut the body in up to four contents at seed-chosen places.
    let mut contents: [&[u8]; 4] = [&[]; 4];
    let count = usize::from(seed % 4).saturating_add(1);
    let mut rest = body;
    for (i, slot) in contents.iter_mut().enumerate().take(count) {
        let n = if i.saturating_add(1) == count {
            rest.len()
        } else {
            (usize::from(seed) ^ i.wrapping_mul(31)) % NonZeroUsize::MIN.saturating_add(rest.len())
        };
        let (content, tail) = rest.split_at(n.min(rest.len()));
        *slot = content;
        rest = tail;
    }
    // `count` is 1 to 4: the split is within the four.
    let (contents, _) = contents.split_at(count.min(contents.len()));
    if contents
        .iter()
        .any(|c| c.windows(delimiter.len()).any(|w| w == delimiter))
    {
        return;
    }
    let digest = Digest::from_bytes([seed; 32]);
    let mut parts: heapless::Vec<Part<'_>, 4> = heapless::Vec::new();
    for (content, field) in contents.iter().zip(LoadField::ALL) {
        let filename = match field {
            LoadField::Bundle => Some(FileName::Configuration(digest)),
            LoadField::Configuration => None,
            _ => Some(FileName::Plain("bundle.conf")),
        };
        let _ = parts.push(Part {
            name: field.name(),
            filename,
            len: len_u64(content.len()),
        });
    }
    let Ok(form) = Multipart::new(boundary, &parts) else {
        return;
    };
    let mut framed = [0u8; FRAMED + 4 * MAX_PART_HEAD_LEN + MAX_CLOSE_LEN];
    let mut out = Cursor::new(&mut framed);
    for (index, content) in contents.iter().enumerate() {
        assert!(form.write_head(index, &mut out).is_ok());
        assert!(out.write_bytes(content).is_ok());
    }
    assert!(form.write_close(&mut out).is_ok());
    assert_eq!(len_u64(out.len()), form.content_length());
    let framed = out.written();
    for cut in Cut::all(seed, framed.len()) {
        let mut head = [0u8; MAX_PART_HEAD_LEN];
        let mut reader = MultipartReader::new(boundary, &mut head);
        let mut part = 0usize;
        let mut at = 0usize;
        let mut order = LoadOrder::new();
        cut.chunks(framed, |chunk| {
            let mut rest = chunk;
            while let Some(event) = reader.next(&mut rest).ok().flatten() {
                match event {
                    Event::PartStart { name, filename } => {
                        assert_eq!(parts.get(part).map(|p| p.name), Some(name));
                        assert!(order.accept(name).is_ok());
                        assert_eq!(filename.is_some(), part < 3);
                        at = 0;
                    }
                    Event::Data(data) => {
                        let end = at.saturating_add(data.len());
                        let expected = contents.get(part).and_then(|c| c.get(at..end));
                        assert_eq!(expected, Some(data));
                        at = end;
                    }
                    Event::PartEnd => {
                        assert_eq!(contents.get(part).map(|c| c.len()), Some(at));
                        part = part.saturating_add(1);
                    }
                    Event::End => assert_eq!(part, contents.len()),
                }
            }
        });
        assert_eq!(reader.finish(), Ok(()));
        assert_eq!(part, contents.len());
        if count >= 3 {
            assert!(order.finish().is_ok());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The event stream
// ---------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
struct StreamOutcome {
    items: [u8; 32],
    count: usize,
    result: Result<(), SseError>,
}

fn event_stream(body: &[u8], seed: u8) {
    let mut first: Option<StreamOutcome> = None;
    for cut in Cut::all(seed, body.len()) {
        let mut buf = [0u8; EVENT];
        let outcome = stream(body, cut, &mut buf);
        match &first {
            None => first = Some(outcome),
            Some(first) => assert_eq!(first, &outcome),
        }
    }
    // A larger buffer agrees whenever the smaller one had room.
    let Some(small) = first else {
        return;
    };
    let mut buf = [0u8; LARGE_EVENT];
    let large = stream(body, Cut::Whole, &mut buf);
    if !matches!(
        small.result,
        Err(SseError::LineTooLong | SseError::EventTooLarge)
    ) {
        assert_eq!(small, large);
    }
}

fn stream(body: &[u8], cut: Cut, buf: &mut [u8]) -> StreamOutcome {
    let capacity = buf.len();
    let mut parser = EventStream::new(buf);
    let mut hasher = Sha256::new();
    let mut count = 0usize;
    let mut failed = None;
    cut.chunks(body, |chunk| {
        let mut rest = chunk;
        loop {
            match parser.next(&mut rest) {
                Ok(Some(item)) => {
                    count = count.saturating_add(1);
                    match item {
                        Item::Heartbeat => hasher.update(b"H"),
                        Item::Event(event) => {
                            assert!(event.data.len() <= capacity);
                            let kind = event.kind.as_str();
                            assert_eq!(EventKind::parse(kind), event.kind);
                            hasher.update(b"E");
                            hash_len(&mut hasher, kind.len());
                            hasher.update(kind);
                            hash_len(&mut hasher, event.data.len());
                            hasher.update(event.data);
                            let _ = event.bundle_id();
                        }
                    }
                }
                Ok(None) => {
                    assert!(rest.is_empty());
                    break;
                }
                Err(e) => {
                    assert_eq!(parser.next(&mut rest), Err(e));
                    failed = Some(e);
                    break;
                }
            }
        }
    });
    let result = parser.finish();
    if let Some(e) = failed {
        assert_eq!(result, Err(e));
    }
    StreamOutcome {
        items: hasher.finalize().into(),
        count,
        result,
    }
}

// ---------------------------------------------------------------------------------------------
// Small answers and targets
// ---------------------------------------------------------------------------------------------

fn small(body: &[u8]) {
    if let Ok(answer) = RequestAnswer::parse(body) {
        assert!(answer.request_id.is_none_or(|r| !r.contains('\\')));
    }
    let Ok(text) = core::str::from_utf8(body) else {
        return;
    };
    // What we write as a Content-Type reads back to the same boundary.
    for candidate in [boundary_from_content_type(text), Some(text)]
        .into_iter()
        .flatten()
    {
        if let Ok(boundary) = Boundary::new(candidate) {
            let mut buf = [0u8; 128];
            let mut out = Cursor::new(&mut buf);
            assert!(write!(out, "{}", boundary.content_type()).is_ok());
            let written = core::str::from_utf8(out.written()).ok();
            assert_eq!(
                written.and_then(boundary_from_content_type),
                Some(candidate)
            );
        }
    }
    if let Some((prefix, digest)) = split_zip_name(text) {
        assert!(text.starts_with(prefix));
        assert!(text.len() == prefix.len().saturating_add(69));
        let _ = digest.to_hex();
    }
    let mut order = LoadOrder::new();
    for line in text.lines() {
        if order.accept(line).is_err() {
            break;
        }
    }
    let _ = order.finish();
    assert!(text.is_empty() || EventKind::parse(text).as_str() == text);
    // Targets of ids made from the input.
    let mut bytes = [0u8; 32];
    for (dst, src) in bytes.iter_mut().zip(body) {
        *dst = *src;
    }
    let id = BundleId::of(&Digest::from_bytes(bytes), None);
    let with_config = BundleId::of(
        &Digest::from_bytes(bytes),
        Some(&Digest::from_bytes([0xab; 32])),
    );
    let [a, b, c, d, ..] = bytes;
    let scale = u32::from_le_bytes([a, b, c, d]);
    let mut buf = [0u8; MAX_SCALE_TARGET_LEN];
    let mut out = Cursor::new(&mut buf);
    let target = ScaleTarget {
        id: with_config,
        scale,
        affinity: Some(id),
    };
    assert!(write!(out, "{target}").is_ok());
    let mut buf = [0u8; MAX_BUNDLE_PATH_LEN];
    assert!(write!(Cursor::new(&mut buf), "{}", BundlePath(with_config)).is_ok());
}
