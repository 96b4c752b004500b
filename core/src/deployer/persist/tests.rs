//! The persistent form: round trips of records in every phase, the worst case at its bound, a
//! frozen vector, and every way bytes can fail to be a record.

use std::vec::Vec;

use super::*;
use crate::deployer::{Key, Policy, Request};
use crate::text::InlineStr;

fn id(byte: u8) -> DeploymentId {
    DeploymentId::from_bytes([byte; 16])
}

fn digest(byte: u8) -> Digest {
    Digest::from_bytes([byte; 32])
}

pub(crate) fn request() -> Request {
    Request {
        id: id(0x11),
        org: Name::truncated("typesafe"),
        repo: Name::truncated("bundle"),
        package: Name::truncated("visualizer"),
        tag: Name::truncated("v2"),
        digest: digest(0xB0),
        tags: Tags::NONE,
        at: UnixTime::from_millis(1_700_000_000_123),
        allow_downgrade: false,
    }
}

fn encoded(record: &Record) -> Vec<u8> {
    let mut buf = [0u8; MAX_RECORD_LEN];
    let len = encode(record, &mut buf).unwrap();
    buf[..len].to_vec()
}

/// Decodes what was encoded, to the same record, and encodes it to the same bytes.
fn assert_round_trip(record: &Record) {
    let bytes = encoded(record);
    assert!(bytes.len() <= MAX_RECORD_LEN);
    let decoded = decode(&bytes).unwrap();
    assert_eq!(&decoded, record);
    assert_eq!(encoded(&decoded), bytes);
}

/// A record with every field at its longest: names of 64 bytes, eight tags, a rollback whose
/// cause names three bundles with configurations.
pub(crate) fn worst() -> Record {
    let long = "a".repeat(MAX_SEGMENT_LEN);
    let seg = Segment::parse(&long).unwrap();
    let with_config = |byte| BundleId::of(&digest(byte), Some(&digest(byte ^ 0xFF)));
    let swap = Swap {
        plan: Plan {
            old: Some(with_config(1)),
            scale: u32::MAX,
            config: Some(digest(2)),
        },
        new: with_config(3),
    };
    Record {
        request: Request {
            org: Name::from(seg),
            repo: Name::from(seg),
            package: Name::from(seg),
            tag: Name::from(seg),
            tags: Tags::new([seg; MAX_TAGS]).unwrap(),
            ..request()
        },
        order: u64::MAX,
        next_seq: u32::MAX,
        compatibility_version: Some(Name::from(seg)),
        phase: Phase::RollingBack {
            swap,
            step: Step {
                old: u32::MAX,
                new: u32::MAX,
                moved: Moved::Old(with_config(4)),
                up: true,
                waiting: true,
            },
            cause: Cause::Several {
                count: u32::MAX,
                ids: [
                    Some(with_config(5)),
                    Some(with_config(6)),
                    Some(with_config(7)),
                ],
            },
            seen: Seen {
                old: u32::MAX,
                new: u32::MAX,
            },
        },
    }
}

// ---- round trips -----------------------------------------------------------------------------

#[test]
fn test_round_trip_the_worst_case_at_its_bound() {
    let record = worst();
    assert_round_trip(&record);
    // The bound is exact: the longest record takes all of it.
    assert_eq!(encoded(&record).len(), MAX_RECORD_LEN);
    let mut short = [0u8; MAX_RECORD_LEN - 1];
    assert_eq!(encode(&record, &mut short), Err(BufferTooSmall));
}

#[test]
fn test_round_trip_every_phase_and_outcome() {
    let old = BundleId::of(&digest(0xA0), Some(&digest(0xC0)));
    let plan = Plan {
        old: Some(old),
        scale: 3,
        config: Some(digest(0xC0)),
    };
    let swap = Swap {
        plan,
        new: BundleId::of(&digest(0xB0), Some(&digest(0xC0))),
    };
    let step = Step {
        old: 3,
        new: 1,
        moved: Moved::New,
        up: true,
        waiting: false,
    };
    let failures = [
        Cause::Superseded { by: id(2) },
        Cause::Resolve(CommandError::Status(503)),
        Cause::Resolve(CommandError::Tls(TlsError::UnknownIssuer)),
        Cause::Resolve(CommandError::Tls(TlsError::Unsupported)),
        Cause::Resolve(CommandError::TooManyRedirects),
        Cause::Resolve(CommandError::InsecureRedirect),
        Cause::ResolveDeadline,
        Cause::NameMismatch {
            found: Name::truncated("other \u{e9}"),
        },
        Cause::NoRunning {
            compatibility_version: Name::truncated("1"),
            running: None,
            narrowed: true,
        },
        Cause::AlreadyBeside { old },
        Cause::Downgrade {
            running: Name::truncated("1.1.0"),
            old,
        },
        Cause::Step {
            doing: Doing::Ordering,
            fault: Fault::Command(CommandError::Protocol),
        },
        Cause::ConfigMismatch,
        Cause::LoadedIdMismatch { id: old },
        Cause::Step {
            doing: Doing::Scaling {
                side: Side::Old,
                to: 2,
            },
            fault: Fault::Command(CommandError::Unreachable),
        },
        Cause::Step {
            doing: Doing::Scaling {
                side: Side::New,
                to: 2,
            },
            fault: Fault::Lost,
        },
        Cause::Step {
            doing: Doing::Targeting,
            fault: Fault::Aborted,
        },
    ];
    let rollbacks = [
        Rollback::NotNeeded,
        Rollback::Completed { old: 3 },
        Rollback::Off { old: 2, new: 1 },
        Rollback::Failed {
            doing: Doing::Loading,
            fault: Fault::Vanished,
            old: 3,
            new: 0,
        },
    ];
    let mut phases = Vec::from([
        Phase::Screening,
        Phase::Queued,
        Phase::Targeting,
        Phase::Ordering { old, scale: 3 },
        Phase::FetchingConfig { old, scale: 3 },
        Phase::Loading(plan),
        Phase::Observing(swap),
        Phase::LockStep {
            swap,
            step,
            seen: Seen { old: 3, new: 0 },
        },
    ]);
    for cause in failures {
        phases.push(Phase::RollingBack {
            swap,
            step,
            cause,
            seen: Seen { old: 2, new: 1 },
        });
        for rollback in rollbacks {
            phases.push(Phase::Ended(End {
                outcome: Outcome::Failed(Failure { cause, rollback }),
                at: UnixTime::from_secs(1),
                plan: Some(plan),
                new: None,
            }));
        }
    }
    phases.push(Phase::Ended(End {
        outcome: Outcome::Succeeded {
            nothing_to_do: true,
        },
        at: UnixTime::from_secs(2),
        plan: None,
        new: None,
    }));
    let resolving = Record::new(request(), 7);
    assert_round_trip(&resolving);
    for phase in phases {
        assert_round_trip(&Record {
            compatibility_version: Some(Name::truncated("1")),
            phase,
            ..resolving
        });
    }
}

/// Every record a simulated deployment passes through, with faults and restarts, round-trips.
#[cfg(feature = "_sim")]
#[test]
fn test_round_trip_every_record_of_simulated_deployments() {
    use crate::sim::fixture::{NEW, NEWER, cluster, request};
    use crate::sim::{Rng, World};

    let mut phases = std::collections::HashSet::new();
    for seed in 0..1_000u64 {
        let mut world = World::<2>::new(Policy::default(), cluster(3, seed % 2 == 0));
        world.notify(request(1, NEW)).unwrap();
        world.notify(request(2, NEWER)).unwrap();
        let mut rng = Rng::new(seed);
        for _ in 0..400 {
            for record in world.deployer.records().chain(world.ended.iter()) {
                assert_round_trip(record);
                phases.insert(std::mem::discriminant(&record.phase));
            }
            if world.is_done() {
                break;
            }
            // Faults one step in four: with faults at every step, few deployments would live
            // to reach their lock-step.
            let steps = world.enabled(rng.below(4) == 0);
            let Some(step) = steps.get(rng.below(steps.len() as u32) as usize).copied() else {
                break;
            };
            world.apply(step);
        }
    }
    // Screening, Resolving, Queued, Targeting, Ordering, FetchingConfig, Loading, Observing,
    // LockStep, RollingBack, Ended: every phase was met.
    assert_eq!(phases.len(), 11, "{phases:?}");
}

// ---- a frozen vector -------------------------------------------------------------------------

/// Version 2's bytes for a deployment just admitted, written out by hand from the grammar in
/// the module doc: a change of the format shows here first. `allow_downgrade` is the flags byte
/// after the time; version 1 wrote none, and still reads as a request without it.
#[test]
fn test_vector_resolving_record() {
    let mut record = Record::new(request(), 7);
    record.request.tags = Tags::new([Segment::parse("blue").unwrap()]).unwrap();
    let bytes = |version: u8, flags: Option<u8>| {
        let mut expected = Vec::from([version]);
        expected.extend([0x11; 16]);
        for name in ["typesafe", "bundle", "visualizer", "v2"] {
            expected.push(name.len() as u8);
            expected.extend(name.as_bytes());
        }
        expected.extend([0xB0; 32]);
        expected.extend([1, 4]);
        expected.extend(b"blue");
        expected.extend(1_700_000_000_123u64.to_le_bytes());
        expected.extend(flags);
        expected.extend(7u64.to_le_bytes());
        expected.extend(1u32.to_le_bytes());
        expected.extend([0, 0]); // no compatibilityVersion; phase Resolving
        expected
    };
    assert_eq!(encoded(&record), bytes(2, Some(0)));
    assert_eq!(decode(&bytes(2, Some(0))), Ok(record));
    // Version 1: the same record, written back as version 2.
    assert_eq!(decode(&bytes(1, None)), Ok(record));
    // Version 2 with the flag; a version 1 record cannot carry it.
    let mut allowing = record;
    allowing.request.allow_downgrade = true;
    assert_eq!(encoded(&allowing), bytes(2, Some(1)));
    assert_eq!(decode(&bytes(2, Some(1))), Ok(allowing));
    assert_eq!(decode(&bytes(1, Some(1))), Err(DecodeError::Trailing));
    // Unknown flags are refused.
    for flags in [2, 3, 0x80] {
        assert_eq!(
            decode(&bytes(2, Some(flags))),
            Err(DecodeError::Invalid),
            "{flags}"
        );
    }
}

// ---- refusals --------------------------------------------------------------------------------

#[test]
fn test_reject_truncated_at_every_length() {
    let bytes = encoded(&worst());
    for len in 0..bytes.len() {
        assert_eq!(decode(&bytes[..len]), Err(DecodeError::Truncated), "{len}");
    }
}

#[test]
fn test_reject_trailing_bytes_and_unknown_versions() {
    let mut bytes = encoded(&Record::new(request(), 0));
    bytes.push(0);
    assert_eq!(decode(&bytes), Err(DecodeError::Trailing));
    bytes.pop();
    for version in [0u8, 3, 0xFF] {
        bytes[0] = version;
        assert_eq!(decode(&bytes), Err(DecodeError::UnknownVersion(version)));
    }
}

#[test]
fn test_reject_invalid_values() {
    let record = Record {
        compatibility_version: Some(Name::truncated("1")),
        phase: Phase::Loading(Plan {
            old: None,
            scale: 1,
            config: None,
        }),
        ..Record::new(request(), 0)
    };
    let good = encoded(&record);
    assert_round_trip(&record);
    // Where each field starts: version, id, then org's length byte.
    let org = 1 + 16;
    let tags = org + 9 + 7 + 11 + 3 + 32;
    let flags = tags + 1 + 8;
    let compat = flags + 1 + 8 + 4;
    let phase = compat + 3;
    let corrupt = |at: usize, byte: u8| {
        let mut bytes = good.clone();
        bytes[at] = byte;
        decode(&bytes)
    };
    // A request name that is not a segment (`/`), or not UTF-8.
    assert_eq!(corrupt(org + 1, b'/'), Err(DecodeError::Invalid));
    assert_eq!(corrupt(org + 1, 0xFF), Err(DecodeError::Invalid));
    // More tags than a request holds.
    let mut many = good.clone();
    many[tags] = (MAX_TAGS + 1) as u8;
    many.splice(tags + 1..tags + 1, [[1u8, b'x']; MAX_TAGS + 1].concat());
    assert_eq!(decode(&many), Err(DecodeError::Invalid));
    // An option or flag other than 0 or 1; an unknown phase.
    assert_eq!(corrupt(compat, 2), Err(DecodeError::Invalid));
    assert_eq!(corrupt(flags, 2), Err(DecodeError::Invalid));
    assert_eq!(corrupt(phase, 11), Err(DecodeError::Invalid));
    assert_eq!(corrupt(phase + 1, 2), Err(DecodeError::Invalid));
    // A phase past resolving without a compatibilityVersion.
    let keyless = Record {
        compatibility_version: None,
        ..record
    };
    assert_eq!(decode(&encoded(&keyless)), Err(DecodeError::Invalid));
    // A bundle id in upper case: not the canonical form.
    let with_old = Record {
        phase: Phase::FetchingConfig {
            old: BundleId::of(&digest(0xAB), None),
            scale: 1,
        },
        ..record
    };
    let mut bytes = encoded(&with_old);
    let text = phase + 2;
    assert_eq!(bytes[text], b'a');
    bytes[text] = b'A';
    assert_eq!(decode(&bytes), Err(DecodeError::Invalid));
}

#[test]
fn test_key_and_accessors_survive_the_round_trip() {
    let record = worst();
    let decoded = decode(&encoded(&record)).unwrap();
    assert_eq!(
        decoded.key(),
        Some(Key {
            package: record.request.package,
            compatibility_version: InlineStr::truncated(&"a".repeat(MAX_SEGMENT_LEN)),
        })
    );
    assert_eq!(decoded.old(), record.old());
    assert_eq!(decoded.new_bundle(), record.new_bundle());
}

// ---- events ----------------------------------------------------------------------------------

/// Every kind of event, the failure at its longest.
pub(crate) fn events() -> Vec<Event> {
    let long = Name::from(Segment::parse(&"a".repeat(MAX_SEGMENT_LEN)).unwrap());
    let Phase::RollingBack { cause, .. } = worst().phase else {
        panic!("the worst record rolls back")
    };
    let kinds = [
        EventKind::DeploymentStarted {
            bundle_name: long,
            compatible_version: long,
        },
        EventKind::BundleDownload,
        EventKind::ConfigDownload {
            from: BundleId::of(&digest(1), Some(&digest(2))),
        },
        EventKind::Load { config: None },
        EventKind::Load {
            config: Some(digest(3)),
        },
        EventKind::Deploy {
            old: u32::MAX,
            new: 0,
        },
        EventKind::DeploymentSuccess,
        EventKind::DeploymentFailure(Failure {
            cause,
            rollback: Rollback::NotNeeded,
        }),
    ];
    kinds
        .into_iter()
        .enumerate()
        .map(|(seq, kind)| Event {
            deployment: id(0x22),
            seq: u32::try_from(seq).unwrap() + 1,
            kind,
        })
        .collect()
}

#[test]
fn test_event_round_trip_every_kind_within_its_bound() {
    for event in events() {
        let mut buf = [0u8; MAX_EVENT_LEN];
        let len = encode_event(&event, &mut buf).unwrap();
        assert_eq!(decode_event(&buf[..len]), Ok(event));
        // Truncated anywhere, or followed by a byte: refused.
        for cut in 0..len {
            assert!(decode_event(&buf[..cut]).is_err(), "{event:?} cut at {cut}");
        }
        let mut longer = buf[..len].to_vec();
        longer.push(0);
        assert_eq!(decode_event(&longer), Err(DecodeError::Trailing));
    }
    let mut unknown = [0u8; MAX_EVENT_LEN];
    let len = encode_event(&events()[1], &mut unknown).unwrap();
    unknown[0] = 2;
    assert_eq!(
        decode_event(&unknown[..len]),
        Err(DecodeError::UnknownVersion(2))
    );
    unknown[0] = EVENT_VERSION;
    unknown[1 + 16 + 4] = 7;
    assert_eq!(decode_event(&unknown[..len]), Err(DecodeError::Invalid));
}
