//! The `journal` target: bytes read back from a journal file after anything happened to it.

use crate::deployer::{Deployer, Policy, persist};
use crate::journal::{self, Entry, Frame, MAX_FRAME_LEN};
use crate::time::{Instant, Now, UnixTime};

/// Where a record frame holds its record's version: after the frame's length and head, and the
/// body's version and kind.
const RECORD_VERSION_AT: usize = 4 + 4 + 2;

/// Arbitrary bytes never panic the reader, with or without a header; every frame that decodes
/// encodes to the same bytes (the form is canonical), but a version 1 record, which encodes to
/// version 2 bytes of the same record; a torn or corrupt frame ends the read;
/// and the records read resume in a deployer without a panic.
pub fn journal(data: &[u8]) {
    let start = journal::read_header(data).unwrap_or(0);
    let mut rest = data.get(start..).unwrap_or_default();
    let mut deployer = Deployer::<4>::new(Policy::default());
    let now = Now::new(Instant::ZERO, UnixTime::from_secs(1_700_000_000));
    loop {
        match journal::read_frame(rest) {
            Frame::Entry { entry, len } => {
                let mut buf = [0u8; MAX_FRAME_LEN];
                let encoded = journal::encode(&entry, &mut buf).map(|n| buf.get(..n));
                // A record of version 1 is written back as version 2 of the same record.
                let upgraded = matches!(entry, Entry::Record(_))
                    && rest.get(RECORD_VERSION_AT) != Some(&persist::VERSION);
                if upgraded {
                    let again = encoded.ok().flatten().map(journal::read_frame);
                    assert!(
                        matches!(again, Some(Frame::Entry { entry: ref e, .. }) if *e == entry),
                        "not read back as written"
                    );
                } else {
                    assert_eq!(encoded, Ok(rest.get(..len)), "not canonical");
                }
                if let Entry::Record(record) = entry {
                    let _ = deployer.handle_resume(now, record);
                    while deployer.poll().is_some() {}
                }
                rest = rest.get(len..).unwrap_or_default();
            }
            Frame::End | Frame::Torn | Frame::Corrupt(_) => return,
        }
    }
}
