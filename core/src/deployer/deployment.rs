//! One deployment: its [`Record`] and what it is waiting for, moved on by its own step
//! methods (steps 2 and 4 to 7 of the rules). What involves several deployments — admission,
//! the per-key schedule of step 3 — is the table's ([`Deployer`](super::Deployer)); a step
//! that concerns the table says so in its [`Effect`].

use super::cluster::BundleView;
use super::event::{Event, EventKind};
use super::record::{
    Cause, CommandError, Doing, End, Failure, Fault, Key, Moved, Name, Outcome, Phase, Plan,
    Record, Rollback, SEVERAL_SHOWN, Seen, Step, Swap,
};
use super::{
    Aborted, Command, CommandKind, Ignored, NothingRunning, Output, Policy, Reply, RollbackPolicy,
};
use crate::bundle::{BundleId, Digest};
use crate::time::{Duration, Instant, Now};

/// Events waiting to be polled out of one deployment.
const PENDING_EVENTS: usize = 8;

/// The time and the policies every step is taken with.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ctx {
    pub(super) now: Now,
    pub(super) policy: Policy,
}

impl Ctx {
    fn step_deadline(&self) -> Instant {
        self.now.instant.saturating_add(self.policy.step_deadline)
    }
}

/// What the table must do after a deployment moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(super) enum Effect {
    /// Nothing beyond the deployment.
    None,
    /// It resolved its key: schedule it (step 3).
    Resolved(Key),
    /// It ended.
    Ended {
        /// Its key, when it was the key's active deployment: the key is free.
        freed: Option<Key>,
    },
}

/// An event waiting to be polled, with what it carries beyond its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum Pending {
    Started,
    BundleDownload,
    ConfigDownload { from: BundleId },
    Load { config: Option<Digest> },
    Deploy { old: u32, new: u32 },
}

/// What a deployment is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum Run {
    /// Not ended.
    Live {
        /// The token of the latest command issued: an answer with another is stale.
        token: u32,
        /// The latest command waits to be polled out.
        command: bool,
        /// When the current step times out.
        deadline: Option<Instant>,
        /// The lock-step's step started the new bundle's instances, which are watched until
        /// the deadline, the end of the settle time ([`Policy::settle`]). Not in the record:
        /// a resumed deployment requests its step again, and settles again once it is
        /// reached.
        settling: bool,
    },
    /// Ended: its last event, until polled out; then the record leaves the table.
    Ended {
        /// The `deploymentSuccess` or `deploymentFailure` event.
        event: Option<Event>,
    },
}

/// What [`Deployment::poll`] hands the table.
#[derive(Clone, Copy, Debug)]
pub(super) enum Polled {
    /// An output of a deployment that stays.
    Output(Output),
    /// The ended deployment's record: its slot is free.
    Gone(Record),
}

/// A deployment in the table.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) struct Deployment {
    record: Record,
    events: heapless::Vec<(u32, Pending), PENDING_EVENTS>,
    run: Run,
}

impl Deployment {
    /// A deployment just admitted: it logs `deploymentStarted` and `bundleDownload` and
    /// screens the version (rule 12), or, when its request allows a downgrade or the policy
    /// starts a bundle where none runs, starts resolving (step 2).
    pub(super) fn admitted(ctx: Ctx, mut record: Record) -> Self {
        let screens = !record.request.allow_downgrade
            && ctx.policy.nothing_running != NothingRunning::StartOne;
        let deadline = if screens {
            record.phase = Phase::Screening;
            ctx.step_deadline()
        } else {
            ctx.now.instant.saturating_add(ctx.policy.resolve_deadline)
        };
        let mut d = Self::with(record);
        d.push_event(Pending::Started);
        d.push_event(Pending::BundleDownload);
        d.issue(Some(deadline));
        d
    }

    /// Screening is over, or could not tell (its command failed, or its deadline passed: the
    /// check after targeting still stands): resolve (step 2).
    fn start_resolving(&mut self, ctx: Ctx) {
        self.record.phase = Phase::Resolving;
        self.issue(Some(
            ctx.now.instant.saturating_add(ctx.policy.resolve_deadline),
        ));
    }

    /// A deployment read back from its record: the step it stood at is requested again
    /// (absolute scales make that idempotent) and the next observation decides.
    pub(super) fn resumed(ctx: Ctx, mut record: Record) -> Self {
        let deadline = match &mut record.phase {
            Phase::Resolving => Some(ctx.now.instant.saturating_add(ctx.policy.resolve_deadline)),
            Phase::Screening => Some(ctx.step_deadline()),
            Phase::Queued | Phase::Ended(_) => None,
            Phase::LockStep { step, .. } | Phase::RollingBack { step, .. } => {
                step.waiting = false;
                Some(ctx.step_deadline())
            }
            Phase::Targeting
            | Phase::Ordering { .. }
            | Phase::FetchingConfig { .. }
            | Phase::Loading(_)
            | Phase::Observing(_) => Some(ctx.step_deadline()),
        };
        let mut d = Self::with(record);
        d.issue(deadline);
        d
    }

    fn with(record: Record) -> Self {
        Self {
            record,
            events: heapless::Vec::new(),
            run: Run::Live {
                token: 0,
                command: false,
                deadline: None,
                settling: false,
            },
        }
    }

    // ---- getters ------------------------------------------------------------------------------

    pub(super) const fn record(&self) -> &Record {
        &self.record
    }

    /// Not ended (its outputs may still wait to be polled).
    pub(super) const fn is_live(&self) -> bool {
        matches!(self.run, Run::Live { .. })
    }

    /// Its key's active deployment: past the queue, not ended.
    pub(super) const fn is_active(&self) -> bool {
        self.is_live()
            && matches!(
                self.record.phase,
                Phase::Targeting
                    | Phase::Ordering { .. }
                    | Phase::FetchingConfig { .. }
                    | Phase::Loading(_)
                    | Phase::Observing(_)
                    | Phase::LockStep { .. }
                    | Phase::RollingBack { .. }
            )
    }

    /// Waiting as its key's pending deployment.
    pub(super) fn is_queued(&self) -> bool {
        self.is_live() && self.record.phase == Phase::Queued
    }

    /// When its current step times out, if it is live and waits for one.
    pub(super) const fn deadline(&self) -> Option<Instant> {
        match self.run {
            Run::Live { deadline, .. } => deadline,
            Run::Ended { .. } => None,
        }
    }

    /// Whether the new bundle's instances are being watched for the settle time.
    const fn settling(&self) -> bool {
        matches!(self.run, Run::Live { settling: true, .. })
    }

    fn set_settling(&mut self, to: bool) {
        if let Run::Live { settling, .. } = &mut self.run {
            *settling = to;
        }
    }

    // ---- outputs --------------------------------------------------------------------------------

    /// Its next output: its events, then its command; once ended, its last event, then its
    /// record.
    pub(super) fn poll(&mut self) -> Option<Polled> {
        if !self.events.is_empty() {
            let (seq, pending) = self.events.remove(0);
            return Some(Polled::Output(Output::Event(self.event(seq, pending))));
        }
        match &mut self.run {
            Run::Live { command, .. } if *command => {
                *command = false;
                self.command().map(|c| Polled::Output(Output::Command(c)))
            }
            Run::Live { .. } => None,
            Run::Ended { event } => Some(match event.take() {
                Some(event) => Polled::Output(Output::Event(event)),
                None => Polled::Gone(self.record),
            }),
        }
    }

    fn event(&self, seq: u32, pending: Pending) -> Event {
        let request = &self.record.request;
        let kind = match pending {
            Pending::Started => EventKind::DeploymentStarted {
                bundle_name: request.package,
                compatible_version: request.tag,
            },
            Pending::BundleDownload => EventKind::BundleDownload,
            Pending::ConfigDownload { from } => EventKind::ConfigDownload { from },
            Pending::Load { config } => EventKind::Load { config },
            Pending::Deploy { old, new } => EventKind::Deploy { old, new },
        };
        Event {
            deployment: request.id,
            seq,
            kind,
        }
    }

    /// The command the phase calls for, with the latest token.
    fn command(&self) -> Option<Command> {
        let Run::Live { token, .. } = self.run else {
            return None;
        };
        let r = &self.record;
        let observe = CommandKind::Observe {
            name: r.request.package,
        };
        let kind = match r.phase {
            Phase::Screening => CommandKind::Screen {
                org: r.request.org,
                repo: r.request.repo,
                package: r.request.package,
                digest: r.request.digest,
            },
            Phase::Resolving => CommandKind::Resolve {
                org: r.request.org,
                repo: r.request.repo,
                package: r.request.package,
                tag: r.request.tag,
                digest: r.request.digest,
            },
            Phase::Targeting | Phase::Observing(_) => observe,
            Phase::Ordering { old, .. } => CommandKind::Order {
                org: r.request.org,
                repo: r.request.repo,
                package: r.request.package,
                digest: r.request.digest,
                old,
            },
            Phase::FetchingConfig { old, .. } => CommandKind::FetchConfig { bundle: old },
            Phase::Loading(plan) => CommandKind::Load {
                digest: r.request.digest,
                config: plan.config,
            },
            Phase::LockStep { step, .. } | Phase::RollingBack { step, .. } if step.waiting => {
                observe
            }
            Phase::LockStep { swap, step, .. } | Phase::RollingBack { swap, step, .. } => {
                CommandKind::Scale {
                    bundle: match step.moved {
                        Moved::Old(old) => old,
                        Moved::New => swap.new,
                    },
                    scale: step.target(),
                }
            }
            Phase::Queued | Phase::Ended(_) => return None,
        };
        Some(Command {
            deployment: r.request.id,
            token,
            kind,
        })
    }

    fn push_event(&mut self, pending: Pending) {
        let seq = self.take_seq();
        if self.events.is_full() {
            // Only when the drain rule is broken: let an intermediate `deploy` go, as the log
            // would.
            if let Some(at) = self
                .events
                .iter()
                .position(|(_, p)| matches!(p, Pending::Deploy { .. }))
            {
                self.events.remove(at);
            }
        }
        // Full of events of other types only if the drain rule is broken for a whole
        // deployment's worth of them: the event is dropped, as the log would.
        let _ = self.events.push((seq, pending));
    }

    fn take_seq(&mut self) -> u32 {
        let seq = self.record.next_seq;
        self.record.next_seq = seq.saturating_add(1);
        seq
    }

    /// Issues the command the phase calls for, under a new token, to be polled out; arms the
    /// deadline.
    fn issue(&mut self, deadline: Option<Instant>) {
        if let Run::Live {
            token,
            command,
            deadline: at,
            ..
        } = &mut self.run
        {
            *token = token.wrapping_add(1);
            *at = deadline;
            *command = true;
        }
        if self.command().is_none() {
            self.hold(deadline);
        }
    }

    /// Waits without a command (queued), with this deadline.
    fn hold(&mut self, deadline: Option<Instant>) {
        if let Run::Live {
            command,
            deadline: at,
            ..
        } = &mut self.run
        {
            *command = false;
            *at = deadline;
        }
    }

    /// Moves to `phase` and issues its command, with a step deadline.
    fn enter(&mut self, ctx: Ctx, phase: Phase) {
        self.record.phase = phase;
        self.set_settling(false);
        self.issue(Some(ctx.step_deadline()));
    }

    // ---- inputs ---------------------------------------------------------------------------------

    /// The agent's answer to `command`.
    pub(super) fn reply(
        &mut self,
        ctx: Ctx,
        command: &Command,
        reply: Reply<'_>,
    ) -> Result<Effect, Ignored> {
        let Run::Live {
            token,
            command: unpolled,
            ..
        } = self.run
        else {
            return Err(Ignored::Ended);
        };
        // Only an answer to the latest command, once it was handed out, counts.
        if token != command.token || unpolled {
            return Err(Ignored::Stale);
        }
        Ok(match (self.record.phase, reply) {
            (
                Phase::Resolving,
                Reply::Resolved {
                    name,
                    compatibility_version,
                },
            ) => self.resolved(ctx, name, compatibility_version),
            (Phase::Resolving, Reply::Failed(e)) => self.fail(ctx, Cause::Resolve(e)),
            (Phase::Screening, Reply::Screened { before }) => match before {
                Some((running, old)) => self.fail(ctx, Cause::Downgrade { running, old }),
                None => {
                    self.start_resolving(ctx);
                    Effect::None
                }
            },
            (Phase::Screening, Reply::Failed(_)) => {
                self.start_resolving(ctx);
                Effect::None
            }
            (Phase::Targeting, Reply::Observed { bundles }) => self.target(ctx, bundles),
            (Phase::Ordering { old, scale }, Reply::Ordered { before }) => match before {
                Some(running) => self.fail(ctx, Cause::Downgrade { running, old }),
                None => self.replace(ctx, old, scale),
            },
            (Phase::FetchingConfig { old, scale }, Reply::ConfigFetched { config }) => {
                self.config_fetched(ctx, old, scale, config)
            }
            (Phase::Loading(plan), Reply::Loaded { id }) => self.loaded(ctx, plan, id),
            (Phase::Observing(swap), Reply::Observed { bundles }) => {
                self.first_look(ctx, swap, bundles)
            }
            (Phase::LockStep { swap, step, seen }, Reply::Scaled) if !step.waiting => {
                let step = Step {
                    waiting: true,
                    ..step
                };
                self.enter_keeping_deadline(Phase::LockStep { swap, step, seen });
                Effect::None
            }
            (
                Phase::RollingBack {
                    swap,
                    step,
                    cause,
                    seen,
                },
                Reply::Scaled,
            ) if !step.waiting => {
                let step = Step {
                    waiting: true,
                    ..step
                };
                self.enter_keeping_deadline(Phase::RollingBack {
                    swap,
                    step,
                    cause,
                    seen,
                });
                Effect::None
            }
            (
                Phase::LockStep { swap, step, .. } | Phase::RollingBack { swap, step, .. },
                Reply::Observed { bundles },
            ) if step.waiting => self.step_observed(ctx, swap, step, bundles),
            (phase, Reply::Failed(e)) => {
                let doing = match phase {
                    Phase::Targeting => Doing::Targeting,
                    Phase::Ordering { .. } => Doing::Ordering,
                    Phase::FetchingConfig { .. } => Doing::FetchingConfig,
                    Phase::Loading(_) => Doing::Loading,
                    Phase::Observing(_) => Doing::Observing,
                    Phase::LockStep { step, .. } | Phase::RollingBack { step, .. } => step.doing(),
                    Phase::Screening | Phase::Resolving | Phase::Queued | Phase::Ended(_) => {
                        return Err(Ignored::Unexpected);
                    }
                };
                self.fault(ctx, doing, Fault::Command(e))
            }
            _ => return Err(Ignored::Unexpected),
        })
    }

    /// Moves within the same step (the scale request was accepted; its instances are awaited
    /// within the step's deadline): a new command, the same deadline.
    fn enter_keeping_deadline(&mut self, phase: Phase) {
        self.record.phase = phase;
        self.issue(self.deadline());
    }

    /// Its deadline passed (the table checked): the step fails; or, settling, the new
    /// instances held for the settle time and the lock-step goes on.
    pub(super) fn timed_out(&mut self, ctx: Ctx) -> Effect {
        if let (true, Phase::LockStep { swap, step, seen }) = (self.settling(), self.record.phase) {
            return self.forward(ctx, swap, step.old, step.new, seen);
        }
        match self.record.phase {
            Phase::Resolving => self.fail(ctx, Cause::ResolveDeadline),
            Phase::Screening => {
                self.start_resolving(ctx);
                Effect::None
            }
            Phase::Targeting => self.fault(ctx, Doing::Targeting, Fault::Deadline),
            Phase::Ordering { .. } => self.fault(ctx, Doing::Ordering, Fault::Deadline),
            Phase::FetchingConfig { .. } => self.fault(ctx, Doing::FetchingConfig, Fault::Deadline),
            Phase::Loading(_) => self.fault(ctx, Doing::Loading, Fault::Deadline),
            Phase::Observing(_) => self.fault(ctx, Doing::Observing, Fault::Deadline),
            Phase::LockStep { step, .. } | Phase::RollingBack { step, .. } => {
                self.fault(ctx, step.doing(), Fault::Deadline)
            }
            Phase::Queued | Phase::Ended(_) => {
                self.hold(None);
                Effect::None
            }
        }
    }

    /// An operator aborts it (rule 10): before its lock-step it ends failed, `aborted`; in the
    /// lock-step it fails its step as a fault would, so it is rolled back (or, with rollback
    /// off, stopped where it stands); a rollback under way goes on; an ended one is left as
    /// it is. A command in flight is not waited for: its answer, when it comes, is ignored.
    pub(super) fn abort(&mut self, ctx: Ctx) -> (Effect, Aborted) {
        let doing = match self.record.phase {
            Phase::Screening | Phase::Resolving | Phase::Queued => {
                return (self.fail(ctx, Cause::Aborted), Aborted::Ended);
            }
            Phase::Targeting => Doing::Targeting,
            Phase::Ordering { .. } => Doing::Ordering,
            Phase::FetchingConfig { .. } => Doing::FetchingConfig,
            Phase::Loading(_) => Doing::Loading,
            Phase::Observing(_) => Doing::Observing,
            Phase::LockStep { step, .. } => step.doing(),
            Phase::RollingBack { .. } => return (Effect::None, Aborted::AlreadyRollingBack),
            Phase::Ended(_) => return (Effect::None, Aborted::AlreadyEnded),
        };
        let effect = self.fault(ctx, doing, Fault::Aborted);
        let what = match self.record.phase {
            Phase::RollingBack { .. } => Aborted::RollingBack,
            Phase::Ended(End {
                outcome:
                    Outcome::Failed(Failure {
                        rollback: Rollback::Off { .. },
                        ..
                    }),
                ..
            }) => Aborted::Stopped,
            _ => Aborted::Ended,
        };
        (effect, what)
    }

    // ---- steps ----------------------------------------------------------------------------------

    /// Step 2 done: check the name, complete the key; the table schedules it (step 3).
    fn resolved(&mut self, ctx: Ctx, name: &str, compatibility_version: &str) -> Effect {
        if name != self.record.request.package.as_str() {
            let found = Name::truncated(name);
            return self.fail(ctx, Cause::NameMismatch { found });
        }
        let Ok(compatibility_version) = Name::new(compatibility_version) else {
            return self.fail(ctx, Cause::Resolve(CommandError::BadBundleConf));
        };
        self.record.compatibility_version = Some(compatibility_version);
        self.record.phase = Phase::Queued;
        self.hold(None);
        Effect::Resolved(Key {
            package: self.record.request.package,
            compatibility_version,
        })
    }

    /// Step 3 granted: the key is this deployment's.
    pub(super) fn start_targeting(&mut self, ctx: Ctx) {
        self.enter(ctx, Phase::Targeting);
    }

    /// Step 4: pick the bundle to replace.
    fn target(&mut self, ctx: Ctx, bundles: &[BundleView<'_>]) -> Effect {
        let request = self.record.request;
        let Some(compat) = self.record.compatibility_version else {
            // Targeting follows resolving, which set it; a record that says otherwise is
            // refused rather than guessed at.
            return self.fail(ctx, Cause::Resolve(CommandError::BadBundleConf));
        };
        let named = || {
            bundles
                .iter()
                .filter(|b| b.name == request.package.as_str())
        };
        let compatible = || named().filter(|b| b.compatibility_version == compat.as_str());
        let tagged = |b: &BundleView<'_>| {
            request.tags.is_empty()
                || request
                    .tags
                    .as_slice()
                    .iter()
                    .any(|t| b.tags.contains(&t.as_str()))
        };
        let candidates =
            || compatible().filter(|b| !b.is_of(&request.digest) && b.is_running() && tagged(b));
        let new_running = compatible().any(|b| b.is_of(&request.digest) && b.is_running());
        let mut first = candidates();
        match (first.next(), first.next()) {
            (None, _) if new_running => self.succeed(ctx, true),
            (None, _) if ctx.policy.nothing_running == NothingRunning::StartOne => {
                let plan = Plan {
                    old: None,
                    scale: 1,
                    config: None,
                };
                self.begin_load(ctx, plan)
            }
            (None, _) => {
                let running = named()
                    .find(|b| b.is_running() && b.compatibility_version != compat.as_str())
                    .map(|b| Name::truncated(b.compatibility_version));
                let cause = Cause::NoRunning {
                    compatibility_version: compat,
                    running,
                    narrowed: !request.tags.is_empty(),
                };
                self.fail(ctx, cause)
            }
            (Some(old), None) if new_running => {
                self.fail(ctx, Cause::AlreadyBeside { old: old.id })
            }
            (Some(old), None) => {
                let scale = old.target_scale().max(1);
                if request.allow_downgrade {
                    self.replace(ctx, old.id, scale)
                } else {
                    self.enter(ctx, Phase::Ordering { old: old.id, scale });
                    Effect::None
                }
            }
            (Some(_), Some(_)) => {
                let mut ids = [None; SEVERAL_SHOWN];
                for (slot, b) in ids.iter_mut().zip(candidates()) {
                    *slot = Some(b.id);
                }
                let count = u32::try_from(candidates().count()).unwrap_or(u32::MAX);
                self.fail(ctx, Cause::Several { count, ids })
            }
        }
    }

    /// Step 5: replace `old`, at `scale`, with the new version (its configuration first, when
    /// it has one).
    fn replace(&mut self, ctx: Ctx, old: BundleId, scale: u32) -> Effect {
        if old.has_config() {
            self.push_event(Pending::ConfigDownload { from: old });
            self.enter(ctx, Phase::FetchingConfig { old, scale });
            Effect::None
        } else {
            let plan = Plan {
                old: Some(old),
                scale,
                config: None,
            };
            self.begin_load(ctx, plan)
        }
    }

    /// Step 5, with the configuration fetched.
    fn config_fetched(&mut self, ctx: Ctx, old: BundleId, scale: u32, config: Digest) -> Effect {
        if !old.is_of_config(&config) {
            return self.fail(ctx, Cause::ConfigMismatch);
        }
        let plan = Plan {
            old: Some(old),
            scale,
            config: Some(config),
        };
        self.begin_load(ctx, plan)
    }

    fn begin_load(&mut self, ctx: Ctx, plan: Plan) -> Effect {
        self.push_event(Pending::Load {
            config: plan.config,
        });
        self.enter(ctx, Phase::Loading(plan));
        Effect::None
    }

    fn loaded(&mut self, ctx: Ctx, plan: Plan, id: BundleId) -> Effect {
        let expected = BundleId::of(&self.record.request.digest, plan.config.as_ref());
        if id != expected {
            return self.fail(ctx, Cause::LoadedIdMismatch { id });
        }
        self.enter(ctx, Phase::Observing(Swap { plan, new: id }));
        Effect::None
    }

    /// Step 6 begins: log where it starts (N v 0), then the first step.
    fn first_look(&mut self, ctx: Ctx, swap: Swap, bundles: &[BundleView<'_>]) -> Effect {
        let Some((old, new)) = observe(&swap, bundles) else {
            return self.fault(ctx, Doing::Observing, Fault::Vanished);
        };
        let seen = seen(old, new);
        self.push_event(Pending::Deploy {
            old: seen.old,
            new: seen.new,
        });
        let from_old = if swap.plan.old.is_some() {
            swap.plan.scale
        } else {
            0
        };
        self.forward(ctx, swap, from_old, 0, seen)
    }

    /// The next step of the lock-step from requested scales (old, new), or success.
    fn forward(&mut self, ctx: Ctx, swap: Swap, old: u32, new: u32, seen: Seen) -> Effect {
        let n = swap.plan.scale;
        let step = match swap.plan.old {
            _ if new >= n && old == 0 => return self.succeed(ctx, false),
            Some(id) if old.saturating_add(new) > n => Step {
                old: old.saturating_sub(1),
                new,
                moved: Moved::Old(id),
                up: false,
                waiting: false,
            },
            _ => Step {
                old,
                new: new.saturating_add(1),
                moved: Moved::New,
                up: true,
                waiting: false,
            },
        };
        self.enter(ctx, Phase::LockStep { swap, step, seen });
        Effect::None
    }

    /// The next step of the rollback from requested scales (old, new), or its end.
    fn backward(
        &mut self,
        ctx: Ctx,
        swap: Swap,
        (old, new): (u32, u32),
        cause: Cause,
        seen: Seen,
    ) -> Effect {
        let n = swap.plan.scale;
        let down = Step {
            old,
            new: new.saturating_sub(1),
            moved: Moved::New,
            up: false,
            waiting: false,
        };
        let step = match swap.plan.old {
            _ if old.saturating_add(new) > n => down,
            Some(id) if old < n => Step {
                old: old.saturating_add(1),
                new,
                moved: Moved::Old(id),
                up: true,
                waiting: false,
            },
            _ if new > 0 => down,
            _ => {
                let full = if swap.plan.old.is_some() { n } else { 0 };
                let failure = Failure {
                    cause,
                    rollback: Rollback::Completed { old: full },
                };
                return self.end(ctx, Outcome::Failed(failure));
            }
        };
        self.enter(
            ctx,
            Phase::RollingBack {
                swap,
                step,
                cause,
                seen,
            },
        );
        Effect::None
    }

    /// An observation while waiting for a step's instances.
    fn step_observed(
        &mut self,
        ctx: Ctx,
        swap: Swap,
        step: Step,
        bundles: &[BundleView<'_>],
    ) -> Effect {
        let Some((old, new)) = observe(&swap, bundles) else {
            return self.fault(ctx, step.doing(), Fault::Vanished);
        };
        let now_seen = seen(old, new);
        self.see(now_seen);
        let moved = match step.moved {
            Moved::Old(_) => old,
            Moved::New => Some(new),
        };
        // A step moves the old bundle only when the plan has one, which `observe` found.
        let Some(moved) = moved else {
            return self.fault(ctx, step.doing(), Fault::Vanished);
        };
        if step.up && moved.has_error {
            return self.fault(ctx, step.doing(), Fault::InstanceError);
        }
        let target = step.target();
        if self.settling() {
            if moved.started < target {
                return self.fault(ctx, step.doing(), Fault::Lost);
            }
            // Held so far: watch on until the settle time is over (the deadline).
            self.issue(self.deadline());
            return Effect::None;
        }
        let reached = if step.up {
            moved.started >= target
        } else {
            moved.started <= target
        };
        if !reached {
            // Not yet: look again (the agent paces it); the step's deadline stands.
            self.issue(self.deadline());
            return Effect::None;
        }
        self.push_event(Pending::Deploy {
            old: now_seen.old,
            new: now_seen.new,
        });
        let forward = matches!(self.record.phase, Phase::LockStep { .. });
        if forward && step.up && step.moved == Moved::New && ctx.policy.settle > Duration::ZERO {
            self.set_settling(true);
            self.issue(Some(ctx.now.instant.saturating_add(ctx.policy.settle)));
            return Effect::None;
        }
        match self.record.phase {
            Phase::RollingBack { cause, .. } => {
                self.backward(ctx, swap, (step.old, step.new), cause, now_seen)
            }
            _ => self.forward(ctx, swap, step.old, step.new, now_seen),
        }
    }

    /// Keeps what an observation showed, for a failure to report.
    fn see(&mut self, now: Seen) {
        if let Phase::LockStep { seen, .. } | Phase::RollingBack { seen, .. } =
            &mut self.record.phase
        {
            *seen = now;
        }
    }

    /// A step went wrong: roll back, or fail. Where a failure leaves the bundles is reported
    /// as they were last seen, never as the scales that were asked for: a request that was
    /// refused, or accepted and not carried out yet, says nothing of where they are.
    fn fault(&mut self, ctx: Ctx, doing: Doing, fault: Fault) -> Effect {
        let cause = Cause::Step { doing, fault };
        match self.record.phase {
            Phase::LockStep { swap, step, seen } if ctx.policy.rollback == RollbackPolicy::On => {
                self.backward(ctx, swap, (step.old, step.new), cause, seen)
            }
            Phase::LockStep { seen, .. } => {
                let failure = Failure {
                    cause,
                    rollback: Rollback::Off {
                        old: seen.old,
                        new: seen.new,
                    },
                };
                self.end(ctx, Outcome::Failed(failure))
            }
            Phase::RollingBack {
                cause: first, seen, ..
            } => {
                let failure = Failure {
                    cause: first,
                    rollback: Rollback::Failed {
                        doing,
                        fault,
                        old: seen.old,
                        new: seen.new,
                    },
                };
                self.end(ctx, Outcome::Failed(failure))
            }
            _ => self.fail(ctx, cause),
        }
    }

    /// Ends a deployment that changed nothing in the cluster (superseded, or failed before
    /// its lock-step).
    pub(super) fn fail(&mut self, ctx: Ctx, cause: Cause) -> Effect {
        let failure = Failure {
            cause,
            rollback: Rollback::NotNeeded,
        };
        self.end(ctx, Outcome::Failed(failure))
    }

    fn succeed(&mut self, ctx: Ctx, nothing_to_do: bool) -> Effect {
        self.end(ctx, Outcome::Succeeded { nothing_to_do })
    }

    fn end(&mut self, ctx: Ctx, outcome: Outcome) -> Effect {
        let freed = if self.is_active() {
            self.record.key()
        } else {
            None
        };
        let end = End {
            outcome,
            at: ctx.now.unix,
            plan: self.record.phase.plan(),
            new: self.record.phase.new_bundle(),
        };
        self.record.phase = Phase::Ended(end);
        let seq = self.take_seq();
        let kind = match outcome {
            Outcome::Succeeded { .. } => EventKind::DeploymentSuccess,
            Outcome::Failed(failure) => EventKind::DeploymentFailure(failure),
        };
        let event = Event {
            deployment: self.record.request.id,
            seq,
            kind,
        };
        self.run = Run::Ended { event: Some(event) };
        Effect::Ended { freed }
    }
}

/// The started instances of an observation's old (if any) and new bundles.
fn seen(old: Option<&BundleView<'_>>, new: &BundleView<'_>) -> Seen {
    Seen {
        old: old.map_or(0, |b| b.started),
        new: new.started,
    }
}

/// The old (if any) and new bundles of a swap in an observation; `None` when one of them is
/// no longer loaded.
fn observe<'v, 'a>(
    swap: &Swap,
    bundles: &'v [BundleView<'a>],
) -> Option<(Option<&'v BundleView<'a>>, &'v BundleView<'a>)> {
    let find = |id: BundleId| bundles.iter().find(|b| b.id == id);
    let new = find(swap.new)?;
    let old = match swap.plan.old {
        Some(id) => Some(find(id)?),
        None => None,
    };
    Some((old, new))
}
