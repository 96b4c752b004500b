//! The agent: the driving loop between the deployer and the outside world.
//!
//! Unlike the rest of this crate the agent is not sans-IO: it awaits. It is still `no_std`,
//! allocation-free and generic over the platform ([`Connector`], [`Time`], [`Store`],
//! [`Repository`]), so the same code runs on std sockets and on embassy-net, and it decides
//! nothing: the [`Deployer`] decides, the [`Ledger`] keeps, the agent carries out.
//!
//! The [`Agent`] owns the deployer and the ledger of its deployments, and hands the deployer's
//! commands to [`Worker`]s, which carry them out over HTTP — the repository download, the
//! control API's list, load and scale — and answer each with a [`Reply`]. It is made for a
//! single-threaded executor: the runtime spawns, on one thread,
//!
//! - one or more workers, each with its own [`Buffers`] (`worker.run(&agent)`): how many run
//!   at once is configuration;
//! - the timer task ([`Agent::run_timer`]), which hands the deployer its time-outs;
//! - optionally the event task ([`Agent::run_events`]), which follows ConductR's bundle event
//!   stream so that a waiting step looks again as soon as something changed, polling being the
//!   fallback;
//!
//! and feeds it notifications with [`Agent::notify`] (the service does, after checking the
//! signature) and records read back after a restart with [`Agent::resume`]. The deployer's
//! events and ended records go to the ledger, then to the runtime's [`Sink`] (its logs, its
//! event streams); reads go to the ledger ([`Agent::read`]). Idempotent requests (the
//! download, the GETs, the scale; a load after its re-check) are tried again on a transport
//! error or a 5xx, and the sink hears of each retry ([`Sink::retrying`]): the deployer hears
//! only of a command's final answer.
//!
//! Commands of one deployment never run concurrently: a new one waits until the worker
//! running the previous one (stale after a time-out) is done, so a late scale request can never
//! overtake the one that replaced it.
//!
//! ```no_run
//! use lockstep_core::agent::http::Url;
//! use lockstep_core::agent::{
//!     Agent, Buffers, Config, Connector, Repository, Sink, Store, Time, Worker,
//! };
//! use lockstep_core::deployer::{Deployer, Event, Policy, Record};
//! use lockstep_core::ledger::{Ledger, Retained};
//! use lockstep_core::time::Duration;
//!
//! /// What the runtime does with what the ledger keeps: log it, count it, stream it.
//! struct Log;
//!
//! impl Sink for Log {
//!     fn event(&mut self, _event: &Event) {}
//!     fn ended(&mut self, _record: &Record) {}
//!     fn restored(&mut self, _record: &Record) {}
//! }
//!
//! type Shelf = heapless::Vec<Retained, 16>;
//!
//! /// The agent's tasks; none of them returns. A runtime spawns each on its single-threaded
//! /// executor, and hands webhooks to `agent.notify(now, request)` as they are verified.
//! fn tasks<'a, C: Connector, T: Time, S: Store, R: Repository>(
//!     agent: &'a Agent<8, Log, Shelf>,
//!     conductr: Url<'a>,
//!     (connector, time, store, repository): (&'a C, &'a T, &'a S, &'a R),
//!     buffers: &'a mut Buffers,
//!     events: &'a mut [u8],
//! ) -> (impl Future + 'a, impl Future + 'a, impl Future + 'a) {
//!     let config = Config::default();
//!     let mut worker =
//!         Worker::new(0, conductr, connector, time, store, repository, config, buffers);
//!     let retry = Duration::from_secs(1);
//!     (
//!         async move { worker.run(agent).await },
//!         agent.run_timer(time),
//!         agent.run_events(conductr, connector, time, config.io_timeout, retry, events),
//!     )
//! }
//!
//! let agent = Agent::new(
//!     Deployer::<8>::new(Policy::default()),
//!     Ledger::new(Shelf::new(), 16),
//!     Log,
//! );
//! # let _ = agent;
//! ```

pub mod http;
mod store;
mod time;
mod worker;

use core::cell::RefCell;
use core::future::poll_fn;
use core::task::{Poll, Waker};

use crate::deployer::{
    Aborted, Admitted, Command, CommandError, Deployer, DeploymentId, Event, NotHere, NotResumed,
    Output, Phase, Record, Reply, Request,
};
use crate::journal::{Entry, Journal, Unrecorded};
use crate::ledger::{FailedBefore, Ledger, Shelf};
use crate::service::{Asks, NotAdmitted};
use crate::signature::Stamp;
use crate::time::{Duration, Instant, Now};

pub use store::{
    FetchError, FileKey, FileKind, IndexLocation, Location, Repository, Store, StoreError,
};
pub use time::{ConnectError, Connector, Time, TimedOut, TlsError, with_deadline};
pub use worker::{Buffers, Config, MAX_OBSERVED, Worker};

/// How long the answer to a webhook waits for its new deployment's screening
/// (docs/DESIGN.md rule 12): a downgrade found within it is answered 409; past it, 202, and the
/// deployment refuses the downgrade by itself.
pub const SCREENING_WAIT: Duration = Duration::from_secs(2);

/// How often a webhook waiting for its screening looks again.
const SCREENING_POLL: Duration = Duration::from_millis(5);

/// Where a new deployment's screening stands ([`Agent::screening`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(
    clippy::large_enum_variant,
    reason = "a transient answer, never stored; core has no Box for the refusal"
)]
pub enum Screening {
    /// Not answered yet.
    Pending,
    /// Over: the deployment goes on (or ended for another reason, or is not known here).
    Passed,
    /// It refused a downgrade: the deployment ended failed.
    Refused(FailedBefore),
}

/// The most workers an agent serves.
pub const MAX_WORKERS: usize = 16;

/// Where the deployer's events and ended deployments go, once the ledger has them: the
/// runtime's logs, metrics and event streams.
pub trait Sink {
    /// An event of a deployment.
    fn event(&mut self, event: &Event);
    /// A deployment ended, now, in this process (the ledger retains it); its files are removed
    /// from the store next. Told once per deployment, and never for one [`restored`]: what
    /// must happen once per deployment's end (an outcome notification) happens here.
    ///
    /// [`restored`]: Self::restored
    fn ended(&mut self, record: &Record);
    /// A deployment that had ended before this process started, read back from a journal
    /// ([`Agent::restore`]) and retained again: for counts that span restarts, never for what
    /// must happen once per end (that happened in the process that ended it).
    fn restored(&mut self, record: &Record);
    /// Whether the control API answers changed ([`Agent::link`]). Nothing, unless
    /// implemented.
    fn link(&mut self, _link: Link) {}
    /// A try of an idempotent request of `command` failed and the request is tried again,
    /// after the backoff. The deployer hears only of the command's final answer, so this is
    /// the runtime's one chance to log a retry. Nothing, unless implemented.
    fn retrying(&mut self, _command: &Command, _retry: Retry) {}
}

/// A request of a command is tried again ([`Sink::retrying`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Retry {
    /// The try about to start, from 2.
    pub attempt: u32,
    /// The most tries ([`Config::attempts`]).
    pub attempts: u32,
    /// Why the previous try failed.
    pub error: CommandError,
}

/// Whether the control API answers, as the bundle event stream ([`Agent::run_events`]) last
/// found it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Link {
    /// Not tried yet.
    #[default]
    Unknown,
    /// The event stream is open.
    Up,
    /// The last try failed; the agent tries again, and deployments wait or fail at their
    /// deadlines meanwhile.
    Down(LinkFault),
}

/// How the control API failed to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LinkFault {
    /// No connection, or a broken or late one.
    Http(http::HttpError),
    /// An answer other than 200.
    Status(u16),
}

impl core::fmt::Display for LinkFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Http(e) => e.fmt(f),
            Self::Status(code) => write!(f, "it answered {code}"),
        }
    }
}

/// What a worker does next.
#[allow(
    clippy::large_enum_variant,
    reason = "no allocation to box into; one job at a time per worker"
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum Job {
    /// Carry out a command.
    Command(Command),
    /// Remove an ended deployment's files.
    Cleanup(DeploymentId),
}

/// When a deployment last looked at the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Looked {
    deployment: DeploymentId,
    generation: u64,
    at: Instant,
}

struct Inner<const N: usize, S, H, J> {
    deployer: Deployer<N>,
    ledger: Ledger<N, H>,
    /// What must survive a restart; committed before any job is handed out.
    journal: J,
    /// Entries were appended since the last commit.
    unsynced: bool,
    /// Commands waiting for a worker: at most one per deployment (a newer one replaces it).
    queue: heapless::Vec<Command, N>,
    /// Ended deployments whose files wait to be removed.
    cleanup: heapless::Vec<DeploymentId, N>,
    /// The deployment each worker is busy with.
    busy: [Option<DeploymentId>; MAX_WORKERS],
    /// Bumped on every bundle event of the cluster.
    generation: u64,
    looked: heapless::Vec<Looked, N>,
    /// Draining: no job is handed out any more.
    draining: bool,
    link: Link,
    sink: S,
}

/// Tasks waiting for something to change.
#[derive(Default)]
struct Wakers {
    workers: [Option<Waker>; MAX_WORKERS],
    timer: Option<Waker>,
    observers: [Option<Waker>; MAX_WORKERS],
}

/// The deployer and its ledger with the queue of its commands, shared by the agent's tasks;
/// with a [`Journal`] `J` (none by default: memory only).
pub struct Agent<const N: usize, S: Sink, H: Shelf, J: Journal = ()> {
    inner: RefCell<Inner<N, S, H, J>>,
    wakers: RefCell<Wakers>,
}

impl<const N: usize, S: Sink, H: Shelf, J: Journal> core::fmt::Debug for Agent<N, S, H, J> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Agent").finish_non_exhaustive()
    }
}

impl<const N: usize, S: Sink, H: Shelf> Agent<N, S, H> {
    /// An agent around `deployer`, keeping what it does in `ledger` (in memory only) and
    /// telling `sink`.
    pub fn new(deployer: Deployer<N>, ledger: Ledger<N, H>, sink: S) -> Self {
        Self::with_journal(deployer, ledger, sink, ())
    }
}

impl<const N: usize, S: Sink, H: Shelf, J: Journal> Agent<N, S, H, J> {
    /// An agent around `deployer`, keeping what it does in `ledger` and writing ahead to
    /// `journal` what must survive a restart: every record change, before the command it
    /// implies is handed to a worker; every event; every deployment that falls out of
    /// retention. Restore what the journal held ([`restore`](Self::restore)) before its
    /// tasks run.
    pub fn with_journal(deployer: Deployer<N>, ledger: Ledger<N, H>, sink: S, journal: J) -> Self {
        Self {
            inner: RefCell::new(Inner {
                deployer,
                ledger,
                journal,
                unsynced: false,
                queue: heapless::Vec::new(),
                cleanup: heapless::Vec::new(),
                busy: [None; MAX_WORKERS],
                generation: 0,
                looked: heapless::Vec::new(),
                draining: false,
                link: Link::Unknown,
                sink,
            }),
            wakers: RefCell::new(Wakers::default()),
        }
    }

    /// A verified notification: admitted (a new deployment, or a redelivery), or refused as
    /// busy ([`Deployer::handle_notification`]); or refused because the version's last
    /// deployment failed ([`Ledger::failed_version`], docs/DESIGN.md rule 11), unless a
    /// deployment of it is in flight (a redelivery is answered its id) or the webhook
    /// [`Asks`] to retry it; a refused downgrade (rule 12) is lifted only by a request that
    /// allows the downgrade, and by nothing else.
    pub fn notify(&self, now: Now, request: Request, asks: Asks) -> Result<Admitted, NotAdmitted> {
        let digest = request.digest;
        let failed = self.read(|deployer, ledger| {
            if deployer.in_flight_of(&digest).is_some() {
                return None;
            }
            ledger.failed_version(&digest).filter(|failed| {
                if failed.failure.is_downgrade() {
                    !request.allow_downgrade
                } else {
                    !asks.retry
                }
            })
        });
        if let Some(failed) = failed {
            return Err(NotAdmitted::Failed(failed));
        }
        self.input(|deployer| deployer.handle_notification(now, request))
            .map_err(NotAdmitted::Busy)
    }

    /// Where the screening of deployment `id` stands (docs/DESIGN.md rule 12).
    pub fn screening(&self, id: DeploymentId) -> Screening {
        self.read(|deployer, ledger| {
            if let Some(record) = deployer.record(id) {
                return match record.phase {
                    Phase::Screening => Screening::Pending,
                    _ => Screening::Passed,
                };
            }
            let Some(record) = ledger.ended(id) else {
                return Screening::Passed;
            };
            match (record.failure(), record.end()) {
                (Some(failure), Some(end)) if failure.is_downgrade() => {
                    Screening::Refused(FailedBefore {
                        id,
                        tag: record.request.tag,
                        at: end.at,
                        failure: *failure,
                    })
                }
                _ => Screening::Passed,
            }
        })
    }

    /// Waits, at most `within`, for the screening of the deployment `id` just admitted: the
    /// refusal, when it refused a downgrade in time; `None` otherwise. For the runtime's
    /// webhook handler, between admission and its answer ([`SCREENING_WAIT`]).
    pub async fn screened<T: Time>(
        &self,
        time: &T,
        id: DeploymentId,
        within: Duration,
    ) -> Option<FailedBefore> {
        let deadline = time.now().instant.saturating_add(within);
        loop {
            match self.screening(id) {
                Screening::Refused(failed) => return Some(failed),
                Screening::Passed => return None,
                Screening::Pending => {}
            }
            let now = time.now().instant;
            if now >= deadline {
                return None;
            }
            time.at(now.saturating_add(SCREENING_POLL).min(deadline))
                .await;
        }
    }

    /// An operator's abort of deployment `id` ([`Deployer::handle_abort`]). One that ended and
    /// is retained answers [`Aborted::AlreadyEnded`]; one never seen (or past retention),
    /// [`NotHere`]. The journal holds what the abort changed once [`commit`](Self::commit)
    /// succeeds: commit before answering.
    pub fn abort(&self, now: Now, id: DeploymentId) -> Result<Aborted, NotHere> {
        match self.input(|deployer| deployer.handle_abort(now, id)) {
            Err(NotHere) if self.read(|_, ledger| ledger.ended(id).is_some()) => {
                Ok(Aborted::AlreadyEnded)
            }
            answer => answer,
        }
    }

    /// A record read back after a restart ([`Deployer::handle_resume`]).
    pub fn resume(&self, now: Now, record: Record) -> Result<(), NotResumed> {
        self.input(|deployer| deployer.handle_resume(now, record))
    }

    /// A deployment read back from a journal at start-up, its latest record and its events:
    /// an ended one is retained again (the listing, its events; the sink hears it was
    /// [`restored`](Sink::restored), for its counts, never that it [`ended`](Sink::ended));
    /// one in flight gets its events back and resumes from its record
    /// ([`Deployer::handle_resume`]: the step it stood at is requested again), so the sink
    /// hears of its end in this process. Restore in the records' `order`, oldest first.
    pub fn restore(
        &self,
        now: Now,
        record: Record,
        events: impl IntoIterator<Item = Event>,
    ) -> Result<(), NotResumed> {
        {
            let mut inner = self.inner.borrow_mut();
            let inner = &mut *inner;
            for event in events {
                if event.deployment == record.id() {
                    inner.ledger.record_event(&event);
                }
            }
            if record.has_ended() {
                inner.deployer.order_past(record.order);
                // What falls out of retention meanwhile is not rewritten.
                let _ = inner.ledger.retire(record);
                inner.sink.restored(&record);
                return Ok(());
            }
        }
        self.resume(now, record)
    }

    /// A replay-cache entry to record (a runtime that keeps the cache across restarts appends
    /// each accepted lockstep signature's stamp; [`commit`](Self::commit) before answering).
    pub fn record_stamp(&self, stamp: Stamp) -> Result<(), Unrecorded> {
        let mut inner = self.inner.borrow_mut();
        inner.unsynced = true;
        inner.journal.append(&Entry::Stamp(stamp))
    }

    /// Makes everything appended to the journal durable: before a webhook is answered 202.
    pub fn commit(&self) -> Result<(), Unrecorded> {
        self.inner.borrow_mut().commit()
    }

    /// Rewrites the journal with what is live — every deployment in the table with its
    /// events, every retained one with its events, and `stamps` (the live replay-cache
    /// entries) — replacing everything before: how the journal is compacted, and repaired
    /// after a failure. Workers waiting for a commit go on when it succeeds.
    pub fn rewrite(&self, stamps: impl IntoIterator<Item = Stamp>) -> Result<(), Unrecorded> {
        {
            let mut inner = self.inner.borrow_mut();
            let Inner {
                deployer,
                ledger,
                journal,
                unsynced,
                ..
            } = &mut *inner;
            journal.begin_rewrite()?;
            let retained = ledger.shelved().map(|r| &r.record);
            for record in deployer.records().chain(retained) {
                journal.append(&Entry::Record(*record))?;
                if let Some(log) = ledger.events(record.id()) {
                    for event in log.events() {
                        journal.append(&Entry::Event(event))?;
                    }
                }
            }
            for stamp in stamps {
                journal.append(&Entry::Stamp(stamp))?;
            }
            journal.finish_rewrite()?;
            *unsynced = false;
        }
        self.wake_all();
        Ok(())
    }

    /// Feeds the deployer an input, drains it (the drain rule), and wakes whoever has work.
    fn input<R>(&self, handle: impl FnOnce(&mut Deployer<N>) -> R) -> R {
        let result = {
            let mut inner = self.inner.borrow_mut();
            let result = handle(&mut inner.deployer);
            inner.drain();
            result
        };
        self.wake_all();
        result
    }

    /// Stops handing out jobs: the commands under way finish, no new one starts (the process
    /// is shutting down; what is left resumes from its records).
    pub fn drain(&self) {
        self.inner.borrow_mut().draining = true;
    }

    /// Whether the control API answers, as the bundle event stream last found it.
    pub fn link(&self) -> Link {
        self.inner.borrow().link
    }

    /// Records what the event stream found, and tells the sink when it changed.
    fn set_link(&self, link: Link) {
        let mut inner = self.inner.borrow_mut();
        if inner.link != link {
            inner.link = link;
            inner.sink.link(link);
        }
    }

    /// How many workers are carrying out a job now.
    pub fn busy(&self) -> usize {
        self.inner.borrow().busy.iter().flatten().count()
    }

    /// Reads or changes the journal (its state, for the runtime's logs and health).
    pub fn with_journal_mut<R>(&self, f: impl FnOnce(&mut J) -> R) -> R {
        f(&mut self.inner.borrow_mut().journal)
    }

    /// Reads the deployer and the ledger (a deployment's events, the listing).
    pub fn read<R>(&self, f: impl FnOnce(&Deployer<N>, &Ledger<N, H>) -> R) -> R {
        let inner = self.inner.borrow();
        f(&inner.deployer, &inner.ledger)
    }

    /// Reads or changes the sink.
    pub fn with_sink<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        f(&mut self.inner.borrow_mut().sink)
    }

    /// The timer task: hands the deployer its time-out ([`Deployer::handle_timeout`]) whenever
    /// its earliest deadline comes. Never returns.
    pub async fn run_timer<T: Time>(&self, time: &T) -> ! {
        loop {
            let deadline = self.inner.borrow().deployer.poll_timeout();
            match deadline {
                Some(at) if at <= time.now().instant => {
                    let now = time.now();
                    self.input(|deployer| deployer.handle_timeout(now));
                }
                Some(at) => {
                    // Wait for the deadline, or for a change that may bring it forward.
                    let _ = with_deadline(time, at, self.changed(Role::Timer)).await;
                }
                None => self.changed(Role::Timer).await,
            }
        }
    }

    /// The event task: follows ConductR's bundle event stream (`GET /v2/bundles/events`) and
    /// marks the cluster changed on every event, so that a waiting step looks again at once.
    /// When the stream fails it reconnects after `retry`; meanwhile steps poll. `buf` holds the
    /// client's heads and the stream's lines. Never returns.
    pub async fn run_events<C: Connector, T: Time>(
        &self,
        conductr: http::Url<'_>,
        connector: &C,
        time: &T,
        timeout: Duration,
        retry: Duration,
        buf: &mut [u8],
    ) -> ! {
        let (client_buf, rest) = buf.split_at_mut(buf.len() / 2);
        let (line_buf, chunk) = rest.split_at_mut(rest.len() / 2);
        let mut client = http::Client::new(connector, time, client_buf, timeout);
        loop {
            let target = worker::path(conductr.path(), crate::conductr::BUNDLE_EVENTS_PATH);
            let head = client
                .get(
                    conductr.origin(),
                    target,
                    &[("Accept", crate::conductr::ACCEPT_EVENT_STREAM)],
                )
                .await;
            match head {
                Ok(head) if head.status != 200 => {
                    self.set_link(Link::Down(LinkFault::Status(head.status)));
                }
                Err(e) => self.set_link(Link::Down(LinkFault::Http(e))),
                Ok(_) => self.set_link(Link::Up),
            }
            if let Ok(head) = head
                && head.status == 200
            {
                // Whatever happened while we were away: look again.
                self.cluster_changed();
                let mut events = crate::conductr::sse::EventStream::new(line_buf);
                'stream: loop {
                    let mut input = match client.read_chunk(chunk).await {
                        Ok(read) if !read.is_empty() => read,
                        // The end of the stream, or a failure: reconnect.
                        _ => break,
                    };
                    loop {
                        match events.next(&mut input) {
                            Ok(Some(crate::conductr::sse::Item::Event(_))) => {
                                self.cluster_changed();
                            }
                            Ok(Some(crate::conductr::sse::Item::Heartbeat)) => {}
                            Ok(None) => break,
                            Err(_) => break 'stream,
                        }
                    }
                }
            }
            client.close();
            time.at(time.now().instant.saturating_add(retry)).await;
        }
    }

    /// Marks that the cluster changed (a bundle event arrived): waiting observations look
    /// again.
    pub fn cluster_changed(&self) {
        {
            let mut inner = self.inner.borrow_mut();
            inner.generation = inner.generation.wrapping_add(1);
        }
        let mut wakers = self.wakers.borrow_mut();
        for waker in wakers.observers.iter_mut().filter_map(Option::take) {
            waker.wake();
        }
    }

    fn wake_all(&self) {
        let mut wakers = self.wakers.borrow_mut();
        for waker in wakers.workers.iter_mut().filter_map(Option::take) {
            waker.wake();
        }
        if let Some(waker) = wakers.timer.take() {
            waker.wake();
        }
    }

    /// Completes the next time [`wake_all`](Self::wake_all) runs (or a cluster change, for an
    /// observer).
    async fn changed(&self, role: Role) {
        let mut registered = false;
        poll_fn(|cx| {
            if registered {
                return Poll::Ready(());
            }
            registered = true;
            let mut wakers = self.wakers.borrow_mut();
            let slot = match role {
                Role::Timer => &mut wakers.timer,
                Role::Worker(i) => match wakers.workers.get_mut(i) {
                    Some(slot) => slot,
                    None => return Poll::Ready(()),
                },
                Role::Observer(i) => match wakers.observers.get_mut(i) {
                    Some(slot) => slot,
                    None => return Poll::Ready(()),
                },
            };
            *slot = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }

    /// The next job of worker `id`: a command of a deployment no other worker is busy with,
    /// or a cleanup.
    async fn next_job(&self, id: usize) -> Job {
        loop {
            if let Some(job) = self.inner.borrow_mut().take_job(id) {
                return job;
            }
            self.changed(Role::Worker(id)).await;
        }
    }

    /// Worker `id` is done with `command`: its answer goes to the deployer.
    fn finish(&self, id: usize, now: Now, command: &Command, reply: Reply<'_>) {
        {
            let mut inner = self.inner.borrow_mut();
            if let Some(busy) = inner.busy.get_mut(id) {
                *busy = None;
            }
        }
        // A stale answer (the deployment moved on after a time-out) changes nothing.
        let _ = self.input(|deployer| deployer.handle_reply(now, command, reply));
    }

    /// A request of `command` failed with `retry.error` and may be tried again: tells the
    /// sink, unless the deployment has ended meanwhile (a deadline fired), in which case
    /// nobody waits for the answer and the request is not tried again (false).
    fn retrying(&self, command: &Command, retry: Retry) -> bool {
        let mut inner = self.inner.borrow_mut();
        let live = inner
            .deployer
            .record(command.deployment)
            .is_some_and(|record| !record.has_ended());
        if live {
            inner.sink.retrying(command, retry);
        }
        live
    }

    /// Worker `id` is done with a cleanup.
    fn cleaned(&self, id: usize) {
        if let Some(busy) = self.inner.borrow_mut().busy.get_mut(id) {
            *busy = None;
        }
        self.wake_all();
    }

    /// Waits, for an observation of `deployment`, until the cluster changed since its last
    /// look or `poll` passed since then; then records this look.
    async fn await_change<T: Time>(
        &self,
        time: &T,
        worker: usize,
        deployment: DeploymentId,
        poll: Duration,
    ) {
        let last = self
            .inner
            .borrow()
            .looked
            .iter()
            .find(|l| l.deployment == deployment)
            .copied();
        if let Some(last) = last {
            let due = last.at.saturating_add(poll);
            while self.inner.borrow().generation == last.generation && time.now().instant < due {
                let _ = with_deadline(time, due, self.changed(Role::Observer(worker))).await;
            }
        }
        let now = time.now().instant;
        let mut inner = self.inner.borrow_mut();
        let generation = inner.generation;
        let look = Looked {
            deployment,
            generation,
            at: now,
        };
        match inner.looked.iter_mut().find(|l| l.deployment == deployment) {
            Some(slot) => *slot = look,
            None => {
                // Room for every deployment of the table; forget the oldest look if not.
                if inner.looked.is_full() {
                    inner.looked.remove(0);
                }
                let _ = inner.looked.push(look);
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Role {
    Timer,
    Worker(usize),
    Observer(usize),
}

impl<const N: usize, S: Sink, H: Shelf, J: Journal> Inner<N, S, H, J> {
    /// Appends the record of `id` as it is now, once per drain (`written`): a deployment
    /// with an output changed. An append that fails leaves the journal broken, and nothing
    /// is handed out until it is repaired ([`commit`](Self::commit)).
    fn write_record(&mut self, id: DeploymentId, written: &mut heapless::Vec<DeploymentId, N>) {
        if written.contains(&id) {
            return;
        }
        if let Some(record) = self.deployer.record(id) {
            let _ = self.journal.append(&Entry::Record(*record));
            self.unsynced = true;
            // At most N deployments are in the table.
            let _ = written.push(id);
        }
    }

    /// Makes the appended entries durable.
    fn commit(&mut self) -> Result<(), Unrecorded> {
        if self.unsynced {
            self.journal.commit()?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// The drain rule: every output after every input. Each deployment with an output gets
    /// its record appended to the journal first, then its events and its end.
    fn drain(&mut self) {
        let mut written = heapless::Vec::<DeploymentId, N>::new();
        while let Some(output) = self.deployer.poll() {
            match output {
                Output::Command(command) => {
                    self.write_record(command.deployment, &mut written);
                    // A newer command of a deployment replaces its queued one (stale now).
                    self.queue.retain(|c| c.deployment != command.deployment);
                    // At most one per deployment in the table: there is room.
                    let _ = self.queue.push(command);
                }
                Output::Event(event) => {
                    self.write_record(event.deployment, &mut written);
                    let _ = self.journal.append(&Entry::Event(event));
                    self.unsynced = true;
                    self.ledger.record_event(&event);
                    self.sink.event(&event);
                }
                Output::Ended(record) => {
                    let id = record.id();
                    let _ = self.journal.append(&Entry::Record(record));
                    self.unsynced = true;
                    self.queue.retain(|c| c.deployment != id);
                    self.looked.retain(|l| l.deployment != id);
                    // What falls out of retention is forgotten, by the journal too.
                    if let Some(evicted) = self.ledger.retire(record) {
                        let _ = self.journal.append(&Entry::Forget(evicted.record.id()));
                    }
                    self.sink.ended(&record);
                    if self.cleanup.is_full() {
                        self.cleanup.remove(0);
                    }
                    let _ = self.cleanup.push(id);
                }
            }
        }
    }

    fn take_job(&mut self, worker: usize) -> Option<Job> {
        if self.draining {
            return None;
        }
        // Write-ahead: nothing leaves before the records that imply it are durable (a
        // cleanup, before the end of its deployment is). A broken journal hands out nothing
        // until a rewrite repairs it, which wakes the workers.
        if !(self.queue.is_empty() && self.cleanup.is_empty()) && self.commit().is_err() {
            return None;
        }
        let busy = self.busy;
        let idle = |d: &DeploymentId| !busy.iter().flatten().any(|b| b == d);
        let job = if let Some(at) = self.cleanup.iter().position(idle) {
            Job::Cleanup(self.cleanup.remove(at))
        } else {
            let at = self.queue.iter().position(|c| idle(&c.deployment))?;
            Job::Command(self.queue.remove(at))
        };
        let deployment = match job {
            Job::Command(c) => c.deployment,
            Job::Cleanup(d) => d,
        };
        if let Some(slot) = self.busy.get_mut(worker) {
            *slot = Some(deployment);
        }
        Some(job)
    }
}

#[cfg(test)]
mod tests;
