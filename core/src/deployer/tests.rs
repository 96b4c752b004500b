//! Unit tests of the deployer, grouped by the state a deployment is in when the event arrives,
//! named `test_<state>_<event>`. [`Harness`] drives one machine by hand; [`Cluster`] is the
//! smallest cluster that obeys scale commands at once (the deterministic simulation with
//! latencies and faults lives behind the `_sim` feature).
use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

use super::*;
use crate::bundle::{BundleId, Digest};
use crate::time::{Duration, Instant, UnixTime};

// ---- fixtures --------------------------------------------------------------------------------

const NAME: &str = "visualizer";

fn digest(byte: u8) -> Digest {
    Digest::from_bytes([byte; 32])
}

fn id(byte: u8) -> DeploymentId {
    DeploymentId::from_bytes([byte; 16])
}

fn n(s: &str) -> Name {
    Name::new(s).unwrap()
}

fn request(id_byte: u8, digest_byte: u8) -> Request {
    Request {
        id: id(id_byte),
        org: n("typesafe"),
        repo: n("bundle"),
        package: n(NAME),
        tag: n("v2"),
        digest: digest(digest_byte),
        tags: Tags::NONE,
        at: UnixTime::from_secs(1_700_000_000),
        allow_downgrade: false,
    }
}

/// The old bundle of most tests: digest 0xA0, configuration 0xC0.
fn old_id() -> BundleId {
    BundleId::of(&digest(0xA0), Some(&digest(0xC0)))
}

/// A loaded bundle as the tests' cluster keeps it.
#[derive(Clone, Debug)]
struct Loaded {
    id: BundleId,
    name: String,
    compat: String,
    tags: Vec<String>,
    scale: Option<u32>,
    started: u32,
    has_error: bool,
}

impl Loaded {
    fn new(id: BundleId, compat: &str, scale: u32) -> Self {
        Self {
            id,
            name: NAME.to_string(),
            compat: compat.to_string(),
            tags: vec![],
            scale: Some(scale),
            started: scale,
            has_error: false,
        }
    }
}

/// A cluster that runs exactly the requested scale the moment it is asked, and records every
/// command it receives.
#[derive(Debug, Default)]
struct Cluster {
    bundles: Vec<Loaded>,
    commands: Vec<CommandKind>,
    /// Scale requests are accepted but instances never start (or stop).
    frozen: bool,
    /// Scale requests of this bundle are refused (500).
    refused: Option<BundleId>,
    /// The repository lists the new version before the running one, whose tag this is.
    published_before: Option<&'static str>,
}

impl Cluster {
    fn with(bundles: Vec<Loaded>) -> Self {
        Self {
            bundles,
            ..Self::default()
        }
    }

    fn get(&self, id: BundleId) -> Option<&Loaded> {
        self.bundles.iter().find(|b| b.id == id)
    }

    fn views(&self) -> Vec<BundleView<'_>> {
        self.bundles
            .iter()
            .map(|b| BundleView {
                id: b.id,
                name: &b.name,
                compatibility_version: &b.compat,
                tags: b
                    .tags
                    .iter()
                    .map(String::as_str)
                    .take(MAX_BUNDLE_TAGS)
                    .collect(),
                scale: b.scale,
                started: b.started,
                starting: b.scale.unwrap_or(0).saturating_sub(b.started),
                has_error: b.has_error,
            })
            .collect()
    }
}

/// One deployer, a clock and everything polled out of it.
struct Harness {
    d: Deployer<4>,
    now: Now,
    events: Vec<Event>,
    ended: Vec<Record>,
    /// Commands polled and not yet answered.
    commands: Vec<Command>,
}

impl Harness {
    fn new(policy: Policy) -> Self {
        Self {
            d: Deployer::new(policy),
            now: Now::new(
                Instant::from_millis(1_000),
                UnixTime::from_secs(1_700_000_000),
            ),
            events: vec![],
            ended: vec![],
            commands: vec![],
        }
    }

    fn drain(&mut self) {
        while let Some(out) = self.d.poll() {
            match out {
                Output::Command(c) => {
                    // A new command abandons the deployment's previous one, as an agent
                    // does: its answer would be stale.
                    self.commands.retain(|old| old.deployment != c.deployment);
                    self.commands.push(c);
                }
                Output::Event(e) => self.events.push(e),
                Output::Ended(r) => {
                    self.commands.retain(|c| c.deployment != r.id());
                    self.ended.push(r);
                }
            }
        }
    }

    /// Notifies `r`; its screening (rule 12) is answered at once: nothing published before
    /// (see [`Harness::notify_unscreened`] to answer it by hand).
    fn notify(&mut self, r: Request) -> Result<Admitted, Busy> {
        let admitted = self.notify_unscreened(r);
        let screen = self
            .commands
            .iter()
            .position(|c| c.deployment == r.id && matches!(c.kind, CommandKind::Screen { .. }));
        if let Some(at) = screen {
            let c = self.commands.remove(at);
            self.answer(&c, Reply::Screened { before: None }).unwrap();
        }
        admitted
    }

    /// Notifies `r`, its Screen command (if any) left waiting.
    fn notify_unscreened(&mut self, r: Request) -> Result<Admitted, Busy> {
        let admitted = self.d.handle_notification(self.now, r);
        self.drain();
        admitted
    }

    fn resume(&mut self, record: Record) -> Result<(), NotResumed> {
        let resumed = self.d.handle_resume(self.now, record);
        self.drain();
        resumed
    }

    /// A time-out now, due or not: how many deadlines fired.
    fn timeout_now(&mut self) -> usize {
        let fired = self.d.handle_timeout(self.now);
        self.drain();
        fired
    }

    /// The one command waiting for an answer.
    fn take(&mut self) -> Command {
        assert_eq!(self.commands.len(), 1, "commands: {:?}", self.commands);
        self.commands.pop().unwrap()
    }

    fn answer(&mut self, c: &Command, reply: Reply<'_>) -> Result<(), Ignored> {
        let applied = self.d.handle_reply(self.now, c, reply);
        self.drain();
        applied
    }

    /// Answers the waiting Order: the repository lists the new version before the running one
    /// (tagged `before`), or not.
    fn ordered(&mut self, before: Option<&str>) {
        let c = self.take();
        assert!(matches!(c.kind, CommandKind::Order { .. }), "{c:?}");
        let before = before.map(Name::truncated);
        self.answer(&c, Reply::Ordered { before }).unwrap();
    }

    /// Answers the waiting Resolve as bundle.conf with `name` and `compat` says.
    fn resolve(&mut self, name: &str, compat: &str) {
        let c = self.take();
        assert!(matches!(c.kind, CommandKind::Resolve { .. }), "{c:?}");
        self.answer(
            &c,
            Reply::Resolved {
                name,
                compatibility_version: compat,
            },
        )
        .unwrap();
    }

    /// Answers waiting commands from `cluster` until none is left.
    fn run(&mut self, cluster: &mut Cluster) {
        for _ in 0..1_000 {
            let Some(c) = self.commands.pop() else {
                return;
            };
            assert!(
                self.commands.is_empty(),
                "one command at a time per deployment"
            );
            self.serve(cluster, &c);
        }
        panic!("no end after 1,000 commands");
    }

    /// Answers one command from `cluster`.
    fn serve(&mut self, cluster: &mut Cluster, c: &Command) {
        cluster.commands.push(c.kind);
        match c.kind {
            CommandKind::Observe { .. } => {
                let views = cluster.views();
                self.answer(c, Reply::Observed { bundles: &views }).unwrap();
            }
            CommandKind::FetchConfig { bundle } => {
                assert_eq!(bundle, old_id());
                self.answer(
                    c,
                    Reply::ConfigFetched {
                        config: digest(0xC0),
                    },
                )
                .unwrap();
            }
            CommandKind::Load { digest, config } => {
                let id = BundleId::of(&digest, config.as_ref());
                if cluster.get(id).is_none() {
                    let mut loaded = Loaded::new(id, "1", 0);
                    loaded.scale = None;
                    cluster.bundles.push(loaded);
                }
                self.answer(c, Reply::Loaded { id }).unwrap();
            }
            CommandKind::Scale { bundle, .. } if cluster.refused == Some(bundle) => {
                self.answer(c, Reply::Failed(CommandError::Status(500)))
                    .unwrap();
            }
            CommandKind::Scale { bundle, scale } => {
                let frozen = cluster.frozen;
                let Some(b) = cluster.bundles.iter_mut().find(|b| b.id == bundle) else {
                    self.answer(c, Reply::Failed(CommandError::Status(404)))
                        .unwrap();
                    return;
                };
                b.scale = Some(scale);
                if !frozen {
                    b.started = scale;
                }
                self.answer(c, Reply::Scaled).unwrap();
            }
            CommandKind::Screen { .. } => {
                let running = cluster.bundles.iter().find(|b| b.scale.unwrap_or(0) > 0);
                let before = cluster
                    .published_before
                    .zip(running)
                    .map(|(tag, b)| (Name::truncated(tag), b.id));
                self.answer(c, Reply::Screened { before }).unwrap();
            }
            CommandKind::Order { old, .. } => {
                assert!(cluster.get(old).is_some(), "ordered against {old}");
                let before = cluster.published_before.map(Name::truncated);
                self.answer(c, Reply::Ordered { before }).unwrap();
            }
            CommandKind::Resolve { .. } => panic!("resolve is answered by hand"),
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now = Now::new(
            self.now.instant.saturating_add(d),
            UnixTime::from_millis(self.now.unix.as_millis() + d.as_millis()),
        );
    }

    /// Lets time pass until the earliest deadline, and hands over the time-out.
    fn timeout(&mut self) -> usize {
        if let Some(at) = self.d.poll_timeout() {
            let d = at.saturating_duration_since(self.now.instant);
            self.advance(d);
        }
        self.timeout_now()
    }

    fn deploys(&self) -> Vec<(u32, u32)> {
        self.events
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::Deploy { old, new } => Some((old, new)),
                _ => None,
            })
            .collect()
    }

    fn types(&self, deployment: DeploymentId) -> Vec<&'static str> {
        self.events
            .iter()
            .filter(|e| e.deployment == deployment)
            .map(|e| e.kind.event_type().as_str())
            .collect()
    }

    fn failure(&self, deployment: DeploymentId) -> Failure {
        let r = self
            .ended
            .iter()
            .find(|r| r.id() == deployment)
            .expect("ended");
        *r.failure().expect("a failure")
    }

    fn succeeded(&self, deployment: DeploymentId) -> bool {
        self.ended
            .iter()
            .any(|r| r.id() == deployment && r.state() == State::Succeeded)
    }
}

/// A deployment of version 0xB0 notified and resolved (compatibilityVersion 1), about to list
/// the bundles.
fn targeting(policy: Policy) -> Harness {
    let mut h = Harness::new(policy);
    h.notify(request(1, 0xB0)).unwrap();
    h.resolve(NAME, "1");
    h
}

/// bundle.conf of the package with this compatibilityVersion.
fn resolved(compatibility_version: &str) -> Reply<'_> {
    Reply::Resolved {
        name: NAME,
        compatibility_version,
    }
}

/// Runs a whole deployment against `cluster`.
fn deploy(policy: Policy, cluster: &mut Cluster) -> Harness {
    let mut h = targeting(policy);
    h.run(cluster);
    h
}

fn new_id() -> BundleId {
    BundleId::of(&digest(0xB0), Some(&digest(0xC0)))
}

// ---- the whole lock-step ---------------------------------------------------------------------

// The sequence the original service was observed to log (docs/PROTOCOL.md §6).
#[test]
fn test_lockstep_scale_3_with_configuration() {
    let mut cluster = Cluster::with(vec![Loaded::new(old_id(), "1", 3)]);
    let h = deploy(Policy::default(), &mut cluster);
    assert_eq!(
        h.deploys(),
        [(3, 0), (3, 1), (2, 1), (2, 2), (1, 2), (1, 3), (0, 3)]
    );
    assert_eq!(
        h.types(id(1)),
        [
            "deploymentStarted",
            "bundleDownload",
            "configDownload",
            "load",
            "deploy",
            "deploy",
            "deploy",
            "deploy",
            "deploy",
            "deploy",
            "deploy",
            "deploymentSuccess"
        ]
    );
    // Sequence numbers from 1, without gaps.
    let seqs: Vec<u32> = h.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
    // The load carried the old configuration, and said so.
    assert!(cluster.commands.contains(&CommandKind::Load {
        digest: digest(0xB0),
        config: Some(digest(0xC0)),
    }));
    assert!(h.events.iter().any(|e| e.kind
        == EventKind::Load {
            config: Some(digest(0xC0))
        }));
    assert!(
        h.events
            .iter()
            .any(|e| e.kind == EventKind::ConfigDownload { from: old_id() })
    );
    // Absolute scales, new up before old down, and the old bundle is stopped, not unloaded
    // (the command set has no unload at all).
    let scales: Vec<(bool, u32)> = cluster
        .commands
        .iter()
        .filter_map(|c| match c {
            CommandKind::Scale { bundle, scale } => Some((*bundle == old_id(), *scale)),
            _ => None,
        })
        .collect();
    assert_eq!(
        scales,
        [
            (false, 1),
            (true, 2),
            (false, 2),
            (true, 1),
            (false, 3),
            (true, 0)
        ]
    );
    assert_eq!(cluster.get(old_id()).unwrap().scale, Some(0));
    assert_eq!(cluster.get(new_id()).unwrap().started, 3);
    assert!(h.succeeded(id(1)));
    assert!(h.d.is_empty());
    assert_eq!(h.d.poll_timeout(), None);
}

#[test]
fn test_lockstep_scale_1_without_configuration() {
    let old = BundleId::of(&digest(0xA0), None);
    let mut cluster = Cluster::with(vec![Loaded::new(old, "1", 1)]);
    let h = deploy(Policy::default(), &mut cluster);
    assert_eq!(h.deploys(), [(1, 0), (1, 1), (0, 1)]);
    assert!(!h.types(id(1)).contains(&"configDownload"));
    assert!(
        h.events
            .iter()
            .any(|e| e.kind == EventKind::Load { config: None })
    );
    assert!(cluster.get(BundleId::of(&digest(0xB0), None)).is_some());
    assert!(h.succeeded(id(1)));
}

// ---- admission (step 1) ----------------------------------------------------------------------

#[test]
fn test_admission_notify_logs_started_and_resolves() {
    let mut h = Harness::new(Policy::default());
    assert_eq!(
        h.notify(request(1, 0xB0)),
        Ok(Admitted {
            id: id(1),
            redelivery: false
        })
    );
    assert_eq!(h.types(id(1)), ["deploymentStarted", "bundleDownload"]);
    assert_eq!(
        h.events[0].kind,
        EventKind::DeploymentStarted {
            bundle_name: n(NAME),
            compatible_version: n("v2")
        }
    );
    let c = h.take();
    assert_eq!(
        c.kind,
        CommandKind::Resolve {
            org: n("typesafe"),
            repo: n("bundle"),
            package: n(NAME),
            tag: n("v2"),
            digest: digest(0xB0)
        }
    );
    assert_eq!(h.d.record(id(1)).unwrap().state(), State::Resolving);
}

#[test]
fn test_admission_redelivery_answers_the_same_id() {
    let mut h = Harness::new(Policy::default());
    h.notify(request(1, 0xB0)).unwrap();
    let before = h.events.len();
    assert_eq!(
        h.notify(request(2, 0xB0)),
        Ok(Admitted {
            id: id(1),
            redelivery: true
        })
    );
    assert_eq!(h.events.len(), before, "a redelivery logs nothing");
    assert_eq!(h.d.len(), 1);
}

#[test]
fn test_admission_full_table_is_busy() {
    let mut h = Harness::new(Policy::default());
    for i in 0..4 {
        assert!(matches!(h.notify(request(i, i)), Ok(Admitted { .. })));
    }
    assert_eq!(h.notify(request(9, 9)), Err(Busy::TableFull));
    assert_eq!(h.d.len(), 4);
    assert!(h.d.record(id(9)).is_none());
    // A redelivery is still answered when full.
    assert!(matches!(
        h.notify(request(8, 3)),
        Ok(Admitted {
            redelivery: true,
            ..
        })
    ));
}

#[test]
fn test_admission_in_flight_limit_after_the_redelivery_check() {
    let mut h = Harness::new(Policy {
        max_in_flight: 2,
        ..Policy::default()
    });
    h.notify(request(1, 1)).unwrap();
    h.notify(request(2, 2)).unwrap();
    // At the limit, below the table's capacity: a new version is refused, nothing created.
    assert_eq!(h.notify(request(3, 3)), Err(Busy::InFlightLimit));
    assert_eq!(h.d.len(), 2);
    assert!(h.types(id(3)).is_empty());
    // A redelivery is still answered.
    assert_eq!(
        h.notify(request(4, 2)),
        Ok(Admitted {
            id: id(2),
            redelivery: true
        })
    );
    // Once one ends, there is room again.
    let c = h.commands.remove(0);
    h.answer(&c, Reply::Failed(CommandError::Unreachable))
        .unwrap();
    assert!(h.notify(request(3, 3)).is_ok());
}

#[test]
fn test_admission_refuses_an_id_in_use() {
    let mut h = Harness::new(Policy::default());
    h.notify(request(1, 1)).unwrap();
    assert_eq!(h.notify(request(1, 2)), Err(Busy::IdInUse));
    assert_eq!(h.d.len(), 1);
}

#[test]
fn test_admission_after_end_creates_a_new_deployment() {
    let mut h = Harness::new(Policy::default());
    h.notify(request(1, 0xB0)).unwrap();
    let c = h.take();
    h.answer(&c, Reply::Failed(CommandError::Unreachable))
        .unwrap();
    assert_eq!(h.ended.len(), 1);
    assert_eq!(
        h.notify(request(2, 0xB0)),
        Ok(Admitted {
            id: id(2),
            redelivery: false
        })
    );
}

// ---- resolving (step 2) ----------------------------------------------------------------------

#[test]
fn test_resolving_failed_ends_the_deployment() {
    let mut h = Harness::new(Policy::default());
    h.notify(request(1, 0xB0)).unwrap();
    let c = h.take();
    h.answer(&c, Reply::Failed(CommandError::DigestMismatch))
        .unwrap();
    let f = h.failure(id(1));
    assert_eq!(f.cause, Cause::Resolve(CommandError::DigestMismatch));
    assert_eq!(f.rollback, Rollback::NotNeeded);
    assert_eq!(
        f.to_string(),
        "the bundle could not be resolved: the download does not match the notified digest"
    );
    assert_eq!(h.types(id(1)).last(), Some(&"deploymentFailure"));
}

#[test]
fn test_resolving_name_mismatch() {
    let mut h = Harness::new(Policy::default());
    h.notify(request(1, 0xB0)).unwrap();
    h.resolve("other", "1");
    assert_eq!(
        h.failure(id(1)).cause,
        Cause::NameMismatch { found: n("other") }
    );
}

#[test]
fn test_resolving_deadline() {
    let mut h = Harness::new(Policy::default());
    h.notify(request(1, 0xB0)).unwrap();
    let _ = h.take();
    assert_eq!(
        h.d.poll_timeout(),
        Some(Instant::from_millis(1_000 + 600_000))
    );
    h.timeout();
    assert_eq!(h.failure(id(1)).cause, Cause::ResolveDeadline);
}

#[test]
fn test_resolving_early_timeout_does_nothing() {
    let mut h = Harness::new(Policy::default());
    h.notify(request(1, 0xB0)).unwrap();
    let _ = h.take();
    h.advance(Duration::from_secs(599));
    assert_eq!(h.timeout_now(), 0);
    assert!(h.ended.is_empty());
}

#[test]
fn test_resolving_stale_reply_is_ignored() {
    let mut h = Harness::new(Policy::default());
    h.notify(request(1, 0xB0)).unwrap();
    let c = h.take();
    let stale = Command {
        token: c.token + 7,
        ..c
    };
    let reply = resolved("1");
    assert_eq!(h.answer(&stale, reply.clone()), Err(Ignored::Stale));
    assert_eq!(h.answer(&c, reply.clone()), Ok(()));
    // The same answer twice: the second answers a command that was replaced.
    assert_eq!(h.answer(&c, reply), Err(Ignored::Stale));
    let unknown = Command {
        deployment: id(77),
        ..c
    };
    assert_eq!(h.answer(&unknown, Reply::Scaled), Err(Ignored::Unknown));
}

// ---- queued (step 3) -------------------------------------------------------------------------

/// Two deployments of the same key: 1 (version 0xB0) active, 2 (0xB1) resolved after it.
fn two_of_a_key() -> (Harness, Command) {
    let mut h = Harness::new(Policy::default());
    h.notify(request(1, 0xB0)).unwrap();
    h.notify(request(2, 0xB1)).unwrap();
    let mut first = h.commands.remove(0);
    let second = h.commands.remove(0);
    h.answer(&first, resolved("1")).unwrap();
    first = h.take();
    assert!(matches!(first.kind, CommandKind::Observe { .. }));
    h.answer(&second, resolved("1")).unwrap();
    assert!(h.commands.is_empty(), "the second waits");
    (h, first)
}

#[test]
fn test_queued_waits_for_the_active_one() {
    let (mut h, first) = two_of_a_key();
    assert_eq!(h.d.record(id(2)).unwrap().state(), State::Queued);
    // The first ends: the queued one starts targeting.
    h.answer(&first, Reply::Failed(CommandError::Unreachable))
        .unwrap();
    assert_eq!(h.ended.len(), 1);
    let c = h.take();
    assert_eq!(c.deployment, id(2));
    assert!(matches!(c.kind, CommandKind::Observe { .. }));
}

#[test]
fn test_queued_superseded_by_a_later_notification() {
    let (mut h, _first) = two_of_a_key();
    h.notify(request(3, 0xB2)).unwrap();
    let c = h.take();
    h.answer(&c, resolved("1")).unwrap();
    assert_eq!(h.failure(id(2)).cause, Cause::Superseded { by: id(3) });
    assert_eq!(
        h.failure(id(2)).to_string(),
        format!("superseded by {}", id(3))
    );
    assert_eq!(h.d.record(id(3)).unwrap().state(), State::Queued);
}

#[test]
fn test_queued_earlier_notification_ends_at_once() {
    // 3 is notified before 4, but resolves after 4 became pending: 3 ends at once.
    let (mut h, _first) = two_of_a_key();
    h.notify(request(3, 0xB2)).unwrap();
    h.notify(request(4, 0xB3)).unwrap();
    let c3 = h.commands.remove(0);
    let c4 = h.commands.remove(0);
    let resolved = resolved("1");
    h.answer(&c4, resolved.clone()).unwrap();
    assert_eq!(h.failure(id(2)).cause, Cause::Superseded { by: id(4) });
    h.answer(&c3, resolved).unwrap();
    assert_eq!(h.failure(id(3)).cause, Cause::Superseded { by: id(4) });
    assert_eq!(h.d.record(id(4)).unwrap().state(), State::Queued);
}

#[test]
fn test_queued_notified_before_the_active_one_ends_at_once() {
    let mut h = Harness::new(Policy::default());
    h.notify(request(1, 0xB0)).unwrap();
    h.notify(request(2, 0xB1)).unwrap();
    let c1 = h.commands.remove(0);
    let c2 = h.commands.remove(0);
    let resolved = resolved("1");
    // The later notification resolves first and becomes active...
    h.answer(&c2, resolved.clone()).unwrap();
    assert_eq!(h.d.record(id(2)).unwrap().phase, Phase::Targeting);
    // ...so the earlier one is superseded the moment it resolves.
    h.answer(&c1, resolved).unwrap();
    assert_eq!(h.failure(id(1)).cause, Cause::Superseded { by: id(2) });
}

#[test]
fn test_queued_other_key_runs_in_parallel() {
    let mut h = Harness::new(Policy::default());
    h.notify(request(1, 0xB0)).unwrap();
    h.notify(request(2, 0xB1)).unwrap();
    let c1 = h.commands.remove(0);
    let c2 = h.commands.remove(0);
    h.answer(&c1, resolved("1")).unwrap();
    h.answer(&c2, resolved("2")).unwrap();
    assert_eq!(h.commands.len(), 2, "both target at once");
}

// ---- targeting (step 4) ----------------------------------------------------------------------

#[test]
fn test_targeting_nothing_running_fails_by_default() {
    let mut cluster = Cluster::default();
    let h = deploy(Policy::default(), &mut cluster);
    let f = h.failure(id(1));
    assert_eq!(
        f.cause,
        Cause::NoRunning {
            compatibility_version: n("1"),
            running: None,
            narrowed: false
        }
    );
    assert!(cluster.bundles.is_empty(), "nothing was loaded");
}

#[test]
fn test_targeting_nothing_running_starts_at_scale_1() {
    let policy = Policy {
        nothing_running: NothingRunning::StartOne,
        ..Policy::default()
    };
    let mut cluster = Cluster::default();
    let h = deploy(policy, &mut cluster);
    assert!(h.succeeded(id(1)));
    assert_eq!(h.deploys(), [(0, 0), (0, 1)]);
    let new = BundleId::of(&digest(0xB0), None);
    assert_eq!(cluster.get(new).unwrap().started, 1);
}

#[test]
fn test_targeting_compatibility_mismatch() {
    let other = BundleId::of(&digest(0xA1), None);
    let mut cluster = Cluster::with(vec![Loaded::new(other, "2", 2)]);
    let h = deploy(Policy::default(), &mut cluster);
    let f = h.failure(id(1));
    assert_eq!(
        f.cause,
        Cause::NoRunning {
            compatibility_version: n("1"),
            running: Some(n("2")),
            narrowed: false
        }
    );
    // The bundle of the other compatibilityVersion was never touched.
    assert!(
        cluster
            .commands
            .iter()
            .all(|c| !matches!(c, CommandKind::Scale { .. }))
    );
    assert_eq!(cluster.get(other).unwrap().started, 2);
}

#[test]
fn test_targeting_several_running_fails_suggesting_tag() {
    let a = BundleId::of(&digest(0xA1), None);
    let b = BundleId::of(&digest(0xA2), None);
    let mut cluster = Cluster::with(vec![Loaded::new(a, "1", 1), Loaded::new(b, "1", 2)]);
    let h = deploy(Policy::default(), &mut cluster);
    let f = h.failure(id(1));
    assert_eq!(
        f.cause,
        Cause::Several {
            count: 2,
            ids: [Some(a), Some(b), None]
        }
    );
    let text = f.to_string();
    assert!(text.contains(a.short().as_str()) && text.contains(b.short().as_str()));
    assert!(
        text.ends_with("name the one to replace with ?tag="),
        "{text}"
    );
}

#[test]
fn test_targeting_tag_narrows_to_one() {
    let a = BundleId::of(&digest(0xA1), None);
    let b = BundleId::of(&digest(0xA2), None);
    let mut tagged = Loaded::new(b, "1", 2);
    tagged.tags = vec!["blue".to_string()];
    let mut cluster = Cluster::with(vec![Loaded::new(a, "1", 1), tagged]);
    let mut h = Harness::new(Policy::default());
    let mut r = request(1, 0xB0);
    r.tags = Tags::new([crate::bundle::Segment::parse("blue").unwrap()]).unwrap();
    h.notify(r).unwrap();
    h.resolve(NAME, "1");
    h.run(&mut cluster);
    assert!(h.succeeded(id(1)));
    assert_eq!(h.d.record(id(1)), None);
    assert_eq!(
        cluster.get(a).unwrap().started,
        1,
        "the untagged one is untouched"
    );
    assert_eq!(cluster.get(b).unwrap().started, 0);
}

#[test]
fn test_targeting_tag_matching_nothing() {
    let a = BundleId::of(&digest(0xA1), None);
    let mut cluster = Cluster::with(vec![Loaded::new(a, "1", 1)]);
    let mut h = Harness::new(Policy::default());
    let mut r = request(1, 0xB0);
    r.tags = Tags::new([crate::bundle::Segment::parse("green").unwrap()]).unwrap();
    h.notify(r).unwrap();
    h.resolve(NAME, "1");
    h.run(&mut cluster);
    let text = h.failure(id(1)).to_string();
    assert_eq!(
        text,
        "no running bundle with compatibilityVersion 1 and one of the requested tags"
    );
}

#[test]
fn test_targeting_same_digest_running_is_success() {
    let running = BundleId::of(&digest(0xB0), None);
    let mut cluster = Cluster::with(vec![Loaded::new(running, "1", 3)]);
    let h = deploy(Policy::default(), &mut cluster);
    assert!(h.succeeded(id(1)));
    assert_eq!(
        h.ended[0].outcome(),
        Some(&Outcome::Succeeded {
            nothing_to_do: true
        })
    );
    assert!(
        cluster
            .commands
            .iter()
            .all(|c| matches!(c, CommandKind::Observe { .. }))
    );
}

#[test]
fn test_targeting_new_already_beside_the_old() {
    let new = BundleId::of(&digest(0xB0), None);
    let mut cluster = Cluster::with(vec![
        Loaded::new(old_id(), "1", 2),
        Loaded::new(new, "1", 1),
    ]);
    let h = deploy(Policy::default(), &mut cluster);
    assert_eq!(
        h.failure(id(1)).cause,
        Cause::AlreadyBeside { old: old_id() }
    );
}

#[test]
fn test_targeting_ignores_other_names_and_stopped_bundles() {
    let mut other = Loaded::new(BundleId::of(&digest(0xA5), None), "1", 2);
    other.name = "other".to_string();
    let stopped = Loaded::new(BundleId::of(&digest(0xA6), None), "1", 0);
    let old = Loaded::new(BundleId::of(&digest(0xA0), None), "1", 1);
    let mut cluster = Cluster::with(vec![other, stopped, old]);
    let h = deploy(Policy::default(), &mut cluster);
    assert!(h.succeeded(id(1)));
}

#[test]
fn test_targeting_refused_listing() {
    let mut h = targeting(Policy::default());
    let c = h.take();
    h.answer(&c, Reply::Failed(CommandError::Status(503)))
        .unwrap();
    let f = h.failure(id(1));
    assert_eq!(
        f.cause,
        Cause::Step {
            doing: Doing::Targeting,
            fault: Fault::Command(CommandError::Status(503))
        }
    );
    assert_eq!(f.rollback, Rollback::NotNeeded);
}

// ---- fetching the configuration, loading (step 5) --------------------------------------------

#[test]
fn test_fetching_config_mismatch() {
    let mut h = targeting(Policy::default());
    let cluster = Cluster::with(vec![Loaded::new(old_id(), "1", 2)]);
    let c = h.take();
    let views = cluster.views();
    h.answer(&c, Reply::Observed { bundles: &views }).unwrap();
    h.ordered(None);
    let c = h.take();
    assert_eq!(c.kind, CommandKind::FetchConfig { bundle: old_id() });
    h.answer(
        &c,
        Reply::ConfigFetched {
            config: digest(0xCC),
        },
    )
    .unwrap();
    assert_eq!(h.failure(id(1)).cause, Cause::ConfigMismatch);
}

/// A deployment replacing a bundle without configuration, its Load command out.
fn loading() -> (Harness, Command) {
    let mut h = targeting(Policy::default());
    let cluster = Cluster::with(vec![Loaded::new(BundleId::of(&digest(0xA0), None), "1", 2)]);
    let c = h.take();
    let views = cluster.views();
    h.answer(&c, Reply::Observed { bundles: &views }).unwrap();
    h.ordered(None);
    let load = h.take();
    (h, load)
}

// ---- screening (rule 12) -----------------------------------------------------------------------

/// A deployment just notified, its Screen command out.
fn screening(policy: Policy, request: Request) -> (Harness, Command) {
    let mut h = Harness::new(policy);
    h.notify_unscreened(request).unwrap();
    let c = h.take();
    (h, c)
}

#[test]
fn test_screening_comes_first_and_asks_about_the_package() {
    let (h, c) = screening(Policy::default(), request(1, 0xB0));
    assert_eq!(
        c.kind,
        CommandKind::Screen {
            org: Name::truncated("typesafe"),
            repo: Name::truncated("bundle"),
            package: Name::truncated(NAME),
            digest: digest(0xB0),
        }
    );
    let record = h.d.record(id(1)).unwrap();
    assert_eq!(record.phase, Phase::Screening);
    assert_eq!(record.state(), State::Resolving);
    assert!(!record.needs_bundle_file());
    // The two events of an admission are out already.
    assert_eq!(h.types(id(1)), ["deploymentStarted", "bundleDownload"]);
}

#[test]
fn test_screening_refuses_a_downgrade_before_the_download() {
    let (mut h, c) = screening(Policy::default(), request(1, 0xB0));
    let before = Some((Name::truncated("1.2.0"), old_id()));
    h.answer(&c, Reply::Screened { before }).unwrap();
    let f = h.failure(id(1));
    assert_eq!(
        f.cause,
        Cause::Downgrade {
            running: Name::truncated("1.2.0"),
            old: old_id(),
        }
    );
    assert_eq!(f.rollback, Rollback::NotNeeded);
    assert!(
        h.commands.is_empty(),
        "nothing downloaded: {:?}",
        h.commands
    );
    assert_eq!(
        h.types(id(1)),
        ["deploymentStarted", "bundleDownload", "deploymentFailure"]
    );
}

#[test]
fn test_screening_that_cannot_tell_lets_the_deployment_resolve() {
    // Nothing published before; the command failed; its deadline passed: resolving, with a
    // resolve deadline of its own.
    for how in 0..3 {
        let (mut h, c) = screening(Policy::default(), request(1, 0xB0));
        match how {
            0 => h.answer(&c, Reply::Screened { before: None }).unwrap(),
            1 => h
                .answer(&c, Reply::Failed(CommandError::Unreachable))
                .unwrap(),
            _ => {
                assert_eq!(h.timeout(), 1);
            }
        }
        let resolve = h.take();
        assert!(matches!(resolve.kind, CommandKind::Resolve { .. }), "{how}");
        assert_eq!(h.d.record(id(1)).unwrap().phase, Phase::Resolving);
        let resolve_by = h
            .now
            .instant
            .saturating_add(Policy::default().resolve_deadline);
        assert_eq!(h.d.poll_timeout(), Some(resolve_by), "{how}");
    }
}

#[test]
fn test_no_screening_when_a_downgrade_is_allowed_or_a_bundle_may_start_from_nothing() {
    let mut allowing = request(1, 0xB0);
    allowing.allow_downgrade = true;
    let (_, c) = screening(Policy::default(), allowing);
    assert!(matches!(c.kind, CommandKind::Resolve { .. }), "{c:?}");
    let start_one = Policy {
        nothing_running: NothingRunning::StartOne,
        ..Policy::default()
    };
    let (_, c) = screening(start_one, request(1, 0xB0));
    assert!(matches!(c.kind, CommandKind::Resolve { .. }), "{c:?}");
}

#[test]
fn test_screening_aborted_or_resumed() {
    let (mut h, c) = screening(Policy::default(), request(1, 0xB0));
    let record = *h.d.record(id(1)).unwrap();
    h.d.handle_abort(h.now, id(1)).unwrap();
    h.drain();
    assert_eq!(h.failure(id(1)).cause, Cause::Aborted);
    // A late answer changes nothing.
    assert!(
        h.answer(&c, Reply::Screened { before: None }).is_err(),
        "a stale answer"
    );
    let mut resumed = Harness::new(Policy::default());
    resumed.resume(record).unwrap();
    assert_eq!(resumed.take().kind, c.kind);
}

// ---- ordering (step 4, rule 12) ----------------------------------------------------------------

/// A deployment that targeted the old bundle at scale 2, its Order command out.
fn ordering(request: Request) -> (Harness, Command) {
    let mut h = Harness::new(Policy::default());
    h.notify(request).unwrap();
    h.resolve(NAME, "1");
    let cluster = Cluster::with(vec![Loaded::new(old_id(), "1", 2)]);
    let c = h.take();
    let views = cluster.views();
    h.answer(&c, Reply::Observed { bundles: &views }).unwrap();
    let order = h.take();
    (h, order)
}

#[test]
fn test_ordering_asks_the_repository_about_the_two_versions() {
    let (h, c) = ordering(request(1, 0xB0));
    assert_eq!(
        c.kind,
        CommandKind::Order {
            org: Name::truncated("typesafe"),
            repo: Name::truncated("bundle"),
            package: Name::truncated(NAME),
            digest: digest(0xB0),
            old: old_id(),
        }
    );
    let record = h.d.record(id(1)).unwrap();
    assert_eq!(
        record.phase,
        Phase::Ordering {
            old: old_id(),
            scale: 2
        }
    );
    assert_eq!(record.state(), State::Deploying);
    assert!(record.needs_bundle_file());
}

#[test]
fn test_ordering_refuses_a_downgrade_before_anything_changes() {
    let (mut h, c) = ordering(request(1, 0xB0));
    h.answer(
        &c,
        Reply::Ordered {
            before: Some(Name::truncated("1.1.0")),
        },
    )
    .unwrap();
    let f = h.failure(id(1));
    assert_eq!(
        f.cause,
        Cause::Downgrade {
            running: Name::truncated("1.1.0"),
            old: old_id(),
        }
    );
    assert_eq!(f.rollback, Rollback::NotNeeded);
    assert!(f.holds_version() && f.is_downgrade());
    assert_eq!(
        f.to_string(),
        "refused a downgrade: the repository published this version before the running \
         1.1.0 (a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0-c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0); \
         `lockstep deploy --allow-downgrade` deploys it"
    );
    assert!(h.commands.is_empty());
    assert_eq!(
        h.types(id(1)),
        ["deploymentStarted", "bundleDownload", "deploymentFailure"]
    );
}

#[test]
fn test_ordering_goes_on_when_the_new_version_is_not_older() {
    let (mut h, c) = ordering(request(1, 0xB0));
    h.answer(&c, Reply::Ordered { before: None }).unwrap();
    assert_eq!(h.take().kind, CommandKind::FetchConfig { bundle: old_id() });
}

#[test]
fn test_allow_downgrade_skips_ordering() {
    let mut h = Harness::new(Policy::default());
    let mut allowing = request(1, 0xB0);
    allowing.allow_downgrade = true;
    h.notify(allowing).unwrap();
    h.resolve(NAME, "1");
    let cluster = Cluster::with(vec![Loaded::new(old_id(), "1", 2)]);
    let c = h.take();
    let views = cluster.views();
    h.answer(&c, Reply::Observed { bundles: &views }).unwrap();
    assert_eq!(h.take().kind, CommandKind::FetchConfig { bundle: old_id() });
}

#[test]
fn test_a_downgrade_deployed_end_to_end_when_allowed() {
    let mut cluster = Cluster::with(vec![Loaded::new(old_id(), "1", 2)]);
    cluster.published_before = Some("1.1.0");
    let mut refused = Harness::new(Policy::default());
    refused.notify(request(1, 0xB0)).unwrap();
    refused.resolve(NAME, "1");
    refused.run(&mut cluster);
    assert!(refused.failure(id(1)).is_downgrade());
    assert!(
        !cluster
            .commands
            .iter()
            .any(|c| matches!(c, CommandKind::Load { .. } | CommandKind::Scale { .. })),
        "{:?}",
        cluster.commands
    );
    let mut allowed = Harness::new(Policy::default());
    let mut allowing = request(2, 0xB0);
    allowing.allow_downgrade = true;
    allowed.notify(allowing).unwrap();
    allowed.resolve(NAME, "1");
    allowed.run(&mut cluster);
    let ended = allowed.ended.iter().find(|r| r.id() == id(2)).unwrap();
    assert!(
        matches!(ended.outcome(), Some(Outcome::Succeeded { .. })),
        "{ended:?}"
    );
}

#[test]
fn test_ordering_fails_its_step_on_an_error_a_deadline_or_an_abort() {
    let (mut h, c) = ordering(request(1, 0xB0));
    h.answer(&c, Reply::Failed(CommandError::Protocol)).unwrap();
    assert_eq!(
        h.failure(id(1)).cause,
        Cause::Step {
            doing: Doing::Ordering,
            fault: Fault::Command(CommandError::Protocol)
        }
    );
    assert_eq!(
        h.failure(id(1)).to_string(),
        "reading the repository's versions.json: the repository the answer could not be read"
    );
    let (mut h, _) = ordering(request(1, 0xB0));
    h.timeout();
    let f = h.failure(id(1));
    assert_eq!(
        f.cause,
        Cause::Step {
            doing: Doing::Ordering,
            fault: Fault::Deadline
        }
    );
    assert_eq!(f.rollback, Rollback::NotNeeded);
    assert_eq!(
        f.to_string(),
        "reading the repository's versions.json: the deadline passed"
    );
    let (mut h, _) = ordering(request(1, 0xB0));
    h.d.handle_abort(h.now, id(1)).unwrap();
    h.drain();
    let f = h.failure(id(1));
    assert_eq!(
        f.cause,
        Cause::Step {
            doing: Doing::Ordering,
            fault: Fault::Aborted
        }
    );
    assert!(!f.holds_version());
}

#[test]
fn test_ordering_resumes_by_asking_again() {
    let (h, c) = ordering(request(1, 0xB0));
    let record = *h.d.record(id(1)).unwrap();
    let mut resumed = Harness::new(Policy::default());
    resumed.resume(record).unwrap();
    assert_eq!(resumed.take().kind, c.kind);
}

#[test]
fn test_loading_unexpected_id() {
    let (mut h, c) = loading();
    assert_eq!(
        c.kind,
        CommandKind::Load {
            digest: digest(0xB0),
            config: None
        }
    );
    let wrong = BundleId::of(&digest(0xB9), None);
    h.answer(&c, Reply::Loaded { id: wrong }).unwrap();
    assert_eq!(
        h.failure(id(1)).cause,
        Cause::LoadedIdMismatch { id: wrong }
    );
}

#[test]
fn test_loading_deadline() {
    let (mut h, _load) = loading();
    h.timeout();
    let f = h.failure(id(1));
    assert_eq!(
        f.cause,
        Cause::Step {
            doing: Doing::Loading,
            fault: Fault::Deadline
        }
    );
    assert_eq!(f.rollback, Rollback::NotNeeded);
}

// ---- lock-step (step 6) ----------------------------------------------------------------------

/// Runs until the first command of the lock-step waits: the new bundle to scale 1.
fn lockstep(policy: Policy, cluster: &mut Cluster) -> Harness {
    let mut h = targeting(policy);
    for _ in 0..10 {
        let c = h.commands[0];
        if matches!(c.kind, CommandKind::Scale { .. }) {
            return h;
        }
        h.commands.clear();
        h.serve(cluster, &c);
    }
    panic!("no scale command");
}

/// A scale-`n` deployment whose first step was requested (new to 1) on a cluster whose
/// instances do not start: waiting for the new bundle's first instance.
fn waiting_for_first_instance(policy: Policy, n: u32) -> (Harness, Cluster) {
    let mut cluster = Cluster::with(vec![Loaded::new(old_id(), "1", n)]);
    cluster.frozen = true;
    let mut h = lockstep(policy, &mut cluster);
    let scale = h.take();
    h.serve(&mut cluster, &scale);
    (h, cluster)
}

#[test]
fn test_lockstep_waits_until_started() {
    let (mut h, mut cluster) = waiting_for_first_instance(Policy::default(), 2);
    // Not started yet: the deployer looks again, and logs nothing.
    for _ in 0..3 {
        let observe = h.take();
        assert!(matches!(observe.kind, CommandKind::Observe { .. }));
        h.serve(&mut cluster, &observe);
    }
    assert_eq!(h.deploys(), [(2, 0)]);
    // It starts: logged, and the old one goes down.
    cluster.bundles[1].started = 1;
    let observe = h.take();
    h.serve(&mut cluster, &observe);
    assert_eq!(h.deploys(), [(2, 0), (2, 1)]);
    assert_eq!(
        h.take().kind,
        CommandKind::Scale {
            bundle: old_id(),
            scale: 1
        }
    );
}

#[test]
fn test_lockstep_deadline_rolls_back() {
    let (mut h, mut cluster) = waiting_for_first_instance(Policy::default(), 3);
    assert_eq!(h.d.record(id(1)).unwrap().state(), State::Deploying);
    h.timeout();
    assert_eq!(h.d.record(id(1)).unwrap().state(), State::RollingBack);
    // Rolling back: the new bundle goes back to 0.
    cluster.frozen = false;
    h.run(&mut cluster);
    let f = h.failure(id(1));
    assert_eq!(
        f.cause,
        Cause::Step {
            doing: Doing::Scaling {
                side: Side::New,
                to: 1
            },
            fault: Fault::Deadline
        }
    );
    assert_eq!(f.rollback, Rollback::Completed { old: 3 });
    assert_eq!(
        f.to_string(),
        "scaling the new bundle to 1: the deadline passed; rolled back: the old bundle runs at 3 \
         again"
    );
    assert_eq!(cluster.get(old_id()).unwrap().started, 3);
    assert_eq!(cluster.get(new_id()).unwrap().scale, Some(0));
}

#[test]
fn test_lockstep_refusal_midway_rolls_back_in_lock_step() {
    let mut cluster = Cluster::with(vec![Loaded::new(old_id(), "1", 3)]);
    let mut h = targeting(Policy::default());
    // Serve until the old bundle is asked down to 1 (after new reached 2), then refuse it.
    loop {
        let c = h.take();
        if c.kind
            == (CommandKind::Scale {
                bundle: old_id(),
                scale: 1,
            })
        {
            h.answer(&c, Reply::Failed(CommandError::Status(500)))
                .unwrap();
            break;
        }
        h.serve(&mut cluster, &c);
    }
    h.run(&mut cluster);
    assert_eq!(
        h.deploys(),
        [
            (3, 0),
            (3, 1),
            (2, 1),
            (2, 2),
            (2, 2),
            (2, 1),
            (3, 1),
            (3, 0)
        ],
        "from the refused request's pair (1 v 2, in fact 2 v 2): old to 2 (already there), new \
         down, old up, new down"
    );
    let f = h.failure(id(1));
    assert_eq!(f.rollback, Rollback::Completed { old: 3 });
    assert_eq!(cluster.get(old_id()).unwrap().started, 3);
    assert_eq!(cluster.get(new_id()).unwrap().started, 0);
}

#[test]
fn test_lockstep_instance_error_rolls_back() {
    let (mut h, mut cluster) = waiting_for_first_instance(Policy::default(), 2);
    cluster.bundles[1].has_error = true;
    let observe = h.take();
    h.serve(&mut cluster, &observe);
    assert_eq!(h.d.record(id(1)).unwrap().state(), State::RollingBack);
    cluster.frozen = false;
    h.run(&mut cluster);
    assert_eq!(
        h.failure(id(1)).cause,
        Cause::Step {
            doing: Doing::Scaling {
                side: Side::New,
                to: 1
            },
            fault: Fault::InstanceError
        }
    );
}

fn settling(settle: Duration) -> Policy {
    Policy {
        settle,
        ..Policy::default()
    }
}

/// Serves commands until the deployment ends; an observation that finds nothing new while
/// the new instances settle lets the settle time pass (its deadline). Answers the time that
/// passed.
fn run_settling(h: &mut Harness, cluster: &mut Cluster) -> Duration {
    let start = h.now.instant;
    for _ in 0..1_000 {
        let Some(c) = h.commands.pop() else {
            return h.now.instant.saturating_duration_since(start);
        };
        let before = h.events.len();
        h.serve(cluster, &c);
        let quiet = h.events.len() == before
            && matches!(c.kind, CommandKind::Observe { .. })
            && h.commands
                .iter()
                .any(|c| matches!(c.kind, CommandKind::Observe { .. }));
        if quiet {
            assert_eq!(h.timeout(), 1);
        }
    }
    panic!("no end after 1,000 commands");
}

/// A scale-`n` deployment with a settle time whose first new instance started: logged, and
/// watched until the settle time is over.
fn watching_first_instance(settle: Duration, n: u32) -> (Harness, Cluster) {
    let (mut h, mut cluster) = waiting_for_first_instance(settling(settle), n);
    cluster.bundles[1].started = 1;
    let observe = h.take();
    h.serve(&mut cluster, &observe);
    (h, cluster)
}

#[test]
fn test_lockstep_settle_watches_each_step_that_starts_an_instance() {
    let settle = Duration::from_secs(30);
    let mut cluster = Cluster::with(vec![Loaded::new(old_id(), "1", 3)]);
    let mut h = lockstep(settling(settle), &mut cluster);
    let elapsed = run_settling(&mut h, &mut cluster);
    assert!(h.succeeded(id(1)));
    // The same steps and events as without a settle time...
    assert_eq!(
        h.deploys(),
        [(3, 0), (3, 1), (2, 1), (2, 2), (1, 2), (1, 3), (0, 3)]
    );
    // ...each of the three steps that started an instance watched for the settle time, and
    // only those: the old bundle goes down without waiting.
    assert_eq!(elapsed, settle.saturating_mul(3));
}

#[test]
fn test_lockstep_settle_time_is_watched_before_the_old_goes_down() {
    let settle = Duration::from_secs(30);
    let (mut h, mut cluster) = watching_first_instance(settle, 2);
    // Started and logged; the deployer watches it until the settle time is over.
    assert_eq!(h.deploys(), [(2, 0), (2, 1)]);
    assert_eq!(
        h.d.poll_timeout(),
        Some(h.now.instant.saturating_add(settle))
    );
    for _ in 0..3 {
        let watch = h.take();
        assert!(
            matches!(watch.kind, CommandKind::Observe { .. }),
            "{watch:?}"
        );
        h.serve(&mut cluster, &watch);
    }
    // An early time-out changes nothing; at the end of the settle time the old goes down.
    h.advance(Duration::from_secs(29));
    assert_eq!(h.timeout_now(), 0);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.timeout_now(), 1);
    let scale = h.take();
    assert_eq!(
        scale.kind,
        CommandKind::Scale {
            bundle: old_id(),
            scale: 1
        }
    );
}

#[test]
fn test_lockstep_settle_lost_instance_fails_the_step_and_rolls_back() {
    let (mut h, mut cluster) = watching_first_instance(Duration::from_secs(30), 3);
    // The new instance is lost within the settle time.
    cluster.bundles[1].started = 0;
    let watch = h.take();
    h.serve(&mut cluster, &watch);
    assert_eq!(h.d.record(id(1)).unwrap().state(), State::RollingBack);
    cluster.frozen = false;
    h.run(&mut cluster);
    let failure = h.failure(id(1));
    assert_eq!(
        failure.cause,
        Cause::Step {
            doing: Doing::Scaling {
                side: Side::New,
                to: 1
            },
            fault: Fault::Lost
        }
    );
    assert_eq!(
        failure.to_string(),
        "scaling the new bundle to 1: an instance was lost while it settled; rolled back: the \
         old bundle runs at 3 again"
    );
    assert_eq!(cluster.get(old_id()).unwrap().started, 3);
    assert_eq!(cluster.get(new_id()).unwrap().started, 0);
}

#[test]
fn test_lockstep_settle_error_reported_meanwhile_fails_the_step() {
    let (mut h, mut cluster) = watching_first_instance(Duration::from_secs(30), 2);
    cluster.bundles[1].has_error = true;
    let watch = h.take();
    h.serve(&mut cluster, &watch);
    assert_eq!(h.d.record(id(1)).unwrap().state(), State::RollingBack);
    cluster.frozen = false;
    h.run(&mut cluster);
    assert!(matches!(
        h.failure(id(1)).cause,
        Cause::Step {
            fault: Fault::InstanceError,
            ..
        }
    ));
}

#[test]
fn test_lockstep_settle_starts_again_after_a_resume() {
    let settle = Duration::from_secs(30);
    let (mut h, mut cluster) = watching_first_instance(settle, 2);
    h.advance(Duration::from_secs(20));
    // Restarted 20 s into the settle time: the step is requested again, and once its
    // instance is seen started, the whole settle time is watched again.
    let record = *h.d.record(id(1)).unwrap();
    let mut resumed = Harness::new(settling(settle));
    resumed.now = h.now;
    resumed.resume(record).unwrap();
    let scale = resumed.take();
    assert_eq!(
        scale.kind,
        CommandKind::Scale {
            bundle: new_id(),
            scale: 1
        }
    );
    resumed.serve(&mut cluster, &scale);
    let observe = resumed.take();
    resumed.serve(&mut cluster, &observe);
    assert_eq!(
        resumed.d.poll_timeout(),
        Some(resumed.now.instant.saturating_add(settle))
    );
}

#[test]
fn test_lockstep_settle_abort_while_settling_rolls_back() {
    let (mut h, mut cluster) = watching_first_instance(Duration::from_secs(30), 2);
    assert_eq!(h.d.handle_abort(h.now, id(1)), Ok(Aborted::RollingBack));
    h.drain();
    cluster.frozen = false;
    h.run(&mut cluster);
    assert!(matches!(
        h.failure(id(1)).cause,
        Cause::Step {
            fault: Fault::Aborted,
            ..
        }
    ));
    assert_eq!(cluster.get(old_id()).unwrap().started, 2);
}

#[test]
fn test_lockstep_vanished_bundle() {
    let mut cluster = Cluster::with(vec![Loaded::new(old_id(), "1", 2)]);
    let mut h = lockstep(Policy::default(), &mut cluster);
    let scale = h.take();
    h.serve(&mut cluster, &scale);
    cluster.bundles.retain(|b| b.id != new_id());
    let observe = h.take();
    h.serve(&mut cluster, &observe);
    // Rolling back cannot scale it either (404): the rollback fails and says where things
    // were last seen: the first look (2 v 0), since the new bundle vanished from the next.
    h.run(&mut cluster);
    let f = h.failure(id(1));
    assert_eq!(
        f.cause,
        Cause::Step {
            doing: Doing::Scaling {
                side: Side::New,
                to: 1
            },
            fault: Fault::Vanished
        }
    );
    assert!(matches!(
        f.rollback,
        Rollback::Failed {
            fault: Fault::Command(CommandError::Status(404)),
            old: 2,
            new: 0,
            ..
        }
    ));
}

#[test]
fn test_lockstep_rollback_off_leaves_things() {
    let policy = Policy {
        rollback: RollbackPolicy::Off,
        ..Policy::default()
    };
    let (mut h, _cluster) = waiting_for_first_instance(policy, 3);
    h.timeout();
    let f = h.failure(id(1));
    // New was asked for 1 instance, which never started: it is reported at 0, as seen.
    assert_eq!(f.rollback, Rollback::Off { old: 3, new: 0 });
    assert!(f.to_string().ends_with(
        "not rolled back (rollback is off): old bundle at 3, new bundle at 0 (started \
         instances, as last observed)"
    ));
    assert!(h.commands.is_empty());
}

// ---- rolling back (step 7) -------------------------------------------------------------------

#[test]
fn test_rollingback_refusal_fails_the_rollback() {
    let (mut h, _cluster) = waiting_for_first_instance(Policy::default(), 3);
    h.timeout();
    // The rollback's first request (new back to 0) is refused.
    let c = h.take();
    assert_eq!(
        c.kind,
        CommandKind::Scale {
            bundle: new_id(),
            scale: 0
        }
    );
    h.answer(&c, Reply::Failed(CommandError::Status(500)))
        .unwrap();
    let f = h.failure(id(1));
    assert_eq!(
        f.rollback,
        Rollback::Failed {
            doing: Doing::Scaling {
                side: Side::New,
                to: 0
            },
            fault: Fault::Command(CommandError::Status(500)),
            // As seen: the new bundle's instance never started.
            old: 3,
            new: 0
        }
    );
    assert!(f.to_string().contains("the rollback failed too"));
}

/// Every scale request of the new bundle is refused once it runs 2 of 3: the lock-step fails
/// at new → 3, its rollback at new → 2, and the failure says where the bundles are (old at 1,
/// new at 2: seen), not where they were asked to be (new at 3, never reached).
#[test]
fn test_rollingback_failure_reports_what_was_seen() {
    let mut cluster = Cluster::with(vec![Loaded::new(old_id(), "1", 3)]);
    let mut h = targeting(Policy::default());
    while !h.deploys().contains(&(2, 2)) {
        let c = h.take();
        h.serve(&mut cluster, &c);
    }
    cluster.refused = Some(new_id());
    h.run(&mut cluster);
    let f = h.failure(id(1));
    assert_eq!(
        f.cause,
        Cause::Step {
            doing: Doing::Scaling {
                side: Side::New,
                to: 3
            },
            fault: Fault::Command(CommandError::Status(500))
        }
    );
    assert_eq!(
        f.rollback,
        Rollback::Failed {
            doing: Doing::Scaling {
                side: Side::New,
                to: 2
            },
            fault: Fault::Command(CommandError::Status(500)),
            old: 1,
            new: 2
        }
    );
    let new = cluster.get(new_id()).unwrap();
    let old = cluster.get(old_id()).unwrap();
    assert_eq!((old.started, new.started), (1, 2));
    assert!(
        f.to_string()
            .ends_with("old bundle at 1, new bundle at 2 (started instances, as last observed)"),
        "{f}"
    );
}

#[test]
fn test_rollingback_deadline_fails_the_rollback() {
    let (mut h, mut cluster) = waiting_for_first_instance(Policy::default(), 2);
    h.timeout();
    let scale = h.take();
    h.serve(&mut cluster, &scale);
    h.timeout();
    assert!(matches!(
        h.failure(id(1)).rollback,
        Rollback::Failed {
            fault: Fault::Deadline,
            ..
        }
    ));
}

// ---- resume (step 9) -------------------------------------------------------------------------

/// Runs a scale-3 deployment, but after `k` commands "restarts": a fresh deployer resumes the
/// record and finishes against the same cluster.
fn resumed_after(k: usize) -> (Harness, Cluster) {
    let mut cluster = Cluster::with(vec![Loaded::new(old_id(), "1", 3)]);
    let mut h = targeting(Policy::default());
    for _ in 0..k {
        let c = h.take();
        h.serve(&mut cluster, &c);
    }
    let record = *h.d.record(id(1)).expect("still running");
    let mut resumed = Harness::new(Policy::default());
    resumed.now = h.now;
    assert_eq!(resumed.resume(record), Ok(()));
    resumed.run(&mut cluster);
    (resumed, cluster)
}

#[test]
fn test_resume_from_every_step() {
    // 2 commands before the lock-step (observe, fetch config, load, observe), then 6 scales
    // with their observations.
    for k in 0..16 {
        let (h, cluster) = resumed_after(k);
        assert!(
            h.succeeded(id(1)),
            "resumed after {k} commands: {:?}",
            h.ended
        );
        assert_eq!(cluster.get(old_id()).unwrap().started, 0, "after {k}");
        assert_eq!(cluster.get(new_id()).unwrap().started, 3, "after {k}");
        // Its events continue the sequence.
        assert!(h.events.iter().all(|e| e.seq > 2), "after {k}");
    }
}

#[test]
fn test_resume_in_lockstep_requests_the_step_again() {
    let mut cluster = Cluster::with(vec![Loaded::new(old_id(), "1", 3)]);
    let mut h = lockstep(Policy::default(), &mut cluster);
    let record = *h.d.record(id(1)).unwrap();
    let mut resumed = Harness::new(Policy::default());
    resumed.resume(record).unwrap();
    assert_eq!(
        resumed.take().kind,
        CommandKind::Scale {
            bundle: new_id(),
            scale: 1
        }
    );
    let _ = h.take();
}

#[test]
fn test_resume_refuses_ended_and_duplicates() {
    let mut cluster = Cluster::with(vec![Loaded::new(old_id(), "1", 1)]);
    let h = deploy(Policy::default(), &mut cluster);
    let mut other = Harness::new(Policy::default());
    assert_eq!(other.resume(h.ended[0]), Err(NotResumed::Ended));
    let mut h = targeting(Policy::default());
    let record = *h.d.record(id(1)).unwrap();
    assert_eq!(h.resume(record), Err(NotResumed::AlreadyHere));
}

#[test]
fn test_resume_queued_and_active_in_order() {
    let (h, _first) = two_of_a_key();
    let mut records: Vec<Record> = h.d.records().copied().collect();
    records.sort_by_key(|r| r.order);
    let mut resumed = Harness::new(Policy::default());
    for r in records {
        resumed.resume(r).unwrap();
    }
    assert_eq!(resumed.d.record(id(1)).unwrap().phase, Phase::Targeting);
    assert_eq!(resumed.d.record(id(2)).unwrap().phase, Phase::Queued);
    // A later notification still supersedes the resumed pending one.
    assert!(resumed.d.record(id(2)).unwrap().order < 2 + 1);
    resumed.notify(request(3, 0xB5)).unwrap();
    assert!(resumed.d.record(id(3)).unwrap().order > resumed.d.record(id(2)).unwrap().order);
}

// ---- the event log and its encoders ----------------------------------------------------------

#[test]
fn test_event_json_shapes() {
    let mut cluster = Cluster::with(vec![Loaded::new(old_id(), "1", 1)]);
    let h = deploy(Policy::default(), &mut cluster);
    let mut log = EventLog::new(id(1));
    for e in &h.events {
        log.push(e);
    }
    let mut json = String::new();
    log.write_json(&mut json).unwrap();
    assert!(json.len() <= LOG_JSON_MAX);
    let uuid = id(1).to_string();
    let expected = format!(
        concat!(
            r#"[{{"eventType":"deploymentStarted","deploymentSequence":1,"deploymentId":"{uuid}","#,
            r#""bundleName":"visualizer","compatibleVersion":"v2"}},"#,
            r#"{{"eventType":"bundleDownload","deploymentSequence":2}},"#,
            r#"{{"eventType":"configDownload","deploymentSequence":3,"compatibleBundleId":"{old}"}},"#,
            r#"{{"eventType":"load","deploymentSequence":4,"configFileName":"config-{config}.zip"}},"#,
            r#"{{"eventType":"deploy","deploymentSequence":5,"bundleOld":{{"scale":1}},"bundleNew":{{"scale":0}}}},"#,
            r#"{{"eventType":"deploy","deploymentSequence":6,"bundleOld":{{"scale":1}},"bundleNew":{{"scale":1}}}},"#,
            r#"{{"eventType":"deploy","deploymentSequence":7,"bundleOld":{{"scale":0}},"bundleNew":{{"scale":1}}}},"#,
            r#"{{"eventType":"deploymentSuccess","deploymentSequence":8}}]"#
        ),
        uuid = uuid,
        old = old_id(),
        config = digest(0xC0)
    );
    assert_eq!(json, expected);
    assert!(crate::json::validate(json.as_bytes(), crate::json::MAX_DEPTH).is_ok());
}

#[test]
fn test_event_json_failure_is_escaped_and_valid() {
    let e = Event {
        deployment: id(1),
        seq: 9,
        kind: EventKind::DeploymentFailure(Failure {
            cause: Cause::NoRunning {
                compatibility_version: n("a\"b\\c\n"),
                running: Some(n("x")),
                narrowed: true,
            },
            rollback: Rollback::NotNeeded,
        }),
    };
    let mut out = String::new();
    e.write_json(&mut out).unwrap();
    assert!(crate::json::validate(out.as_bytes(), 16).is_ok(), "{out}");
    assert!(out.contains(r#""failure":"no running bundle with compatibilityVersion a\"b\\c\n"#));
}

#[test]
fn test_event_json_longest_fits_its_bound() {
    let worst = Name::new(&"\u{1}".repeat(64)).unwrap();
    let kinds = [
        EventKind::DeploymentFailure(Failure {
            cause: Cause::NoRunning {
                compatibility_version: worst,
                running: Some(worst),
                narrowed: true,
            },
            rollback: Rollback::Failed {
                doing: Doing::Scaling {
                    side: Side::Old,
                    to: u32::MAX,
                },
                fault: Fault::Command(CommandError::Status(u16::MAX)),
                old: u32::MAX,
                new: u32::MAX,
            },
        }),
        EventKind::DeploymentStarted {
            bundle_name: worst,
            compatible_version: worst,
        },
    ];
    for kind in kinds {
        let mut out = String::new();
        Event {
            deployment: id(1),
            seq: u32::MAX,
            kind,
        }
        .write_json(&mut out)
        .unwrap();
        assert!(
            out.len() <= EVENT_JSON_MAX,
            "{} > {EVENT_JSON_MAX}",
            out.len()
        );
    }
}

#[test]
fn test_event_sse_lines_have_one_colon() {
    let mut out = String::new();
    for ty in [
        EventType::DeploymentStarted,
        EventType::BundleDownload,
        EventType::ConfigDownload,
        EventType::Load,
        EventType::Deploy,
        EventType::DeploymentSuccess,
        EventType::DeploymentFailure,
    ] {
        write_sse(ty, id(0xAB), &mut out).unwrap();
    }
    out.push_str(SSE_HEARTBEAT);
    for line in out.lines().filter(|l| !l.is_empty()) {
        assert_eq!(line.matches(':').count(), 1, "{line}");
    }
    assert!(out.starts_with(&format!("event:deploymentStarted\ndata:{}\n\n", id(0xAB))));
}

#[test]
fn test_event_log_compacts_intermediate_deploys() {
    // A scale-20 lock-step logs 41 deploy events: more than the log holds.
    let mut cluster = Cluster::with(vec![Loaded::new(old_id(), "1", 20)]);
    let h = deploy(Policy::default(), &mut cluster);
    assert_eq!(h.deploys().len(), 41);
    let mut log = EventLog::new(id(1));
    for e in &h.events {
        log.push(e);
    }
    assert_eq!(log.len(), LOG_CAPACITY);
    let kept: Vec<Event> = log.events().collect();
    let types: Vec<&str> = kept.iter().map(|e| e.kind.event_type().as_str()).collect();
    // Every other type is kept, the first and last deploy too.
    for ty in [
        "deploymentStarted",
        "bundleDownload",
        "configDownload",
        "load",
        "deploymentSuccess",
    ] {
        assert_eq!(types.iter().filter(|t| **t == ty).count(), 1, "{ty}");
    }
    let deploys: Vec<&Event> = kept
        .iter()
        .filter(|e| e.kind.event_type() == EventType::Deploy)
        .collect();
    assert_eq!(deploys[0].kind, EventKind::Deploy { old: 20, new: 0 });
    assert_eq!(
        deploys.last().unwrap().kind,
        EventKind::Deploy { old: 0, new: 20 }
    );
    // Sequence numbers only grow, and the latest event is the end.
    assert!(kept.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(log.latest().unwrap().kind, EventKind::DeploymentSuccess);
    assert_eq!(log.latest().unwrap().seq, h.events.last().unwrap().seq);
}

#[test]
fn test_event_log_ignores_other_deployments() {
    let mut log = EventLog::new(id(1));
    log.push(&Event {
        deployment: id(2),
        seq: 1,
        kind: EventKind::BundleDownload,
    });
    assert!(log.is_empty());
}

// ---- size ------------------------------------------------------------------------------------

const DEPLOYER_8: usize = 13_816;
const DEPLOYER_64: usize = 110_136;

#[test]
#[cfg(target_pointer_width = "64")]
fn test_size_of_deployer_as_documented() {
    // The figures of the `Deployer` doc, which this test reads: keep them true.
    assert_eq!(size_of::<Deployer<8>>(), DEPLOYER_8);
    assert_eq!(size_of::<Deployer<64>>(), DEPLOYER_64);
    let doc = include_str!("mod.rs");
    assert!(doc.contains("`size_of::<Deployer<8>>()` is 13,816 bytes"));
    assert!(doc.contains("`size_of::<Deployer<64>>()` 110,136"));
    assert!(size_of::<Record>() <= 1_536);
}

// ---- abort (rule 10) -------------------------------------------------------------------------

impl Harness {
    fn abort(&mut self, deployment: DeploymentId) -> Result<Aborted, NotHere> {
        let aborted = self.d.handle_abort(self.now, deployment);
        self.drain();
        aborted
    }
}

#[test]
fn test_abort_resolving_ends_aborted_and_ignores_the_download() {
    let mut h = Harness::new(Policy::default());
    h.notify(request(1, 0xB0)).unwrap();
    let download = h.commands[0];
    assert_eq!(h.abort(id(1)), Ok(Aborted::Ended));
    assert_eq!(h.failure(id(1)).cause, Cause::Aborted);
    assert_eq!(h.failure(id(1)).to_string(), "aborted");
    // The download's answer, when it comes, changes nothing.
    assert!(h.answer(&download, resolved("1")).is_err());
    assert!(h.commands.is_empty());
    assert_eq!(
        h.abort(id(1)),
        Err(NotHere),
        "retained now, not in the table"
    );
}

#[test]
fn test_abort_queued_ends_it_and_leaves_the_active_one_alone() {
    let (mut h, first) = two_of_a_key();
    assert_eq!(h.abort(id(2)), Ok(Aborted::Ended));
    assert_eq!(h.failure(id(2)).cause, Cause::Aborted);
    assert_eq!(h.d.record(id(1)).unwrap().state(), State::Deploying);
    // The active one goes on; when it ends, nothing is promoted.
    h.answer(&first, Reply::Failed(CommandError::Unreachable))
        .unwrap();
    assert!(h.commands.is_empty());
}

#[test]
fn test_abort_in_the_lockstep_rolls_back_while_a_step_is_pending() {
    let (mut h, mut cluster) = waiting_for_first_instance(Policy::default(), 3);
    let pending = h.take();
    assert_eq!(h.abort(id(1)), Ok(Aborted::RollingBack));
    assert_eq!(h.d.record(id(1)).unwrap().state(), State::RollingBack);
    // Idempotent: the rollback goes on, nothing else is asked.
    assert_eq!(h.abort(id(1)), Ok(Aborted::AlreadyRollingBack));
    // The pending step's answer is stale.
    {
        let views = cluster.views();
        assert!(
            h.answer(&pending, Reply::Observed { bundles: &views })
                .is_err()
        );
    }
    cluster.frozen = false;
    h.run(&mut cluster);
    let f = h.failure(id(1));
    assert_eq!(
        f.cause,
        Cause::Step {
            doing: Doing::Scaling {
                side: Side::New,
                to: 1
            },
            fault: Fault::Aborted
        }
    );
    assert_eq!(f.rollback, Rollback::Completed { old: 3 });
    assert_eq!(cluster.get(old_id()).unwrap().scale, Some(3));
    assert_eq!(h.abort(id(1)), Err(NotHere));
}

#[test]
fn test_abort_in_the_lockstep_with_rollback_off_stops_where_it_stands() {
    let policy = Policy {
        rollback: RollbackPolicy::Off,
        ..Policy::default()
    };
    let (mut h, _cluster) = waiting_for_first_instance(policy, 2);
    assert_eq!(h.abort(id(1)), Ok(Aborted::Stopped));
    let f = h.failure(id(1));
    assert!(matches!(f.rollback, Rollback::Off { .. }), "{f:?}");
    assert!(
        h.commands.is_empty(),
        "nothing more is asked of the cluster"
    );
}

#[test]
fn test_abort_before_the_lockstep_asks_nothing_of_the_cluster() {
    let mut h = targeting(Policy::default());
    let listing = h.take();
    assert!(matches!(listing.kind, CommandKind::Observe { .. }));
    assert_eq!(h.abort(id(1)), Ok(Aborted::Ended));
    assert_eq!(
        h.failure(id(1)).cause,
        Cause::Step {
            doing: Doing::Targeting,
            fault: Fault::Aborted
        }
    );
    assert!(h.commands.is_empty());
}
