//! The deployments of a lockstep process: core's agent and deployer on the std platform, with
//! the event logs kept for reading and streaming.
//!
//! [`Deployments::start`] spawns, on one single-threaded executor, the agent's workers (each
//! with its buffers on the heap), its timer and its bundle-event follower. Notifications come in
//! through [`Deployments::handle`]; every event goes to the deployment's [`EventLog`] and to
//! the subscribers of [`Deployments::subscribe`].

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::rc::Rc;

use async_executor::LocalExecutor;
use lockstep_core::agent::http::HttpRepository;
use lockstep_core::agent::{
    self, Agent, Buffers, FetchError, Location, Repository, Sink, Time, Worker,
};
use lockstep_core::deployer::{
    Deployer, DeploymentId, Event, EventLog, Handled, Input, Policy, Record,
};

use crate::log;
use crate::metrics::Metrics;
use crate::platform::{DirStore, LocalRepository, StdTime, TcpConnector};
use crate::repository::DirRepository;
use crate::url::{BadUrl, BaseUrl};

/// The most deployments in flight (the deployer's table).
pub const CAPACITY: usize = 64;

/// Where bundles are downloaded from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepositoryOption {
    /// An HTTP repository at this base URL.
    Http(BaseUrl),
    /// A directory in the published layout.
    Dir(PathBuf),
}

impl RepositoryOption {
    /// `http://...` is a URL; anything else a directory.
    pub fn parse(text: &str) -> Result<Self, BadUrl> {
        if text.starts_with("http://") || text.starts_with("https://") {
            Ok(Self::Http(BaseUrl::parse(text)?))
        } else {
            Ok(Self::Dir(PathBuf::from(text)))
        }
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
    /// The deployer's policies.
    pub policy: Policy,
    /// The workers' settings.
    pub agent: agent::Config,
    /// How many ended deployments are kept for reading.
    pub retention: usize,
}

/// The sink of the agent: the event logs, the ended records, the subscribers, the step log
/// lines and metrics.
#[derive(Debug, Default)]
pub struct Logs {
    logs: HashMap<DeploymentId, EventLog>,
    ended: HashMap<DeploymentId, Record>,
    order: VecDeque<DeploymentId>,
    retention: usize,
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
        let log = self.logs.entry(event.deployment).or_insert_with(|| {
            self.order.push_back(event.deployment);
            EventLog::new(event.deployment)
        });
        log.push(event);
        self.subscribers.retain(|s| !s.is_closed());
        for s in &self.subscribers {
            let _ = s.try_send(*event);
        }
    }

    fn ended(&mut self, record: &Record) {
        self.last_step.remove(&record.id());
        self.metrics.borrow_mut().ended(record);
        self.ended.insert(record.id(), *record);
        // Retention: past the limit, the oldest ended deployments are forgotten.
        while self.ended.len() > self.retention {
            let Some(at) = self.order.iter().position(|id| self.ended.contains_key(id)) else {
                break;
            };
            if let Some(id) = self.order.remove(at) {
                self.ended.remove(&id);
                self.logs.remove(&id);
            }
        }
    }
}

/// The deployments of this process.
pub struct Deployments {
    agent: Rc<Agent<CAPACITY, Logs>>,
    time: Rc<StdTime>,
}

impl std::fmt::Debug for Deployments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
        let logs = Logs {
            retention: options.retention.max(1),
            ..Logs::default()
        };
        let agent = Rc::new(Agent::new(Deployer::new(options.policy), logs));
        let connector = Rc::new(TcpConnector::for_agent(&options.agent));
        let store = Rc::new(DirStore::new(store_dir));
        let url = options.conductr.url();
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
                        url,
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
                events_agent
                    .run_events(url, &*connector, &*events_time, timeout, retry, &mut buf)
                    .await;
            })
            .detach();
        Ok(Rc::new(Self { agent, time }))
    }

    /// Feeds the deployer (a notification, a resumed record).
    pub fn handle(&self, input: Input<'_>) -> Handled {
        self.agent.handle(self.time.now(), input)
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

    /// The deployment in flight for this digest, if any (a redelivery lands on it).
    pub fn in_flight_with_digest(
        &self,
        digest: lockstep_core::bundle::Digest,
    ) -> Option<DeploymentId> {
        self.agent.with_deployer(|d| {
            d.records()
                .find(|r| r.outcome.is_none() && r.request.digest == digest)
                .map(Record::id)
        })
    }

    /// Stops starting commands (shutting down); see [`Agent::drain`].
    pub fn drain(&self) {
        self.agent.drain();
    }

    /// How many commands are under way.
    pub fn busy(&self) -> usize {
        self.agent.busy()
    }

    /// How many deployments are in flight.
    pub fn in_flight(&self) -> usize {
        self.agent.with_deployer(Deployer::len)
    }

    /// The events of a deployment, if it is in flight or retained.
    pub fn log(&self, id: DeploymentId) -> Option<EventLog> {
        self.agent.with_sink(|logs| logs.logs.get(&id).cloned())
    }

    /// The record of a deployment, in flight or retained.
    pub fn record(&self, id: DeploymentId) -> Option<Record> {
        self.agent
            .with_deployer(|d| d.record(id).copied())
            .or_else(|| self.agent.with_sink(|logs| logs.ended.get(&id).copied()))
    }

    /// The records of every deployment in flight or retained, newest first.
    pub fn records(&self) -> Vec<Record> {
        let in_flight: Vec<Record> = self.agent.with_deployer(|d| d.records().copied().collect());
        let ended: Vec<Record> = self.agent.with_sink(|logs| {
            logs.order
                .iter()
                .filter_map(|id| logs.ended.get(id).copied())
                .collect()
        });
        let mut all: Vec<Record> = in_flight.into_iter().chain(ended).collect();
        all.sort_by_key(|r| std::cmp::Reverse(r.order));
        all.dedup_by_key(|r| r.id());
        all
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> async_channel::Receiver<Event> {
        let (tx, rx) = async_channel::bounded(1024);
        self.agent.with_sink(|logs| logs.subscribers.push(tx));
        rx
    }
}
