//! The journal file: what a rewrite and commits leave is read back; the lock; a torn tail; a
//! damaged frame before it; a journal of another version.

use lockstep_core::deployer::{EventKind, Name, Request, Tags};
use lockstep_core::time::UnixTime;

use super::*;
use crate::tempdir::TempDir;

fn record(id: u8, order: u64) -> Record {
    let mut record = Record::new(
        Request {
            id: DeploymentId::from_bytes([id; 16]),
            org: Name::truncated("typesafe"),
            repo: Name::truncated("bundle"),
            package: Name::truncated("visualizer"),
            tag: Name::truncated("v2"),
            digest: lockstep_core::bundle::Digest::from_bytes([id; 32]),
            tags: Tags::NONE,
            at: UnixTime::from_secs(1_700_000_000),
            allow_downgrade: false,
        },
        order,
    );
    record.next_seq = 2;
    record
}

fn event(id: u8, seq: u32) -> Event {
    Event {
        deployment: DeploymentId::from_bytes([id; 16]),
        seq,
        kind: EventKind::BundleDownload,
    }
}

const STAMP: Stamp = Stamp {
    mac: [9; 32],
    t: 1_700_000_000,
};

/// A journal rewritten with two deployments, then appended to and committed: a third
/// deployment, an event of the first, a stamp, and the second forgotten.
fn written(dir: &Path) -> FileJournal {
    let (mut journal, restored) = open(dir).unwrap();
    assert!(restored.deployments.is_empty());
    journal.begin_rewrite().unwrap();
    journal.append(&Entry::Record(record(1, 0))).unwrap();
    journal.append(&Entry::Record(record(2, 1))).unwrap();
    journal.finish_rewrite().unwrap();
    for entry in [
        Entry::Record(record(3, 2)),
        Entry::Event(event(1, 1)),
        Entry::Stamp(STAMP),
        Entry::Forget(DeploymentId::from_bytes([2; 16])),
    ] {
        journal.append(&entry).unwrap();
    }
    journal.commit().unwrap();
    journal
}

#[test]
fn test_what_was_committed_is_read_back_folded() {
    let dir = TempDir::new("lockstep-journal").unwrap();
    let journal = written(dir.path());
    assert_eq!(
        journal.len(),
        std::fs::metadata(journal.path()).unwrap().len()
    );
    drop(journal);
    let (_journal, restored) = open(dir.path()).unwrap();
    let ids: Vec<_> = restored
        .deployments
        .iter()
        .map(|k| (k.record.id(), k.events.len()))
        .collect();
    assert_eq!(
        ids,
        [
            (DeploymentId::from_bytes([1; 16]), 1),
            (DeploymentId::from_bytes([3; 16]), 0)
        ]
    );
    assert_eq!(restored.stamps, [STAMP]);
    assert_eq!(restored.torn_at, None);
    assert_eq!(restored.frames, 6);
}

#[test]
fn test_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("lockstep-journal").unwrap();
    let journal = written(dir.path());
    for file in [FILE, LOCK_FILE] {
        let mode = std::fs::metadata(dir.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    drop(journal);
}

#[test]
fn test_a_second_process_on_the_directory_is_refused() {
    let dir = TempDir::new("lockstep-journal").unwrap();
    let (journal, _) = open(dir.path()).unwrap();
    let error = open(dir.path()).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("in use by another lockstep")
            && text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
    drop(journal);
    // Released with its holder.
    assert!(open(dir.path()).is_ok());
}

#[test]
fn test_a_torn_last_frame_is_dropped_and_the_rest_restored() {
    let dir = TempDir::new("lockstep-journal").unwrap();
    let journal = written(dir.path());
    let path = journal.path();
    drop(journal);
    let bytes = std::fs::read(&path).unwrap();
    // The last frame (the forget: 12 + 18 bytes) cut in its middle.
    let cut = bytes.len() - 10;
    std::fs::write(&path, &bytes[..cut]).unwrap();
    let (_journal, restored) = open(dir.path()).unwrap();
    assert_eq!(
        restored.torn_at,
        Some(u64::try_from(bytes.len() - 30).unwrap())
    );
    // The forget was lost: the second deployment is back.
    assert_eq!(restored.deployments.len(), 3);
}

#[test]
fn test_a_flipped_byte_before_the_last_frame_refuses_with_its_offset() {
    let dir = TempDir::new("lockstep-journal").unwrap();
    let journal = written(dir.path());
    let path = journal.path();
    drop(journal);
    let mut bytes = std::fs::read(&path).unwrap();
    // Inside the first frame's body.
    bytes[HEADER.len() + 20] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let error = open(dir.path()).unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error, OpenError::Corrupt { offset: 9, .. }),
        "{text}"
    );
    assert!(
        text.contains(&path.display().to_string())
            && text.contains("damaged at byte 9")
            && text.contains("mv journal journal.damaged"),
        "{text}"
    );
}

#[test]
fn test_a_journal_of_another_version_or_not_a_journal_refuses() {
    let dir = TempDir::new("lockstep-journal").unwrap();
    std::fs::write(dir.path().join(FILE), b"lockstep\x07").unwrap();
    let text = open(dir.path()).unwrap_err().to_string();
    assert!(text.contains("format version 7"), "{text}");
    std::fs::write(dir.path().join(FILE), b"{\"not\": \"a journal\"}").unwrap();
    let text = open(dir.path()).unwrap_err().to_string();
    assert!(text.contains("not a lockstep journal"), "{text}");
}

#[test]
fn test_nothing_is_committed_before_the_first_rewrite() {
    let dir = TempDir::new("lockstep-journal").unwrap();
    let (mut journal, _) = open(dir.path()).unwrap();
    assert!(journal.wants_rewrite());
    journal.append(&Entry::Stamp(STAMP)).unwrap();
    assert_eq!(journal.commit(), Err(Unrecorded));
    journal.begin_rewrite().unwrap();
    journal.finish_rewrite().unwrap();
    assert!(!journal.wants_rewrite());
    assert_eq!(journal.len(), u64::try_from(HEADER.len()).unwrap());
}

#[test]
fn test_a_rewrite_is_due_past_twice_the_live_size_and_slack() {
    let dir = TempDir::new("lockstep-journal").unwrap();
    let (mut journal, _) = open(dir.path()).unwrap();
    journal.begin_rewrite().unwrap();
    journal.finish_rewrite().unwrap();
    let (due, told) = async_channel::bounded(1);
    journal.tell_when_due(due);
    let base = journal.len();
    while journal.len() <= 2 * base + SLACK {
        assert!(!journal.wants_rewrite());
        assert!(told.is_empty());
        journal.append(&Entry::Stamp(STAMP)).unwrap();
        journal.commit().unwrap();
    }
    assert!(journal.wants_rewrite());
    // Whoever committed, the service's keeper hears it.
    assert_eq!(told.try_recv(), Ok(()));
}
