//! The persistent form of a deployment's [`Record`]: a versioned binary encoding, written and
//! read without std or alloc, for a runtime to keep where it keeps records (a journal file, a
//! flash page, a cluster store). Framing (length, checksum) is the store's business.
//!
//! ```text
//! record  = version:u8 (= 2) request order:u64 next_seq:u32 compat:opt(name) phase
//! request = id:16 org:seg repo:seg package:seg tag:seg digest:32 tags at:u64 flags:u8
//! flags   = bit 0: allow_downgrade (the other bits 0)
//! tags    = count:u8 (<= MAX_TAGS) seg*count
//! seg     = name that is a valid segment      name = len:u8 (<= 64) utf8*len
//! opt(x)  = 0 | 1 x                           bool = 0 | 1
//! id      = len:u8 (32 or 65) lowercase bundle id text
//! ```
//!
//! Integers are little-endian. Every enum is a tag byte and its variant's fields in order; the
//! tags are listed beside each type below and are part of the format: a new variant takes a
//! new tag, and a change of meaning takes a new [`VERSION`]. Decoding is strict: an unknown
//! version, tag or flag, a name that is not valid (a request's names must be segments), more
//! tags than [`MAX_TAGS`], a phase past resolving without a compatibilityVersion, a short
//! input or trailing bytes are refused. So the encoding is canonical: whatever decodes as the
//! current [`VERSION`] encodes to the same bytes.
//!
//! Version 1 (lockstep before `allow_downgrade`) is version 2 without the request's `flags`:
//! it is read as a request that did not allow a downgrade, and written back as version 2.

use core::fmt;

use super::event::{Event, EventKind};
use super::record::{
    Cause, CommandError, DeploymentId, Doing, End, Failure, Fault, Moved, Name, Outcome, Phase,
    Plan, Record, Request, Rollback, SEVERAL_SHOWN, Seen, Side, Step, Swap, Tags,
};
use crate::agent::TlsError;
use crate::bundle::{BundleId, Digest, MAX_SEGMENT_LEN, Segment};
use crate::limits::MAX_TAGS;
use crate::time::UnixTime;

/// The version of the encoding [`encode`] writes and [`decode`] reads (it reads version 1 too).
pub const VERSION: u8 = 2;

/// The version of the events' encoding ([`encode_event`], [`decode_event`]).
pub const EVENT_VERSION: u8 = 1;

const NAME_LEN: usize = 1 + MAX_SEGMENT_LEN;
const BUNDLE_ID_LEN: usize = 1 + 65;
const REQUEST_LEN: usize = 16 + 4 * NAME_LEN + 32 + (1 + MAX_TAGS * NAME_LEN) + 8 + 1;
const PLAN_LEN: usize = (1 + BUNDLE_ID_LEN) + 4 + (1 + 32);
const SWAP_LEN: usize = PLAN_LEN + BUNDLE_ID_LEN;
const STEP_LEN: usize = 4 + 4 + (1 + BUNDLE_ID_LEN) + 1 + 1;
const SEEN_LEN: usize = 4 + 4;
const DOING_LEN: usize = 1 + 1 + 4;
const FAULT_LEN: usize = 1 + (1 + 2);
/// The longest cause: [`Cause::Several`].
const CAUSE_LEN: usize = 1 + 4 + SEVERAL_SHOWN * (1 + BUNDLE_ID_LEN);
const ROLLBACK_LEN: usize = 1 + DOING_LEN + FAULT_LEN + 4 + 4;
const END_LEN: usize = (1 + CAUSE_LEN + ROLLBACK_LEN) + 8 + (1 + PLAN_LEN) + (1 + BUNDLE_ID_LEN);
/// The longest phase: [`Phase::RollingBack`].
const PHASE_LEN: usize = 1 + max(SWAP_LEN + STEP_LEN + CAUSE_LEN + SEEN_LEN, END_LEN);

/// The most bytes [`encode`] writes: a buffer this long always suffices.
pub const MAX_RECORD_LEN: usize = 1 + REQUEST_LEN + 8 + 4 + (1 + NAME_LEN) + PHASE_LEN;

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// Why a record could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BufferTooSmall;

impl fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the buffer is too small for a record (at most {MAX_RECORD_LEN} bytes)"
        )
    }
}

impl core::error::Error for BufferTooSmall {}

/// Why bytes are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DecodeError {
    /// A version this code does not read.
    UnknownVersion(u8),
    /// The bytes end before the record does.
    Truncated,
    /// Bytes follow the record.
    Trailing,
    /// A value outside its type: an unknown tag or flag, a name that is not valid, too many
    /// tags, a phase past resolving without a compatibilityVersion.
    Invalid,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownVersion(v) => {
                write!(
                    f,
                    "record version {v} is not known (this reads 1 to {VERSION})"
                )
            }
            Self::Truncated => f.write_str("the record is truncated"),
            Self::Trailing => f.write_str("bytes follow the record"),
            Self::Invalid => f.write_str("the record holds an invalid value"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Writes `record` into `buf` ([`MAX_RECORD_LEN`] bytes always suffice); answers the length.
pub fn encode(record: &Record, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
    let mut w = Writer { buf, len: 0 };
    w.u8(VERSION)?;
    record.put(&mut w)?;
    Ok(w.len)
}

/// Reads a record written by [`encode`], all of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let mut r = Reader {
        rest: bytes,
        version: VERSION,
    };
    r.version = match r.u8()? {
        version @ (1 | VERSION) => version,
        other => return Err(DecodeError::UnknownVersion(other)),
    };
    let record = Record::get(&mut r)?;
    if !r.rest.is_empty() {
        return Err(DecodeError::Trailing);
    }
    Ok(record)
}

// ---------------------------------------------------------------------------------------------
// Bytes
// ---------------------------------------------------------------------------------------------

struct Writer<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, bytes: &[u8]) -> Result<(), BufferTooSmall> {
        let end = self.len.checked_add(bytes.len()).ok_or(BufferTooSmall)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(BufferTooSmall)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn u8(&mut self, v: u8) -> Result<(), BufferTooSmall> {
        self.bytes(&[v])
    }

    fn bool(&mut self, v: bool) -> Result<(), BufferTooSmall> {
        self.u8(u8::from(v))
    }

    fn u16(&mut self, v: u16) -> Result<(), BufferTooSmall> {
        self.bytes(&v.to_le_bytes())
    }

    fn u32(&mut self, v: u32) -> Result<(), BufferTooSmall> {
        self.bytes(&v.to_le_bytes())
    }

    fn u64(&mut self, v: u64) -> Result<(), BufferTooSmall> {
        self.bytes(&v.to_le_bytes())
    }

    /// A length byte, then the text.
    fn text(&mut self, text: &str) -> Result<(), BufferTooSmall> {
        self.u8(u8::try_from(text.len()).map_err(|_| BufferTooSmall)?)?;
        self.bytes(text.as_bytes())
    }

    fn opt<T>(
        &mut self,
        v: Option<&T>,
        put: impl FnOnce(&mut Self, &T) -> Result<(), BufferTooSmall>,
    ) -> Result<(), BufferTooSmall> {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1)?;
                put(self, v)
            }
        }
    }
}

struct Reader<'b> {
    rest: &'b [u8],
    /// The version of what is read.
    version: u8,
}

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8], DecodeError> {
        let (head, rest) = self
            .rest
            .split_at_checked(n)
            .ok_or(DecodeError::Truncated)?;
        self.rest = rest;
        Ok(head)
    }

    fn array<const K: usize>(&mut self) -> Result<[u8; K], DecodeError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<K>()
            .ok_or(DecodeError::Truncated)?;
        self.rest = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        self.array::<1>().map(u8::from_le_bytes)
    }

    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid),
        }
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }

    fn text(&mut self) -> Result<&'b str, DecodeError> {
        let len = self.u8()?;
        let bytes = self.take(usize::from(len))?;
        core::str::from_utf8(bytes).map_err(|_| DecodeError::Invalid)
    }

    fn opt<T>(
        &mut self,
        get: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.bool()? {
            get(self).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// A value with a persistent form.
trait Persist: Sized {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall>;
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

// ---------------------------------------------------------------------------------------------
// Leaves
// ---------------------------------------------------------------------------------------------

impl Persist for Name {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        w.text(self.as_str())
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Name::new(r.text()?).map_err(|_| DecodeError::Invalid)
    }
}

/// A name that must be a [`Segment`]: the request's.
fn segment(r: &mut Reader<'_>) -> Result<Name, DecodeError> {
    let text = r.text()?;
    Segment::parse(text)
        .map(Name::from)
        .map_err(|_| DecodeError::Invalid)
}

impl Persist for Digest {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        w.bytes(self.as_bytes())
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.array().map(Digest::from_bytes)
    }
}

impl Persist for BundleId {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        w.text(&self.to_text())
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let text = r.text()?;
        let id = BundleId::parse(text).map_err(|_| DecodeError::Invalid)?;
        // Canonical: lowercase, as written.
        if id.to_text().as_str() != text {
            return Err(DecodeError::Invalid);
        }
        Ok(id)
    }
}

impl Persist for DeploymentId {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        w.bytes(self.as_bytes())
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.array().map(DeploymentId::from_bytes)
    }
}

impl Persist for UnixTime {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        w.u64(self.as_millis())
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.u64().map(UnixTime::from_millis)
    }
}

// ---------------------------------------------------------------------------------------------
// The request
// ---------------------------------------------------------------------------------------------

impl Persist for Tags {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        let tags = self.as_slice();
        w.u8(u8::try_from(tags.len()).map_err(|_| BufferTooSmall)?)?;
        tags.iter().try_for_each(|tag| tag.put(w))
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let count = r.u8()?;
        let mut segments = heapless::Vec::<Segment<'_>, MAX_TAGS>::new();
        for _ in 0..count {
            let segment = Segment::parse(r.text()?).map_err(|_| DecodeError::Invalid)?;
            segments.push(segment).map_err(|_| DecodeError::Invalid)?;
        }
        Tags::new(segments).map_err(|_| DecodeError::Invalid)
    }
}

impl Persist for Request {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        self.id.put(w)?;
        self.org.put(w)?;
        self.repo.put(w)?;
        self.package.put(w)?;
        self.tag.put(w)?;
        self.digest.put(w)?;
        self.tags.put(w)?;
        self.at.put(w)?;
        w.u8(u8::from(self.allow_downgrade))
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            id: DeploymentId::get(r)?,
            org: segment(r)?,
            repo: segment(r)?,
            package: segment(r)?,
            tag: segment(r)?,
            digest: Digest::get(r)?,
            tags: Tags::get(r)?,
            at: UnixTime::get(r)?,
            allow_downgrade: match r.version {
                1 => false,
                _ => match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::Invalid),
                },
            },
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------------------------

/// Tags: Unreachable 0, TimedOut 1, Status 2, NotFound 3, DigestMismatch 4, TooLarge 5,
/// BadArchive 6, BadBundleConf 7, Protocol 8, Storage 9, Tls 10 (then the [`TlsError`]'s tag),
/// TooManyRedirects 11, InsecureRedirect 12.
impl Persist for CommandError {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        match self {
            Self::Unreachable => w.u8(0),
            Self::TimedOut => w.u8(1),
            Self::Status(code) => {
                w.u8(2)?;
                w.u16(*code)
            }
            Self::NotFound => w.u8(3),
            Self::DigestMismatch => w.u8(4),
            Self::TooLarge => w.u8(5),
            Self::BadArchive => w.u8(6),
            Self::BadBundleConf => w.u8(7),
            Self::Protocol => w.u8(8),
            Self::Storage => w.u8(9),
            Self::Tls(e) => {
                w.u8(10)?;
                e.put(w)
            }
            Self::TooManyRedirects => w.u8(11),
            Self::InsecureRedirect => w.u8(12),
        }
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => Self::Unreachable,
            1 => Self::TimedOut,
            2 => Self::Status(r.u16()?),
            3 => Self::NotFound,
            4 => Self::DigestMismatch,
            5 => Self::TooLarge,
            6 => Self::BadArchive,
            7 => Self::BadBundleConf,
            8 => Self::Protocol,
            9 => Self::Storage,
            10 => Self::Tls(TlsError::get(r)?),
            11 => Self::TooManyRedirects,
            12 => Self::InsecureRedirect,
            _ => return Err(DecodeError::Invalid),
        })
    }
}

/// Tags: UnknownIssuer 0, NameMismatch 1, Expired 2, NotYetValid 3, BadCertificate 4,
/// Handshake 5, Unsupported 6.
impl Persist for TlsError {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        w.u8(match self {
            Self::UnknownIssuer => 0,
            Self::NameMismatch => 1,
            Self::Expired => 2,
            Self::NotYetValid => 3,
            Self::BadCertificate => 4,
            Self::Handshake => 5,
            Self::Unsupported => 6,
        })
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => Self::UnknownIssuer,
            1 => Self::NameMismatch,
            2 => Self::Expired,
            3 => Self::NotYetValid,
            4 => Self::BadCertificate,
            5 => Self::Handshake,
            6 => Self::Unsupported,
            _ => return Err(DecodeError::Invalid),
        })
    }
}

/// Tags: Old 0, New 1.
impl Persist for Side {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        w.u8(match self {
            Self::Old => 0,
            Self::New => 1,
        })
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => Ok(Self::Old),
            1 => Ok(Self::New),
            _ => Err(DecodeError::Invalid),
        }
    }
}

/// Tags: Targeting 0, FetchingConfig 1, Loading 2, Observing 3, Scaling 4, Ordering 5.
impl Persist for Doing {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        match self {
            Self::Targeting => w.u8(0),
            Self::Ordering => w.u8(5),
            Self::FetchingConfig => w.u8(1),
            Self::Loading => w.u8(2),
            Self::Observing => w.u8(3),
            Self::Scaling { side, to } => {
                w.u8(4)?;
                side.put(w)?;
                w.u32(*to)
            }
        }
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => Self::Targeting,
            1 => Self::FetchingConfig,
            2 => Self::Loading,
            3 => Self::Observing,
            4 => Self::Scaling {
                side: Side::get(r)?,
                to: r.u32()?,
            },
            5 => Self::Ordering,
            _ => return Err(DecodeError::Invalid),
        })
    }
}

/// Tags: Deadline 0, Command 1, InstanceError 2, Vanished 3, Aborted 4, Lost 5.
impl Persist for Fault {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        match self {
            Self::Deadline => w.u8(0),
            Self::Command(e) => {
                w.u8(1)?;
                e.put(w)
            }
            Self::InstanceError => w.u8(2),
            Self::Vanished => w.u8(3),
            Self::Aborted => w.u8(4),
            Self::Lost => w.u8(5),
        }
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => Self::Deadline,
            1 => Self::Command(CommandError::get(r)?),
            2 => Self::InstanceError,
            3 => Self::Vanished,
            4 => Self::Aborted,
            5 => Self::Lost,
            _ => return Err(DecodeError::Invalid),
        })
    }
}

/// Tags: Superseded 0, Resolve 1, ResolveDeadline 2, NameMismatch 3, NoRunning 4, Several 5,
/// AlreadyBeside 6, ConfigMismatch 7, LoadedIdMismatch 8, Step 9, Aborted 10, Downgrade 11.
impl Persist for Cause {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        match self {
            Self::Superseded { by } => {
                w.u8(0)?;
                by.put(w)
            }
            Self::Resolve(e) => {
                w.u8(1)?;
                e.put(w)
            }
            Self::ResolveDeadline => w.u8(2),
            Self::NameMismatch { found } => {
                w.u8(3)?;
                found.put(w)
            }
            Self::NoRunning {
                compatibility_version,
                running,
                narrowed,
            } => {
                w.u8(4)?;
                compatibility_version.put(w)?;
                w.opt(running.as_ref(), |w, n| n.put(w))?;
                w.bool(*narrowed)
            }
            Self::Several { count, ids } => {
                w.u8(5)?;
                w.u32(*count)?;
                ids.iter()
                    .try_for_each(|id| w.opt(id.as_ref(), |w, id| id.put(w)))
            }
            Self::AlreadyBeside { old } => {
                w.u8(6)?;
                old.put(w)
            }
            Self::ConfigMismatch => w.u8(7),
            Self::Aborted => w.u8(10),
            Self::Downgrade { running, old } => {
                w.u8(11)?;
                running.put(w)?;
                old.put(w)
            }
            Self::LoadedIdMismatch { id } => {
                w.u8(8)?;
                id.put(w)
            }
            Self::Step { doing, fault } => {
                w.u8(9)?;
                doing.put(w)?;
                fault.put(w)
            }
        }
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => Self::Superseded {
                by: DeploymentId::get(r)?,
            },
            1 => Self::Resolve(CommandError::get(r)?),
            2 => Self::ResolveDeadline,
            3 => Self::NameMismatch {
                found: Name::get(r)?,
            },
            4 => Self::NoRunning {
                compatibility_version: Name::get(r)?,
                running: r.opt(Name::get)?,
                narrowed: r.bool()?,
            },
            5 => {
                let count = r.u32()?;
                let mut ids = [None; SEVERAL_SHOWN];
                for id in &mut ids {
                    *id = r.opt(BundleId::get)?;
                }
                Self::Several { count, ids }
            }
            6 => Self::AlreadyBeside {
                old: BundleId::get(r)?,
            },
            7 => Self::ConfigMismatch,
            10 => Self::Aborted,
            11 => Self::Downgrade {
                running: segment(r)?,
                old: BundleId::get(r)?,
            },
            8 => Self::LoadedIdMismatch {
                id: BundleId::get(r)?,
            },
            9 => Self::Step {
                doing: Doing::get(r)?,
                fault: Fault::get(r)?,
            },
            _ => return Err(DecodeError::Invalid),
        })
    }
}

/// Tags: NotNeeded 0, Completed 1, Off 2, Failed 3.
impl Persist for Rollback {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        match self {
            Self::NotNeeded => w.u8(0),
            Self::Completed { old } => {
                w.u8(1)?;
                w.u32(*old)
            }
            Self::Off { old, new } => {
                w.u8(2)?;
                w.u32(*old)?;
                w.u32(*new)
            }
            Self::Failed {
                doing,
                fault,
                old,
                new,
            } => {
                w.u8(3)?;
                doing.put(w)?;
                fault.put(w)?;
                w.u32(*old)?;
                w.u32(*new)
            }
        }
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => Self::NotNeeded,
            1 => Self::Completed { old: r.u32()? },
            2 => Self::Off {
                old: r.u32()?,
                new: r.u32()?,
            },
            3 => Self::Failed {
                doing: Doing::get(r)?,
                fault: Fault::get(r)?,
                old: r.u32()?,
                new: r.u32()?,
            },
            _ => return Err(DecodeError::Invalid),
        })
    }
}

/// Tags: Succeeded 0, Failed 1.
impl Persist for Outcome {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        match self {
            Self::Succeeded { nothing_to_do } => {
                w.u8(0)?;
                w.bool(*nothing_to_do)
            }
            Self::Failed(failure) => {
                w.u8(1)?;
                failure.cause.put(w)?;
                failure.rollback.put(w)
            }
        }
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => Self::Succeeded {
                nothing_to_do: r.bool()?,
            },
            1 => Self::Failed(Failure {
                cause: Cause::get(r)?,
                rollback: Rollback::get(r)?,
            }),
            _ => return Err(DecodeError::Invalid),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Phases
// ---------------------------------------------------------------------------------------------

impl Persist for Plan {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        w.opt(self.old.as_ref(), |w, id| id.put(w))?;
        w.u32(self.scale)?;
        w.opt(self.config.as_ref(), |w, d| d.put(w))
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            old: r.opt(BundleId::get)?,
            scale: r.u32()?,
            config: r.opt(Digest::get)?,
        })
    }
}

impl Persist for Swap {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        self.plan.put(w)?;
        self.new.put(w)
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            plan: Plan::get(r)?,
            new: BundleId::get(r)?,
        })
    }
}

/// Moved tags: Old 0 (with the id), New 1.
impl Persist for Step {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        w.u32(self.old)?;
        w.u32(self.new)?;
        match &self.moved {
            Moved::Old(id) => {
                w.u8(0)?;
                id.put(w)?;
            }
            Moved::New => w.u8(1)?,
        }
        w.bool(self.up)?;
        w.bool(self.waiting)
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            old: r.u32()?,
            new: r.u32()?,
            moved: match r.u8()? {
                0 => Moved::Old(BundleId::get(r)?),
                1 => Moved::New,
                _ => return Err(DecodeError::Invalid),
            },
            up: r.bool()?,
            waiting: r.bool()?,
        })
    }
}

impl Persist for Seen {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        w.u32(self.old)?;
        w.u32(self.new)
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            old: r.u32()?,
            new: r.u32()?,
        })
    }
}

impl Persist for End {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        self.outcome.put(w)?;
        self.at.put(w)?;
        w.opt(self.plan.as_ref(), |w, p| p.put(w))?;
        w.opt(self.new.as_ref(), |w, id| id.put(w))
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            outcome: Outcome::get(r)?,
            at: UnixTime::get(r)?,
            plan: r.opt(Plan::get)?,
            new: r.opt(BundleId::get)?,
        })
    }
}

/// Tags: Resolving 0, Queued 1, Targeting 2, FetchingConfig 3, Loading 4, Observing 5,
/// LockStep 6, RollingBack 7, Ended 8, Ordering 9, Screening 10.
impl Persist for Phase {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        match self {
            Self::Resolving => w.u8(0),
            Self::Screening => w.u8(10),
            Self::Queued => w.u8(1),
            Self::Targeting => w.u8(2),
            Self::FetchingConfig { old, scale } => {
                w.u8(3)?;
                old.put(w)?;
                w.u32(*scale)
            }
            Self::Ordering { old, scale } => {
                w.u8(9)?;
                old.put(w)?;
                w.u32(*scale)
            }
            Self::Loading(plan) => {
                w.u8(4)?;
                plan.put(w)
            }
            Self::Observing(swap) => {
                w.u8(5)?;
                swap.put(w)
            }
            Self::LockStep { swap, step, seen } => {
                w.u8(6)?;
                swap.put(w)?;
                step.put(w)?;
                seen.put(w)
            }
            Self::RollingBack {
                swap,
                step,
                cause,
                seen,
            } => {
                w.u8(7)?;
                swap.put(w)?;
                step.put(w)?;
                cause.put(w)?;
                seen.put(w)
            }
            Self::Ended(end) => {
                w.u8(8)?;
                end.put(w)
            }
        }
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => Self::Resolving,
            1 => Self::Queued,
            2 => Self::Targeting,
            3 => Self::FetchingConfig {
                old: BundleId::get(r)?,
                scale: r.u32()?,
            },
            4 => Self::Loading(Plan::get(r)?),
            5 => Self::Observing(Swap::get(r)?),
            6 => Self::LockStep {
                swap: Swap::get(r)?,
                step: Step::get(r)?,
                seen: Seen::get(r)?,
            },
            7 => Self::RollingBack {
                swap: Swap::get(r)?,
                step: Step::get(r)?,
                cause: Cause::get(r)?,
                seen: Seen::get(r)?,
            },
            8 => Self::Ended(End::get(r)?),
            9 => Self::Ordering {
                old: BundleId::get(r)?,
                scale: r.u32()?,
            },
            10 => Self::Screening,
            _ => return Err(DecodeError::Invalid),
        })
    }
}

impl Persist for Record {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        self.request.put(w)?;
        w.u64(self.order)?;
        w.u32(self.next_seq)?;
        w.opt(self.compatibility_version.as_ref(), |w, n| n.put(w))?;
        self.phase.put(w)
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let record = Self {
            request: Request::get(r)?,
            order: r.u64()?,
            next_seq: r.u32()?,
            compatibility_version: r.opt(Name::get)?,
            phase: Phase::get(r)?,
        };
        // Only resolving finds the key; an ended deployment may have ended while resolving.
        let needs_key = !matches!(
            record.phase,
            Phase::Screening | Phase::Resolving | Phase::Ended(_)
        );
        if needs_key && record.compatibility_version.is_none() {
            return Err(DecodeError::Invalid);
        }
        Ok(record)
    }
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/// The most bytes [`encode_event`] writes.
pub const MAX_EVENT_LEN: usize = 1 + 16 + 4 + 1 + max(2 * NAME_LEN, CAUSE_LEN + ROLLBACK_LEN);

/// Writes an event of a deployment (`version:u8 (= 1) id:16 seq:u32 kind`, the kind's tags
/// 0 `deploymentStarted` name name, 1 `bundleDownload`, 2 `configDownload` bundle id,
/// 3 `load` opt(digest), 4 `deploy` u32 u32, 5 `deploymentSuccess`, 6 `deploymentFailure`
/// cause rollback) into `buf` ([`MAX_EVENT_LEN`] bytes always suffice); answers the length.
pub fn encode_event(event: &Event, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
    let mut w = Writer { buf, len: 0 };
    w.u8(EVENT_VERSION)?;
    event.put(&mut w)?;
    Ok(w.len)
}

/// Reads an event written by [`encode_event`], all of `bytes`.
pub fn decode_event(bytes: &[u8]) -> Result<Event, DecodeError> {
    let mut r = Reader {
        rest: bytes,
        version: EVENT_VERSION,
    };
    match r.u8()? {
        EVENT_VERSION => {}
        other => return Err(DecodeError::UnknownVersion(other)),
    }
    let event = Event::get(&mut r)?;
    if !r.rest.is_empty() {
        return Err(DecodeError::Trailing);
    }
    Ok(event)
}

impl Persist for Event {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        self.deployment.put(w)?;
        w.u32(self.seq)?;
        match &self.kind {
            EventKind::DeploymentStarted {
                bundle_name,
                compatible_version,
            } => {
                w.u8(0)?;
                bundle_name.put(w)?;
                compatible_version.put(w)
            }
            EventKind::BundleDownload => w.u8(1),
            EventKind::ConfigDownload { from } => {
                w.u8(2)?;
                from.put(w)
            }
            EventKind::Load { config } => {
                w.u8(3)?;
                w.opt(config.as_ref(), |w, d| d.put(w))
            }
            EventKind::Deploy { old, new } => {
                w.u8(4)?;
                w.u32(*old)?;
                w.u32(*new)
            }
            EventKind::DeploymentSuccess => w.u8(5),
            EventKind::DeploymentFailure(failure) => {
                w.u8(6)?;
                failure.cause.put(w)?;
                failure.rollback.put(w)
            }
        }
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let deployment = DeploymentId::get(r)?;
        let seq = r.u32()?;
        let kind = match r.u8()? {
            0 => EventKind::DeploymentStarted {
                bundle_name: Name::get(r)?,
                compatible_version: Name::get(r)?,
            },
            1 => EventKind::BundleDownload,
            2 => EventKind::ConfigDownload {
                from: BundleId::get(r)?,
            },
            3 => EventKind::Load {
                config: r.opt(Digest::get)?,
            },
            4 => EventKind::Deploy {
                old: r.u32()?,
                new: r.u32()?,
            },
            5 => EventKind::DeploymentSuccess,
            6 => EventKind::DeploymentFailure(Failure {
                cause: Cause::get(r)?,
                rollback: Rollback::get(r)?,
            }),
            _ => return Err(DecodeError::Invalid),
        };
        Ok(Self {
            deployment,
            seq,
            kind,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
