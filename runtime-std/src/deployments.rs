//! The deployments of a lockstep process: core's agent, deployer and ledger on the std
//! platform.
//!
//! [`Deployments::start`] spawns, on one single-threaded executor, the agent's workers (each
//! with its buffers on the heap), its timer and its bundle-event follower. Notifications come in
//! through [`Deployments::notify`]; core's ledger keeps every event and the ended deployments
//! it retains, and this module tells the log, the metrics and the subscribers of
//! [`Deployments::subscribe`].
//!
//! What must survive a restart is written ahead to the journal in the data directory
//! ([`crate::journal`]): [`Deployments::start`] restores what it holds — the ended
//! deployments for reading, every deployment in flight resumed from its record — before the
//! agent's tasks run.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use async_executor::LocalExecutor;
use lockstep_core::agent::http::HttpRepository;
use lockstep_core::agent::{
    self, Agent, Buffers, Connector, FetchError, IndexLocation, Link, Location, Repository, Retry,
    Sink, Time, Worker,
};
use lockstep_core::agent::{FileKey, FileKind};
use lockstep_core::deployer::{
    Aborted, Admitted, Command, Deployer, DeploymentId, Event, NotHere, Policy, Record,
};
use lockstep_core::journal::Unrecorded;
use lockstep_core::ledger::{self, Ledger, Retained};
use lockstep_core::service::{Asks, NotAdmitted};
use lockstep_core::signature::{Secret, Stamp};

use crate::cluster::Member;
use crate::credentials::Credentials;
use crate::journal::{self, FileJournal, Restored};
use crate::log;
use crate::metrics::{self, Metrics};
use crate::notify::{self, Notifier};
use crate::platform::{DirStore, LocalRepository, StdTime, TcpConnector};
use crate::repository::DirRepository;
use crate::tls::Trust;
use crate::url::{BadUrl, BaseUrl};

/// The most deployments in flight (the deployer's table).
pub const CAPACITY: usize = 64;

/// Where bundles are downloaded from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per process, read once at start-up"
)]
pub enum RepositoryOption {
    /// An HTTP repository at this base URL.
    Http(BaseUrl),
    /// A directory in the published layout.
    Dir(PathBuf),
}

impl RepositoryOption {
    /// `<scheme>://...` is a URL, which must be `http://` or `https://` (the scheme in any case); anything
    /// else a directory, which must exist now: a mistake is found at start-up, not when the
    /// first webhook arrives.
    pub fn parse(text: &str) -> Result<Self, RepositoryError> {
        if let Some((scheme, _)) = text.split_once("://") {
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
                return Ok(Self::Http(BaseUrl::parse(text)?));
            }
            return Err(RepositoryError::Scheme(scheme.to_owned()));
        }
        let dir = PathBuf::from(text);
        if !dir.is_dir() {
            return Err(RepositoryError::NotADirectory(dir));
        }
        Ok(Self::Dir(dir))
    }
}

/// Why a text is not a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepositoryError {
    /// Not a valid `http[s]://` base URL.
    Url(BadUrl),
    /// A URL of a scheme lockstep does not download from.
    Scheme(String),
    /// A directory that is not there, or not a directory.
    NotADirectory(PathBuf),
}

impl fmt::Display for RepositoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(e) => e.fmt(f),
            Self::Scheme(scheme) => write!(
                f,
                "`{scheme}://` is not a scheme lockstep downloads from: the repository is an \
                 http:// or https:// base URL, or a directory"
            ),
            Self::NotADirectory(dir) => write!(f, "`{}` is not a directory", dir.display()),
        }
    }
}

impl std::error::Error for RepositoryError {}

impl From<BadUrl> for RepositoryError {
    fn from(e: BadUrl) -> Self {
        Self::Url(e)
    }
}

/// How deployments run.
#[derive(Clone, Debug)]
pub struct Options {
    /// The control API's base URL.
    pub conductr: BaseUrl,
    /// Where bundles come from.
    pub repository: RepositoryOption,
    /// The data directory: the journal, and the downloads a deployment needs
    /// (`<data dir>/store`); created (0700) if missing.
    pub data_dir: PathBuf,
    /// How many commands run at once.
    pub workers: usize,
    /// The deployer's policies (the in-flight limit among them).
    pub policy: Policy,
    /// The workers' settings.
    pub agent: agent::Config,
    /// How many ended deployments are kept for reading.
    pub retention: usize,
    /// Cluster mode: this instance, active; the journal is in etcd.
    pub member: Option<Arc<Member>>,
    /// The CAs trusted for `https://`.
    pub trust: Trust,
    /// Sent to an HTTP repository's origin as `Authorization`.
    pub repository_credentials: Option<Credentials>,
    /// Outcome notifications (`--notify`): where and how, and the secret that signs them
    /// (the webhook secret). `None`: none are sent.
    pub notify: Option<(notify::Options, Secret)>,
}

/// The retained deployments, on the heap: grown as deployments end, up to the retention.
#[derive(Debug, Default)]
pub struct Shelf(VecDeque<Retained>);

impl ledger::Shelf for Shelf {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn get(&self, index: usize) -> Option<&Retained> {
        self.0.get(index)
    }

    fn insert(&mut self, index: usize, retained: Retained) -> Result<(), Retained> {
        if index > self.0.len() {
            return Err(retained);
        }
        self.0.insert(index, retained);
        Ok(())
    }

    fn remove(&mut self, index: usize) -> Option<Retained> {
        self.0.remove(index)
    }
}

/// The sink of the agent: the step and retry log lines, the metrics, the subscribers and the
/// outcome notifications.
#[derive(Debug, Default)]
pub struct Logs {
    subscribers: Vec<async_channel::Sender<Event>>,
    metrics: Rc<RefCell<Metrics>>,
    /// When each deployment in flight logged its last event.
    last_step: HashMap<DeploymentId, std::time::Instant>,
    /// Told of each deployment that ends in this process (`--notify`).
    notifier: Option<Notifier>,
}

impl Sink for Logs {
    fn event(&mut self, event: &Event) {
        log::step(event);
        let now = std::time::Instant::now();
        if let Some(last) = self.last_step.insert(event.deployment, now) {
            self.metrics
                .borrow_mut()
                .step(now.saturating_duration_since(last));
        }
        self.subscribers.retain(|s| !s.is_closed());
        for s in &self.subscribers {
            let _ = s.try_send(*event);
        }
    }

    fn ended(&mut self, record: &Record) {
        self.last_step.remove(&record.id());
        if let Some(outcome) = record.outcome() {
            self.metrics.borrow_mut().ended(outcome);
        }
        if let Some(notifier) = &self.notifier {
            notifier.ended(record);
        }
    }

    /// Counted, as the outcomes of every retained deployment are; never notified again (the
    /// process that ended it did).
    fn restored(&mut self, record: &Record) {
        if let Some(outcome) = record.outcome() {
            self.metrics.borrow_mut().ended(outcome);
        }
    }

    fn link(&mut self, link: Link) {
        log::link(link);
    }

    fn retrying(&mut self, command: &Command, retry: Retry) {
        let name = metrics::command(&command.kind);
        log::retry(command.deployment, name, &retry);
        self.metrics.borrow_mut().retry(name);
    }
}

/// The agent of this process.
type TheAgent = Agent<CAPACITY, Logs, Shelf, FileJournal>;

/// The deployments of this process.
pub struct Deployments {
    agent: Rc<TheAgent>,
    time: Rc<StdTime>,
    /// Told when the journal wants a rewrite ([`Deployments::rewrite_wanted`]).
    rewrite: async_channel::Receiver<()>,
    /// Cluster mode: this instance.
    member: Option<Arc<Member>>,
}

impl fmt::Debug for Deployments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deployments").finish_non_exhaustive()
    }
}

/// The repository of the options, as the agent's trait (both runtimes' workers fetch through
/// it, each with its own connections and clocks).
#[derive(Debug)]
pub enum Source<'a, C: Connector = TcpConnector, T: Time = StdTime> {
    /// An HTTP repository.
    Http(HttpRepository<'a, C, T>),
    /// A directory in the published layout.
    Local(LocalRepository),
}

impl<C: Connector, T: Time> Repository for Source<'_, C, T> {
    async fn fetch<W: embedded_io_async::Write>(
        &self,
        location: &Location<'_>,
        out: &mut W,
        buf: &mut [u8],
    ) -> Result<u64, FetchError> {
        match self {
            Self::Http(r) => r.fetch(location, out, buf).await,
            Self::Local(r) => r.fetch(location, out, buf).await,
        }
    }

    async fn fetch_index<W: embedded_io_async::Write>(
        &self,
        at: &IndexLocation<'_>,
        out: &mut W,
        buf: &mut [u8],
    ) -> Result<u64, FetchError> {
        match self {
            Self::Http(r) => r.fetch_index(at, out, buf).await,
            Self::Local(r) => r.fetch_index(at, out, buf).await,
        }
    }
}

/// Creates `dir` and its missing parents, private to the user (0700) when created.
pub fn create_private_dir(dir: &std::path::Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

impl Deployments {
    /// Takes the data directory (its lock), restores what its journal holds, rewrites it (a
    /// torn tail and what fell out of retention dropped), and starts the agent's tasks on
    /// `executor`; answers the replay-cache entries the journal held, for the service to
    /// restore. When the rewrite fails the journal is broken ([`Deployments::journal_broken`]):
    /// nothing moves until a later rewrite repairs it.
    ///
    /// Refused (an error naming the file, and what to do) when another process holds the
    /// directory, when the journal is damaged anywhere but in its last frame, or when a
    /// deployment it records cannot be resumed.
    pub fn start(
        executor: &Rc<LocalExecutor<'static>>,
        options: &Options,
    ) -> io::Result<(Rc<Self>, Vec<Stamp>)> {
        create_private_dir(&options.data_dir)?;
        let store_dir = options.data_dir.join("store");
        create_private_dir(&store_dir)?;
        let (mut journal, restored) = match &options.member {
            Some(member) => journal::open_etcd(&options.data_dir, member),
            None => journal::open(&options.data_dir),
        }
        .map_err(io::Error::other)?;
        let (due, rewrite) = async_channel::bounded(1);
        journal.tell_when_due(due);
        let time = Rc::new(StdTime::new());
        let ledger = Ledger::new(Shelf::default(), options.retention);
        let metrics = Rc::new(RefCell::new(Metrics::default()));
        let notifier = options.notify.as_ref().and_then(|(notify, secret)| {
            Notifier::new(
                notify,
                secret.clone(),
                options.trust.clone(),
                metrics.clone(),
            )
        });
        let logs = Logs {
            metrics,
            notifier: notifier.clone(),
            ..Logs::default()
        };
        let agent = Rc::new(Agent::with_journal(
            Deployer::new(options.policy),
            ledger,
            logs,
            journal,
        ));
        let store = Rc::new(DirStore::new(store_dir));
        let stamps = restore(&agent, &time, &store, restored)?;
        // A failure is logged, and leaves the journal broken until repaired.
        let _ = agent.rewrite(stamps.iter().copied());
        if let Some(notifier) = &notifier {
            // A notification leaves once its deployment's end is committed.
            let committer = agent.clone();
            notifier.spawn(executor, move || committer.commit().is_ok());
        }
        let connector = Rc::new(
            TcpConnector::for_agent(&options.agent)
                .with_trust(options.trust.clone().logging_refusals()),
        );
        let credentials = Rc::new(options.repository_credentials.clone());
        let conductr = options.conductr.parsed();
        let repository = Rc::new(options.repository.clone());
        let workers = options.workers.clamp(1, agent::MAX_WORKERS);
        for id in 0..workers {
            let (agent, time, connector, store) = (
                agent.clone(),
                time.clone(),
                connector.clone(),
                store.clone(),
            );
            let repository = repository.clone();
            let credentials = credentials.clone();
            let config = options.agent;
            executor
                .spawn(async move {
                    let mut buffers = Box::new(Buffers::new());
                    let source = match &*repository {
                        RepositoryOption::Http(base) => Source::Http(
                            HttpRepository::new(base.url(), &*connector, &*time, config.io_timeout)
                                .with_authorization(
                                    credentials
                                        .as_ref()
                                        .as_ref()
                                        .map(Credentials::authorization),
                                ),
                        ),
                        RepositoryOption::Dir(dir) => {
                            Source::Local(LocalRepository::new(DirRepository::new(dir.clone())))
                        }
                    };
                    let mut worker = Worker::new(
                        id,
                        conductr.as_url(),
                        &*connector,
                        &*time,
                        &*store,
                        &source,
                        config,
                        &mut buffers,
                    );
                    worker.run(&*agent).await;
                })
                .detach();
        }
        let (timer_agent, timer_time) = (agent.clone(), time.clone());
        executor
            .spawn(async move { timer_agent.run_timer(&*timer_time).await })
            .detach();
        let (events_agent, events_time) = (agent.clone(), time.clone());
        let timeout = options.agent.io_timeout;
        let retry = options.agent.poll_interval;
        executor
            .spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let url = conductr.as_url();
                events_agent
                    .run_events(url, &*connector, &*events_time, timeout, retry, &mut buf)
                    .await;
            })
            .detach();
        Ok((
            Rc::new(Self {
                agent,
                time,
                rewrite,
                member: options.member.clone(),
            }),
            stamps,
        ))
    }

    /// Makes everything appended to the journal durable (before a webhook is answered 202).
    pub fn commit(&self) -> Result<(), Unrecorded> {
        self.agent.commit()
    }

    /// Appends an accepted lockstep signature's replay-cache entry ([`commit`](Self::commit)
    /// before answering).
    pub fn record_stamp(&self, stamp: Stamp) -> Result<(), Unrecorded> {
        self.agent.record_stamp(stamp)
    }

    /// Rewrites the journal with what is live and `stamps` (the live replay-cache entries):
    /// compaction, or the repair of a journal that could not be written.
    pub fn rewrite(&self, stamps: impl IntoIterator<Item = Stamp>) -> Result<(), Unrecorded> {
        self.agent.rewrite(stamps)
    }

    /// Cluster mode: whether etcd answered the lease's last renewal; `None` without a cluster.
    pub fn etcd_answers(&self) -> Option<bool> {
        self.member.as_ref().map(|m| m.etcd_answers())
    }

    /// Where the journal is (its file, or its keys in etcd).
    pub fn journal_place(&self) -> String {
        self.agent
            .with_journal_mut(|j| j.path().display().to_string())
    }

    /// Cluster mode, on the way out: gives the lease back, so that a standby takes over at
    /// once rather than after the TTL.
    pub fn leave_cluster(&self) {
        if let Some(member) = &self.member {
            member.leave();
        }
    }

    /// Whether a rewrite may be tried now: always with a file; in cluster mode, while etcd
    /// answers the lease's renewals.
    pub fn may_rewrite(&self) -> bool {
        self.member.as_ref().is_none_or(|m| m.etcd_answers())
    }

    /// Whether the journal wants a rewrite: it grew past its bound, or it is broken.
    pub fn wants_rewrite(&self) -> bool {
        self.agent.with_journal_mut(|j| j.wants_rewrite())
    }

    /// Whether the journal is broken (a write failed and no rewrite succeeded since).
    pub fn journal_broken(&self) -> bool {
        self.agent.with_journal_mut(|j| j.broken().is_some())
    }

    /// The journal's size in bytes, its fsyncs and rewrites.
    pub fn journal_stats(&self) -> (u64, u64, u64) {
        self.agent
            .with_journal_mut(|j| (j.len(), j.syncs, j.rewrites))
    }

    /// Completes when a commit found a rewrite due: the journal past its bound, or broken.
    pub async fn rewrite_wanted(&self) {
        let _ = self.rewrite.recv().await;
    }

    /// A verified notification: admitted, or refused (core decides: the redelivery check,
    /// the failed-version check, then the in-flight limit, then the table).
    pub fn notify(
        &self,
        request: lockstep_core::deployer::Request,
        asks: Asks,
    ) -> Result<Admitted, NotAdmitted> {
        self.agent.notify(self.time.now(), request, asks)
    }

    /// Waits, at most [`SCREENING_WAIT`](agent::SCREENING_WAIT), for the
    /// screening of the deployment `id` just admitted ([`Agent::screened`]): its refusal of a
    /// downgrade, if it came in time.
    pub async fn screened(&self, id: DeploymentId) -> Option<ledger::FailedBefore> {
        self.agent
            .screened(&*self.time, id, agent::SCREENING_WAIT)
            .await
    }

    /// An operator's abort (core decides: [`Agent::abort`]); commit before answering.
    pub fn abort(&self, id: DeploymentId) -> Result<Aborted, NotHere> {
        self.agent.abort(self.time.now(), id)
    }

    /// The clocks.
    pub fn time(&self) -> &StdTime {
        &self.time
    }

    /// The service's metrics, where the deployments count their steps and outcomes; the HTTP
    /// front counts its requests in the same place.
    pub fn metrics(&self) -> Rc<RefCell<Metrics>> {
        self.agent.with_sink(|logs| logs.metrics.clone())
    }

    /// How many outcome notifications are not delivered yet (0 without `--notify`).
    pub fn notifications_pending(&self) -> usize {
        self.agent
            .with_sink(|logs| logs.notifier.as_ref().map_or(0, Notifier::pending))
    }

    /// Stops starting commands (shutting down); see [`Agent::drain`].
    pub fn drain(&self) {
        self.agent.drain();
    }

    /// How many commands are under way.
    pub fn busy(&self) -> usize {
        self.agent.busy()
    }

    /// Whether the control API answers, as the agent last found it.
    pub fn link(&self) -> Link {
        self.agent.link()
    }

    /// How many deployments are in flight.
    pub fn in_flight(&self) -> usize {
        self.agent.read(|deployer, _| deployer.in_flight())
    }

    /// Writes the events of a deployment in flight or retained (`GET /deployments/{id}`);
    /// `None` when there is no such deployment.
    pub fn write_events(&self, id: DeploymentId, out: &mut impl fmt::Write) -> Option<fmt::Result> {
        self.agent
            .read(|_, ledger| ledger.events(id).map(|log| log.write_json(out)))
    }

    /// Writes the deployments in flight and retained, newest first (`GET /deployments`).
    pub fn write_listing(&self, out: &mut impl fmt::Write) -> fmt::Result {
        self.agent
            .read(|deployer, ledger| ledger.write_listing(deployer.records(), out))
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> async_channel::Receiver<Event> {
        let (tx, rx) = async_channel::bounded(1024);
        self.agent.with_sink(|logs| logs.subscribers.push(tx));
        rx
    }
}

/// Restores what the journal held into `agent`, in the deployments' order: the ended ones for
/// reading, those in flight resumed (back to resolving when a file they need is gone); then
/// removes the files of any deployment not in flight. Answers the replay-cache entries.
///
/// Both runtimes restore through this (`lockstep serve` here, `lockstep-minimal` with its own
/// sink and shelf).
pub fn restore<const N: usize, S: Sink, H: ledger::Shelf>(
    agent: &Agent<N, S, H, FileJournal>,
    time: &StdTime,
    store: &DirStore,
    restored: Restored,
) -> io::Result<Vec<Stamp>> {
    let path = agent.with_journal_mut(|j| j.path());
    if let Some(offset) = restored.torn_at {
        log::warn(&format!(
            "the journal `{}` ended in a frame cut short at byte {offset} (a crash in the \
             middle of a write): it is dropped; nothing that relied on it was done",
            path.display()
        ));
    }
    let now = time.now();
    let (mut ended, mut resumed, mut refetch) = (0usize, 0usize, 0usize);
    let mut live = std::collections::HashSet::new();
    for kept in restored.deployments {
        let mut record = kept.record;
        let id = record.id();
        if !record.has_ended() {
            let missing = |kind| {
                !store
                    .path_of(FileKey {
                        deployment: id,
                        kind,
                    })
                    .is_file()
            };
            if (record.needs_bundle_file() && missing(FileKind::Bundle))
                || (record.needs_configuration_file() && missing(FileKind::Configuration))
            {
                record.resolve_again();
                refetch += 1;
            }
            live.insert(id);
        }
        let was_ended = record.has_ended();
        agent.restore(now, record, kept.events).map_err(|e| {
            io::Error::other(format!(
                "the journal `{}` records deployment {id}, which cannot be resumed ({e}); move \
                 the journal aside (mv journal journal.damaged) to start without it",
                path.display()
            ))
        })?;
        if was_ended {
            ended += 1;
        } else {
            resumed += 1;
        }
    }
    remove_orphans(store, &live);
    if restored.frames > 0 {
        log::info(&format!(
            "journal `{}`: {} frame(s) read; {ended} ended deployment(s) restored, {resumed} \
             in flight resumed ({refetch} to download again: their files were gone)",
            path.display(),
            restored.frames
        ));
    }
    if restored.orphan_events > 0 {
        log::warn(&format!(
            "the journal `{}` held {} event(s) of deployments whose record was lost with its \
             torn tail; they are dropped",
            path.display(),
            restored.orphan_events
        ));
    }
    Ok(restored.stamps)
}

/// Removes every deployment's files in the store but those of `live` ones: what a deployment
/// that ended, or a process killed before it removed them, left behind.
fn remove_orphans(store: &DirStore, live: &std::collections::HashSet<DeploymentId>) {
    let Ok(entries) = std::fs::read_dir(store.root()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let keep = name
            .to_str()
            .and_then(|n| DeploymentId::parse(n).ok())
            .is_some_and(|id| live.contains(&id));
        if !keep {
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if let Err(e) = removed {
                log::warn(&format!(
                    "`{}` was left by an earlier run and cannot be removed: {e}",
                    path.display()
                ));
            }
        }
    }
}
