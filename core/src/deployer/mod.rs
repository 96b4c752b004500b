//! The lock-step deployer: a sans-IO state machine that turns verified notifications and
//! observations of the cluster into ConductR commands and progress events (DESIGN.md "The
//! deployment, step by step"; events: PROTOCOL.md §2).
//!
//! It reads no clock, draws no random number (deployment ids come in with the [`Request`]),
//! allocates nothing and never panics. Time arrives as an argument ([`Now`]) and time-outs as
//! an input ([`Input::Timeout`]). The agent carries out its [`Command`]s and answers each with
//! an [`Input::Reply`] carrying the command's token; a late or duplicate answer is ignored.
//!
//! # The rules it enforces
//! 1. Admission: a notified digest already in a deployment that has not ended answers that
//!    deployment's id (redelivery); otherwise a deployment is created and logs
//!    `deploymentStarted`; a full table answers busy and creates nothing.
//! 2. Resolving: the agent downloads the bundle, checks its digest and reads its bundle.conf,
//!    whose name must be the package; its compatibilityVersion completes the key.
//! 3. One deployment per (name, compatibilityVersion) at a time; a resolved deployment whose key
//!    is busy waits as the key's single pending one, superseded by any deployment of the key
//!    notified later; one notified earlier than the active or pending one ends at once.
//! 4. Target: exactly one running compatible bundle (narrowed by `?tag=`) is replaced; none
//!    fails, or starts the new one at scale 1 (policy); several fail, naming them. The same
//!    digest already running alone: success, nothing to do.
//! 5. The old bundle's configuration is fetched and the new bundle loaded with it.
//! 6. Lock-step with absolute scales from N: new up by one, wait until started; old down by one,
//!    wait until stopped; until new is at N and old at 0. Each step has a deadline.
//! 7. A failure in the lock-step rolls it back (policy): old up by one, new down by one, until
//!    old is at N and new at 0, within the same bounds; the failure says what the rollback did.
//! 8. Every step is an event of PROTOCOL.md §2.
//! 9. A deployment resumes from its [`Record`] ([`Input::Resume`]): the step it stood at is
//!    requested again (absolute scales make that idempotent) and the next observation decides.
//!
//! Nothing is ever unloaded: there is no command for it.

mod cluster;
mod event;
mod record;

use crate::bundle::{BundleId, Digest};
use crate::time::{Duration, Instant, Now};

pub use cluster::{BundleView, MAX_BUNDLE_TAGS};
pub use event::{
    EVENT_JSON_MAX, Event, EventKind, EventLog, EventType, LOG_CAPACITY, LOG_JSON_MAX,
    SSE_HEARTBEAT, write_sse,
};
pub use record::{
    Cause, CommandError, DeploymentId, DeploymentIdError, Doing, Failure, Fault, Name, Outcome,
    Phase, Record, Request, Rollback, SEVERAL_SHOWN, Side, State, Step, Tags, name,
};

/// What to do when no compatible bundle runs (DESIGN.md step 4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum NothingRunning {
    /// Fail: "no running bundle ..." (the default: a webhook should not start what an operator
    /// never ran).
    #[default]
    Fail,
    /// Load the new bundle and start it at scale 1.
    StartOne,
}

/// Whether a failed lock-step is run backwards (DESIGN.md step 7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RollbackPolicy {
    /// Roll back (the default).
    #[default]
    On,
    /// Leave the bundles where they stand and say so.
    Off,
}

/// The deployer's policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Policy {
    /// When no compatible bundle runs.
    pub nothing_running: NothingRunning,
    /// After a failure in the lock-step.
    pub rollback: RollbackPolicy,
    /// How long each step may take: a control API request and, for a scale, the wait for the
    /// instances to start or stop. Default 2 minutes.
    pub step_deadline: Duration,
    /// How long resolving may take: download, digest check, bundle.conf. Default 10 minutes.
    pub resolve_deadline: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            nothing_running: NothingRunning::Fail,
            rollback: RollbackPolicy::On,
            step_deadline: Duration::from_secs(120),
            resolve_deadline: Duration::from_secs(600),
        }
    }
}

/// An input to [`Deployer::handle`].
#[derive(Clone, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "no allocation to box into: values are moved, and the sizes are documented"
)]
pub enum Input<'a> {
    /// A verified notification (the service checked its signature).
    Notify(Request),
    /// The agent's answer to a [`Command`].
    Reply {
        /// The command's deployment.
        deployment: DeploymentId,
        /// The command's token.
        token: u32,
        /// The answer.
        reply: Reply<'a>,
    },
    /// The time of [`Deployer::poll_timeout`] has come (an early or spurious one does nothing).
    Timeout,
    /// A deployment read back from its persisted [`Record`], after a restart. Resume records
    /// in their `order`, oldest first, so that a key's active deployment returns before its
    /// pending one.
    Resume(Record),
}

/// How the agent answers a [`Command`].
#[derive(Clone, Debug)]
pub enum Reply<'a> {
    /// [`CommandKind::Resolve`] done: the bundle's bundle.conf says this.
    Resolved {
        /// `name`.
        name: &'a str,
        /// `compatibilityVersion` (or `compatibility-version`).
        compatibility_version: &'a str,
    },
    /// [`CommandKind::FetchConfig`] done: the old bundle's configuration has this digest.
    ConfigFetched {
        /// The SHA-256 of the configuration zip.
        config: Digest,
    },
    /// [`CommandKind::Load`] done: the control API loaded the bundle under this id.
    Loaded {
        /// The id.
        id: BundleId,
    },
    /// [`CommandKind::Scale`] accepted.
    Scaled,
    /// [`CommandKind::Observe`] done: the loaded bundles of that name (others are ignored).
    Observed {
        /// The bundles.
        bundles: &'a [BundleView<'a>],
    },
    /// The command failed, after the agent's retries.
    Failed(CommandError),
}

/// What [`Deployer::handle`] made of an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Handled {
    /// A notification was admitted: a new deployment, or a redelivery of one that has not
    /// ended (the service answers 202 with the id).
    Admitted {
        /// The deployment's id.
        id: DeploymentId,
        /// Whether it already existed.
        redelivery: bool,
    },
    /// The table is full (or the request's id is taken): nothing was created (503).
    Busy,
    /// A record was resumed.
    Resumed,
    /// The input moved a deployment on.
    Applied,
    /// Nothing to do: a stale or duplicate reply, an unknown deployment, an early time-out, a
    /// record of a deployment that ended or is already here.
    Ignored,
}

/// Something the agent must do for a deployment; its answer is an [`Input::Reply`] with the
/// same deployment and token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Command {
    /// The deployment.
    pub deployment: DeploymentId,
    /// Identifies this command: a reply with another token is ignored.
    pub token: u32,
    /// What to do.
    pub kind: CommandKind,
}

/// The commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(
    clippy::large_enum_variant,
    reason = "no allocation to box into: values are moved, and the sizes are documented"
)]
pub enum CommandKind {
    /// Download `{org}/{repo}/{org}/{package}/{tag}-{digest}` from the repository, check its
    /// SHA-256 against `digest`, read its bundle.conf: answer [`Reply::Resolved`].
    Resolve {
        /// The organisation.
        org: Name,
        /// The repository.
        repo: Name,
        /// The package.
        package: Name,
        /// The version's tag.
        tag: Name,
        /// The version's digest.
        digest: Digest,
    },
    /// List the loaded bundles named `name`: answer [`Reply::Observed`]. When the previous
    /// observation was of the same deployment, answer once something may have changed (a
    /// bundle event, or the poll interval), not at once.
    Observe {
        /// The bundle name.
        name: Name,
    },
    /// Fetch the configuration `bundle` was loaded with: answer [`Reply::ConfigFetched`].
    FetchConfig {
        /// The old bundle.
        bundle: BundleId,
    },
    /// Load the resolved bundle with the fetched configuration, if any (a bundle already
    /// loaded under the expected id is not loaded again): answer [`Reply::Loaded`].
    Load {
        /// The bundle's digest.
        digest: Digest,
        /// The configuration's digest.
        config: Option<Digest>,
    },
    /// Set the absolute scale of `bundle`: answer [`Reply::Scaled`].
    Scale {
        /// The bundle.
        bundle: BundleId,
        /// The scale.
        scale: u32,
    },
}

/// What [`Deployer::poll`] hands out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(
    clippy::large_enum_variant,
    reason = "no allocation to box into: values are moved, and the sizes are documented"
)]
pub enum Output {
    /// For the agent.
    Command(Command),
    /// For the deployment's [`EventLog`] and the event stream.
    Event(Event),
    /// A deployment ended and left the table: its final record, to retain (its last event
    /// came before).
    Ended(Record),
}

/// Events waiting to be polled out of one slot; their payloads come from the record.
const PENDING_EVENTS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum Pending {
    Started,
    BundleDownload,
    ConfigDownload,
    Load,
    Deploy { old: u32, new: u32 },
    Success,
    Failure,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Slot {
    record: Record,
    /// The token of the latest command issued.
    token: u32,
    /// The latest command waits to be polled out.
    command: bool,
    deadline: Option<Instant>,
    events: heapless::Vec<(u32, Pending), PENDING_EVENTS>,
    /// Ended: the slot is freed once its outputs are polled.
    ended: bool,
}

impl Slot {
    fn new(record: Record) -> Self {
        Self {
            record,
            token: 0,
            command: false,
            deadline: None,
            events: heapless::Vec::new(),
            ended: false,
        }
    }

    fn is_active(&self) -> bool {
        !self.ended
            && matches!(
                self.record.phase,
                Phase::Targeting
                    | Phase::FetchingConfig
                    | Phase::Loading
                    | Phase::Observing
                    | Phase::LockStep(_)
                    | Phase::RollingBack(_)
            )
    }

    fn is_queued(&self) -> bool {
        !self.ended && self.record.phase == Phase::Queued
    }

    fn has_key(&self, package: &Name, compatibility_version: &Name) -> bool {
        self.record.request.package == *package
            && self.record.compatibility_version.as_ref() == Some(compatibility_version)
    }

    fn push_event(&mut self, pending: Pending) {
        let seq = self.record.next_seq;
        self.record.next_seq = seq.saturating_add(1);
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
        let _ = self.events.push((seq, pending));
    }

    /// Issues the command the phase calls for: a new token, to be polled out.
    fn issue(&mut self) {
        self.token = self.token.wrapping_add(1);
        self.command = self.command_kind().is_some();
    }

    fn command_kind(&self) -> Option<CommandKind> {
        let r = &self.record;
        let observe = CommandKind::Observe {
            name: r.request.package,
        };
        Some(match r.phase {
            Phase::Resolving => CommandKind::Resolve {
                org: r.request.org,
                repo: r.request.repo,
                package: r.request.package,
                tag: r.request.tag,
                digest: r.request.digest,
            },
            Phase::Targeting | Phase::Observing => observe,
            Phase::FetchingConfig => CommandKind::FetchConfig { bundle: r.old? },
            Phase::Loading => CommandKind::Load {
                digest: r.request.digest,
                config: r.config,
            },
            Phase::LockStep(step) | Phase::RollingBack(step) if step.waiting => observe,
            Phase::LockStep(step) | Phase::RollingBack(step) => CommandKind::Scale {
                bundle: match step.moved {
                    Side::Old => r.old?,
                    Side::New => r.new?,
                },
                scale: step.of(step.moved),
            },
            Phase::Queued | Phase::Ended => return None,
        })
    }

    fn event(&self, seq: u32, pending: Pending) -> Option<Event> {
        let r = &self.record;
        let kind = match pending {
            Pending::Started => EventKind::DeploymentStarted {
                bundle_name: r.request.package,
                compatible_version: r.request.tag,
            },
            Pending::BundleDownload => EventKind::BundleDownload,
            Pending::ConfigDownload => EventKind::ConfigDownload { from: r.old? },
            Pending::Load => EventKind::Load { config: r.config },
            Pending::Deploy { old, new } => EventKind::Deploy { old, new },
            Pending::Success => EventKind::DeploymentSuccess,
            Pending::Failure => EventKind::DeploymentFailure(*r.failure()?),
        };
        Some(Event {
            deployment: r.request.id,
            seq,
            kind,
        })
    }
}

/// The lock-step deployer, with room for `N` deployments that have not ended.
///
/// # Driving it
/// The runtime owns the clock, the sockets and the agent, and drives the machine in a loop:
///
/// 1. When an input arrives — a verified notification, an agent's reply, a resumed record — or
///    the time of [`poll_timeout`](Self::poll_timeout) has come, call
///    [`handle`](Self::handle)`(now, input)` (the time-out as [`Input::Timeout`]).
/// 2. Then drain: call [`poll`](Self::poll) until it answers `None`, before the next input.
///    Give each [`Output::Command`] to the agent, append each [`Output::Event`] to its
///    deployment's [`EventLog`] and to the event stream, and retain each [`Output::Ended`].
/// 3. Arm the timer for [`poll_timeout`](Self::poll_timeout), if any.
/// 4. Wait for the next input or the timer, and go to 1.
///
/// The drain rule matters: outputs wait in small per-deployment queues, and a runtime that
/// handles many inputs without polling will see intermediate `deploy` events compacted.
///
/// # Size
/// Each deployment takes a fixed slot (a [`Record`] with its pending outputs), so the size is
/// linear in `N`: on 64-bit targets `size_of::<Deployer<8>>()` is 12,072 bytes and
/// `size_of::<Deployer<64>>()` 96,296 (a test keeps these figures true). Most of a record is
/// inline names: package, tag, organisation, repository, compatibilityVersion and up to eight
/// `?tag=` values of 64 bytes each.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Deployer<const N: usize> {
    slots: [Option<Slot>; N],
    policy: Policy,
    next_order: u64,
    /// Where [`poll`](Self::poll) looks first, so that no deployment starves another.
    cursor: usize,
}

impl<const N: usize> Deployer<N> {
    /// An empty deployer with these policies.
    pub const fn new(policy: Policy) -> Self {
        Self {
            slots: [const { None }; N],
            policy,
            next_order: 0,
            cursor: 0,
        }
    }

    /// Its policies.
    pub const fn policy(&self) -> &Policy {
        &self.policy
    }

    /// How many deployments it can hold.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// How many deployments are in the table (not ended, or ended but not yet polled out).
    pub fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The record of a deployment in the table.
    pub fn record(&self, id: DeploymentId) -> Option<&Record> {
        self.slots
            .iter()
            .flatten()
            .map(|slot| &slot.record)
            .find(|record| record.request.id == id)
    }

    /// The records of every deployment in the table, for a runtime to persist.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.slots.iter().flatten().map(|slot| &slot.record)
    }

    /// The earliest deadline of a deployment, when [`Input::Timeout`] is due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.slots
            .iter()
            .flatten()
            .filter(|slot| !slot.ended)
            .filter_map(|slot| slot.deadline)
            .min()
    }

    /// The next output, or `None` when there is nothing to do until the next input.
    #[must_use]
    pub fn poll(&mut self) -> Option<Output> {
        for offset in 0..N {
            let index = self.cursor.wrapping_add(offset).checked_rem(N).unwrap_or(0);
            let Some(entry) = self.slots.get_mut(index) else {
                continue;
            };
            let Some(slot) = entry.as_mut() else {
                continue;
            };
            let output = if !slot.events.is_empty() {
                let (seq, pending) = slot.events.remove(0);
                slot.event(seq, pending).map(Output::Event)
            } else if slot.command {
                slot.command = false;
                slot.command_kind().map(|kind| {
                    Output::Command(Command {
                        deployment: slot.record.request.id,
                        token: slot.token,
                        kind,
                    })
                })
            } else if slot.ended {
                entry.take().map(|slot| Output::Ended(slot.record))
            } else {
                None
            };
            if output.is_some() {
                self.cursor = index.wrapping_add(1).checked_rem(N).unwrap_or(0);
                return output;
            }
        }
        None
    }

    /// Feeds one input to the machine; then drain [`poll`](Self::poll).
    pub fn handle(&mut self, now: Now, input: Input<'_>) -> Handled {
        match input {
            Input::Notify(request) => self.notify(now, request),
            Input::Reply {
                deployment,
                token,
                reply,
            } => self.reply(now, deployment, token, reply),
            Input::Timeout => self.timeout(now),
            Input::Resume(record) => self.resume(now, record),
        }
    }

    // ---- inputs -----------------------------------------------------------------------------

    fn notify(&mut self, now: Now, request: Request) -> Handled {
        let existing = self.slots.iter().flatten().find(|slot| {
            (!slot.ended && slot.record.request.digest == request.digest)
                || slot.record.request.id == request.id
        });
        if let Some(slot) = existing {
            return if !slot.ended && slot.record.request.digest == request.digest {
                Handled::Admitted {
                    id: slot.record.request.id,
                    redelivery: true,
                }
            } else {
                Handled::Busy
            };
        }
        let Some(free) = self.slots.iter_mut().find(|slot| slot.is_none()) else {
            return Handled::Busy;
        };
        let order = self.next_order;
        self.next_order = order.saturating_add(1);
        let mut slot = Slot::new(Record {
            request,
            order,
            compatibility_version: None,
            phase: Phase::Resolving,
            old: None,
            scale: 0,
            config: None,
            new: None,
            cause: None,
            outcome: None,
            ended_at: None,
            next_seq: 1,
        });
        slot.push_event(Pending::Started);
        slot.push_event(Pending::BundleDownload);
        slot.deadline = Some(now.instant.saturating_add(self.policy.resolve_deadline));
        slot.issue();
        *free = Some(slot);
        Handled::Admitted {
            id: request.id,
            redelivery: false,
        }
    }

    fn resume(&mut self, now: Now, mut record: Record) -> Handled {
        if record.outcome.is_some() || record.phase == Phase::Ended {
            return Handled::Ignored;
        }
        let here = self.slots.iter().flatten().any(|slot| {
            slot.record.request.id == record.request.id
                || (!slot.ended && slot.record.request.digest == record.request.digest)
        });
        if here {
            return Handled::Ignored;
        }
        let Some(index) = self.slots.iter().position(Option::is_none) else {
            return Handled::Busy;
        };
        self.next_order = self.next_order.max(record.order.saturating_add(1));
        let deadline = match &mut record.phase {
            Phase::Resolving => Some(self.policy.resolve_deadline),
            Phase::Queued | Phase::Ended => None,
            Phase::LockStep(step) | Phase::RollingBack(step) => {
                // Request the step's scale again: absolute, so idempotent.
                step.waiting = false;
                Some(self.policy.step_deadline)
            }
            Phase::Targeting | Phase::FetchingConfig | Phase::Loading | Phase::Observing => {
                Some(self.policy.step_deadline)
            }
        };
        let queued = record.phase == Phase::Queued;
        let mut slot = Slot::new(record);
        slot.deadline = deadline.map(|d| now.instant.saturating_add(d));
        slot.issue();
        if let Some(entry) = self.slots.get_mut(index) {
            *entry = Some(slot);
        }
        if queued {
            self.schedule(now, index);
        }
        Handled::Resumed
    }

    fn timeout(&mut self, now: Now) -> Handled {
        let mut handled = Handled::Ignored;
        for index in 0..N {
            let due = self
                .slot(index)
                .is_some_and(|slot| !slot.ended && slot.deadline.is_some_and(|d| d <= now.instant));
            if !due {
                continue;
            }
            handled = Handled::Applied;
            let Some(phase) = self.slot(index).map(|slot| slot.record.phase) else {
                continue;
            };
            match phase {
                Phase::Resolving => self.fail(now, index, Cause::ResolveDeadline),
                Phase::Targeting => self.fault(now, index, Doing::Targeting, Fault::Deadline),
                Phase::FetchingConfig => {
                    self.fault(now, index, Doing::FetchingConfig, Fault::Deadline);
                }
                Phase::Loading => self.fault(now, index, Doing::Loading, Fault::Deadline),
                Phase::Observing => self.fault(now, index, Doing::Observing, Fault::Deadline),
                Phase::LockStep(step) | Phase::RollingBack(step) => {
                    self.fault(now, index, scaling(&step), Fault::Deadline);
                }
                Phase::Queued | Phase::Ended => {
                    if let Some(slot) = self.slot_mut(index) {
                        slot.deadline = None;
                    }
                }
            }
        }
        handled
    }

    fn reply(&mut self, now: Now, id: DeploymentId, token: u32, reply: Reply<'_>) -> Handled {
        let Some(index) = self.slots.iter().position(|slot| {
            slot.as_ref()
                .is_some_and(|s| s.record.request.id == id && !s.ended)
        }) else {
            return Handled::Ignored;
        };
        let Some(slot) = self.slot(index) else {
            return Handled::Ignored;
        };
        // Only an answer to the latest command, once it was handed out, counts.
        if slot.token != token || slot.command {
            return Handled::Ignored;
        }
        let phase = slot.record.phase;
        match (phase, reply) {
            (
                Phase::Resolving,
                Reply::Resolved {
                    name,
                    compatibility_version,
                },
            ) => self.resolved(now, index, name, compatibility_version),
            (Phase::Resolving, Reply::Failed(e)) => self.fail(now, index, Cause::Resolve(e)),
            (Phase::Targeting, Reply::Observed { bundles }) => self.target(now, index, bundles),
            (Phase::FetchingConfig, Reply::ConfigFetched { config }) => {
                self.config_fetched(now, index, config);
            }
            (Phase::Loading, Reply::Loaded { id }) => self.loaded(now, index, id),
            (Phase::Observing, Reply::Observed { bundles }) => self.first_look(now, index, bundles),
            (Phase::LockStep(step) | Phase::RollingBack(step), Reply::Scaled) if !step.waiting => {
                if let Some(slot) = self.slot_mut(index) {
                    let waiting = Step {
                        waiting: true,
                        ..step
                    };
                    slot.record.phase = match phase {
                        Phase::RollingBack(_) => Phase::RollingBack(waiting),
                        _ => Phase::LockStep(waiting),
                    };
                    slot.issue();
                }
            }
            (Phase::LockStep(step) | Phase::RollingBack(step), Reply::Observed { bundles })
                if step.waiting =>
            {
                self.step_observed(now, index, step, bundles);
            }
            (phase, Reply::Failed(e)) => {
                let doing = match phase {
                    Phase::Targeting => Doing::Targeting,
                    Phase::FetchingConfig => Doing::FetchingConfig,
                    Phase::Loading => Doing::Loading,
                    Phase::Observing => Doing::Observing,
                    Phase::LockStep(step) | Phase::RollingBack(step) => scaling(&step),
                    Phase::Resolving | Phase::Queued | Phase::Ended => return Handled::Ignored,
                };
                self.fault(now, index, doing, Fault::Command(e));
            }
            _ => return Handled::Ignored,
        }
        Handled::Applied
    }

    // ---- steps ------------------------------------------------------------------------------

    /// Step 2 done: check the name, complete the key, then step 3.
    fn resolved(&mut self, now: Now, index: usize, name: &str, compatibility_version: &str) {
        let Some(slot) = self.slot_mut(index) else {
            return;
        };
        if name != slot.record.request.package.as_str() {
            let found = Name::truncated(name);
            return self.fail(now, index, Cause::NameMismatch { found });
        }
        let Ok(compatibility_version) = Name::new(compatibility_version) else {
            return self.fail(now, index, Cause::Resolve(CommandError::BadBundleConf));
        };
        slot.record.compatibility_version = Some(compatibility_version);
        slot.record.phase = Phase::Queued;
        slot.deadline = None;
        slot.command = false;
        self.schedule(now, index);
    }

    /// Step 3: become the key's active deployment, its pending one, or superseded.
    fn schedule(&mut self, now: Now, index: usize) {
        let Some(me) = self.slot(index).map(|slot| slot.record) else {
            return;
        };
        let Some(compat) = me.compatibility_version else {
            return;
        };
        let other = |pick: fn(&Slot) -> bool| {
            self.slots
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != index)
                .filter_map(|(i, slot)| Some((i, slot.as_ref()?)))
                .find(|(_, slot)| pick(slot) && slot.has_key(&me.request.package, &compat))
                .map(|(i, slot)| (i, slot.record.order, slot.record.request.id))
        };
        let active = other(Slot::is_active);
        let pending = other(Slot::is_queued);
        if let Some((_, order, by)) = active
            && order > me.order
        {
            return self.fail(now, index, Cause::Superseded { by });
        }
        match pending {
            Some((_, order, by)) if order > me.order => {
                self.fail(now, index, Cause::Superseded { by });
            }
            Some((p, _, _)) => {
                self.fail(now, p, Cause::Superseded { by: me.request.id });
                if active.is_none() {
                    self.start_targeting(now, index);
                }
            }
            None if active.is_none() => self.start_targeting(now, index),
            // The key is busy: wait as its pending deployment.
            None => {}
        }
    }

    fn start_targeting(&mut self, now: Now, index: usize) {
        let deadline = now.instant.saturating_add(self.policy.step_deadline);
        if let Some(slot) = self.slot_mut(index) {
            slot.record.phase = Phase::Targeting;
            slot.deadline = Some(deadline);
            slot.issue();
        }
    }

    /// Step 4: pick the bundle to replace.
    fn target(&mut self, now: Now, index: usize, bundles: &[BundleView<'_>]) {
        let policy = self.policy;
        let Some(slot) = self.slot_mut(index) else {
            return;
        };
        let request = slot.record.request;
        let Some(compat) = slot.record.compatibility_version else {
            return;
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
        let mut ids = [None; SEVERAL_SHOWN];
        for (slot, b) in ids.iter_mut().zip(candidates()) {
            *slot = Some(b.id);
        }
        let count = u32::try_from(candidates().count()).unwrap_or(u32::MAX);
        match (count, ids.first().copied().flatten()) {
            (0, _) if new_running => self.succeed(now, index, true),
            (0, _) if policy.nothing_running == NothingRunning::StartOne => {
                slot.record.old = None;
                slot.record.scale = 1;
                self.begin_load(now, index);
            }
            (0, _) => {
                let running = named()
                    .find(|b| b.is_running() && b.compatibility_version != compat.as_str())
                    .map(|b| Name::truncated(b.compatibility_version));
                let cause = Cause::NoRunning {
                    compatibility_version: compat,
                    running,
                    narrowed: !request.tags.is_empty(),
                };
                self.fail(now, index, cause);
            }
            (1, Some(old)) if new_running => self.fail(now, index, Cause::AlreadyBeside { old }),
            (1, Some(old)) => {
                let scale = candidates()
                    .map(BundleView::target_scale)
                    .next()
                    .unwrap_or(1);
                slot.record.old = Some(old);
                slot.record.scale = scale.max(1);
                if old.has_config() {
                    slot.record.phase = Phase::FetchingConfig;
                    slot.push_event(Pending::ConfigDownload);
                    slot.deadline = Some(now.instant.saturating_add(policy.step_deadline));
                    slot.issue();
                } else {
                    self.begin_load(now, index);
                }
            }
            _ => self.fail(now, index, Cause::Several { count, ids }),
        }
    }

    /// Step 5, with the configuration fetched.
    fn config_fetched(&mut self, now: Now, index: usize, config: Digest) {
        let Some(slot) = self.slot_mut(index) else {
            return;
        };
        if !slot.record.old.is_some_and(|old| old.is_of_config(&config)) {
            return self.fail(now, index, Cause::ConfigMismatch);
        }
        slot.record.config = Some(config);
        self.begin_load(now, index);
    }

    fn begin_load(&mut self, now: Now, index: usize) {
        let deadline = now.instant.saturating_add(self.policy.step_deadline);
        if let Some(slot) = self.slot_mut(index) {
            slot.record.phase = Phase::Loading;
            slot.push_event(Pending::Load);
            slot.deadline = Some(deadline);
            slot.issue();
        }
    }

    fn loaded(&mut self, now: Now, index: usize, id: BundleId) {
        let deadline = now.instant.saturating_add(self.policy.step_deadline);
        let Some(slot) = self.slot_mut(index) else {
            return;
        };
        let expected = BundleId::of(&slot.record.request.digest, slot.record.config.as_ref());
        if id != expected {
            return self.fail(now, index, Cause::LoadedIdMismatch { id });
        }
        slot.record.new = Some(id);
        slot.record.phase = Phase::Observing;
        slot.deadline = Some(deadline);
        slot.issue();
    }

    /// Step 6 begins: log where it starts (N v 0), then the first step.
    fn first_look(&mut self, now: Now, index: usize, bundles: &[BundleView<'_>]) {
        let Some(slot) = self.slot_mut(index) else {
            return;
        };
        let Some((old, new)) = observe(&slot.record, bundles) else {
            return self.fault(now, index, Doing::Observing, Fault::Vanished);
        };
        slot.push_event(Pending::Deploy {
            old: old.map_or(0, |b| b.started),
            new: new.started,
        });
        let from_old = if slot.record.old.is_some() {
            slot.record.scale
        } else {
            0
        };
        self.forward(now, index, from_old, 0);
    }

    /// The next step of the lock-step from requested scales (old, new), or success.
    fn forward(&mut self, now: Now, index: usize, old: u32, new: u32) {
        let Some(slot) = self.slot(index) else {
            return;
        };
        let n = slot.record.scale;
        let step = if new >= n && old == 0 {
            return self.succeed(now, index, false);
        } else if old.saturating_add(new) > n {
            Step {
                old: old.saturating_sub(1),
                new,
                moved: Side::Old,
                up: false,
                waiting: false,
            }
        } else {
            Step {
                old,
                new: new.saturating_add(1),
                moved: Side::New,
                up: true,
                waiting: false,
            }
        };
        self.set_step(now, index, Phase::LockStep(step));
    }

    /// The next step of the rollback from requested scales (old, new), or its end.
    fn backward(&mut self, now: Now, index: usize, old: u32, new: u32) {
        let Some(slot) = self.slot(index) else {
            return;
        };
        let n = slot.record.scale;
        let full = if slot.record.old.is_some() { n } else { 0 };
        let down = Step {
            old,
            new: new.saturating_sub(1),
            moved: Side::New,
            up: false,
            waiting: false,
        };
        let step = if old.saturating_add(new) > n {
            down
        } else if old < full {
            Step {
                old: old.saturating_add(1),
                new,
                moved: Side::Old,
                up: true,
                waiting: false,
            }
        } else if new > 0 {
            down
        } else {
            let cause = slot.record.cause.unwrap_or(Cause::Step {
                doing: Doing::Observing,
                fault: Fault::Deadline,
            });
            let failure = Failure {
                cause,
                rollback: Rollback::Completed { old: full },
            };
            return self.end(now, index, Outcome::Failed(failure));
        };
        self.set_step(now, index, Phase::RollingBack(step));
    }

    fn set_step(&mut self, now: Now, index: usize, phase: Phase) {
        let deadline = now.instant.saturating_add(self.policy.step_deadline);
        if let Some(slot) = self.slot_mut(index) {
            slot.record.phase = phase;
            slot.deadline = Some(deadline);
            slot.issue();
        }
    }

    /// An observation while waiting for a step's instances.
    fn step_observed(&mut self, now: Now, index: usize, step: Step, bundles: &[BundleView<'_>]) {
        let Some(slot) = self.slot_mut(index) else {
            return;
        };
        let Some((old, new)) = observe(&slot.record, bundles) else {
            return self.fault(now, index, scaling(&step), Fault::Vanished);
        };
        let moved = match step.moved {
            Side::Old => old.unwrap_or(new),
            Side::New => new,
        };
        if step.up && moved.has_error {
            return self.fault(now, index, scaling(&step), Fault::InstanceError);
        }
        let target = step.of(step.moved);
        let reached = if step.up {
            moved.started >= target
        } else {
            moved.started <= target
        };
        if !reached {
            // Not yet: look again (the agent paces it); the step's deadline stands.
            slot.issue();
            return;
        }
        slot.push_event(Pending::Deploy {
            old: old.map_or(0, |b| b.started),
            new: new.started,
        });
        if matches!(slot.record.phase, Phase::RollingBack(_)) {
            self.backward(now, index, step.old, step.new);
        } else {
            self.forward(now, index, step.old, step.new);
        }
    }

    /// A step went wrong: roll back, or fail.
    fn fault(&mut self, now: Now, index: usize, doing: Doing, fault: Fault) {
        let rollback = self.policy.rollback;
        let Some(slot) = self.slot_mut(index) else {
            return;
        };
        let cause = Cause::Step { doing, fault };
        // A refused scale request did not take effect: the scales to report are those of the
        // step before. The rollback itself starts from the request as if it had taken effect:
        // from either pair its steps stay within N-1..N+1, and after a restart the pair before
        // is not known.
        let reported = |step: Step| {
            if matches!(fault, Fault::Command(_)) && !step.waiting {
                step.undone()
            } else {
                step
            }
        };
        match slot.record.phase {
            Phase::LockStep(step) if rollback == RollbackPolicy::On => {
                slot.record.cause = Some(cause);
                self.backward(now, index, step.old, step.new);
            }
            Phase::LockStep(step) => {
                let left = reported(step);
                let failure = Failure {
                    cause,
                    rollback: Rollback::Off {
                        old: left.old,
                        new: left.new,
                    },
                };
                self.end(now, index, Outcome::Failed(failure));
            }
            Phase::RollingBack(step) => {
                let left = reported(step);
                let failure = Failure {
                    cause: slot.record.cause.unwrap_or(cause),
                    rollback: Rollback::Failed {
                        doing,
                        fault,
                        old: left.old,
                        new: left.new,
                    },
                };
                self.end(now, index, Outcome::Failed(failure));
            }
            _ => self.fail(now, index, cause),
        }
    }

    /// Ends a deployment that changed nothing in the cluster.
    fn fail(&mut self, now: Now, index: usize, cause: Cause) {
        let failure = Failure {
            cause,
            rollback: Rollback::NotNeeded,
        };
        self.end(now, index, Outcome::Failed(failure));
    }

    fn succeed(&mut self, now: Now, index: usize, nothing_to_do: bool) {
        self.end(now, index, Outcome::Succeeded { nothing_to_do });
    }

    fn end(&mut self, now: Now, index: usize, outcome: Outcome) {
        let Some(slot) = self.slot_mut(index) else {
            return;
        };
        let was_active = slot.is_active();
        slot.record.phase = Phase::Ended;
        slot.record.outcome = Some(outcome);
        slot.record.cause = None;
        slot.record.ended_at = Some(now.unix);
        slot.deadline = None;
        slot.command = false;
        slot.token = slot.token.wrapping_add(1);
        slot.ended = true;
        slot.push_event(match outcome {
            Outcome::Succeeded { .. } => Pending::Success,
            Outcome::Failed(_) => Pending::Failure,
        });
        let record = slot.record;
        if was_active {
            self.promote(now, &record);
        }
    }

    /// The key of `ended` is free: its pending deployment, if any, goes on.
    fn promote(&mut self, now: Now, ended: &Record) {
        let Some(compat) = ended.compatibility_version else {
            return;
        };
        let pending = self.slots.iter().position(|slot| {
            slot.as_ref()
                .is_some_and(|s| s.is_queued() && s.has_key(&ended.request.package, &compat))
        });
        if let Some(index) = pending {
            self.start_targeting(now, index);
        }
    }

    fn slot(&self, index: usize) -> Option<&Slot> {
        self.slots.get(index)?.as_ref()
    }

    fn slot_mut(&mut self, index: usize) -> Option<&mut Slot> {
        self.slots.get_mut(index)?.as_mut()
    }
}

/// The old (if any) and new bundles of a deployment in an observation; `None` when one of them
/// is no longer loaded.
fn observe<'v, 'a>(
    record: &Record,
    bundles: &'v [BundleView<'a>],
) -> Option<(Option<&'v BundleView<'a>>, &'v BundleView<'a>)> {
    let find = |id: BundleId| bundles.iter().find(|b| b.id == id);
    let new = find(record.new?)?;
    let old = match record.old {
        Some(id) => Some(find(id)?),
        None => None,
    };
    Some((old, new))
}

fn scaling(step: &Step) -> Doing {
    Doing::Scaling {
        side: step.moved,
        to: step.of(step.moved),
    }
}

#[cfg(test)]
mod tests;
