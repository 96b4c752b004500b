//! The journal in the data directory: `<data dir>/journal`, an append-only file of core's
//! frames ([`lockstep_core::journal`]), and `<data dir>/lock`, which keeps a second process
//! off the same directory.
//!
//! [`open`] reads what a previous process left: a torn last frame (a crash in the middle of
//! an append) is dropped and said; any other damage refuses to start, naming the file, the
//! offset and what to do. The entries fold into the deployments to restore ([`Restored`]).
//!
//! Appends are buffered and written by [`Journal::commit`] with one `write` and one
//! `fdatasync` (the agent commits before it hands out a command, the service before it
//! answers 202). A failed write breaks the journal: nothing is handed out and webhooks are
//! refused until a rewrite succeeds. A rewrite (compaction, or repair) writes the live entries
//! to `journal.tmp`, syncs it, renames it over `journal` and syncs the directory: after a
//! crash the journal is the old one or the new one. It is due when the file has grown past
//! twice its size after the last rewrite plus [`SLACK`] ([`FileJournal::wants_rewrite`]).

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use lockstep_core::deployer::{DeploymentId, Event, Record};
use lockstep_core::journal::{
    self, Entry, Frame, HEADER, Journal, MAX_FRAME_LEN, Unrecorded, read_frame, read_header,
};
use lockstep_core::signature::Stamp;

use crate::cluster::{EtcdLog, Member};
use crate::log;

/// The journal's name in the data directory.
pub const FILE: &str = "journal";
/// A rewrite's name until it replaces the journal.
pub const TEMP_FILE: &str = "journal.tmp";
/// The lock's name in the data directory.
pub const LOCK_FILE: &str = "lock";

/// How much the journal may grow past twice its size after the last rewrite before the next
/// one is due.
pub const SLACK: u64 = 256 * 1024;

/// The most bytes of a journal [`open`] reads: far past what a bounded journal reaches
/// ([`SLACK`] past twice the live entries of the largest retention); a larger file is not one
/// lockstep wrote.
pub const MAX_JOURNAL_BYTES: u64 = 1 << 30;

/// Why the data directory cannot be used.
#[derive(Debug)]
pub enum OpenError {
    /// The lock is held by another process.
    Locked {
        /// The directory.
        dir: PathBuf,
        /// What the lock file says of its holder.
        holder: String,
    },
    /// A file could not be read, created or locked.
    Io {
        /// Which.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The journal is not one this lockstep reads.
    Header {
        /// The journal.
        path: PathBuf,
        /// Why.
        error: journal::HeaderError,
    },
    /// A frame before the last is damaged.
    Corrupt {
        /// The journal.
        path: PathBuf,
        /// Where the damaged frame starts.
        offset: u64,
        /// How.
        error: journal::Corrupt,
    },
    /// Larger than [`MAX_JOURNAL_BYTES`].
    TooLarge {
        /// The journal.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const FILE_ASIDE: &str = "move it aside (mv journal journal.damaged) to start without \
                                  what it holds, or restore it from a backup";
        const ETCD_ASIDE: &str = "delete it (etcdctl del --prefix /lockstep/journal/; etcdctl del \
                                  /lockstep/generation) to start without what it holds, or \
                                  restore etcd from a snapshot";
        let in_etcd = |path: &Path| path.to_string_lossy().contains(" in etcd (");
        let aside = match self {
            Self::Header { path, .. }
            | Self::Corrupt { path, .. }
            | Self::TooLarge { path, .. }
                if in_etcd(path) =>
            {
                ETCD_ASIDE
            }
            _ => FILE_ASIDE,
        };
        match self {
            Self::Locked { dir, holder } => write!(
                f,
                "the data directory `{}` is in use by another lockstep ({holder}); give each \
                 process its own --data-dir",
                dir.display()
            ),
            Self::Io { path, error } => write!(f, "`{}`: {error}", path.display()),
            Self::Header { path, error } => {
                write!(f, "the journal `{}`: {error}; {aside}", path.display())
            }
            Self::Corrupt {
                path,
                offset,
                error,
            } => write!(
                f,
                "the journal `{}` is damaged at byte {offset}: a frame before the last one {}, \
                 so the deployments it records cannot be trusted; {aside}",
                path.display(),
                CorruptText(*error)
            ),
            Self::TooLarge { path, len } => write!(
                f,
                "the journal `{}` is {len} bytes, more than lockstep ever writes \
                 ({MAX_JOURNAL_BYTES}); {aside}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for OpenError {}

/// "has ..." wording of a corrupt frame, for the one-line message.
struct CorruptText(journal::Corrupt);

impl fmt::Display for CorruptText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "is corrupt ({})", self.0)
    }
}

/// A deployment read back: its latest record and its events, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// The latest record.
    pub record: Record,
    /// Its events.
    pub events: Vec<Event>,
}

/// What a journal held.
#[derive(Debug, Default)]
pub struct Restored {
    /// The deployments, in their `order` (oldest notified first).
    pub deployments: Vec<Kept>,
    /// The replay-cache entries.
    pub stamps: Vec<Stamp>,
    /// Where a torn last frame started, if there was one (dropped).
    pub torn_at: Option<u64>,
    /// How many frames were read.
    pub frames: u64,
    /// Events of deployments without a record (the record's frame lost to a torn tail).
    pub orphan_events: u64,
}

/// The journal, as the agent's [`Journal`]: the file in the data directory, or (cluster
/// mode) chunks in etcd.
#[derive(Debug)]
pub struct FileJournal {
    dir: PathBuf,
    backend: Backend,
    /// Appended, not written yet.
    pending: Vec<u8>,
    /// The journal's length.
    len: u64,
    /// Its length after the last rewrite.
    base: u64,
    /// Why it is broken (a write failed), until a rewrite succeeds.
    broken: Option<io::ErrorKind>,
    /// Rewriting: appends are the live entries.
    rewriting: bool,
    /// The lock, held as long as this lives.
    _lock: File,
    /// Told when a rewrite is due ([`FileJournal::wants_rewrite`]) after a commit, whoever
    /// committed (the agent before a job, the service before a 202).
    due: Option<async_channel::Sender<()>>,
    /// Commits that wrote (each one `fdatasync`, or one etcd transaction), and rewrites done.
    pub syncs: u64,
    /// Rewrites done.
    pub rewrites: u64,
}

/// Where the journal's bytes go.
#[derive(Debug)]
enum Backend {
    /// The file, open for appending; `None` until the first rewrite.
    File(Option<File>),
    /// Elsewhere (cluster mode: etcd); `ready` once a rewrite has written it.
    Remote {
        log: Box<dyn RemoteLog>,
        ready: bool,
    },
}

/// A journal kept elsewhere than in a file ([`crate::cluster::EtcdLog`]): its bytes appended
/// and rewritten whole. Behind a trait object so that a binary that never keeps one (the
/// minimal runtime) never links one.
pub trait RemoteLog: fmt::Debug + Send {
    /// Appends `bytes`.
    ///
    /// # Errors
    /// Why they were not recorded.
    fn append(&mut self, bytes: &[u8]) -> Result<(), String>;

    /// Replaces everything with `bytes`, atomically for a reader.
    ///
    /// # Errors
    /// Why it was not recorded.
    fn rewrite(&mut self, bytes: &[u8]) -> Result<(), String>;

    /// Where it is, for messages.
    fn place(&self) -> String;
}

/// Takes the data directory's lock and reads its journal. The journal is not written until
/// the caller has restored what it held and rewritten it ([`Journal::begin_rewrite`]): the
/// first rewrite drops a torn tail.
pub fn open(dir: &Path) -> Result<(FileJournal, Restored), OpenError> {
    let lock = lock(dir)?;
    let path = dir.join(FILE);
    let bytes = match File::open(&path) {
        Ok(file) => read_capped(file, &path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(OpenError::Io { path, error }),
    };
    journal_of(dir, lock, Backend::File(None), &bytes, &path)
}

/// [`open`] in cluster mode: the data directory's lock (its store is still this process's),
/// and the journal etcd holds, written as `member` (the active instance).
///
/// # Errors
/// As [`open`]; etcd not answering is an [`OpenError::Io`].
pub fn open_etcd(dir: &Path, member: &Member) -> Result<(FileJournal, Restored), OpenError> {
    let lock = lock(dir)?;
    let (log, bytes) = EtcdLog::load(member).map_err(|e| OpenError::Io {
        path: PathBuf::from(format!("{}journal/", crate::cluster::PREFIX)),
        error: io::Error::other(e.to_string()),
    })?;
    let place = PathBuf::from(log.place());
    let log: Box<dyn RemoteLog> = Box::new(log);
    journal_of(
        dir,
        lock,
        Backend::Remote { log, ready: false },
        &bytes,
        &place,
    )
}

fn journal_of(
    dir: &Path,
    lock: File,
    backend: Backend,
    bytes: &[u8],
    place: &Path,
) -> Result<(FileJournal, Restored), OpenError> {
    let restored = if bytes.is_empty() {
        Restored::default()
    } else {
        fold(bytes, place)?
    };
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    Ok((
        FileJournal {
            dir: dir.to_path_buf(),
            backend,
            pending: Vec::new(),
            len,
            base: len,
            broken: None,
            rewriting: false,
            due: None,
            _lock: lock,
            syncs: 0,
            rewrites: 0,
        },
        restored,
    ))
}

fn read_capped(file: File, path: &Path) -> Result<Vec<u8>, OpenError> {
    let mut bytes = Vec::new();
    file.take(MAX_JOURNAL_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| OpenError::Io {
            path: path.to_path_buf(),
            error,
        })?;
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if len > MAX_JOURNAL_BYTES {
        return Err(OpenError::TooLarge {
            path: path.to_path_buf(),
            len,
        });
    }
    Ok(bytes)
}

/// `<dir>/lock`, locked for this process (its pid written in it, for the message another
/// process shows).
fn lock(dir: &Path) -> Result<File, OpenError> {
    let path = dir.join(LOCK_FILE);
    let io = |error| OpenError::Io {
        path: path.clone(),
        error,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim().parse::<u32>() {
                Ok(pid) => format!("pid {pid}"),
                Err(_) => "pid unknown".to_owned(),
            };
            return Err(OpenError::Locked {
                dir: dir.to_path_buf(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.write_all(format!("{}\n", std::process::id()).as_bytes())
        .map_err(io)?;
    Ok(file)
}

/// Reads the frames in order and folds them by deployment.
fn fold(bytes: &[u8], path: &Path) -> Result<Restored, OpenError> {
    let start = read_header(bytes).map_err(|error| OpenError::Header {
        path: path.to_path_buf(),
        error,
    })?;
    let mut restored = Restored::default();
    let mut kept: HashMap<DeploymentId, (Option<Record>, Vec<Event>)> = HashMap::new();
    let mut at = start;
    loop {
        let rest = bytes.get(at..).unwrap_or_default();
        let offset = u64::try_from(at).unwrap_or(u64::MAX);
        match read_frame(rest) {
            Frame::Entry { entry, len } => {
                restored.frames += 1;
                at = at.saturating_add(len);
                match entry {
                    Entry::Record(record) => {
                        kept.entry(record.id()).or_default().0 = Some(record);
                    }
                    Entry::Event(event) => {
                        let events = &mut kept.entry(event.deployment).or_default().1;
                        // A deployment's events again (a rewrite after appends): once each.
                        if !events.iter().any(|e| e.seq == event.seq) {
                            events.push(event);
                        }
                    }
                    Entry::Stamp(stamp) => restored.stamps.push(stamp),
                    Entry::Forget(id) => {
                        kept.remove(&id);
                    }
                }
            }
            Frame::End => break,
            Frame::Torn => {
                restored.torn_at = Some(offset);
                break;
            }
            Frame::Corrupt(error) => {
                return Err(OpenError::Corrupt {
                    path: path.to_path_buf(),
                    offset,
                    error,
                });
            }
        }
    }
    for (_, (record, mut events)) in kept {
        match record {
            Some(record) => {
                events.sort_by_key(|e| e.seq);
                restored.deployments.push(Kept { record, events });
            }
            None => restored.orphan_events += u64::try_from(events.len()).unwrap_or(0),
        }
    }
    restored.deployments.sort_by_key(|k| k.record.order);
    Ok(restored)
}

impl FileJournal {
    /// Where the journal is: its file, or its keys in etcd.
    pub fn path(&self) -> PathBuf {
        match &self.backend {
            Backend::File(_) => self.dir.join(FILE),
            Backend::Remote { log, .. } => PathBuf::from(log.place()),
        }
    }

    /// The file's length.
    pub const fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Why it is broken, if it is: nothing is recorded until a rewrite succeeds.
    pub const fn broken(&self) -> Option<io::ErrorKind> {
        self.broken
    }

    /// Whether a rewrite is due: the file grew past twice its size after the last one plus
    /// [`SLACK`], or it is broken (a rewrite repairs it).
    pub fn wants_rewrite(&self) -> bool {
        let unwritable = match &self.backend {
            Backend::File(file) => file.is_none(),
            Backend::Remote { ready, .. } => !ready,
        };
        self.broken.is_some()
            || unwritable
            || self.len > self.base.saturating_mul(2).saturating_add(SLACK)
    }

    /// `due` hears, after a commit, when a rewrite is due (the file passed its bound, or it
    /// could not be written).
    pub fn tell_when_due(&mut self, due: async_channel::Sender<()>) {
        self.due = Some(due);
    }

    fn tell_if_due(&self) {
        if self.wants_rewrite()
            && let Some(due) = &self.due
        {
            let _ = due.try_send(());
        }
    }

    fn fail(&mut self, what: &str, error: &io::Error) -> Unrecorded {
        if self.broken.is_none() {
            log::warn(&format!(
                "the journal `{}` cannot be written ({what}: {error}): webhooks are refused \
                 with 503 and no step is taken until it can; retrying every second",
                self.path().display()
            ));
        }
        self.broken = Some(error.kind());
        self.pending.clear();
        Unrecorded
    }

    /// Writes the header and what was appended as the whole journal.
    fn write_rewrite(&mut self) -> io::Result<()> {
        if let Backend::Remote { log, ready } = &mut self.backend {
            let mut bytes = HEADER.to_vec();
            bytes.extend_from_slice(&self.pending);
            *ready = false;
            log.rewrite(&bytes).map_err(io::Error::other)?;
            *ready = true;
            return Ok(());
        }
        let file = self.write_rewrite_file()?;
        self.backend = Backend::File(Some(file));
        Ok(())
    }

    fn write_rewrite_file(&mut self) -> io::Result<File> {
        let temp = self.dir.join(TEMP_FILE);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(&HEADER)?;
        file.write_all(&self.pending)?;
        file.sync_all()?;
        std::fs::rename(&temp, self.path())?;
        File::open(&self.dir)?.sync_all()?;
        // The renamed file, now the journal: appended to from its end.
        let file = OpenOptions::new().append(true).open(self.path())?;
        Ok(file)
    }
}

impl Journal for FileJournal {
    fn append(&mut self, entry: &Entry) -> Result<(), Unrecorded> {
        if self.broken.is_some() && !self.rewriting {
            return Err(Unrecorded);
        }
        let mut frame = [0u8; MAX_FRAME_LEN];
        // MAX_FRAME_LEN always suffices.
        let len = journal::encode(entry, &mut frame).map_err(|_| Unrecorded)?;
        self.pending
            .extend_from_slice(frame.get(..len).unwrap_or_default());
        Ok(())
    }

    fn commit(&mut self) -> Result<(), Unrecorded> {
        let committed = self.write_pending();
        self.tell_if_due();
        committed
    }

    fn begin_rewrite(&mut self) -> Result<(), Unrecorded> {
        self.pending.clear();
        self.rewriting = true;
        Ok(())
    }

    fn finish_rewrite(&mut self) -> Result<(), Unrecorded> {
        self.rewriting = false;
        match self.write_rewrite() {
            Ok(()) => {
                let len = u64::try_from(HEADER.len().saturating_add(self.pending.len()))
                    .unwrap_or(u64::MAX);
                self.len = len;
                self.base = len;
                self.pending.clear();
                self.rewrites += 1;
                if self.broken.take().is_some() {
                    log::info(&format!(
                        "the journal `{}` is written again: webhooks are accepted",
                        self.path().display()
                    ));
                }
                Ok(())
            }
            Err(e) => {
                if let Backend::File(file) = &mut self.backend {
                    let _ = std::fs::remove_file(self.dir.join(TEMP_FILE));
                    *file = None;
                }
                Err(self.fail("rewrite", &e))
            }
        }
    }
}

impl FileJournal {
    /// Writes what was appended, with one `write` and one `fdatasync`.
    fn write_pending(&mut self) -> Result<(), Unrecorded> {
        if self.broken.is_some() {
            return Err(Unrecorded);
        }
        if self.pending.is_empty() || self.rewriting {
            return Ok(());
        }
        let written = match &mut self.backend {
            Backend::File(None) | Backend::Remote { ready: false, .. } => {
                // Before the first rewrite nothing is written (after a torn tail, appending
                // would bury it): the rewrite writes everything.
                return Err(Unrecorded);
            }
            Backend::File(Some(file)) => file
                .write_all(&self.pending)
                .and_then(|()| file.sync_data()),
            Backend::Remote { log, .. } => log.append(&self.pending).map_err(io::Error::other),
        };
        match written {
            Ok(()) => {
                self.len = self
                    .len
                    .saturating_add(u64::try_from(self.pending.len()).unwrap_or(u64::MAX));
                self.pending.clear();
                self.syncs += 1;
                Ok(())
            }
            Err(e) => {
                // Part of it may be in the file: a torn frame that only a rewrite removes.
                match &mut self.backend {
                    Backend::File(file) => *file = None,
                    Backend::Remote { ready, .. } => *ready = false,
                }
                Err(self.fail("append", &e))
            }
        }
    }
}

#[cfg(test)]
mod tests;
