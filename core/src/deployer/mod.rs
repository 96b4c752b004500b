//! The lock-step deployer: a sans-IO state machine that turns verified notifications and
//! observations of the cluster into ConductR commands and progress events (docs/DESIGN.md "The
//! deployment, step by step"; events: docs/PROTOCOL.md §2).
//!
//! It reads no clock, draws no random number (deployment ids come in with the [`Request`]),
//! allocates nothing and never panics. Time arrives as an argument ([`Now`]) and time-outs as
//! an input ([`Deployer::handle_timeout`]). The agent carries out its [`Command`]s and answers
//! each with [`Deployer::handle_reply`]; a late or duplicate answer is ignored.
//!
//! The [`Deployer`] is the table: admission, the per-key schedule and the order in which
//! outputs are polled. Each deployment in it moves by its own steps (`deployment.rs`), as
//! quinn-proto splits its `Endpoint` and its `Connection`s.
//!
//! # The rules it enforces
//! 1. Admission: a notified digest already in a deployment that has not ended answers that
//!    deployment's id (redelivery); otherwise, below the in-flight limit and with room in the
//!    table, a deployment is created and logs `deploymentStarted`; else nothing is created and
//!    the answer is busy.
//! 2. Resolving: the agent downloads the bundle, checks its digest and reads its bundle.conf,
//!    whose name must be the package; its compatibilityVersion completes the key.
//! 3. One deployment per (name, compatibilityVersion) at a time; a resolved deployment whose key
//!    is busy waits as the key's single pending one, superseded by any deployment of the key
//!    notified later; one notified earlier than the active or pending one ends at once.
//! 4. Target: exactly one running compatible bundle (narrowed by `?tag=`) is replaced; none
//!    fails, or starts the new one at scale 1 (policy); several fail, naming them. The same
//!    digest already running alone: success, nothing to do.
//! 5. The old bundle's configuration is fetched and the new bundle loaded with it.
//! 6. Lock-step with absolute scales from N: new up by one, wait until started (with a settle
//!    time, then watched that long: an instance lost fails the step); old down by one,
//!    wait until stopped; until new is at N and old at 0. Each step has a deadline.
//! 7. A failure in the lock-step rolls it back (policy): old up by one, new down by one, until
//!    old is at N and new at 0, within the same bounds; the failure says what the rollback did.
//! 8. Every step is an event of docs/PROTOCOL.md §2.
//! 9. A deployment resumes from its [`Record`] ([`Deployer::handle_resume`]): the step it stood
//!    at is requested again (absolute scales make that idempotent) and the next observation
//!    decides.
//! 10. An operator may abort a deployment ([`Deployer::handle_abort`]): before its lock-step it
//!     ends failed, `aborted`; in the lock-step it is rolled back as after a failure (rollback
//!     off: stopped where it stands); a rollback under way goes on; an ended one is untouched.
//!
//! Nothing is ever unloaded: there is no command for it.

mod cluster;
mod deployment;
mod event;
pub mod persist;
mod record;

use core::fmt;

use crate::bundle::{BundleId, Digest};
use crate::time::{Duration, Instant, Now};
use deployment::{Ctx, Deployment, Effect, Polled};

pub use cluster::{BundleView, MAX_BUNDLE_TAGS};
pub use event::{
    EVENT_JSON_MAX, Event, EventKind, EventLog, EventType, LOG_CAPACITY, LOG_JSON_MAX,
    SSE_HEARTBEAT, write_sse,
};
pub use record::{
    Cause, CommandError, DEPLOYMENT_ID_LEN, DeploymentId, DeploymentIdError, Doing, End, Failure,
    Fault, Key, Moved, Name, Outcome, Phase, Plan, Record, Request, Rollback, SEVERAL_SHOWN, Seen,
    Side, State, Step, Swap, Tags, TooManyTags,
};

/// What to do when no compatible bundle runs (docs/DESIGN.md step 4).
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

/// Whether a failed lock-step is run backwards (docs/DESIGN.md step 7).
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
    /// How many deployments may be in flight at once, below the table's capacity: past it a
    /// notification is refused ([`Busy::InFlightLimit`]), after the redelivery check, so that
    /// a redelivery is still answered. Default: no limit but the capacity.
    pub max_in_flight: usize,
    /// How long the new bundle's instances are watched after each step that started one,
    /// before the lock-step goes on (rule 6): an instance lost meanwhile fails the step
    /// ([`Fault::Lost`]), which rule 7 rolls back. Default 0: no watch.
    pub settle: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            nothing_running: NothingRunning::Fail,
            rollback: RollbackPolicy::On,
            step_deadline: Duration::from_secs(120),
            resolve_deadline: Duration::from_secs(600),
            max_in_flight: usize::MAX,
            settle: Duration::ZERO,
        }
    }
}

/// How the agent answers a [`Command`] ([`Deployer::handle_reply`]).
#[derive(Clone, Debug)]
pub enum Reply<'a> {
    /// [`CommandKind::Resolve`] done: the bundle's bundle.conf says this.
    Resolved {
        /// `name`.
        name: &'a str,
        /// `compatibilityVersion` (or `compatibility-version`).
        compatibility_version: &'a str,
    },
    /// [`CommandKind::Screen`] done: `Some((tag, bundle))` when the repository's
    /// `versions.json` lists the new version before every running bundle of the package it
    /// lists (compared with `bundle`, listed earliest, whose version has this tag); `None`
    /// otherwise, or when nothing can be told (no running bundle listed, no index).
    Screened {
        /// The running version's tag and bundle, when the new version was published before.
        before: Option<(Name, BundleId)>,
    },
    /// [`CommandKind::Order`] done: `Some(tag)` when the repository's `versions.json` lists
    /// the new version before the old bundle (whose version has this tag); `None` when it lists
    /// it after, or cannot tell (either is absent, or there is no index).
    Ordered {
        /// The old bundle's version tag, when the new version was published before it.
        before: Option<Name>,
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

/// A notification admitted: the service answers 202 with the id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Admitted {
    /// The deployment's id.
    pub id: DeploymentId,
    /// Whether it already existed: a redelivery of a version whose deployment has not ended.
    pub redelivery: bool,
}

/// Why a notification was not admitted; nothing was created (the service answers 503).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Busy {
    /// As many deployments are in flight as [`Policy::max_in_flight`] allows.
    InFlightLimit,
    /// The table is full.
    TableFull,
    /// The id the request brought is already in the table (the runtime drew it twice).
    IdInUse,
}

impl fmt::Display for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InFlightLimit => "the in-flight limit is reached",
            Self::TableFull => "the deployment table is full",
            Self::IdInUse => "the deployment id is in use",
        })
    }
}

impl core::error::Error for Busy {}

/// Why an answer changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Ignored {
    /// No deployment of that id is in the table.
    Unknown,
    /// The deployment ended.
    Ended,
    /// Not the answer to its latest command, or the command was not handed out yet.
    Stale,
    /// Not an answer its phase waits for.
    Unexpected,
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unknown => "no such deployment in the table",
            Self::Ended => "the deployment ended",
            Self::Stale => "an answer to a command that was replaced",
            Self::Unexpected => "not an answer the deployment waits for",
        })
    }
}

impl core::error::Error for Ignored {}

/// What [`Deployer::handle_abort`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Aborted {
    /// It ended, failed `aborted`, before its lock-step changed anything.
    Ended,
    /// Its lock-step is being rolled back, as after a failure.
    RollingBack,
    /// Its lock-step stopped where it stood (rollback off): it ended.
    Stopped,
    /// It was rolling back already: the rollback goes on.
    AlreadyRollingBack,
    /// It had ended already.
    AlreadyEnded,
}

impl fmt::Display for Aborted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ended => "aborted: it had changed nothing in the cluster",
            Self::RollingBack => "aborted: its lock-step is being rolled back",
            Self::Stopped => "aborted: its lock-step stopped where it stood (rollback is off)",
            Self::AlreadyRollingBack => "it is rolling back already: the rollback goes on",
            Self::AlreadyEnded => "it has ended already: nothing changed",
        })
    }
}

/// No deployment of that id is in the table (it may have ended and been retained: ask the
/// ledger).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NotHere;

impl fmt::Display for NotHere {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no such deployment in the table")
    }
}

impl core::error::Error for NotHere {}

/// Why a record was not resumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum NotResumed {
    /// It ended: there is nothing to resume (retain it instead).
    Ended,
    /// A deployment with its id, or one of its digest that has not ended, is in the table.
    AlreadyHere,
    /// The table is full.
    TableFull,
    /// A phase past resolving without the key that resolving finds.
    Inconsistent,
}

impl fmt::Display for NotResumed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ended => "the deployment ended",
            Self::AlreadyHere => "the deployment is already in the table",
            Self::TableFull => "the deployment table is full",
            Self::Inconsistent => "the record is past resolving without a compatibilityVersion",
        })
    }
}

impl core::error::Error for NotResumed {}

/// Something the agent must do for a deployment; it answers with
/// [`Deployer::handle_reply`].
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
    /// List the running bundles named `package`, then read
    /// `{org}/{repo}/{org}/{package}/versions.json`: was the version of `digest` published
    /// before every one of them? Answer [`Reply::Screened`] (nothing running: `None`, without
    /// reading the index).
    Screen {
        /// The organisation.
        org: Name,
        /// The repository.
        repo: Name,
        /// The package (the bundle name).
        package: Name,
        /// The new version's digest.
        digest: Digest,
    },
    /// Read `{org}/{repo}/{org}/{package}/versions.json` from the repository: was the version
    /// of `digest` published before the running bundle `old`? Answer [`Reply::Ordered`].
    Order {
        /// The organisation.
        org: Name,
        /// The repository.
        repo: Name,
        /// The package.
        package: Name,
        /// The new version's digest.
        digest: Digest,
        /// The running bundle it would replace.
        old: BundleId,
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

/// The lock-step deployer, with room for `N` deployments that have not ended.
///
/// # Driving it
/// The runtime owns the clock, the sockets and the agent, and drives the machine in a loop:
///
/// 1. When an input arrives, hand it over with its `handle_*` method and the time:
///    a verified notification ([`handle_notification`](Self::handle_notification)), the
///    agent's answer to a command ([`handle_reply`](Self::handle_reply)), a record read back
///    after a restart ([`handle_resume`](Self::handle_resume)), or the time of
///    [`poll_timeout`](Self::poll_timeout) having come ([`handle_timeout`](Self::handle_timeout)).
/// 2. Then drain: call [`poll`](Self::poll) until it answers `None`, before the next input.
///    Give each [`Output::Command`] to the agent, append each [`Output::Event`] to its
///    deployment's [`EventLog`] and to the event stream, and retain each [`Output::Ended`].
/// 3. Arm the timer for [`poll_timeout`](Self::poll_timeout), if any.
/// 4. Wait for the next input or the timer, and go to 1.
///
/// The drain rule matters: outputs wait in small per-deployment queues, and a runtime that
/// handles many inputs without polling will see intermediate `deploy` events compacted.
///
/// ```no_run
/// use lockstep_core::deployer::{Deployer, Output, Policy, Reply, Request};
/// use lockstep_core::time::Now;
///
/// # fn clock() -> Now { unimplemented!() }
/// # fn next_notification() -> Option<Request> { None }
/// # fn carry_out(_: &lockstep_core::deployer::Command) -> Reply<'static> { unimplemented!() }
/// let mut deployer = Deployer::<8>::new(Policy::default());
/// let mut commands = Vec::new();
/// loop {
///     // 1. An input: here a notification, or the agent's answer to a command.
///     if let Some(request) = next_notification() {
///         let _ = deployer.handle_notification(clock(), request);
///     } else if let Some(command) = commands.pop() {
///         let reply = carry_out(&command);
///         let _ = deployer.handle_reply(clock(), &command, reply);
///     } else if deployer.poll_timeout().is_some_and(|at| at <= clock().instant) {
///         deployer.handle_timeout(clock());
///     }
///     // 2. Drain.
///     while let Some(output) = deployer.poll() {
///         match output {
///             Output::Command(command) => commands.push(command),
///             Output::Event(event) => println!("{}", event.kind.event_type().as_str()),
///             Output::Ended(record) => println!("{} ended", record.id()),
///         }
///     }
///     // 3. and 4. Sleep until `deployer.poll_timeout()` or the next input.
/// }
/// ```
///
/// # Size
/// Each deployment takes a fixed slot (a [`Record`] with its pending outputs), so the size is
/// linear in `N`: on 64-bit targets `size_of::<Deployer<8>>()` is 13,816 bytes and
/// `size_of::<Deployer<64>>()` 110,136 (a test keeps these figures true). Most of a record is
/// inline names: package, tag, organisation, repository, compatibilityVersion and up to eight
/// `?tag=` values of 64 bytes each.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Deployer<const N: usize> {
    slots: [Option<Deployment>; N],
    policy: Policy,
    next_order: u64,
    /// Where [`poll`](Self::poll) looks first, so that no deployment starves another; always
    /// below `N` (or 0).
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

    // ---- getters ----------------------------------------------------------------------------

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
        self.deployments().count()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many deployments are in flight: in the table and not ended.
    pub fn in_flight(&self) -> usize {
        self.deployments().filter(|d| d.is_live()).count()
    }

    /// The record of a deployment in the table.
    pub fn record(&self, id: DeploymentId) -> Option<&Record> {
        self.records().find(|record| record.id() == id)
    }

    /// The records of every deployment in the table, for a runtime to persist or list.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.deployments().map(Deployment::record)
    }

    /// The deployment of `digest` that has not ended, if there is one: a notification of
    /// that digest is its redelivery (rule 1).
    pub fn in_flight_of(&self, digest: &Digest) -> Option<DeploymentId> {
        self.deployments()
            .find(|d| d.is_live() && d.record().request.digest == *digest)
            .map(|d| d.record().id())
    }

    fn deployments(&self) -> impl Iterator<Item = &Deployment> {
        self.slots.iter().flatten()
    }

    /// A deployment of this `order` ended before a restart (a runtime restoring what it
    /// kept): deployments notified from now on are ordered after it.
    pub fn order_past(&mut self, order: u64) {
        self.next_order = self.next_order.max(order.saturating_add(1));
    }

    // ---- outputs ----------------------------------------------------------------------------

    /// The earliest deadline of a deployment, when [`handle_timeout`](Self::handle_timeout) is
    /// due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deployments().filter_map(Deployment::deadline).min()
    }

    /// The next output, or `None` when there is nothing to do until the next input.
    #[must_use]
    pub fn poll(&mut self) -> Option<Output> {
        // From the cursor round to it: `cursor` is at most `N`, so the split is within the
        // table.
        let (before, after) = self.slots.split_at_mut(self.cursor.min(N));
        let from_cursor = after.iter_mut().zip(self.cursor..);
        let (index, output) =
            from_cursor
                .chain(before.iter_mut().zip(0..))
                .find_map(|(entry, index)| {
                    let output = match entry.as_mut()?.poll()? {
                        Polled::Output(output) => output,
                        Polled::Gone(record) => {
                            *entry = None;
                            Output::Ended(record)
                        }
                    };
                    Some((index, output))
                })?;
        self.cursor = match index.checked_add(1) {
            Some(next) if next < N => next,
            _ => 0,
        };
        Some(output)
    }

    // ---- inputs -----------------------------------------------------------------------------

    /// A verified notification (the service checked its signature): admitted as a new
    /// deployment or as a redelivery of one in flight, or refused as busy with nothing
    /// created (rule 1). Then drain [`poll`](Self::poll).
    pub fn handle_notification(&mut self, now: Now, request: Request) -> Result<Admitted, Busy> {
        if let Some(id) = self.in_flight_of(&request.digest) {
            return Ok(Admitted {
                id,
                redelivery: true,
            });
        }
        if self.in_flight() >= self.policy.max_in_flight {
            return Err(Busy::InFlightLimit);
        }
        if self.record(request.id).is_some() {
            return Err(Busy::IdInUse);
        }
        let ctx = self.ctx(now);
        let order = self.next_order;
        let free = self
            .slots
            .iter_mut()
            .find(|slot| slot.is_none())
            .ok_or(Busy::TableFull)?;
        *free = Some(Deployment::admitted(ctx, Record::new(request, order)));
        self.next_order = order.saturating_add(1);
        Ok(Admitted {
            id: request.id,
            redelivery: false,
        })
    }

    /// The agent's answer to `command`. A stale, duplicate or unexpected answer changes
    /// nothing and says why. Then drain [`poll`](Self::poll).
    pub fn handle_reply(
        &mut self,
        now: Now,
        command: &Command,
        reply: Reply<'_>,
    ) -> Result<(), Ignored> {
        let ctx = self.ctx(now);
        let (index, d) = self.slot_of(command.deployment).ok_or(Ignored::Unknown)?;
        let effect = d.reply(ctx, command, reply)?;
        self.settle(ctx, index, effect);
        Ok(())
    }

    /// The time of [`poll_timeout`](Self::poll_timeout) has come: every deployment whose
    /// deadline passed fails its step. An early or spurious call does nothing. Answers how
    /// many deadlines fired. Then drain [`poll`](Self::poll).
    pub fn handle_timeout(&mut self, now: Now) -> usize {
        let ctx = self.ctx(now);
        let mut fired = 0usize;
        for index in 0..N {
            let due = self
                .slots
                .get_mut(index)
                .and_then(Option::as_mut)
                .filter(|d| d.deadline().is_some_and(|at| at <= now.instant));
            if let Some(d) = due {
                fired = fired.saturating_add(1);
                let effect = d.timed_out(ctx);
                self.settle(ctx, index, effect);
            }
        }
        fired
    }

    /// An operator aborts deployment `id` (rule 10; [`Aborted`] says what it did). Aborting
    /// again changes nothing more: it is idempotent. Then drain [`poll`](Self::poll).
    pub fn handle_abort(&mut self, now: Now, id: DeploymentId) -> Result<Aborted, NotHere> {
        let ctx = self.ctx(now);
        let (index, d) = self.slot_of(id).ok_or(NotHere)?;
        let (effect, what) = d.abort(ctx);
        self.settle(ctx, index, effect);
        Ok(what)
    }

    /// A deployment read back from its persisted [`Record`] after a restart (rule 9). Resume
    /// records in their `order`, oldest first, so that a key's active deployment returns
    /// before its pending one. Then drain [`poll`](Self::poll).
    pub fn handle_resume(&mut self, now: Now, record: Record) -> Result<(), NotResumed> {
        if record.has_ended() {
            return Err(NotResumed::Ended);
        }
        if record.compatibility_version.is_none()
            && !matches!(record.phase, Phase::Screening | Phase::Resolving)
        {
            // Only resolving finds the key: every later phase has it.
            return Err(NotResumed::Inconsistent);
        }
        let here = self.deployments().any(|d| {
            d.record().id() == record.id()
                || (d.is_live() && d.record().request.digest == record.request.digest)
        });
        if here {
            return Err(NotResumed::AlreadyHere);
        }
        let ctx = self.ctx(now);
        let (index, free) = self
            .slots
            .iter_mut()
            .enumerate()
            .find(|(_, slot)| slot.is_none())
            .ok_or(NotResumed::TableFull)?;
        let key = record.key();
        *free = Some(Deployment::resumed(ctx, record));
        self.next_order = self.next_order.max(record.order.saturating_add(1));
        if let (Phase::Queued, Some(key)) = (record.phase, key) {
            self.schedule(ctx, index, &key);
        }
        Ok(())
    }

    /// The slot of deployment `id`, and the deployment in it.
    fn slot_of(&mut self, id: DeploymentId) -> Option<(usize, &mut Deployment)> {
        self.slots.iter_mut().enumerate().find_map(|(i, slot)| {
            let d = slot.as_mut()?;
            (d.record().id() == id).then_some((i, d))
        })
    }

    // ---- the schedule -----------------------------------------------------------------------

    /// Carries out what a deployment's step asks of the table.
    fn settle(&mut self, ctx: Ctx, index: usize, effect: Effect) {
        match effect {
            Effect::None | Effect::Ended { freed: None } => {}
            Effect::Resolved(key) => self.schedule(ctx, index, &key),
            Effect::Ended { freed: Some(key) } => self.promote(ctx, &key),
        }
    }

    /// Step 3: the deployment at `index` resolved its key; it becomes the key's active
    /// deployment, its pending one, or superseded.
    fn schedule(&mut self, ctx: Ctx, index: usize, key: &Key) {
        let others = || {
            self.slots
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != index)
                .filter_map(|(i, slot)| Some((i, slot.as_ref()?)))
                .filter(|(_, d)| d.record().key().as_ref() == Some(key))
        };
        let find = |pick: fn(&Deployment) -> bool| {
            others()
                .find(|(_, d)| pick(d))
                .map(|(i, d)| (i, d.record().order, d.record().id()))
        };
        let active = find(Deployment::is_active);
        let pending = find(Deployment::is_queued);
        let Some(me) = self.slots.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let (order, id) = (me.record().order, me.record().id());
        match (active, pending) {
            // One notified later holds the key, or waits for it: this one is superseded.
            (Some((_, later, by)), _) | (_, Some((_, later, by))) if later > order => {
                // Neither active nor ended: no key is freed.
                let _ = me.fail(ctx, Cause::Superseded { by });
            }
            (None, None) => me.start_targeting(ctx),
            // The key is busy: wait as its pending deployment.
            (Some(_), None) => {}
            // This one supersedes the pending one, and goes on if the key is free.
            (active, Some((p, _, _))) => {
                if active.is_none() {
                    me.start_targeting(ctx);
                }
                if let Some(pending) = self.slots.get_mut(p).and_then(Option::as_mut) {
                    let _ = pending.fail(ctx, Cause::Superseded { by: id });
                }
            }
        }
    }

    /// A key's active deployment ended: the key's pending deployment, if any, goes on.
    fn promote(&mut self, ctx: Ctx, key: &Key) {
        let pending = self
            .slots
            .iter_mut()
            .flatten()
            .find(|d| d.is_queued() && d.record().key().as_ref() == Some(key));
        if let Some(pending) = pending {
            pending.start_targeting(ctx);
        }
    }

    // ---- helpers ----------------------------------------------------------------------------

    const fn ctx(&self, now: Now) -> Ctx {
        Ctx {
            now,
            policy: self.policy,
        }
    }
}

#[cfg(test)]
mod tests;
