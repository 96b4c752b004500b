//! The deployments of a lockstep process: core's agent, deployer and ledger on the std
//! platform.
//!
//! [`Deployments::start`] spawns, on one single-threaded executor, the agent's workers (each
//! with its buffers on the heap), its timer and its bundle-event follower. Notifications come in
//! through [`Deployments::notify`]; core's ledger keeps every event and the ended deployments
//! it retains, and this module tells the log, the metrics and the subscribers of
//! [`Deployments::subscribe`].

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;

use async_executor::LocalExecutor;
use lockstep_core::agent::http::HttpRepository;
use lockstep_core::agent::{
    self, Agent, Buffers, FetchError, Link, Location, Repository, Retry, Sink, Time, Worker,
};
use lockstep_core::deployer::{
    Admitted, Busy, Command, Deployer, DeploymentId, Event, Policy, Record,
};
use lockstep_core::ledger::{self, Ledger, Retained};

use crate::log;
use crate::metrics::{self, Metrics};
use crate::platform::{DirStore, LocalRepository, StdTime, TcpConnector};
use crate::repository::DirRepository;
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
    /// `<scheme>://...` is a URL, which must be `http://` (the scheme in any case); anything
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
    /// Not a valid `http://` base URL.
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
                 http:// base URL or a directory"
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
    /// Where downloads are kept while a deployment needs them (`<data dir>/store`).
    pub data_dir: PathBuf,
    /// How many commands run at once.
    pub workers: usize,
    /// The deployer's policies (the in-flight limit among them).
    pub policy: Policy,
    /// The workers' settings.
    pub agent: agent::Config,
    /// How many ended deployments are kept for reading.
    pub retention: usize,
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

/// The sink of the agent: the step and retry log lines, the metrics and the subscribers.
#[derive(Debug, Default)]
pub struct Logs {
    subscribers: Vec<async_channel::Sender<Event>>,
    metrics: Rc<RefCell<Metrics>>,
    /// When each deployment in flight logged its last event.
    last_step: HashMap<DeploymentId, std::time::Instant>,
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
    }

    fn link(&mut self, link: Link) {
        match link {
            Link::Down(fault) => log::warn(&format!(
                "the ConductR control API does not answer ({fault}); webhooks are still \
                 accepted, and their deployments wait for it up to their deadlines"
            )),
            Link::Up => log::info("the ConductR control API answers"),
            Link::Unknown => {}
        }
    }

    fn retrying(&mut self, command: &Command, retry: Retry) {
        let name = metrics::command(&command.kind);
        log::retry(command.deployment, name, &retry);
        self.metrics.borrow_mut().retry(name);
    }
}

/// The deployments of this process.
pub struct Deployments {
    agent: Rc<Agent<CAPACITY, Logs, Shelf>>,
    time: Rc<StdTime>,
}

impl fmt::Debug for Deployments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deployments").finish_non_exhaustive()
    }
}

/// The repository of the options, as the agent's trait.
enum Source<'a> {
    Http(HttpRepository<'a, TcpConnector, StdTime>),
    Local(LocalRepository),
}

impl Repository for Source<'_> {
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
}

impl Deployments {
    /// Starts the agent's tasks on `executor`.
    pub fn start(executor: &Rc<LocalExecutor<'static>>, options: &Options) -> io::Result<Rc<Self>> {
        let store_dir = options.data_dir.join("store");
        std::fs::create_dir_all(&store_dir)?;
        let time = Rc::new(StdTime::new());
        let ledger = Ledger::new(Shelf::default(), options.retention);
        let agent = Rc::new(Agent::new(
            Deployer::new(options.policy),
            ledger,
            Logs::default(),
        ));
        let connector = Rc::new(TcpConnector::for_agent(&options.agent));
        let store = Rc::new(DirStore::new(store_dir));
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
            let config = options.agent;
            executor
                .spawn(async move {
                    let mut buffers = Box::new(Buffers::new());
                    let source = match &*repository {
                        RepositoryOption::Http(base) => Source::Http(HttpRepository::new(
                            base.url(),
                            &*connector,
                            &*time,
                            config.io_timeout,
                        )),
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
        Ok(Rc::new(Self { agent, time }))
    }

    /// A verified notification: admitted, or refused as busy (core decides: the redelivery
    /// check, then the in-flight limit, then the table).
    pub fn notify(&self, request: lockstep_core::deployer::Request) -> Result<Admitted, Busy> {
        self.agent.notify(self.time.now(), request)
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
