//! The Linux platform of the app: picoserve and the agent's tasks on the runtime of `rt` (one
//! thread, epoll), the journal in the data directory, the drain on SIGTERM and SIGINT.

use std::cell::RefCell;
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use lockstep::deployments::{RepositoryOption, Source, create_private_dir};
use lockstep::journal::{self, FileJournal};
use lockstep::log;
use lockstep::platform::{DirStore, LocalRepository, to_std_duration};
use lockstep::repository::DirRepository;
use lockstep_core::agent::http::HttpRepository;
use lockstep_core::agent::{self, Agent, Buffers, Link, Retry, Sink, Time, Worker};
use lockstep_core::budget::{Budget, ConnId, Opened, Slot};
use lockstep_core::deployer::{Command, Deployer, Event, Policy, Record};
use lockstep_core::ledger::{Ledger, Retained};
use lockstep_core::service::{self, Webhooks};
use lockstep_core::signature::Stamp;
use lockstep_core::time::Duration as CoreDuration;
use lockstep_core::time::Instant as CoreInstant;
use lockstep_minimal::{Admission, App, AppAgent, Hub, MAX_STREAMS, Platform, Settings};

use crate::config::{Failure, IN_FLIGHT, Options, REPLAY_CACHE, RETENTION};
use crate::os::{RtConnector, RtTime, RtTimer, Stop, Tcp};
use crate::rt::{Capacity, Io, Runtime, Sleep, TaskId};

/// How many commands run at once (each worker's buffers are about 180 KiB).
const WORKERS: usize = 2;
/// The most bytes of a request head.
const MAX_HEAD: usize = 8 * 1024;
/// What a listing or a deployment's events may take (500 above).
const RENDER: usize = 256 * 1024;
/// On SIGTERM or SIGINT, how long running steps may take to finish.
const DRAIN_DEADLINE: StdDuration = StdDuration::from_secs(30);
/// The runtime's tasks beside the connections': the accepting loop, the workers, the agent's
/// timer and bundle-event tasks, the journal's keeper.
const FIXED_TASKS: usize = WORKERS + 4;

/// The platform of this process.
#[derive(Debug)]
struct Linux;

impl Platform for Linux {
    type Sink = Logs;
    type Shelf = heapless::Vec<Retained, RETENTION>;
    type Journal = FileJournal;
    type Time = RtTime;

    fn random(&self) -> [u8; 16] {
        // Without the OS's randomness no id can be drawn; a fixed one would collide.
        lockstep::random::id_bytes().expect("the OS random number generator failed")
    }

    fn answered(&self, method: &str, path: &str, status: u16, took: CoreDuration) {
        log::request(method, path, status, to_std_duration(took));
    }

    #[cfg(feature = "count-allocations")]
    fn heap_allocations(&self) -> Option<u64> {
        let stats = GLOBAL.stats();
        u64::try_from(stats.allocations.saturating_add(stats.reallocations)).ok()
    }
}

/// A test build's allocator: the system's, counting (`lockstep_heap_allocations_total`).
#[cfg(feature = "count-allocations")]
#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

/// The platform's sink: a log line per step and per retry.
#[derive(Debug, Default)]
struct Logs;

impl Sink for Logs {
    fn event(&mut self, event: &Event) {
        log::step(event);
    }

    fn ended(&mut self, _record: &Record) {}

    fn restored(&mut self, _record: &Record) {}

    fn link(&mut self, link: Link) {
        log::link(link);
    }

    fn retrying(&mut self, command: &Command, retry: Retry) {
        log::retry(
            command.deployment,
            lockstep::metrics::command(&command.kind),
            &retry,
        );
    }
}

type TheApp = App<'static, IN_FLIGHT, REPLAY_CACHE, Linux>;
type TheAgent = AppAgent<IN_FLIGHT, Linux>;

/// Runs the service until drained after SIGTERM or SIGINT; prints `listening on
/// http://IP:PORT` first.
pub(crate) fn run(options: Options) -> Result<(), Failure> {
    let started = StdInstant::now();
    let data_dir = &options.data_dir;
    let io = |what: &str, e: std::io::Error| Failure::run(format!("{what}: {e}"));
    create_private_dir(data_dir)
        .map_err(|e| io(&format!("the data directory `{}`", data_dir.display()), e))?;
    let store_dir = data_dir.join("store");
    create_private_dir(&store_dir)
        .map_err(|e| io(&format!("the store `{}`", store_dir.display()), e))?;
    let (journal, restored) = journal::open(data_dir).map_err(|e| Failure::run(e.to_string()))?;
    let rt: &'static Runtime = Box::leak(Box::new(
        Runtime::new(capacity(options.max_connections)).map_err(|e| io("the runtime", e))?,
    ));
    let time: &'static RtTime = Box::leak(Box::new(RtTime::new(rt)));
    let policy = Policy {
        max_in_flight: IN_FLIGHT,
        step_deadline: lockstep::platform::from_std_duration(options.step_deadline),
        ..Policy::default()
    };
    let ledger = Ledger::new(heapless::Vec::new(), options.retention);
    let (agent, buffers) = built_aside(move || {
        let agent = Box::new(Agent::with_journal(
            Deployer::new(policy),
            ledger,
            Hub::new(Logs),
            journal,
        ));
        let buffers: [Box<Buffers>; WORKERS] = std::array::from_fn(|_| Box::new(Buffers::new()));
        (agent, buffers)
    })
    .map_err(|e| io("a thread to build the state on", e))?;
    let agent: &'static TheAgent = Box::leak(agent);
    let store: &'static DirStore = Box::leak(Box::new(DirStore::new(store_dir)));
    let stamps = lockstep::deployments::restore(agent, &time.std, store, restored)
        .map_err(|e| Failure::run(e.to_string()))?;
    // A failure is logged, and leaves the journal broken until repaired.
    let _ = agent.rewrite(stamps.iter().copied());

    let webhooks_config = service::Config {
        window: lockstep::platform::from_std_duration(options.replay_window),
        body_limit: options.max_body,
        ..service::Config::default()
    };
    let mut webhooks = Webhooks::new(options.secret, webhooks_config);
    let now = time.now();
    for stamp in stamps {
        let _ = webhooks.restore_stamp(now, stamp);
    }
    if agent.with_journal_mut(|j| j.broken().is_some()) {
        webhooks.set_recording(false);
    }
    let render: &'static mut [u8] = vec![0u8; RENDER].leak();
    let platform: &'static Linux = &Linux;
    let app: &'static TheApp = Box::leak(Box::new(App::new(
        agent,
        time,
        platform,
        webhooks,
        Settings {
            heartbeat: lockstep::platform::from_std_duration(options.heartbeat),
            max_body: options.max_body.bytes(),
            max_streams: MAX_STREAMS,
            replay_capacity: REPLAY_CACHE,
        },
        render,
    )));

    let agent_config = agent::Config {
        io_timeout: lockstep::platform::from_std_duration(options.io_timeout),
        poll_interval: lockstep::platform::from_std_duration(options.poll_interval),
        ..agent::Config::default()
    };
    let spawned = spawn_agent(
        rt,
        (agent, buffers),
        time,
        store,
        (&options.conductr, &options.repository),
        agent_config,
    )
    .and_then(|()| rt.spawn(keep_journal(rt, app, time)));
    spawned.map_err(|_| Failure::run("the runtime's task table is too small".to_owned()))?;

    let listener = TcpListener::bind(options.listen)
        .and_then(|l| Io::new(rt, l))
        .map_err(|e| io(&format!("cannot listen on {}", options.listen), e))?;
    let addr = listener
        .get_ref()
        .local_addr()
        .map_err(|e| io("the listening socket", e))?;
    // Caught before the `listening` line: a signal sent as soon as it is read is handled.
    let stop = Stop::catch(rt);
    let _ = writeln!(std::io::stdout(), "listening on http://{addr}");
    let _ = std::io::stdout().flush();
    log::info(&format!("ready in {}ms", started.elapsed().as_millis()));

    let config: &'static picoserve::Config = Box::leak(Box::new(
        picoserve::Config::new(picoserve::Timeouts {
            start_read_request: picoserve_duration(options.io_timeout),
            persistent_start_read_request: picoserve::time::Duration::from_secs(30),
            read_request: picoserve_duration(options.io_timeout),
            write: picoserve_duration(options.io_timeout),
        })
        .keep_connection_alive(),
    ));
    let buffer = MAX_HEAD + options.max_body.bytes();
    let budget = budget(
        options.max_connections,
        MAX_STREAMS.min(options.max_connections.saturating_sub(1)),
    )?;
    rt.spawn(accept(rt, listener, app, config, buffer, budget))
        .map_err(|_| Failure::run("the runtime's task table is too small".to_owned()))?;
    rt.block_on(drain_on_signal(rt, app, stop));
    Ok(())
}

/// The runtime's tables for `connections` connections: a task each beside the fixed ones; a
/// socket each, beside the listener, the signal pipes and the agent's connections (a worker
/// holds two at most: ConductR's and the repository's); a few timers a task (picoserve's
/// time-outs nest, as core's do).
fn capacity(connections: usize) -> Capacity {
    let tasks = FIXED_TASKS + connections;
    Capacity {
        tasks,
        sources: connections + 1 + 2 + 2 * WORKERS + 2 + 8,
        timers: 4 * (tasks + 1),
    }
}

/// Runs `make` on a short-lived thread, for the boxes it returns: the temporaries of a large
/// value (the agent's quarter megabyte is built on a stack, then moved into its box) live on
/// that thread's stack, unmapped when it ends, not on the main thread's, whose touched pages
/// would stay resident for the life of the process.
fn built_aside<T: Send>(make: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    std::thread::scope(|scope| {
        // A debug build keeps several copies of the agent on the stack: room for them all
        // (reserved, not resident until touched).
        let builder = std::thread::Builder::new()
            .name("build".into())
            .stack_size(16 << 20)
            .spawn_scoped(scope, make)?;
        builder
            .join()
            .map_err(|_| std::io::Error::other("building the state panicked"))
    })
}

fn picoserve_duration(d: std::time::Duration) -> picoserve::time::Duration {
    picoserve::time::Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The agent's workers, its timer task and its bundle-event task.
fn spawn_agent(
    rt: &'static Runtime,
    (agent, buffers): (&'static TheAgent, [Box<Buffers>; WORKERS]),
    time: &'static RtTime,
    store: &'static DirStore,
    (conductr, repository): (&lockstep::url::BaseUrl, &RepositoryOption),
    config: agent::Config,
) -> Result<(), crate::rt::Full> {
    let connector: &'static RtConnector = Box::leak(Box::new(RtConnector::new(
        rt,
        to_std_duration(config.io_timeout),
    )));
    let conductr: &'static agent::http::UrlBuf = Box::leak(Box::new(conductr.parsed()));
    let source: &'static Source<'static, RtConnector, RtTime> =
        Box::leak(Box::new(match repository {
            RepositoryOption::Http(base) => {
                let base: &'static lockstep::url::BaseUrl = Box::leak(Box::new(base.clone()));
                Source::Http(HttpRepository::new(
                    base.url(),
                    connector,
                    time,
                    config.io_timeout,
                ))
            }
            RepositoryOption::Dir(dir) => {
                Source::Local(LocalRepository::new(DirRepository::new(dir.clone())))
            }
        }));
    for (id, mut buffers) in buffers.into_iter().enumerate() {
        rt.spawn(async move {
            let mut worker = Worker::new(
                id,
                conductr.as_url(),
                connector,
                time,
                store,
                source,
                config,
                &mut buffers,
            );
            worker.run(agent).await;
        })?;
    }
    rt.spawn(async move { agent.run_timer(time).await })?;
    rt.spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        agent
            .run_events(
                conductr.as_url(),
                connector,
                time,
                config.io_timeout,
                config.poll_interval,
                &mut buf,
            )
            .await;
    })?;
    Ok(())
}

/// The connection budget (core's: the longest-waiting connection is shed for a newcomer;
/// 503 when every slot works or streams) and its clock, shared by the accepting loop and the
/// connections.
struct Admitted {
    budget: RefCell<Budget<Vec<Slot>>>,
    origin: StdInstant,
}

impl Admitted {
    fn now(&self) -> CoreInstant {
        let millis = self.origin.elapsed().as_millis();
        CoreInstant::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
    }
}

/// A connection's place in the budget; freed when its task ends, however it ends (a shed
/// connection's id is stale by then, and freeing it changes nothing).
struct Held {
    admitted: Rc<Admitted>,
    id: ConnId,
}

impl Admission for Held {
    fn request_read(&self) {
        let _ = self.admitted.budget.borrow_mut().request_read(self.id);
    }

    fn answered(&self) {
        let now = self.admitted.now();
        let _ = self.admitted.budget.borrow_mut().answered(self.id, now);
    }

    fn stream(&self) -> bool {
        self.admitted.budget.borrow_mut().stream(self.id).is_ok()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.admitted.budget.borrow_mut().close(self.id);
    }
}

/// The budget of `max` connections, `streams` of them event streams at most.
fn budget(max: usize, streams: usize) -> Result<Budget<Vec<Slot>>, Failure> {
    Budget::new(vec![Slot::FREE; max], streams).map_err(|e| {
        Failure::usage(format!(
            "--max-connections: {e} (it must be more than the {streams} event streams)"
        ))
    })
}

/// Accepts connections for ever, `TCP_NODELAY` on each and a task per connection, admitted
/// by the budget: never paused; at the limit the longest-waiting connection (no request under
/// way) is shed for the newcomer, and when every slot works or streams the newcomer gets 503
/// `too many connections` and is closed.
async fn accept(
    rt: &'static Runtime,
    listener: Io<TcpListener>,
    app: &'static TheApp,
    config: &'static picoserve::Config,
    buffer: usize,
    budget: Budget<Vec<Slot>>,
) {
    let slots = budget.capacity();
    let admitted = Rc::new(Admitted {
        budget: RefCell::new(budget),
        origin: StdInstant::now(),
    });
    // The task of each slot: cancelling it drops its future and closes its socket.
    let mut tasks: Vec<Option<TaskId>> = vec![None; slots];
    loop {
        let accepted = listener
            .read_with(TcpListener::accept)
            .await
            .and_then(|(stream, _)| Io::new(rt, stream));
        let Ok(stream) = accepted else {
            // Out of descriptors, or a connection reset before it was accepted: the listener
            // stays; try again shortly.
            Sleep::after(rt, StdDuration::from_millis(10)).await;
            continue;
        };
        let _ = stream.get_ref().set_nodelay(true);
        let opened = admitted.budget.borrow_mut().open(admitted.now());
        let Ok(Opened { id, shed }) = opened else {
            refuse(&stream).await;
            continue;
        };
        if shed.is_some()
            && let Some(previous) = tasks.get_mut(id.slot()).and_then(Option::take)
        {
            // The shed connection's task, cancelled: its socket closes.
            rt.cancel(previous);
        }
        let held = Held {
            admitted: admitted.clone(),
            id,
        };
        let task = rt.spawn(async move {
            let mut buf = vec![0u8; buffer];
            app.serve(Tcp(stream), RtTimer(rt), config, &mut buf, &held)
                .await;
            drop(held);
        });
        // The budget has a slot for each task the table holds: spawning cannot fail.
        if let (Ok(task), Some(slot)) = (task, tasks.get_mut(id.slot())) {
            *slot = Some(task);
        }
        // Let the new connection read what it was sent before the next is accepted: one
        // whose request has arrived must be working, not shed for the next newcomer.
        futures_lite::future::yield_now().await;
    }
}

/// 503 `too many connections`, as much of it as the socket takes at once; the connection
/// closes when `stream` is dropped.
async fn refuse(stream: &Io<TcpStream>) {
    let refusal = service::Refusal::new(service::Reason::ConnectionsFull);
    let mut line = heapless::String::<128>::new();
    let _ = core::fmt::write(&mut line, format_args!("{}\n", refusal.reason));
    let mut answer = heapless::String::<320>::new();
    let _ = core::fmt::write(
        &mut answer,
        format_args!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; \
             charset=utf-8\r\nContent-Length: {}\r\nRetry-After: {}\r\nConnection: \
             close\r\n\r\n{line}",
            line.len(),
            service::RETRY_AFTER_SECS,
        ),
    );
    let _ = stream
        .write_with(|mut s| std::io::Write::write(&mut s, answer.as_bytes()))
        .await;
}

/// Keeps the journal bounded and repairs it: rewrites it when it is past its bound, or
/// broken (webhooks are refused meanwhile); looks every second.
async fn keep_journal(rt: &'static Runtime, app: &'static TheApp, time: &'static RtTime) {
    loop {
        Sleep::after(rt, StdDuration::from_secs(1)).await;
        let agent = app.agent();
        if !agent.with_journal_mut(|j| j.wants_rewrite()) {
            continue;
        }
        let now = time.now();
        let stamps: Vec<Stamp> = app.webhooks().borrow().stamps(now).collect();
        let written = agent.rewrite(stamps).is_ok();
        app.webhooks().borrow_mut().set_recording(written);
    }
}

/// On SIGTERM or SIGINT: refuse new webhooks and answer /healthz 503 while the commands under
/// way finish, up to the deadline; then returns (exit 0). Deployments still in flight resume
/// from their records at the next start.
async fn drain_on_signal(rt: &'static Runtime, app: &'static TheApp, stop: Stop) {
    let signal = stop.signalled().await;
    app.shut_down();
    log::info(&format!(
        "{signal}: draining; new webhooks are refused, running steps may take {}ms",
        DRAIN_DEADLINE.as_millis()
    ));
    let until = StdInstant::now() + DRAIN_DEADLINE;
    let agent = app.agent();
    while agent.busy() > 0 && StdInstant::now() < until {
        Sleep::after(rt, StdDuration::from_millis(20)).await;
    }
    let busy = agent.busy();
    if busy > 0 {
        log::warn(&format!(
            "the drain deadline of {}ms passed with {busy} command(s) still under way",
            DRAIN_DEADLINE.as_millis()
        ));
    }
    // What ended meanwhile is recorded: a restart does not run it again.
    let _ = agent.commit();
    let left = agent.read(|deployer, _| deployer.in_flight());
    log::info(&format!(
        "drained; {left} deployment(s) left in flight, where their last step left them"
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the process reserves for its state, beside each connection's buffer (`MAX_HEAD` +
    /// `--max-body`) and the executor's tasks: the figures the README gives (x86_64).
    #[test]
    fn test_static_state_sizes() {
        let app = size_of::<TheApp>();
        let agent = size_of::<TheAgent>();
        let buffers = size_of::<Buffers>();
        let total = app + agent + WORKERS * buffers + RENDER;
        println!(
            "App {app} B, agent {agent} B (deployer, ledger, journal), worker buffers {buffers} B \
             x {WORKERS}, render buffer {RENDER} B: {total} B"
        );
        assert_eq!(
            (app, agent, buffers, total),
            (52_600, 248_312, 149_768, 862_592)
        );
    }
}
