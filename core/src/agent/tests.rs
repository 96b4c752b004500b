//! The agent's journal: write-ahead (nothing is handed out before the records that imply it
//! are committed), a broken journal holding every job until a rewrite repairs it, what a
//! rewrite holds, and a restore.

use std::cell::RefCell;
use std::rc::Rc;
use std::vec::Vec;

use super::*;
use crate::deployer::{CommandKind, EventKind, Name, Policy};
use crate::ledger::Retained;
use crate::time::{Instant, UnixTime};

/// What the journal saw: the entries appended, how many of them were committed, and whether
/// it is failing.
#[derive(Debug, Default)]
struct Log {
    appended: Vec<Entry>,
    committed: usize,
    rewrites: usize,
    failing: bool,
}

#[derive(Clone, Debug, Default)]
struct Recorder(Rc<RefCell<Log>>);

impl Journal for Recorder {
    fn append(&mut self, entry: &Entry) -> Result<(), Unrecorded> {
        let mut log = self.0.borrow_mut();
        if log.failing {
            return Err(Unrecorded);
        }
        log.appended.push(*entry);
        Ok(())
    }

    fn commit(&mut self) -> Result<(), Unrecorded> {
        let mut log = self.0.borrow_mut();
        if log.failing {
            return Err(Unrecorded);
        }
        log.committed = log.appended.len();
        Ok(())
    }

    fn begin_rewrite(&mut self) -> Result<(), Unrecorded> {
        let mut log = self.0.borrow_mut();
        if log.failing {
            return Err(Unrecorded);
        }
        log.appended.clear();
        log.committed = 0;
        Ok(())
    }

    fn finish_rewrite(&mut self) -> Result<(), Unrecorded> {
        let mut log = self.0.borrow_mut();
        log.rewrites += 1;
        log.committed = log.appended.len();
        Ok(())
    }
}

/// Remembers which deployments it heard end, and which it heard restored.
#[derive(Debug, Default)]
struct Quiet {
    ended: Vec<DeploymentId>,
    restored: Vec<DeploymentId>,
}

impl Sink for Quiet {
    fn event(&mut self, _: &Event) {}
    fn ended(&mut self, record: &Record) {
        self.ended.push(record.id());
    }
    fn restored(&mut self, record: &Record) {
        self.restored.push(record.id());
    }
}

type Shelf = heapless::Vec<Retained, 4>;

fn agent(retention: usize) -> (Agent<4, Quiet, Shelf, Recorder>, Recorder) {
    let journal = Recorder::default();
    let agent = Agent::with_journal(
        Deployer::new(Policy::default()),
        Ledger::new(Shelf::new(), retention),
        Quiet::default(),
        journal.clone(),
    );
    (agent, journal)
}

fn now(ms: u64) -> Now {
    Now::new(Instant::from_millis(ms), UnixTime::from_secs(1_700_000_000))
}

/// A notification whose deployment id is `id` repeated, of a version of its own.
fn request(id: u8) -> Request {
    crate::sim::fixture::request(id, id)
}

/// The next job a worker would get; a cleanup is done at once, and a screening (rule 12) is
/// answered at once: nothing published before.
fn take<J: Journal>(agent: &Agent<4, Quiet, Shelf, J>) -> Option<Job> {
    loop {
        let job = agent.inner.borrow_mut().take_job(0);
        match job {
            Some(Job::Cleanup(_)) => agent.cleaned(0),
            Some(Job::Command(
                command @ Command {
                    kind: CommandKind::Screen { .. },
                    ..
                },
            )) => agent.finish(0, now(1), &command, Reply::Screened { before: None }),
            other => return other,
        }
    }
}

fn finish<J: Journal>(agent: &Agent<4, Quiet, Shelf, J>, job: Option<Job>, reply: Reply<'_>) {
    let Some(Job::Command(command)) = job else {
        panic!("a command: {job:?}")
    };
    agent.finish(0, now(1), &command, reply);
}

#[test]
fn test_a_notification_is_written_ahead_of_its_first_command() {
    let (agent, journal) = agent(4);
    let admitted = agent.notify(now(0), request(1), Asks::default()).unwrap();
    {
        let log = journal.0.borrow();
        // The record as admitted, then its first event; nothing durable yet.
        let [
            Entry::Record(record),
            Entry::Event(started),
            Entry::Event(download),
        ] = log.appended.as_slice()
        else {
            panic!("a record and two events: {:?}", log.appended)
        };
        assert_eq!(record.id(), admitted.id);
        assert!(matches!(started.kind, EventKind::DeploymentStarted { .. }));
        assert_eq!(download.kind, EventKind::BundleDownload);
        assert_eq!(log.committed, 0);
    }
    // The runtime commits before it answers 202.
    agent.commit().unwrap();
    assert_eq!(journal.0.borrow().committed, 3);
    // A redelivery changes nothing, writes nothing.
    assert!(
        agent
            .notify(now(0), request(1), Asks::default())
            .unwrap()
            .redelivery
    );
    assert_eq!(journal.0.borrow().appended.len(), 3);
    // The command is handed out once everything before it is durable.
    let job = take(&agent);
    assert!(matches!(
        job,
        Some(Job::Command(Command {
            kind: CommandKind::Resolve { .. },
            ..
        }))
    ));
    finish(
        &agent,
        job,
        Reply::Resolved {
            name: "visualizer",
            compatibility_version: "2",
        },
    );
    // The reply moved the record on (targeting), written before its command goes out. (`take`
    // answered the screening first: its record, resolving, is committed already.)
    let appended = journal.0.borrow().appended.len();
    assert!(appended > 4);
    assert_eq!(journal.0.borrow().committed, 4);
    let job = take(&agent);
    assert!(job.is_some());
    assert_eq!(journal.0.borrow().committed, appended);
    let log = journal.0.borrow();
    let Some(Entry::Record(latest)) = log
        .appended
        .iter()
        .rev()
        .find(|e| matches!(e, Entry::Record(_)))
    else {
        panic!("a record")
    };
    assert_eq!(latest.compatibility_version, Some(Name::truncated("2")));
}

#[test]
fn test_a_broken_journal_holds_every_job_until_a_rewrite_repairs_it() {
    let (agent, journal) = agent(4);
    journal.0.borrow_mut().failing = true;
    agent.notify(now(0), request(1), Asks::default()).unwrap();
    assert_eq!(agent.commit(), Err(Unrecorded));
    assert_eq!(take(&agent), None);
    assert_eq!(take(&agent), None);
    // Still failing: the rewrite fails, and nothing goes out.
    assert_eq!(agent.rewrite([]), Err(Unrecorded));
    assert_eq!(take(&agent), None);
    // Repaired: the rewrite holds the deployment as it is now, and its event.
    journal.0.borrow_mut().failing = false;
    let stamp = Stamp {
        mac: [1; 32],
        t: 1_700_000_000,
    };
    agent.rewrite([stamp]).unwrap();
    {
        let log = journal.0.borrow();
        assert_eq!(log.rewrites, 1);
        assert!(matches!(log.appended[0], Entry::Record(r) if r.id() == request(1).id));
        assert!(matches!(log.appended[1], Entry::Event(_)));
        assert!(matches!(log.appended[2], Entry::Event(_)));
        assert_eq!(log.appended[3], Entry::Stamp(stamp));
        assert_eq!(log.committed, 4);
    }
    assert!(take(&agent).is_some());
}

#[test]
fn test_what_falls_out_of_retention_is_forgotten_and_restore_brings_back_the_rest() {
    let (agent, journal) = agent(1);
    for id in [1, 2] {
        agent.notify(now(0), request(id), Asks::default()).unwrap();
        let job = take(&agent);
        // A bundle of another name: the deployment fails, and ends.
        finish(
            &agent,
            job,
            Reply::Resolved {
                name: "other",
                compatibility_version: "2",
            },
        );
    }
    let log = journal.0.borrow();
    let forgotten: Vec<_> = log
        .appended
        .iter()
        .filter_map(|e| match e {
            Entry::Forget(id) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(forgotten, [request(1).id]);
    // A new agent restores what a journal holds: the ended one retained with its events,
    // new deployments ordered after it.
    let ended = log
        .appended
        .iter()
        .rev()
        .find_map(|e| match e {
            Entry::Record(r) if r.id() == request(2).id && r.has_ended() => Some(*r),
            _ => None,
        })
        .unwrap();
    let events: Vec<_> = log
        .appended
        .iter()
        .filter_map(|e| match e {
            Entry::Event(e) if e.deployment == request(2).id => Some(*e),
            _ => None,
        })
        .collect();
    drop(log);
    let (restored, _) = agent_with_retention_of(4);
    restored.restore(now(0), ended, events.clone()).unwrap();
    restored.read(|_, ledger| {
        assert_eq!(ledger.ended(request(2).id), Some(&ended));
        assert_eq!(
            ledger
                .events(request(2).id)
                .unwrap()
                .events()
                .collect::<Vec<_>>(),
            events
        );
    });
    restored
        .notify(now(0), request(3), Asks::default())
        .unwrap();
    restored.read(|deployer, _| {
        let order = deployer.record(request(3).id).unwrap().order;
        assert!(order > ended.order);
    });
    // The sink heard each end once, where it happened; the restored one as restored only.
    agent.with_sink(|sink| {
        assert_eq!(sink.ended, [request(1).id, request(2).id]);
        assert!(sink.restored.is_empty());
    });
    restored.with_sink(|sink| {
        assert!(sink.ended.is_empty());
        assert_eq!(sink.restored, [request(2).id]);
    });
}

fn agent_with_retention_of(retention: usize) -> (Agent<4, Quiet, Shelf, Recorder>, Recorder) {
    agent(retention)
}

#[test]
fn test_restore_resumes_a_deployment_in_flight_and_requests_its_step_again() {
    let (agent, journal) = agent(4);
    agent.notify(now(0), request(1), Asks::default()).unwrap();
    let record = *agent
        .read(|deployer, _| deployer.record(request(1).id).copied())
        .as_ref()
        .unwrap();
    let (restored, restored_journal) = agent_with_retention_of(4);
    let events: Vec<_> = journal
        .0
        .borrow()
        .appended
        .iter()
        .filter_map(|e| match e {
            Entry::Event(e) => Some(*e),
            _ => None,
        })
        .collect();
    restored.restore(now(5), record, events).unwrap();
    // Its step is requested again, written ahead like any other.
    let job = take(&restored);
    assert!(matches!(
        job,
        Some(Job::Command(Command {
            kind: CommandKind::Resolve { .. },
            ..
        }))
    ));
    assert!(restored_journal.0.borrow().committed >= 1);
    restored.read(|_, ledger| {
        assert_eq!(ledger.events(request(1).id).map(|l| l.len()), Some(2));
    });
    // The same record again is refused: it is here already.
    assert_eq!(
        restored.restore(now(5), record, []),
        Err(NotResumed::AlreadyHere)
    );
    // Resumed, it ends in this process: the sink hears it ended, not restored.
    finish(
        &restored,
        job,
        Reply::Resolved {
            name: "other",
            compatibility_version: "2",
        },
    );
    restored.with_sink(|sink| {
        assert_eq!(sink.ended, [request(1).id]);
        assert!(sink.restored.is_empty());
    });
}

#[test]
fn test_a_failed_version_is_refused_until_a_webhook_asks_to_retry_it() {
    let (agent, _) = agent(4);
    let first = agent.notify(now(0), request(1), Asks::default()).unwrap();
    let job = take(&agent);
    finish(&agent, job, Reply::Failed(CommandError::DigestMismatch));
    assert!(agent.read(|d, _| d.is_empty()));
    // The same version again, under a new id: refused, naming the failed deployment.
    let again = crate::sim::fixture::request(2, 1);
    let Err(NotAdmitted::Failed(failed)) = agent.notify(now(2), again, Asks::default()) else {
        panic!("refused as failed")
    };
    assert_eq!(failed.id, first.id);
    assert_eq!(failed.tag, again.tag);
    assert_eq!(
        failed.failure.cause,
        crate::deployer::Cause::Resolve(CommandError::DigestMismatch)
    );
    assert!(agent.read(|d, _| d.is_empty()));
    // Another version is not concerned.
    assert!(agent.notify(now(2), request(3), Asks::default()).is_ok());
    // Asked to retry: a new deployment, and while it runs a redelivery without `retry` is
    // answered its id.
    let retried = agent
        .notify(
            now(3),
            again,
            Asks {
                retry: true,
                ..Asks::default()
            },
        )
        .unwrap();
    assert_eq!((retried.id, retried.redelivery), (again.id, false));
    let redelivered = crate::sim::fixture::request(4, 1);
    let answer = agent.notify(now(3), redelivered, Asks::default()).unwrap();
    assert_eq!((answer.id, answer.redelivery), (again.id, true));
}

#[test]
fn test_an_aborted_version_is_not_held() {
    let (agent, _) = agent(4);
    let first = agent.notify(now(0), request(1), Asks::default()).unwrap();
    agent.abort(now(1), first.id).unwrap();
    assert!(agent.read(|_, l| l.ended(first.id).is_some()));
    let again = crate::sim::fixture::request(2, 1);
    let admitted = agent.notify(now(2), again, Asks::default()).unwrap();
    assert!(!admitted.redelivery);
}

/// Runs `request`'s deployment to its Order command, the old bundle (version `OLD`) running
/// at 1, and answers that the repository published the new version before it.
fn refuse_as_a_downgrade(agent: &Agent<4, Quiet, Shelf, Recorder>, request: Request) {
    use crate::sim::fixture::{OLD, old_id};
    agent.notify(now(0), request, Asks::default()).unwrap();
    finish(
        agent,
        take(agent),
        Reply::Resolved {
            name: "visualizer",
            compatibility_version: "1",
        },
    );
    let old = crate::deployer::BundleView {
        id: old_id(false),
        name: "visualizer",
        compatibility_version: "1",
        tags: heapless::Vec::new(),
        scale: Some(1),
        started: 1,
        starting: 0,
        has_error: false,
    };
    finish(agent, take(agent), Reply::Observed { bundles: &[old] });
    let job = take(agent);
    assert!(
        matches!(
            job,
            Some(Job::Command(Command {
                kind: CommandKind::Order { old, .. },
                ..
            })) if old == old_id(false)
        ),
        "{job:?} (version {OLD:#x} runs)"
    );
    let before = Some(Name::truncated("1.1.0"));
    finish(agent, job, Reply::Ordered { before });
}

#[test]
fn test_a_refused_downgrade_is_held_until_a_webhook_allows_it() {
    use crate::sim::fixture::OLDER;
    let (agent, _) = agent(4);
    let first = crate::sim::fixture::request(1, OLDER);
    refuse_as_a_downgrade(&agent, first);
    assert!(agent.read(|d, _| d.is_empty()));
    // The same version again: refused, even when it asks to retry.
    let again = crate::sim::fixture::request(2, OLDER);
    for asks in [
        Asks::default(),
        Asks {
            retry: true,
            ..Asks::default()
        },
    ] {
        let Err(NotAdmitted::Failed(failed)) = agent.notify(now(2), again, asks) else {
            panic!("refused as a downgrade ({asks:?})")
        };
        assert_eq!(failed.id, first.id);
        assert!(failed.failure.is_downgrade());
    }
    // Allowing the downgrade admits it.
    let allowing = Request {
        allow_downgrade: true,
        ..again
    };
    let admitted = agent
        .notify(
            now(3),
            allowing,
            Asks {
                allow_downgrade: true,
                ..Asks::default()
            },
        )
        .unwrap();
    assert_eq!((admitted.id, admitted.redelivery), (again.id, false));
}

#[test]
fn test_allowing_a_downgrade_does_not_lift_another_failure() {
    let (agent, _) = agent(4);
    agent.notify(now(0), request(1), Asks::default()).unwrap();
    finish(
        &agent,
        take(&agent),
        Reply::Failed(CommandError::DigestMismatch),
    );
    let again = Request {
        allow_downgrade: true,
        ..crate::sim::fixture::request(2, 1)
    };
    let asks = Asks {
        allow_downgrade: true,
        ..Asks::default()
    };
    assert!(matches!(
        agent.notify(now(2), again, asks),
        Err(NotAdmitted::Failed(_))
    ));
}

#[test]
fn test_screening_is_pending_then_refused_or_passed() {
    use crate::sim::fixture::{NEW, OLDER, old_id};
    let (agent, _) = agent(4);
    for (byte, before) in [
        (OLDER, Some((Name::truncated("1.0.0"), old_id(false)))),
        (NEW, None),
    ] {
        let request = crate::sim::fixture::request(byte, byte);
        let admitted = agent.notify(now(0), request, Asks::default()).unwrap();
        assert_eq!(agent.screening(admitted.id), Screening::Pending);
        // Answered by hand (`take` would answer it); a cleanup of the first is done first.
        let job = loop {
            let job = agent.inner.borrow_mut().take_job(0);
            match job {
                Some(Job::Cleanup(_)) => agent.cleaned(0),
                job => break job,
            }
        };
        let Some(Job::Command(command)) = job else {
            panic!("the screening: {job:?}")
        };
        assert!(matches!(command.kind, CommandKind::Screen { .. }));
        agent.finish(0, now(1), &command, Reply::Screened { before });
        match agent.screening(admitted.id) {
            Screening::Refused(failed) => {
                assert!(before.is_some());
                assert_eq!((failed.id, failed.tag), (admitted.id, request.tag));
                assert!(failed.failure.is_downgrade());
            }
            Screening::Passed => assert!(before.is_none()),
            Screening::Pending => panic!("answered"),
        }
    }
    // An id never seen: nothing to wait for.
    assert_eq!(
        agent.screening(DeploymentId::from_bytes([0x77; 16])),
        Screening::Passed
    );
}
