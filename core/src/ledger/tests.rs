//! Retention at its edge, the newest-first listing, the events of live and retained
//! deployments, and the listing's JSON.

use std::format;
use std::string::String;
use std::vec::Vec;

use super::*;
use crate::bundle::Digest;
use crate::deployer::{
    Cause, End, EventKind, Failure, Name, Outcome, Phase, Request, Rollback, Tags,
};
use crate::time::UnixTime;

const DIGEST: &str = "6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c";

fn id(byte: u8) -> DeploymentId {
    DeploymentId::from_bytes([byte; 16])
}

/// Deployment `n`, notified `n`-th, in flight.
fn live(n: u8) -> Record {
    Record::new(
        Request {
            id: id(n),
            org: Name::truncated("typesafe"),
            repo: Name::truncated("bundle"),
            package: Name::truncated("visualizer"),
            tag: Name::truncated("v2"),
            digest: Digest::parse(DIGEST).unwrap(),
            tags: Tags::NONE,
            at: UnixTime::from_millis(1_700_000_000_123),
            allow_downgrade: false,
        },
        u64::from(n),
    )
}

/// Deployment `n`, ended: superseded.
fn ended(n: u8) -> Record {
    let failure = Failure {
        cause: Cause::Superseded { by: id(99) },
        rollback: Rollback::NotNeeded,
    };
    Record {
        phase: Phase::Ended(End {
            outcome: Outcome::Failed(failure),
            at: UnixTime::from_millis(1_700_000_001_000),
            plan: None,
            new: None,
        }),
        ..live(n)
    }
}

fn started(n: u8) -> Event {
    Event {
        deployment: id(n),
        seq: 1,
        kind: EventKind::BundleDownload,
    }
}

type Small = Ledger<4, heapless::Vec<Retained, 8>>;

fn ids<'a>(records: impl Iterator<Item = &'a Record>) -> Vec<u8> {
    records.map(|r| r.id().as_bytes()[0]).collect()
}

// ---- retention ---------------------------------------------------------------------------------

#[test]
fn test_retention_evicts_the_oldest_notified_at_its_edge() {
    let mut ledger = Small::new(heapless::Vec::new(), 3);
    for n in 1..=3 {
        ledger.record_event(&started(n));
        assert_eq!(ledger.retire(ended(n)), None, "{n}: within the retention");
    }
    assert_eq!(ledger.retained(), 3);
    // The fourth goes past it: the first notified is evicted, and handed back.
    ledger.record_event(&started(4));
    let evicted = ledger.retire(ended(4)).unwrap();
    assert_eq!(evicted.record.id(), id(1));
    assert_eq!(evicted.log.len(), 1);
    assert_eq!(ledger.retained(), 3);
    assert!(ledger.ended(id(1)).is_none());
    assert!(ledger.events(id(1)).is_none());
    assert_eq!(ids(ledger.shelved().map(|r| &r.record)), [2, 3, 4]);
}

#[test]
fn test_retention_orders_by_notification_not_by_end() {
    let mut ledger = Small::new(heapless::Vec::new(), 2);
    // 3 ends first, then 1, then 2: 1 is the oldest notified, so it goes.
    assert_eq!(ledger.retire(ended(3)), None);
    assert_eq!(ledger.retire(ended(1)), None);
    assert_eq!(ids(ledger.shelved().map(|r| &r.record)), [1, 3]);
    assert_eq!(ledger.retire(ended(2)).unwrap().record.id(), id(1));
    assert_eq!(ids(ledger.shelved().map(|r| &r.record)), [2, 3]);
    // One older than all retained is evicted at once.
    assert_eq!(ledger.retire(ended(0)).unwrap().record.id(), id(0));
    assert_eq!(ids(ledger.shelved().map(|r| &r.record)), [2, 3]);
}

#[test]
fn test_retention_on_a_shelf_smaller_than_it() {
    let mut ledger = Ledger::<4, heapless::Vec<Retained, 2>>::new(heapless::Vec::new(), 100);
    assert_eq!(ledger.retire(ended(1)), None);
    assert_eq!(ledger.retire(ended(2)), None);
    assert_eq!(ledger.retire(ended(3)).unwrap().record.id(), id(1));
    assert_eq!(ids(ledger.shelved().map(|r| &r.record)), [2, 3]);
}

#[test]
fn test_retention_of_at_least_one() {
    let mut ledger = Small::new(heapless::Vec::new(), 0);
    assert_eq!(ledger.retention(), 1);
    assert_eq!(ledger.retire(ended(1)), None);
    assert_eq!(ledger.retire(ended(2)).unwrap().record.id(), id(1));
}

// ---- events ------------------------------------------------------------------------------------

#[test]
fn test_events_of_live_and_retained_deployments() {
    let mut ledger = Small::new(heapless::Vec::new(), 2);
    ledger.record_event(&started(1));
    ledger.record_event(&started(2));
    ledger.record_event(&Event {
        deployment: id(1),
        seq: 2,
        kind: EventKind::Deploy { old: 1, new: 0 },
    });
    assert_eq!(ledger.events(id(1)).unwrap().len(), 2);
    assert_eq!(ledger.events(id(2)).unwrap().len(), 1);
    assert!(ledger.events(id(3)).is_none());
    let _ = ledger.retire(ended(1));
    assert_eq!(ledger.events(id(1)).unwrap().len(), 2);
    assert_eq!(ledger.ended(id(1)).unwrap().id(), id(1));
    assert!(ledger.ended(id(2)).is_none(), "in flight, not retained");
}

// ---- the listing -------------------------------------------------------------------------------

#[test]
fn test_listing_is_newest_first_across_live_and_retained() {
    let mut ledger = Small::new(heapless::Vec::new(), 8);
    for n in [1, 4, 5] {
        let _ = ledger.retire(ended(n));
    }
    let in_flight = [live(3), live(6), live(2)];
    assert_eq!(ids(ledger.listing(&in_flight)), [6, 5, 4, 3, 2, 1]);
    assert_eq!(ids(ledger.listing(&[])), [5, 4, 1]);
}

#[test]
fn test_listing_shape() {
    let ledger = Small::new(heapless::Vec::new(), 8);
    let mut out = String::new();
    ledger.write_listing(&[live(1)], &mut out).unwrap();
    assert_eq!(
        out,
        format!(
            r#"[{{"deploymentId":"{}","bundleName":"visualizer","version":"v2-{DIGEST}","state":"resolving","startedAt":1700000000123}}]"#,
            id(1)
        )
    );
    assert!(crate::json::validate(out.as_bytes(), 16).is_ok());
}

#[test]
fn test_listing_shape_of_an_ended_deployment() {
    let mut ledger = Small::new(heapless::Vec::new(), 8);
    let mut record = ended(1);
    record.compatibility_version = Some(Name::truncated("1"));
    let _ = ledger.retire(record);
    let mut out = String::new();
    ledger.write_listing(&[], &mut out).unwrap();
    assert_eq!(
        out,
        format!(
            concat!(
                r#"[{{"deploymentId":"{}","bundleName":"visualizer","version":"v2-{}","#,
                r#""compatibilityVersion":"1","state":"failed","startedAt":1700000000123,"#,
                r#""endedAt":1700000001000,"failure":"superseded by {}"}}]"#
            ),
            id(1),
            DIGEST,
            id(99)
        )
    );
    assert!(crate::json::validate(out.as_bytes(), 16).is_ok());
}

// ---- failed versions ---------------------------------------------------------------------------

fn ended_with(n: u8, outcome: Outcome) -> Record {
    let mut record = ended(n);
    if let Phase::Ended(end) = &mut record.phase {
        end.outcome = outcome;
    }
    record
}

fn failed(cause: Cause) -> Outcome {
    Outcome::Failed(Failure {
        cause,
        rollback: Rollback::NotNeeded,
    })
}

#[test]
fn test_a_version_is_held_by_its_newest_deployment_failing_for_itself() {
    let digest = Digest::parse(DIGEST).unwrap();
    let held = failed(Cause::ResolveDeadline);
    let step_aborted = failed(Cause::Step {
        doing: crate::deployer::Doing::Scaling {
            side: crate::deployer::Side::New,
            to: 1,
        },
        fault: crate::deployer::Fault::Aborted,
    });
    let cases = [
        (held, true),
        (failed(Cause::Superseded { by: id(9) }), false),
        (failed(Cause::Aborted), false),
        (step_aborted, false),
        (
            Outcome::Succeeded {
                nothing_to_do: false,
            },
            false,
        ),
    ];
    for (outcome, holds) in cases {
        let mut ledger = Small::new(heapless::Vec::new(), 3);
        assert_eq!(ledger.failed_version(&digest), None);
        ledger.retire(ended_with(1, outcome));
        let found = ledger.failed_version(&digest);
        assert_eq!(found.is_some(), holds, "{outcome:?}");
        if let Some(found) = found {
            assert_eq!(found.id, id(1));
            assert_eq!(found.tag.as_str(), "v2");
            assert_eq!(found.at, UnixTime::from_millis(1_700_000_001_000));
        }
    }
    // The newest notified decides: a failure retried with success is no longer held...
    let mut ledger = Small::new(heapless::Vec::new(), 3);
    ledger.retire(ended_with(1, held));
    ledger.retire(ended_with(
        2,
        Outcome::Succeeded {
            nothing_to_do: true,
        },
    ));
    assert_eq!(ledger.failed_version(&digest), None);
    // ...and one that fails again is, under its newest id.
    ledger.retire(ended_with(3, held));
    assert_eq!(ledger.failed_version(&digest).map(|f| f.id), Some(id(3)));
    // Another digest is not concerned.
    let other = Digest::parse(&DIGEST.replace('6', "7")).unwrap();
    assert_eq!(ledger.failed_version(&other), None);
    // Past the retention it is forgotten.
    for n in 4..=6 {
        let mut record = ended(n);
        record.request.digest = other;
        ledger.retire(record);
        let forgotten = n == 6;
        assert_eq!(ledger.failed_version(&digest).is_none(), forgotten, "{n}");
    }
}
