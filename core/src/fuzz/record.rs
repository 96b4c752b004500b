//! The `record` target: bytes read back from a store, as a journal will read them.

use crate::deployer::persist::{self, MAX_RECORD_LEN};
use crate::deployer::{Deployer, Policy};
use crate::time::{Duration, Instant, Now, UnixTime};

/// Arbitrary bytes never panic the decoder; a record that decodes encodes to the same bytes
/// (the form is canonical), or, read as version 1, to version 2 bytes of the same record; and
/// the deployer resumes it, times it out and polls it out without a panic, whatever phase it
/// claims to be in.
pub fn record(data: &[u8]) {
    let Ok(record) = persist::decode(data) else {
        return;
    };
    let mut buf = [0u8; MAX_RECORD_LEN];
    let encoded = persist::encode(&record, &mut buf).map(|len| buf.get(..len));
    if data.first() == Some(&persist::VERSION) {
        assert_eq!(encoded, Ok(Some(data)), "not canonical");
    } else {
        let again = encoded.ok().flatten().map(persist::decode);
        assert_eq!(again, Some(Ok(record)), "not read back as written");
    }
    let mut deployer = Deployer::<2>::new(Policy::default());
    let now = Now::new(Instant::ZERO, UnixTime::from_secs(1_700_000_000));
    let _ = deployer.handle_resume(now, record);
    while deployer.poll().is_some() {}
    let later = Now::new(
        Instant::ZERO.saturating_add(Duration::from_secs(3_600)),
        UnixTime::from_secs(1_700_003_600),
    );
    let _ = deployer.handle_timeout(later);
    while deployer.poll().is_some() {}
}
