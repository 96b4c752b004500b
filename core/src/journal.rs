//! The journal: what a runtime keeps so that a restart forgets nothing (docs/DESIGN.md
//! "Seams for state"). Its entries are the deployment records, the events of every
//! deployment, the replay-cache entries of accepted lockstep signatures, and the deployments
//! that fell out of retention; each is one frame, encoded and decoded here without std or
//! alloc. Where frames go is the runtime's, behind [`Journal`]: an append-only file, a flash
//! region, a cluster store.
//!
//! ```text
//! journal = magic:"lockstep" version:u8 (= 1) frame*
//! frame   = length:u32 head:u32 body check:u32
//!             head  = CRC-32 of the 4 length bytes: a length is trusted before its body is read
//!             check = CRC-32 of the body
//! body    = version:u8 (= 1) kind:u8 payload          (length = its size, 2..=MAX_BODY_LEN)
//! kind    = 1 record    payload = deployer::persist::encode
//!           2 event     payload = deployer::persist::encode_event
//!           3 stamp     payload = mac:32 t:u64        a replay-cache entry
//!           4 forget    payload = id:16               an ended deployment out of retention
//! ```
//!
//! Integers are little-endian; the CRC is CRC-32 (IEEE, as zip's). A journal is read in
//! order and folded by deployment: the latest record of an id wins, its events are appended,
//! a `forget` drops it. Decoding is strict ([`read_frame`]): what decodes encodes to the same
//! bytes. A crash in the middle of an append leaves a *torn* last frame — a header or body cut
//! short, or a zero-filled tail — which a reader drops (and says where); any other damage is
//! *corrupt*, and a reader must not guess past it.

use core::fmt;

use crate::deployer::persist::{self, MAX_EVENT_LEN, MAX_RECORD_LEN};
use crate::deployer::{DeploymentId, Event, Record};
use crate::signature::{MAC_LEN, Stamp};

/// The first bytes of a journal.
pub const MAGIC: [u8; 8] = *b"lockstep";

/// The version of the journal's format: the byte after [`MAGIC`], and the first byte of every
/// frame's body.
pub const VERSION: u8 = 1;

/// The journal's header: [`MAGIC`] and [`VERSION`].
pub const HEADER: [u8; 9] = *b"lockstep\x01";

/// The length and its check, before a body.
const HEAD_LEN: usize = 8;
/// The check after a body.
const CHECK_LEN: usize = 4;

const STAMP_LEN: usize = MAC_LEN + 8;
const FORGET_LEN: usize = 16;

/// The longest body: a record's.
pub const MAX_BODY_LEN: usize = 2 + max(max(MAX_RECORD_LEN, MAX_EVENT_LEN), STAMP_LEN);

/// The longest frame: [`encode`] never needs a larger buffer.
pub const MAX_FRAME_LEN: usize = HEAD_LEN + MAX_BODY_LEN + CHECK_LEN;

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

const KIND_RECORD: u8 = 1;
const KIND_EVENT: u8 = 2;
const KIND_STAMP: u8 = 3;
const KIND_FORGET: u8 = 4;

/// One entry of the journal.
#[allow(
    clippy::large_enum_variant,
    reason = "one entry at a time, on the stack; nothing to box into"
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Entry {
    /// A deployment's record, as it is now (the latest of an id wins).
    Record(Record),
    /// An event of a deployment.
    Event(Event),
    /// An accepted lockstep signature, refused as a replay within its window.
    Stamp(Stamp),
    /// An ended deployment that fell out of retention: forget its record and events.
    Forget(DeploymentId),
}

impl Entry {
    /// The deployment it is about (none for a stamp).
    pub const fn deployment(&self) -> Option<DeploymentId> {
        match self {
            Self::Record(record) => Some(record.request.id),
            Self::Event(event) => Some(event.deployment),
            Self::Forget(id) => Some(*id),
            Self::Stamp(_) => None,
        }
    }
}

/// The buffer given to [`encode`] is shorter than the frame ([`MAX_FRAME_LEN`] always
/// suffices).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BufferTooSmall;

impl fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the buffer is too small for a journal frame (at most {MAX_FRAME_LEN} bytes)"
        )
    }
}

impl core::error::Error for BufferTooSmall {}

impl From<persist::BufferTooSmall> for BufferTooSmall {
    fn from(_: persist::BufferTooSmall) -> Self {
        Self
    }
}

/// Writes `entry` as one frame into `buf`; answers the frame's length.
pub fn encode(entry: &Entry, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
    let (head, rest) = buf
        .split_first_chunk_mut::<HEAD_LEN>()
        .ok_or(BufferTooSmall)?;
    let payload_len = {
        let ([version, kind], payload) = rest.split_first_chunk_mut::<2>().ok_or(BufferTooSmall)?;
        *version = VERSION;
        match entry {
            Entry::Record(record) => {
                *kind = KIND_RECORD;
                persist::encode(record, payload)?
            }
            Entry::Event(event) => {
                *kind = KIND_EVENT;
                persist::encode_event(event, payload)?
            }
            Entry::Stamp(stamp) => {
                *kind = KIND_STAMP;
                let (mac, rest) = payload
                    .split_first_chunk_mut::<MAC_LEN>()
                    .ok_or(BufferTooSmall)?;
                *mac = stamp.mac;
                *rest.first_chunk_mut::<8>().ok_or(BufferTooSmall)? = stamp.t.to_le_bytes();
                STAMP_LEN
            }
            Entry::Forget(id) => {
                *kind = KIND_FORGET;
                *payload
                    .first_chunk_mut::<FORGET_LEN>()
                    .ok_or(BufferTooSmall)? = *id.as_bytes();
                FORGET_LEN
            }
        }
    };
    let body_len = payload_len.checked_add(2).ok_or(BufferTooSmall)?;
    let (body, after) = rest.split_at_mut_checked(body_len).ok_or(BufferTooSmall)?;
    *after.first_chunk_mut::<CHECK_LEN>().ok_or(BufferTooSmall)? = crc(body).to_le_bytes();
    let length = u32::try_from(body_len)
        .map_err(|_| BufferTooSmall)?
        .to_le_bytes();
    let (length_bytes, check) = head.split_at_mut(4);
    length_bytes.copy_from_slice(&length);
    check.copy_from_slice(&crc(&length).to_le_bytes());
    body_len
        .checked_add(HEAD_LEN + CHECK_LEN)
        .ok_or(BufferTooSmall)
}

fn crc(bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(bytes);
    hasher.finalize()
}

/// Why the start of a store is not a journal this code reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HeaderError {
    /// It does not start with [`MAGIC`]: not a journal (or one cut inside its header).
    NotAJournal,
    /// A journal of another format version.
    UnknownVersion(u8),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAJournal => f.write_str("it is not a lockstep journal"),
            Self::UnknownVersion(v) => write!(
                f,
                "it is a journal of format version {v}; this lockstep reads version {VERSION}"
            ),
        }
    }
}

impl core::error::Error for HeaderError {}

/// Checks a journal's first bytes; answers where its frames start.
pub fn read_header(bytes: &[u8]) -> Result<usize, HeaderError> {
    match bytes.split_first_chunk::<{ MAGIC.len() }>() {
        Some((magic, rest)) if *magic == MAGIC => match rest.first() {
            Some(&VERSION) => Ok(HEADER.len()),
            Some(&other) => Err(HeaderError::UnknownVersion(other)),
            None => Err(HeaderError::NotAJournal),
        },
        _ => Err(HeaderError::NotAJournal),
    }
}

/// How a frame is damaged beyond a torn tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Corrupt {
    /// The length does not match its check.
    Head,
    /// A length outside 2..=[`MAX_BODY_LEN`].
    Length(u32),
    /// The body does not match its check.
    Check,
    /// A frame of another format version (a newer lockstep wrote it).
    UnknownVersion(u8),
    /// A kind this code does not know.
    UnknownKind(u8),
    /// The payload does not decode.
    Payload(persist::DecodeError),
}

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Head => f.write_str("its length does not match its checksum"),
            Self::Length(len) => write!(f, "its length {len} is out of range"),
            Self::Check => f.write_str("its body does not match its checksum"),
            Self::UnknownVersion(v) => write!(
                f,
                "it is of format version {v}; this lockstep reads version {VERSION}"
            ),
            Self::UnknownKind(kind) => write!(f, "its kind {kind} is not known"),
            Self::Payload(e) => write!(f, "its payload does not decode: {e}"),
        }
    }
}

impl core::error::Error for Corrupt {}

/// What the bytes at a frame's place hold.
#[allow(
    clippy::large_enum_variant,
    reason = "one frame at a time, on the stack; nothing to box into"
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Frame {
    /// A whole frame of `len` bytes.
    Entry {
        /// What it holds.
        entry: Entry,
        /// Its length in bytes: the next frame starts there.
        len: usize,
    },
    /// No bytes: the end of the journal.
    End,
    /// The rest is a frame cut short, or zeros: what an interrupted append leaves. The rest
    /// is dropped; it was never made durable, so nothing that relied on it was done.
    Torn,
    /// A damaged frame: nothing after it can be trusted.
    Corrupt(Corrupt),
}

/// Reads the frame at the start of `rest`: the bytes of a journal from a frame's start to its
/// end (so that a frame cut short is known as the torn tail).
pub fn read_frame(rest: &[u8]) -> Frame {
    if rest.is_empty() {
        return Frame::End;
    }
    let zeros = || rest.iter().all(|&b| b == 0);
    let Some((head, after)) = rest.split_first_chunk::<HEAD_LEN>() else {
        return Frame::Torn;
    };
    let (length, check) = head.split_at(4);
    if crc(length).to_le_bytes() != check {
        return if zeros() {
            Frame::Torn
        } else {
            Frame::Corrupt(Corrupt::Head)
        };
    }
    let length = length
        .first_chunk::<4>()
        .map_or(u32::MAX, |b| u32::from_le_bytes(*b));
    let len = usize::try_from(length).unwrap_or(usize::MAX);
    if !(2..=MAX_BODY_LEN).contains(&len) {
        return Frame::Corrupt(Corrupt::Length(length));
    }
    let (Some(body), Some(check)) = (
        after.get(..len),
        after.get(len..).and_then(|r| r.first_chunk::<CHECK_LEN>()),
    ) else {
        return Frame::Torn;
    };
    if crc(body).to_le_bytes() != *check {
        return Frame::Corrupt(Corrupt::Check);
    }
    match decode_body(body) {
        // At most MAX_FRAME_LEN.
        Ok(entry) => Frame::Entry {
            entry,
            len: len.saturating_add(HEAD_LEN + CHECK_LEN),
        },
        Err(e) => Frame::Corrupt(e),
    }
}

fn decode_body(body: &[u8]) -> Result<Entry, Corrupt> {
    let Some(([version, kind], payload)) = body.split_first_chunk::<2>() else {
        return Err(Corrupt::Length(0));
    };
    if *version != VERSION {
        return Err(Corrupt::UnknownVersion(*version));
    }
    match *kind {
        KIND_RECORD => persist::decode(payload)
            .map(Entry::Record)
            .map_err(Corrupt::Payload),
        KIND_EVENT => persist::decode_event(payload)
            .map(Entry::Event)
            .map_err(Corrupt::Payload),
        KIND_STAMP => {
            let (mac, t) = payload
                .split_first_chunk::<MAC_LEN>()
                .ok_or(Corrupt::Payload(persist::DecodeError::Truncated))?;
            let t: [u8; 8] = t.try_into().map_err(|_| {
                Corrupt::Payload(if t.len() < 8 {
                    persist::DecodeError::Truncated
                } else {
                    persist::DecodeError::Trailing
                })
            })?;
            Ok(Entry::Stamp(Stamp {
                mac: *mac,
                t: u64::from_le_bytes(t),
            }))
        }
        KIND_FORGET => {
            let id: [u8; FORGET_LEN] = payload.try_into().map_err(|_| {
                Corrupt::Payload(if payload.len() < FORGET_LEN {
                    persist::DecodeError::Truncated
                } else {
                    persist::DecodeError::Trailing
                })
            })?;
            Ok(Entry::Forget(DeploymentId::from_bytes(id)))
        }
        other => Err(Corrupt::UnknownKind(other)),
    }
}

/// Where a journal's entries go: a file, a flash region, a cluster store. The agent appends
/// what must survive a restart ([`crate::agent::Agent`]) and commits before anything that
/// relies on it is done: before a command is handed to a worker, before a webhook is
/// answered 202.
pub trait Journal {
    /// Appends an entry; it is durable once [`commit`](Self::commit) succeeds. An error: it
    /// was not taken, and the journal stays broken until a rewrite repairs it.
    fn append(&mut self, entry: &Entry) -> Result<(), Unrecorded>;

    /// Makes every entry appended so far durable.
    fn commit(&mut self) -> Result<(), Unrecorded>;

    /// Starts replacing every entry: the appends that follow, up to
    /// [`finish_rewrite`](Self::finish_rewrite), are the live entries, and nothing else is
    /// kept. What was appended and not committed is dropped (the live entries include it).
    /// Also how a broken journal is repaired.
    fn begin_rewrite(&mut self) -> Result<(), Unrecorded>;

    /// Makes the rewrite durable in one step: after a crash the journal holds either the old
    /// entries or the new ones.
    fn finish_rewrite(&mut self) -> Result<(), Unrecorded>;
}

/// No journal: everything lives in memory, and a restart forgets it (tests, the simulation).
impl Journal for () {
    fn append(&mut self, _entry: &Entry) -> Result<(), Unrecorded> {
        Ok(())
    }

    fn commit(&mut self) -> Result<(), Unrecorded> {
        Ok(())
    }

    fn begin_rewrite(&mut self) -> Result<(), Unrecorded> {
        Ok(())
    }

    fn finish_rewrite(&mut self) -> Result<(), Unrecorded> {
        Ok(())
    }
}

/// The journal could not record an entry: nothing that relies on it may be done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Unrecorded;

impl fmt::Display for Unrecorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the journal could not be written")
    }
}

impl core::error::Error for Unrecorded {}

#[cfg(test)]
mod tests;
