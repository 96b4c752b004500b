//! The Linux platform of the app: async-io sockets and timers under picoserve, the agent's
//! tasks on one `LocalExecutor`, the journal in the data directory, the drain on SIGTERM and
//! SIGINT.

use std::cell::RefCell;
use std::future::Future;
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::time::Instant as StdInstant;

use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use lockstep::deployments::{RepositoryOption, Source, create_private_dir};
use lockstep::journal::{self, FileJournal};
use lockstep::log;
use lockstep::platform::{DirStore, LocalRepository, StdTime, TcpConnector, to_std_duration};
use lockstep::repository::DirRepository;
use lockstep::signals::Stop;
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

/// How many commands run at once (each worker's buffers are about 180 KiB).
const WORKERS: usize = 2;
/// The most bytes of a request head.
const MAX_HEAD: usize = 8 * 1024;
/// What a listing or a deployment's events may take (500 above).
const RENDER: usize = 256 * 1024;
/// On SIGTERM or SIGINT, how long running steps may take to finish.
const DRAIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// The platform of this process.
#[derive(Debug)]
struct Linux;

impl Platform for Linux {
    type Sink = Logs;
    type Shelf = heapless::Vec<Retained, RETENTION>;
    type Journal = FileJournal;
    type Time = StdTime;

    fn random(&self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        // Without the OS's randomness no id can be drawn; a fixed one would collide.
        getrandom::fill(&mut bytes).expect("the OS random number generator failed");
        bytes
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
    let time: &'static StdTime = Box::leak(Box::new(StdTime::new()));
    let policy = Policy {
        max_in_flight: IN_FLIGHT,
        ..Policy::default()
    };
    let ledger = Ledger::new(heapless::Vec::new(), options.retention);
    let agent: &'static TheAgent = Box::leak(Box::new(Agent::with_journal(
        Deployer::new(policy),
        ledger,
        Hub::new(Logs),
        journal,
    )));
    let store: &'static DirStore = Box::leak(Box::new(DirStore::new(store_dir)));
    let stamps = lockstep::deployments::restore(agent, time, store, restored)
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

    let executor: Rc<LocalExecutor<'static>> = Rc::new(LocalExecutor::new());
    let agent_config = agent::Config {
        io_timeout: lockstep::platform::from_std_duration(options.io_timeout),
        poll_interval: lockstep::platform::from_std_duration(options.poll_interval),
        ..agent::Config::default()
    };
    spawn_agent(
        &executor,
        agent,
        time,
        store,
        (&options.conductr, &options.repository),
        agent_config,
    );
    executor.spawn(keep_journal(app, time)).detach();

    let listener = Async::<TcpListener>::bind(options.listen)
        .map_err(|e| io(&format!("cannot listen on {}", options.listen), e))?;
    let addr = listener
        .get_ref()
        .local_addr()
        .map_err(|e| io("the listening socket", e))?;
    // Caught before the `listening` line: a signal sent as soon as it is read is handled.
    let stop = Stop::catch();
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
    executor
        .spawn(accept(
            executor.clone(),
            listener,
            app,
            config,
            buffer,
            budget,
        ))
        .detach();
    futures_lite::future::block_on(executor.run(drain_on_signal(app, stop)));
    Ok(())
}

fn picoserve_duration(d: std::time::Duration) -> picoserve::time::Duration {
    picoserve::time::Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The agent's workers, its timer task and its bundle-event task.
fn spawn_agent(
    executor: &Rc<LocalExecutor<'static>>,
    agent: &'static TheAgent,
    time: &'static StdTime,
    store: &'static DirStore,
    (conductr, repository): (&lockstep::url::BaseUrl, &RepositoryOption),
    config: agent::Config,
) {
    let connector: &'static TcpConnector = Box::leak(Box::new(TcpConnector::for_agent(&config)));
    let conductr: &'static agent::http::UrlBuf = Box::leak(Box::new(conductr.parsed()));
    let source: &'static Source<'static> = Box::leak(Box::new(match repository {
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
    for id in 0..WORKERS {
        executor
            .spawn(async move {
                let mut buffers = Box::new(Buffers::new());
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
            })
            .detach();
    }
    executor
        .spawn(async move { agent.run_timer(time).await })
        .detach();
    executor
        .spawn(async move {
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
        })
        .detach();
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
    executor: Rc<LocalExecutor<'static>>,
    listener: Async<TcpListener>,
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
    // The task of each slot: dropping its handle cancels it and closes its socket.
    let mut tasks: Vec<Option<async_executor::Task<()>>> = (0..slots).map(|_| None).collect();
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            Timer::after(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.get_ref().set_nodelay(true);
        let opened = admitted.budget.borrow_mut().open(admitted.now());
        let Ok(Opened { id, shed }) = opened else {
            let refusal = service::Refusal::new(service::Reason::ConnectionsFull);
            let line = format!("{}\n", refusal.reason);
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; \
                 charset=utf-8\r\nContent-Length: {}\r\nRetry-After: {}\r\nConnection: \
                 close\r\n\r\n{line}",
                line.len(),
                service::RETRY_AFTER_SECS
            );
            let mut stream = stream;
            let _ = futures_lite::future::poll_once(stream.write_all(answer.as_bytes())).await;
            continue;
        };
        let held = Held {
            admitted: admitted.clone(),
            id,
        };
        let task = executor.spawn(async move {
            let mut buf = vec![0u8; buffer];
            app.serve(Tcp(stream), AsyncIoTimer, config, &mut buf, &held)
                .await;
            drop(held);
        });
        // The slot's previous task: finished, or the shed connection's, cancelled here.
        let previous = tasks.get_mut(id.slot()).and_then(|slot| slot.replace(task));
        if shed.is_some() {
            drop(previous);
        }
        // Let the new connection read what it was sent before the next is accepted: one
        // whose request has arrived must be working, not shed for the next newcomer.
        futures_lite::future::yield_now().await;
    }
}

/// Keeps the journal bounded and repairs it: rewrites it when it is past its bound, or
/// broken (webhooks are refused meanwhile); looks every second.
async fn keep_journal(app: &'static TheApp, time: &'static StdTime) {
    loop {
        Timer::after(std::time::Duration::from_secs(1)).await;
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
async fn drain_on_signal(app: &'static TheApp, mut stop: Stop) {
    let signal = stop.signalled().await;
    app.shut_down();
    log::info(&format!(
        "{signal:?}: draining; new webhooks are refused, running steps may take {}ms",
        DRAIN_DEADLINE.as_millis()
    ));
    let until = StdInstant::now() + DRAIN_DEADLINE;
    let agent = app.agent();
    while agent.busy() > 0 && StdInstant::now() < until {
        Timer::after(std::time::Duration::from_millis(20)).await;
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

// ---------------------------------------------------------------------------------------------
// picoserve on async-io
// ---------------------------------------------------------------------------------------------

/// The runtime marker of picoserve's traits on async-io.
#[derive(Debug)]
struct AsyncIo;

/// picoserve's timer on async-io's.
#[derive(Debug, Clone, Copy)]
struct AsyncIoTimer;

impl picoserve::Timer<AsyncIo> for AsyncIoTimer {
    async fn delay(&self, duration: picoserve::time::Duration) {
        Timer::after(std::time::Duration::from_millis(duration.as_millis())).await;
    }
}

/// An accepted connection.
#[derive(Debug)]
struct Tcp(Async<TcpStream>);

/// Its read half.
#[derive(Debug)]
struct TcpRead<'a>(&'a Async<TcpStream>);

/// Its write half, buffered: a response's head goes out in one write.
#[derive(Debug)]
struct TcpWrite<'a> {
    stream: &'a Async<TcpStream>,
    buf: Box<[u8; 1024]>,
    len: usize,
}

impl picoserve::io::ErrorType for TcpRead<'_> {
    type Error = std::io::Error;
}

impl picoserve::io::ErrorType for TcpWrite<'_> {
    type Error = std::io::Error;
}

impl picoserve::io::Read for TcpRead<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, std::io::Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut stream = self.0;
        stream.read(buf).await
    }
}

impl TcpWrite<'_> {
    async fn send(&mut self) -> Result<(), std::io::Error> {
        let mut stream = self.stream;
        let len = self.len;
        self.len = 0;
        stream
            .write_all(self.buf.get(..len).unwrap_or_default())
            .await
    }
}

impl picoserve::io::BaseWrite for TcpWrite<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, std::io::Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.len == self.buf.len() {
            self.send().await?;
        }
        if self.len == 0 && buf.len() >= self.buf.len() {
            let mut stream = self.stream;
            return stream.write(buf).await;
        }
        let n = buf.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&buf[..n]);
        self.len += n;
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), std::io::Error> {
        if self.len > 0 {
            self.send().await?;
        }
        let mut stream = self.stream;
        stream.flush().await
    }
}

impl picoserve::io::Write for TcpWrite<'_> {
    async fn write_with<F: FnOnce(picoserve::mem::BorrowedCursor<'_>) -> R, R>(
        &mut self,
        f: F,
    ) -> Result<R, std::io::Error> {
        if self.len == self.buf.len() {
            self.send().await?;
        }
        let mut free = picoserve::mem::BorrowedBuffer::new(&mut self.buf[self.len..]);
        let output = f(free.unfilled());
        let filled = free.filled().len();
        self.len += filled;
        Ok(output)
    }
}

impl picoserve::io::Socket<AsyncIo> for Tcp {
    type Error = std::io::Error;
    type ReadHalf<'a> = TcpRead<'a>;
    type WriteHalf<'a> = TcpWrite<'a>;

    fn split(&mut self) -> (TcpRead<'_>, TcpWrite<'_>) {
        (
            TcpRead(&self.0),
            TcpWrite {
                stream: &self.0,
                buf: Box::new([0; 1024]),
                len: 0,
            },
        )
    }

    async fn abort<T: picoserve::Timer<AsyncIo>>(
        self,
        _timeouts: &picoserve::Timeouts,
        _timer: &T,
    ) -> Result<(), picoserve::Error<std::io::Error>> {
        // Dropping the stream closes it.
        Ok(())
    }

    async fn shutdown<T: picoserve::Timer<AsyncIo>>(
        self,
        timeouts: &picoserve::Timeouts,
        timer: &T,
    ) -> Result<(), picoserve::Error<std::io::Error>> {
        let _ = self.0.get_ref().shutdown(std::net::Shutdown::Write);
        // Read what the client still sends until it closes, within the read time-out: a
        // close with unread data would reset the connection and lose the answer.
        let mut sink = [0u8; 256];
        let mut stream = &self.0;
        let _ = timer
            .run_with_timeout(timeouts.read_request, async {
                while let Ok(1..) = stream.read(&mut sink).await {}
            })
            .await;
        Ok(())
    }
}

#[allow(dead_code, reason = "kept for the type's sake in future platforms")]
fn _assert_future<F: Future>(_: &F) {}

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
            (52_600, 248_288, 149_768, 862_568)
        );
    }
}
