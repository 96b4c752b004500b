//! Frames: round trips of every kind at their bounds, a frozen vector, the torn tail at every
//! cut, and every flipped byte found as corrupt.

use std::vec::Vec;

use super::*;
use crate::deployer::persist::MAX_RECORD_LEN;
use crate::deployer::persist::tests::{events, worst};

fn stamp() -> Stamp {
    Stamp {
        mac: [0xAB; MAC_LEN],
        t: 1_700_000_000,
    }
}

fn entries() -> Vec<Entry> {
    let mut entries = Vec::from([Entry::Record(worst())]);
    entries.extend(events().into_iter().map(Entry::Event));
    entries.push(Entry::Stamp(stamp()));
    entries.push(Entry::Forget(DeploymentId::from_bytes([7; 16])));
    entries
}

fn frame(entry: &Entry) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let len = encode(entry, &mut buf).unwrap();
    buf[..len].to_vec()
}

/// Reads every frame of `bytes` (after the header) to the end or the first damage.
fn read_all(bytes: &[u8]) -> (Vec<Entry>, Frame) {
    let mut at = read_header(bytes).unwrap();
    let mut out = Vec::new();
    loop {
        match read_frame(&bytes[at..]) {
            Frame::Entry { entry, len } => {
                out.push(entry);
                at += len;
            }
            other => return (out, other),
        }
    }
}

fn journal(entries: &[Entry]) -> Vec<u8> {
    let mut bytes = HEADER.to_vec();
    for entry in entries {
        bytes.extend(frame(entry));
    }
    bytes
}

#[test]
fn test_header_is_magic_and_version() {
    assert_eq!(&HEADER[..8], &MAGIC);
    assert_eq!(HEADER[8], VERSION);
    assert_eq!(read_header(&HEADER), Ok(HEADER.len()));
    assert_eq!(
        read_header(b"lockstep\x02"),
        Err(HeaderError::UnknownVersion(2))
    );
    assert_eq!(read_header(b"lockstep"), Err(HeaderError::NotAJournal));
    assert_eq!(
        read_header(b"PK\x03\x04 a zip"),
        Err(HeaderError::NotAJournal)
    );
    assert_eq!(read_header(b""), Err(HeaderError::NotAJournal));
}

#[test]
fn test_round_trip_every_kind_within_the_bound() {
    let entries = entries();
    for entry in &entries {
        let bytes = frame(entry);
        assert!(bytes.len() <= MAX_FRAME_LEN);
        assert_eq!(
            read_frame(&bytes),
            Frame::Entry {
                entry: *entry,
                len: bytes.len()
            }
        );
    }
    // The longest record takes the whole bound.
    assert_eq!(frame(&Entry::Record(worst())).len(), MAX_FRAME_LEN);
    let mut short = [0u8; MAX_FRAME_LEN - 1];
    assert_eq!(
        encode(&Entry::Record(worst()), &mut short),
        Err(BufferTooSmall)
    );
    let (read, end) = read_all(&journal(&entries));
    assert_eq!((read, end), (entries, Frame::End));
}

/// Version 1's bytes of a `forget` frame, written out by hand from the grammar.
#[test]
fn test_vector_forget_frame() {
    let body: Vec<u8> = [1u8, 4].into_iter().chain([7u8; 16]).collect();
    let length = 18u32.to_le_bytes();
    let mut expected = length.to_vec();
    expected.extend(crc32fast::hash(&length).to_le_bytes());
    expected.extend(&body);
    expected.extend(crc32fast::hash(&body).to_le_bytes());
    assert_eq!(
        frame(&Entry::Forget(DeploymentId::from_bytes([7; 16]))),
        expected
    );
}

#[test]
fn test_torn_last_frame_at_every_cut_keeps_the_frames_before() {
    let entries = entries();
    let whole = journal(&entries);
    let last = frame(entries.last().unwrap()).len();
    let before = &entries[..entries.len() - 1];
    for cut in 1..last {
        let bytes = &whole[..whole.len() - last + cut];
        assert_eq!(read_all(bytes), (before.to_vec(), Frame::Torn), "cut {cut}");
    }
    // A zero-filled tail (a file extended, its data never written) is torn too.
    let mut zeros = journal(before);
    zeros.extend([0u8; 100]);
    assert_eq!(read_all(&zeros), (before.to_vec(), Frame::Torn));
}

#[test]
fn test_every_flipped_byte_of_a_frame_before_another_is_corrupt() {
    let entries = [
        Entry::Stamp(stamp()),
        Entry::Forget(DeploymentId::from_bytes([7; 16])),
    ];
    let whole = journal(&entries);
    let first = frame(&entries[0]).len();
    for at in HEADER.len()..HEADER.len() + first {
        for bit in [0x01, 0x80] {
            let mut bytes = whole.clone();
            bytes[at] ^= bit;
            let (read, end) = read_all(&bytes);
            assert!(read.is_empty(), "byte {at}");
            assert!(matches!(end, Frame::Corrupt(_)), "byte {at}: {end:?}");
        }
    }
}

#[test]
fn test_corrupt_kinds() {
    let good = frame(&Entry::Stamp(stamp()));
    // A body re-checked after a change: the decoder, not the checksum, refuses it.
    let rechecked = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut body = good[8..good.len() - 4].to_vec();
        edit(&mut body);
        let length = u32::try_from(body.len()).unwrap().to_le_bytes();
        let mut bytes = length.to_vec();
        bytes.extend(crc32fast::hash(&length).to_le_bytes());
        bytes.extend(&body);
        bytes.extend(crc32fast::hash(&body).to_le_bytes());
        read_frame(&bytes)
    };
    assert_eq!(
        rechecked(&|b| b[0] = 2),
        Frame::Corrupt(Corrupt::UnknownVersion(2))
    );
    assert_eq!(
        rechecked(&|b| b[1] = 9),
        Frame::Corrupt(Corrupt::UnknownKind(9))
    );
    assert_eq!(
        rechecked(&|b| b.push(0)),
        Frame::Corrupt(Corrupt::Payload(persist::DecodeError::Trailing))
    );
    assert_eq!(
        rechecked(&|b| {
            b.pop();
        }),
        Frame::Corrupt(Corrupt::Payload(persist::DecodeError::Truncated))
    );
    assert_eq!(
        rechecked(&|b| b.truncate(1)),
        Frame::Corrupt(Corrupt::Length(1))
    );
    // A length past the bound, checked: corrupt, not torn.
    let length = u32::try_from(MAX_BODY_LEN + 1).unwrap().to_le_bytes();
    let mut bytes = length.to_vec();
    bytes.extend(crc32fast::hash(&length).to_le_bytes());
    assert_eq!(
        read_frame(&bytes),
        Frame::Corrupt(Corrupt::Length(u32::try_from(MAX_BODY_LEN + 1).unwrap()))
    );
    assert_eq!(read_frame(&[]), Frame::End);
}

/// The bounds docs/PROTOCOL.md §8 and §9 state.
#[test]
fn test_documented_bounds() {
    assert_eq!(MAX_RECORD_LEN, 1_379);
    assert_eq!(MAX_BODY_LEN, 1_381);
    assert_eq!(MAX_FRAME_LEN, 1_393);
}
