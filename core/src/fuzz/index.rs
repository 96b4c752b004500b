//! The `index` target: [`IndexScan`] over any bytes, fed in several cuts (whole, in fixed
//! chunks, byte by byte, in pseudo-random chunks), which must all give the same answer; with a
//! small element buffer, the same answer unless an element does not fit it.

use super::conductr::Cut;
use crate::bundle::{BundleId, Digest, Segment};
use crate::index::{IndexError, IndexScan, Tag};

/// The element buffer (a small one too, to reach `ElementTooLarge`).
const ELEMENT: usize = 4096;
const SMALL_ELEMENT: usize = 128;

/// Input layout: byte 0 picks which of two digests (`11..11` and `22..22`, 64 hex digits each)
/// is the notified one and which the running bundle's (bit 0); byte 1 seeds the chunk sizes;
/// the rest is the body.
pub fn index(data: &[u8]) {
    let [selector, seed, body @ ..] = data else {
        return;
    };
    let (ones, twos) = (
        Digest::from_bytes([0x11; 32]),
        Digest::from_bytes([0x22; 32]),
    );
    let (new, old) = if selector & 1 == 0 {
        (ones, twos)
    } else {
        (twos, ones)
    };
    let old = BundleId::of(&old, None);
    let mut first = None;
    for cut in Cut::all(*seed, body.len()) {
        let mut buf = [0u8; ELEMENT];
        let answer = scan(body, cut, &mut buf, new, old);
        match &first {
            None => first = Some(answer),
            Some(first) => assert_eq!(first, &answer),
        }
    }
    let Some(big) = first else {
        return;
    };
    if let Ok(Some(tag)) = &big {
        assert!(Segment::parse(tag.as_str()).is_ok());
    }
    let mut small = [0u8; SMALL_ELEMENT];
    let answer = scan(body, Cut::Whole, &mut small, new, old);
    if answer != Err(IndexError::ElementTooLarge) {
        assert_eq!(answer, big);
    }
}

/// Feeds `body` cut by `cut`; the first error of a feed is also what `finish` answers.
fn scan(
    body: &[u8],
    cut: Cut,
    buf: &mut [u8],
    new: Digest,
    old: BundleId,
) -> Result<Option<Tag>, IndexError> {
    let mut scan = IndexScan::new(buf, new, old);
    let mut failed = None;
    cut.chunks(body, |chunk| {
        let fed = scan.feed(chunk);
        match (failed, fed) {
            // The error sticks.
            (Some(e), fed) => assert_eq!(fed, Err(e)),
            (None, Err(e)) => failed = Some(e),
            (None, Ok(())) => {}
        }
    });
    let answer = scan.finish();
    if let Some(e) = failed {
        assert_eq!(answer, Err(e));
    }
    answer
}
