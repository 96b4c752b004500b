//! A deterministic simulation of the deployer against a fake cluster (feature `_sim`, for
//! tests and the `deployer` fuzz target; not API).
//!
//! A [`World`] is a [`Deployer`], a [`Cluster`] that executes its commands, the agent's
//! commands in flight, and a virtual clock. It moves by [`Step`]s: an answer to a command, a
//! refusal, an instance starting, stopping or crashing, a deadline firing, an operator's
//! abort, a restart. Who picks
//! the steps decides what is explored: the seeded random driver ([`World::drive_bounded`]), the
//! exhaustive check (every enabled step of every state), the fuzz target (the input bytes).
//! After every step the [`check`] oracle holds the deployer to its promises.
//!
//! The model: a scale request sets the bundle's wanted instances; missing ones start one
//! [`Step::Start`] at a time (unless the bundle never starts), extra ones stop one
//! [`Step::Stop`] at a time; a crash loses a started instance, which the cluster replaces, as
//! ConductR reschedules. The agent answers an observation only when the cluster changed since
//! the deployment's previous one (it waits for a bundle event), so a step that cannot progress
//! waits for its deadline instead of spinning.

use crate::bundle::{BundleId, Digest};
use crate::deployer::{
    Admitted, BundleView, Busy, Command, CommandError, CommandKind, Deployer, DeploymentId,
    Ignored, Name, Outcome, Output, Phase, Policy, Record, Reply, Request, Rollback, Seen,
};
use crate::time::{Duration, Instant, Now, UnixTime};

/// The most bundles the fake cluster holds.
pub const MAX_BUNDLES: usize = 6;
/// The most versions its repository publishes.
pub const MAX_PUBLISHED: usize = 6;
/// The most ended deployments a world remembers.
pub const MAX_ENDED: usize = 4;
/// The most steps enabled at once.
pub const MAX_STEPS: usize = 48;

// ---------------------------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------------------------

/// A bundle loaded in the fake cluster.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SimBundle {
    /// Its id.
    pub id: BundleId,
    /// `bundleName`.
    pub name: Name,
    /// `compatibilityVersion`.
    pub compat: Name,
    /// Its tags.
    pub tags: heapless::Vec<Name, 2>,
    /// The configuration it was loaded with.
    pub config: Option<Digest>,
    /// The requested scale, once one was.
    pub scale: Option<u32>,
    /// Started instances.
    pub started: u32,
    /// Instances starting.
    pub starting: u32,
    /// Instances the cluster lost by itself (crashes).
    pub lost: u32,
    /// Reports `hasError`.
    pub has_error: bool,
    /// Fault: its instances stay starting forever.
    pub never_starts: bool,
}

impl SimBundle {
    /// A bundle running `scale` started instances.
    pub fn running(
        id: BundleId,
        name: &str,
        compat: &str,
        config: Option<Digest>,
        scale: u32,
    ) -> Self {
        Self {
            id,
            name: Name::truncated(name),
            compat: Name::truncated(compat),
            tags: heapless::Vec::new(),
            config,
            scale: Some(scale),
            started: scale,
            starting: 0,
            lost: 0,
            has_error: false,
            never_starts: false,
        }
    }

    fn wanted(&self) -> u32 {
        self.scale.unwrap_or(0)
    }

    /// Starts what is missing, cancels starting instances no longer wanted.
    fn settle(&mut self) {
        let missing = self.wanted().saturating_sub(self.started);
        self.starting = missing;
    }
}

/// A version the fake repository publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Published {
    /// The zip's digest.
    pub digest: Digest,
    /// Its bundle.conf `name`.
    pub name: Name,
    /// Its bundle.conf `compatibilityVersion`.
    pub compat: Name,
}

/// The fake cluster and its repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Cluster {
    /// The loaded bundles; none is ever removed.
    pub bundles: heapless::Vec<SimBundle, MAX_BUNDLES>,
    /// The repository.
    pub published: heapless::Vec<Published, MAX_PUBLISHED>,
    /// Fault: the instances of a bundle loaded from this digest never start.
    pub never_starts: Option<Digest>,
}

/// What the cluster answered, owned (the views are built when the answer is handed over).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Resolved(Published),
    Screened(Option<(Name, BundleId)>),
    Ordered(Option<Name>),
    ConfigFetched(Digest),
    Loaded(BundleId),
    Scaled,
    Observed,
    Failed(CommandError),
}

impl Cluster {
    /// The index of a bundle.
    pub fn index(&self, id: BundleId) -> Option<usize> {
        self.bundles.iter().position(|b| b.id == id)
    }

    /// A bundle.
    pub fn get(&self, id: BundleId) -> Option<&SimBundle> {
        self.bundles.iter().find(|b| b.id == id)
    }

    /// Carries out a command.
    fn execute(&mut self, kind: &CommandKind) -> Answer {
        match *kind {
            CommandKind::Resolve { digest, .. } => {
                match self.published.iter().find(|p| p.digest == digest) {
                    Some(p) => Answer::Resolved(*p),
                    None => Answer::Failed(CommandError::NotFound),
                }
            }
            CommandKind::Observe { .. } => Answer::Observed,
            CommandKind::Order { digest, old, .. } => {
                Answer::Ordered(self.published_before(&digest, &[old]).map(|(tag, _)| tag))
            }
            CommandKind::Screen {
                package, digest, ..
            } => {
                let running: heapless::Vec<BundleId, MAX_BUNDLES> = self
                    .views(&package)
                    .iter()
                    .filter(|b| b.is_running())
                    .map(|b| b.id)
                    .collect();
                Answer::Screened(self.published_before(&digest, &running))
            }
            CommandKind::FetchConfig { bundle } => match self.get(bundle).and_then(|b| b.config) {
                Some(config) => Answer::ConfigFetched(config),
                None => Answer::Failed(CommandError::Status(404)),
            },
            CommandKind::Load { digest, config } => {
                let id = BundleId::of(&digest, config.as_ref());
                if self.get(id).is_some() {
                    return Answer::Loaded(id);
                }
                let Some(p) = self.published.iter().find(|p| p.digest == digest).copied() else {
                    return Answer::Failed(CommandError::Status(400));
                };
                let mut bundle =
                    SimBundle::running(id, p.name.as_str(), p.compat.as_str(), config, 0);
                bundle.scale = None;
                bundle.never_starts = self.never_starts == Some(digest);
                match self.bundles.push(bundle) {
                    Ok(()) => Answer::Loaded(id),
                    Err(_) => Answer::Failed(CommandError::Status(503)),
                }
            }
            CommandKind::Scale { bundle, scale } => {
                let Some(b) = self.bundles.iter_mut().find(|b| b.id == bundle) else {
                    return Answer::Failed(CommandError::Status(404));
                };
                b.scale = Some(scale);
                b.settle();
                Answer::Scaled
            }
        }
    }

    /// What the repository's index says (docs/DESIGN.md rule 12): whether `digest` was
    /// published before every bundle of `olds` it lists, compared with the one it lists
    /// earliest. The index lists `published` in order; version i has tag `v{i}`.
    fn published_before(&self, digest: &Digest, olds: &[BundleId]) -> Option<(Name, BundleId)> {
        const TAGS: [&str; MAX_PUBLISHED] = ["v0", "v1", "v2", "v3", "v4", "v5"];
        let new = self.published.iter().position(|p| p.digest == *digest)?;
        let (at, old) = self.published.iter().enumerate().find_map(|(at, p)| {
            olds.iter()
                .find(|old| old.is_of_bundle(&p.digest))
                .map(|old| (at, *old))
        })?;
        (new < at).then(|| (Name::truncated(TAGS.get(at).copied().unwrap_or("v?")), old))
    }

    /// The views of the bundles named `name`, as `GET /v2/bundles` would show them.
    pub fn views(&self, name: &Name) -> heapless::Vec<BundleView<'_>, MAX_BUNDLES> {
        self.bundles
            .iter()
            .filter(|b| b.name == *name)
            .map(|b| BundleView {
                id: b.id,
                name: b.name.as_str(),
                compatibility_version: b.compat.as_str(),
                tags: b.tags.iter().map(|t| t.as_str()).collect(),
                scale: b.scale,
                started: b.started,
                starting: b.starting,
                has_error: b.has_error,
            })
            .collect()
    }

    /// What an observation of `name` shows, to tell whether anything changed.
    fn snapshot(&self, name: &Name) -> Snapshot {
        self.bundles
            .iter()
            .filter(|b| b.name == *name)
            .map(|b| (b.id, b.scale, b.started, b.starting, b.has_error))
            .collect()
    }
}

type Snapshot = heapless::Vec<(BundleId, Option<u32>, u32, u32, bool), MAX_BUNDLES>;

// ---------------------------------------------------------------------------------------------
// The world
// ---------------------------------------------------------------------------------------------

/// A command the agent carries out, and what its deployment last observed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InFlight {
    /// The command.
    pub command: Command,
    /// The cluster as the deployment's previous observation showed it, when the commands since
    /// were observations too.
    seen: Option<Snapshot>,
}

/// One move of a [`World`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// The agent carries out command `i` of [`World::in_flight`] and answers it.
    Answer(usize),
    /// Fault: the control API refuses command `i`, which has no effect.
    Refuse(usize),
    /// An instance of bundle `i` starts.
    Start(usize),
    /// An instance of bundle `i` stops.
    Stop(usize),
    /// Fault: a started instance of bundle `i` is lost (the cluster starts another).
    Crash(usize),
    /// The earliest deadline fires (fault, when it comes before the step could finish). With
    /// `late`, the scale requests in flight of the deployments it ends reach the cluster first.
    Deadline {
        /// Whether the requests in flight took effect.
        late: bool,
    },
    /// Fault: an operator aborts the first deployment that has not ended. With `late`, the
    /// scale requests in flight reach the cluster first.
    Abort {
        /// Whether the requests in flight took effect.
        late: bool,
    },
    /// lockstep restarts: the deployments resume from their records. With `late`, the scale
    /// requests in flight took effect before.
    Restart {
        /// Whether the requests in flight took effect.
        late: bool,
    },
}

impl Step {
    /// Whether it is a fault (the exhaustive check bounds how many a path holds).
    pub const fn is_fault(&self) -> bool {
        matches!(
            self,
            Self::Refuse(_) | Self::Crash(_) | Self::Deadline { .. } | Self::Abort { .. }
        )
    }
}

/// A broken promise of the deployer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Violation {
    /// Started instances of old and new outside [N−1, N+1] while deploying or rolling back
    /// (not counting instances the cluster lost).
    Availability {
        /// The deployment's N.
        n: u32,
        /// Old plus new started instances, plus those lost.
        total: u32,
    },
    /// The new bundle asked or running above N.
    NewAboveN,
    /// A loaded bundle disappeared.
    Unloaded,
    /// Success, but the new bundle does not run at N with the old one stopped.
    BadSuccess,
    /// A completed rollback, but the old bundle is not back at N with the new one at 0.
    BadRollback,
    /// A failure that left the bundles where they stood reports other instance counts than
    /// the deployment's latest observation showed.
    Misreported,
    /// A state with a deployment in it and nothing that can happen.
    Stuck,
    /// No end within the bound.
    Livelock,
}

/// The deployer, the cluster, the agent and the clock.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct World<const D: usize> {
    /// The machine under test.
    pub deployer: Deployer<D>,
    /// The fake cluster.
    pub cluster: Cluster,
    /// The clocks.
    pub now: Now,
    /// The agent's commands in flight: at most one per deployment.
    pub in_flight: heapless::Vec<InFlight, D>,
    /// The deployments that ended, in order.
    pub ended: heapless::Vec<Record, MAX_ENDED>,
    /// What each deployment's latest observation of its two bundles showed (old and new
    /// started), as the agent answered it: what a failure must report.
    observed: heapless::Vec<(DeploymentId, Seen), D>,
    /// The first broken promise, if any.
    pub violation: Option<Violation>,
    bundles_loaded: usize,
}

impl<const D: usize> World<D> {
    /// A world around `cluster`, at virtual time zero.
    pub fn new(policy: Policy, cluster: Cluster) -> Self {
        let bundles_loaded = cluster.bundles.len();
        Self {
            deployer: Deployer::new(policy),
            cluster,
            now: Now::new(Instant::ZERO, UnixTime::from_secs(1_700_000_000)),
            in_flight: heapless::Vec::new(),
            ended: heapless::Vec::new(),
            observed: heapless::Vec::new(),
            violation: None,
            bundles_loaded,
        }
    }

    /// Notifies the deployer.
    pub fn notify(&mut self, request: Request) -> Result<Admitted, Busy> {
        let admitted = self.deployer.handle_notification(self.now, request);
        self.drain();
        admitted
    }

    /// Hands the deployer an answer to a command it may never have issued (then drains it, and
    /// checks the oracle).
    pub fn stray_reply(&mut self, command: &Command, reply: Reply<'_>) -> Result<(), Ignored> {
        let applied = self.deployer.handle_reply(self.now, command, reply);
        self.drain();
        if self.violation.is_none() {
            self.violation = check(self).err();
        }
        applied
    }

    /// Lets `by` pass, then hands the deployer a time-out (early or not).
    pub fn jump(&mut self, by: Duration) {
        self.advance(by);
        let _ = self.deployer.handle_timeout(self.now);
        self.drain();
        if self.violation.is_none() {
            self.violation = check(self).err();
        }
    }

    /// Whether nothing is left to do: no deployment in the table.
    pub fn is_done(&self) -> bool {
        self.deployer.is_empty() && self.in_flight.is_empty()
    }

    /// The steps that can happen now; faults only `with_faults`.
    pub fn enabled(&self, with_faults: bool) -> heapless::Vec<Step, MAX_STEPS> {
        let mut steps = heapless::Vec::new();
        for (i, f) in self.in_flight.iter().enumerate() {
            let changed = match (&f.command.kind, &f.seen) {
                (CommandKind::Observe { name }, Some(seen)) => self.cluster.snapshot(name) != *seen,
                _ => true,
            };
            if changed {
                let _ = steps.push(Step::Answer(i));
            }
            if with_faults {
                let _ = steps.push(Step::Refuse(i));
            }
        }
        for (i, b) in self.cluster.bundles.iter().enumerate() {
            if b.starting > 0 && !b.never_starts {
                let _ = steps.push(Step::Start(i));
            }
            if b.started > b.wanted() {
                let _ = steps.push(Step::Stop(i));
            }
            if with_faults && b.started > 0 {
                let _ = steps.push(Step::Crash(i));
            }
        }
        if with_faults && self.deployer.records().any(|r| !r.has_ended()) {
            let _ = steps.push(Step::Abort { late: false });
            if self.scale_in_flight() {
                let _ = steps.push(Step::Abort { late: true });
            }
        }
        if self.deployer.poll_timeout().is_some() {
            let stuck = steps.is_empty();
            if with_faults || stuck {
                let _ = steps.push(Step::Deadline { late: false });
                if self.scale_in_flight() {
                    let _ = steps.push(Step::Deadline { late: true });
                }
            }
        }
        steps
    }

    fn scale_in_flight(&self) -> bool {
        self.in_flight
            .iter()
            .any(|f| matches!(f.command.kind, CommandKind::Scale { .. }))
    }

    /// Takes one step, then checks the oracle.
    pub fn apply(&mut self, step: Step) {
        match step {
            Step::Answer(i) => self.answer(i),
            Step::Refuse(i) => {
                if let Some(f) = self.in_flight.get(i).cloned() {
                    self.in_flight.remove(i);
                    self.reply(&f.command, Reply::Failed(CommandError::Status(500)));
                }
            }
            Step::Start(i) => {
                if let Some(b) = self.cluster.bundles.get_mut(i) {
                    b.starting = b.starting.saturating_sub(1);
                    b.started = b.started.saturating_add(1);
                }
            }
            Step::Stop(i) => {
                if let Some(b) = self.cluster.bundles.get_mut(i) {
                    b.started = b.started.saturating_sub(1);
                }
            }
            Step::Crash(i) => {
                if let Some(b) = self.cluster.bundles.get_mut(i) {
                    b.started = b.started.saturating_sub(1);
                    b.lost = b.lost.saturating_add(1);
                    b.settle();
                }
            }
            Step::Deadline { late } => {
                if late {
                    self.apply_scales_in_flight();
                }
                if let Some(at) = self.deployer.poll_timeout() {
                    let elapsed = at.saturating_duration_since(self.now.instant);
                    self.advance(elapsed);
                }
                let _ = self.deployer.handle_timeout(self.now);
                self.drain();
            }
            Step::Abort { late } => {
                if late {
                    self.apply_scales_in_flight();
                }
                let live = self
                    .deployer
                    .records()
                    .find(|r| !r.has_ended())
                    .map(Record::id);
                if let Some(id) = live {
                    let _ = self.deployer.handle_abort(self.now, id);
                    self.drain();
                }
            }
            Step::Restart { late } => self.restart(late),
        }
        if self.violation.is_none() {
            self.violation = check(self).err();
        }
    }

    /// Moves the clocks on.
    pub fn advance(&mut self, by: Duration) {
        self.now = Now::new(
            self.now.instant.saturating_add(by),
            UnixTime::from_millis(self.now.unix.as_millis().saturating_add(by.as_millis())),
        );
    }

    fn apply_scales_in_flight(&mut self) {
        for f in &self.in_flight {
            if let CommandKind::Scale { .. } = f.command.kind {
                let _ = self.cluster.execute(&f.command.kind);
            }
        }
    }

    /// lockstep restarts: a fresh deployer resumes every record, oldest first; the agent's
    /// commands in flight are lost (or took effect, `late`).
    fn restart(&mut self, late: bool) {
        if late {
            self.apply_scales_in_flight();
        }
        self.in_flight.clear();
        let mut records: heapless::Vec<Record, D> = self.deployer.records().copied().collect();
        records.sort_unstable_by_key(|r| r.order);
        self.deployer = Deployer::new(*self.deployer.policy());
        for record in records {
            let _ = self.deployer.handle_resume(self.now, record);
        }
        self.drain();
    }

    fn answer(&mut self, i: usize) {
        let Some(f) = self.in_flight.get(i).cloned() else {
            return;
        };
        self.in_flight.remove(i);
        let answer = self.cluster.execute(&f.command.kind);
        if self.cluster.bundles.len() > self.bundles_loaded {
            self.bundles_loaded = self.cluster.bundles.len();
        }
        let c = f.command;
        match answer {
            Answer::Resolved(p) => self.reply(
                &c,
                Reply::Resolved {
                    name: p.name.as_str(),
                    compatibility_version: p.compat.as_str(),
                },
            ),
            Answer::Ordered(before) => self.reply(&c, Reply::Ordered { before }),
            Answer::Screened(before) => self.reply(&c, Reply::Screened { before }),
            Answer::ConfigFetched(config) => self.reply(&c, Reply::ConfigFetched { config }),
            Answer::Loaded(id) => self.reply(&c, Reply::Loaded { id }),
            Answer::Scaled => self.reply(&c, Reply::Scaled),
            Answer::Failed(e) => self.reply(&c, Reply::Failed(e)),
            Answer::Observed => {
                let CommandKind::Observe { name } = c.kind else {
                    return;
                };
                let snapshot = self.cluster.snapshot(&name);
                self.note_observation(c.deployment);
                let cluster = self.cluster.clone();
                let views = cluster.views(&name);
                self.reply(&c, Reply::Observed { bundles: &views });
                // Its next observation is answered once the cluster changed.
                if let Some(next) = self
                    .in_flight
                    .iter_mut()
                    .find(|n| n.command.deployment == c.deployment)
                    && matches!(next.command.kind, CommandKind::Observe { .. })
                {
                    next.seen = Some(snapshot);
                }
            }
        }
    }

    /// Notes what an observation of `deployment`'s two bundles shows, when both are loaded.
    fn note_observation(&mut self, deployment: DeploymentId) {
        let Some(record) = self.deployer.record(deployment) else {
            return;
        };
        let (Phase::Observing(swap)
        | Phase::LockStep { swap, .. }
        | Phase::RollingBack { swap, .. }) = record.phase
        else {
            return;
        };
        let started = |id: BundleId| self.cluster.get(id).map(|b| b.started);
        let old = match swap.plan.old {
            Some(id) => started(id),
            None => Some(0),
        };
        let (Some(old), Some(new)) = (old, started(swap.new)) else {
            return;
        };
        let seen = Seen { old, new };
        self.observed.retain(|(d, _)| *d != deployment);
        let _ = self.observed.push((deployment, seen));
    }

    fn reply(&mut self, c: &Command, reply: Reply<'_>) {
        let _ = self.deployer.handle_reply(self.now, c, reply);
        self.drain();
    }

    /// The drain rule: every output, after every input.
    fn drain(&mut self) {
        while let Some(output) = self.deployer.poll() {
            match output {
                Output::Command(command) => {
                    self.in_flight
                        .retain(|f| f.command.deployment != command.deployment);
                    let _ = self.in_flight.push(InFlight {
                        command,
                        seen: None,
                    });
                }
                Output::Event(_) => {}
                Output::Ended(record) => {
                    self.in_flight
                        .retain(|f| f.command.deployment != record.id());
                    let observed = self
                        .observed
                        .iter()
                        .find(|(d, _)| *d == record.id())
                        .map(|(_, seen)| *seen);
                    self.observed.retain(|(d, _)| *d != record.id());
                    if self.violation.is_none() {
                        self.violation = check_end(&self.cluster, &record).err();
                    }
                    if self.violation.is_none() {
                        self.violation = check_reported(&record, observed).err();
                    }
                    if self.ended.is_full() {
                        self.ended.remove(0);
                    }
                    let _ = self.ended.push(record);
                }
            }
        }
    }

    /// Drives the world with seeded choices until every deployment ended: each step picks an
    /// enabled step (a fault with probability `fault_per_mille`‰ when one is enabled) and takes
    /// 1 to 500 ms of virtual time; a deadline fires when its time has come. Fails on a broken
    /// promise, or on livelock after `max_steps`.
    pub fn drive_bounded(
        &mut self,
        rng: &mut Rng,
        fault_per_mille: u32,
        max_steps: usize,
    ) -> Result<usize, Violation> {
        for taken in 0..max_steps {
            if let Some(v) = self.violation {
                return Err(v);
            }
            if self.is_done() {
                return Ok(taken);
            }
            let due = self
                .deployer
                .poll_timeout()
                .is_some_and(|at| at <= self.now.instant);
            let step = if due {
                Step::Deadline { late: false }
            } else {
                let faults = rng.below(1000) < fault_per_mille;
                let mut steps = self.enabled(faults);
                if faults {
                    steps.retain(|s| s.is_fault());
                    if steps.is_empty() {
                        steps = self.enabled(false);
                    }
                }
                if steps.is_empty() {
                    return Err(Violation::Stuck);
                }
                let Some(step) = rng.pick(&steps) else {
                    return Err(Violation::Stuck);
                };
                step
            };
            if !matches!(step, Step::Deadline { .. }) {
                self.advance(Duration::from_millis(
                    u64::from(rng.below(500)).saturating_add(1),
                ));
            }
            self.apply(step);
        }
        Err(self.violation.unwrap_or(Violation::Livelock))
    }
}

// ---------------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------------

/// The promises that hold in every state: while a deployment is in its lock-step or rollback,
/// old and new started instances (plus those the cluster lost) stay within [N−1, N+1]; the new
/// bundle is never asked or running above N; no loaded bundle disappears.
pub fn check<const D: usize>(world: &World<D>) -> Result<(), Violation> {
    if world.cluster.bundles.len() < world.bundles_loaded {
        return Err(Violation::Unloaded);
    }
    for record in world.deployer.records() {
        let (Phase::LockStep { swap, .. } | Phase::RollingBack { swap, .. }) = record.phase else {
            continue;
        };
        let n = swap.plan.scale;
        let count = |id: Option<BundleId>| {
            id.and_then(|id| world.cluster.get(id))
                .map_or((0, 0, 0), |b| (b.started, b.lost, b.scale.unwrap_or(0)))
        };
        let (old_started, old_lost, _) = count(swap.plan.old);
        let (new_started, new_lost, new_scale) = count(Some(swap.new));
        if new_started > n || new_scale > n {
            return Err(Violation::NewAboveN);
        }
        let running = old_started.saturating_add(new_started);
        let total = running.saturating_add(old_lost).saturating_add(new_lost);
        let low = if swap.plan.old.is_some() {
            n.saturating_sub(1)
        } else {
            0
        };
        if running > n.saturating_add(1) || total < low {
            return Err(Violation::Availability { n, total });
        }
    }
    Ok(())
}

/// The promises of an end: success leaves the new bundle at N and the old one stopped; a
/// completed rollback leaves the old one at N and the new one at 0.
pub fn check_end(cluster: &Cluster, record: &Record) -> Result<(), Violation> {
    let Some(end) = record.end() else {
        return Ok(());
    };
    let bundle = |id: Option<BundleId>| id.and_then(|id| cluster.get(id));
    let scale = |id: Option<BundleId>| bundle(id).and_then(|b| b.scale);
    // Started, counting those the cluster lost by itself (it starts replacements).
    let up = |id: Option<BundleId>| bundle(id).map_or(0, |b| b.started.saturating_add(b.lost));
    let started = |id: Option<BundleId>| bundle(id).map_or(0, |b| b.started);
    let old = end.plan.and_then(|plan| plan.old);
    match end.outcome {
        Outcome::Succeeded {
            nothing_to_do: false,
        } => {
            // A success that moved anything had a plan.
            let Some(n) = end.plan.map(|plan| plan.scale) else {
                return Err(Violation::BadSuccess);
            };
            let new_ok = scale(end.new) == Some(n) && up(end.new) >= n;
            let old_ok = old.is_none() || (scale(old) == Some(0) && started(old) == 0);
            if new_ok && old_ok {
                Ok(())
            } else {
                Err(Violation::BadSuccess)
            }
        }
        Outcome::Failed(failure) => match failure.rollback {
            Rollback::Completed { old: restored } => {
                let old_ok = old.is_none() || (scale(old) == Some(restored) && up(old) >= restored);
                let new_ok = scale(end.new).unwrap_or(0) == 0 && started(end.new) == 0;
                if old_ok && new_ok {
                    Ok(())
                } else {
                    Err(Violation::BadRollback)
                }
            }
            Rollback::NotNeeded | Rollback::Off { .. } | Rollback::Failed { .. } => Ok(()),
        },
        Outcome::Succeeded {
            nothing_to_do: true,
        } => Ok(()),
    }
}

/// The promise of a failure that left the bundles where they stood: it reports them as the
/// deployment's latest observation showed them, never as the scales it asked for.
pub fn check_reported(record: &Record, observed: Option<Seen>) -> Result<(), Violation> {
    let reported = match record.failure().map(|f| f.rollback) {
        Some(Rollback::Off { old, new } | Rollback::Failed { old, new, .. }) => Seen { old, new },
        _ => return Ok(()),
    };
    if observed == Some(reported) {
        Ok(())
    } else {
        Err(Violation::Misreported)
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// The scenario the simulation tests, the exhaustive check and the fuzz target share: bundle
/// `visualizer`, an old version running, three compatible newer ones and an incompatible one
/// published. Digests are a byte repeated.
pub mod fixture {
    use super::{Cluster, Published, SimBundle};
    use crate::bundle::{BundleId, Digest};
    use crate::deployer::{DeploymentId, Name, Request, Tags};
    use crate::time::UnixTime;

    /// The running version.
    pub const OLD: u8 = 0xA0;
    /// A compatible version published before the running one: a downgrade.
    pub const OLDER: u8 = 0xA1;
    /// A compatible newer version.
    pub const NEW: u8 = 0xB0;
    /// Another, newer.
    pub const NEWER: u8 = 0xB1;
    /// The newest.
    pub const NEWEST: u8 = 0xB2;
    /// A version of another compatibilityVersion.
    pub const INCOMPATIBLE: u8 = 0xD0;
    /// The old bundle's configuration.
    pub const CONFIG: u8 = 0xC0;

    /// The digest made of `byte`.
    pub const fn digest(byte: u8) -> Digest {
        Digest::from_bytes([byte; 32])
    }

    /// The old bundle's id.
    pub fn old_id(config: bool) -> BundleId {
        new_id(OLD, config)
    }

    /// The id of version `byte` loaded with the configuration, or without.
    pub fn new_id(byte: u8, config: bool) -> BundleId {
        BundleId::of(&digest(byte), config.then(|| digest(CONFIG)).as_ref())
    }

    /// The old version running at `scale`, with the configuration or not; the repository.
    pub fn cluster(scale: u32, config: bool) -> Cluster {
        let mut cluster = Cluster::default();
        let configuration = config.then(|| digest(CONFIG));
        let old = SimBundle::running(old_id(config), "visualizer", "1", configuration, scale);
        let _ = cluster.bundles.push(old);
        let versions = [
            (OLDER, "1"),
            (OLD, "1"),
            (NEW, "1"),
            (NEWER, "1"),
            (NEWEST, "1"),
            (INCOMPATIBLE, "2"),
        ];
        for (byte, compat) in versions {
            let _ = cluster.published.push(Published {
                digest: digest(byte),
                name: Name::truncated("visualizer"),
                compat: Name::truncated(compat),
            });
        }
        cluster
    }

    /// A notification of version `version`; the deployment's id is `id` repeated.
    pub fn request(id: u8, version: u8) -> Request {
        Request {
            id: DeploymentId::from_bytes([id; 16]),
            org: Name::truncated("typesafe"),
            repo: Name::truncated("bundle"),
            package: Name::truncated("visualizer"),
            tag: Name::truncated("v2"),
            digest: digest(version),
            tags: Tags::NONE,
            at: UnixTime::from_secs(1_700_000_000),
            allow_downgrade: false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Randomness
// ---------------------------------------------------------------------------------------------

/// A small seeded generator (SplitMix64): the same seed, the same run.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u32) -> u32 {
        let x = self.next_u64();
        // The remainder is below `bound`, so it fits.
        x.checked_rem(u64::from(bound))
            .and_then(|r| u32::try_from(r).ok())
            .unwrap_or(0)
    }

    /// One of `items`, or `None` when there are none.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        let len = u64::try_from(items.len()).ok()?;
        let at = usize::try_from(self.next_u64().checked_rem(len)?).ok()?;
        items.get(at).copied()
    }
}
