//! `lockstep serve`: the webhook service over HTTP (docs/PROTOCOL.md §2, §7).
//!
//! The HTTP front ([`crate::http`]) reads requests within the limits; core's
//! [`service`] decides what each is and checks webhooks; the
//! [`Deployments`] run them.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::Timer;
use futures_lite::FutureExt;
use lockstep_core::access::Credential;
use lockstep_core::agent::{self, Link, Time};
use lockstep_core::deployer::{DeploymentId, Policy, SSE_HEARTBEAT, write_sse};
use lockstep_core::service::{self, AbortRequest, Endpoint, Reason, Refusal, Webhook, Webhooks};
use lockstep_core::signature::{Headers, Secret};

use crate::cluster::{ClusterOptions, ETCD_TIMEOUT, Member};
use crate::credentials::Credentials;
use crate::deployments::{self, Deployments, RepositoryOption};
use crate::etcd::Etcd;
use crate::http::{self, Connection, Request, Response, TurnedAway, refusal};
use crate::log;
use crate::metrics::{JournalStats, Metrics};
use crate::notify;
use crate::relay::{Leader, relay_until_won};
use crate::signals::Stop;
use crate::tls::Trust;
use crate::ui;
use crate::url::BaseUrl;

/// The most lockstep signatures the replay cache can be configured to hold.
pub const MAX_REPLAY_CACHE: usize = 4096;

/// How `lockstep serve` runs.
#[derive(Debug)]
pub struct Options {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The control API's base URL.
    pub conductr: BaseUrl,
    /// Where bundles come from.
    pub repository: RepositoryOption,
    /// The data directory: the journal, its lock, and the downloads of deployments in flight.
    pub data_dir: PathBuf,
    /// The webhook secret.
    pub secret: Secret,
    /// The HTTP limits (the body limit is the webhook body limit).
    pub limits: http::Limits,
    /// How webhooks are checked.
    pub webhooks: service::Config,
    /// How many lockstep signatures the replay cache holds (at most [`MAX_REPLAY_CACHE`]).
    pub replay_cache: usize,
    /// How many ended deployments are kept for reading.
    pub retention: usize,
    /// How many commands run at once.
    pub workers: usize,
    /// The deployer's policies, the in-flight limit among them (at most
    /// [`deployments::CAPACITY`]).
    pub policy: Policy,
    /// The agent's settings.
    pub agent: agent::Config,
    /// The interval of the event stream's heartbeats.
    pub heartbeat: Duration,
    /// On SIGTERM or SIGINT, how long running steps may take to finish.
    pub drain_deadline: Duration,
    /// What a read must present; none: reads are open.
    pub read_credential: Option<Credential>,
    /// The CAs trusted for `https://` (the system's, and `--ca-file`'s).
    pub trust: Trust,
    /// `--repository-credentials`: sent to the repository's origin only.
    pub repository_credentials: Option<Credentials>,
    /// Cluster mode (`--etcd`): the journal in etcd, one active instance.
    pub cluster: Option<ClusterOptions>,
    /// Outcome notifications (`--notify`): none without receivers.
    pub notify: notify::Options,
}

struct State {
    deployments: Rc<Deployments>,
    webhooks: RefCell<Webhooks<MAX_REPLAY_CACHE>>,
    replay_capacity: usize,
    heartbeat: Duration,
    executor: Rc<LocalExecutor<'static>>,
    metrics: Rc<RefCell<Metrics>>,
    /// Shutting down: webhooks and /healthz answer 503.
    draining: Cell<bool>,
    read_credential: Option<Credential>,
}

/// Starts the service on `executor`; see [`Service::addr`] for where it listens.
pub async fn start(
    executor: &Rc<LocalExecutor<'static>>,
    options: Options,
) -> std::io::Result<Service> {
    start_telling(executor, options, &mut |_| {}).await
}

/// [`start`], telling `listening` the address as soon as it listens when that is before it
/// serves (a cluster's standby relays connections to the active instance meanwhile).
pub async fn start_telling(
    executor: &Rc<LocalExecutor<'static>>,
    options: Options,
    listening: &mut dyn FnMut(SocketAddr),
) -> std::io::Result<Service> {
    let data_dir = options.data_dir.clone();
    let listener = http::bind(options.listen).await?;
    let addr = listener.local_addr()?;
    let member = match &options.cluster {
        Some(cluster) => {
            let max = options.limits.max_connections;
            Some(join_cluster(executor, cluster, &listener, max, listening).await?)
        }
        None => None,
    };
    let (deployments, stamps) = Deployments::start(
        executor,
        &deployments::Options {
            conductr: options.conductr,
            repository: options.repository.clone(),
            data_dir: data_dir.clone(),
            workers: options.workers,
            policy: options.policy,
            agent: options.agent,
            retention: options.retention,
            member,
            trust: options.trust.clone(),
            repository_credentials: options.repository_credentials.clone(),
            // Signed with the webhook secret.
            notify: (!options.notify.receivers.is_empty())
                .then(|| (options.notify.clone(), options.secret.clone())),
        },
    )?;
    let mut webhooks =
        Webhooks::with_replay_capacity(options.secret, options.webhooks, options.replay_cache);
    let now = deployments.time().now();
    for stamp in stamps {
        // A smaller cache than the one that wrote them: the newest are kept while there is
        // room (each refuses its own replay; the window refuses the rest once past).
        let _ = webhooks.restore_stamp(now, stamp);
    }
    if deployments.journal_broken() {
        webhooks.set_recording(false);
    }
    let metrics = deployments.metrics();
    let state = Rc::new(State {
        deployments,
        webhooks: RefCell::new(webhooks),
        replay_capacity: options.replay_cache.clamp(1, MAX_REPLAY_CACHE),
        heartbeat: options.heartbeat,
        executor: executor.clone(),
        metrics,
        draining: Cell::new(false),
        read_credential: options.read_credential,
    });
    let server = http::serve(executor.clone(), listener, options.limits, state.clone())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    executor.spawn(server).detach();
    executor.spawn(keep_journal(state.clone())).detach();
    executor.spawn(write_request_lines()).detach();
    Ok(Service {
        addr,
        state,
        drain_deadline: options.drain_deadline,
        data_dir,
    })
}

/// A service started on an executor.
pub struct Service {
    addr: SocketAddr,
    state: Rc<State>,
    drain_deadline: Duration,
    data_dir: PathBuf,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Where it listens.
    pub const fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// What `lockstep serve` does on SIGTERM or SIGINT: drain. Caught from this call on; the
    /// future returned completes once drained. (`lockstep demo` handles its signals itself.)
    pub fn drain_on_signals(
        &self,
        executor: &Rc<LocalExecutor<'static>>,
    ) -> impl Future<Output = ()> + 'static {
        spawn_drain(executor, self.state.clone(), self.drain_deadline)
    }
}

impl http::App for State {
    type Route = Endpoint;

    fn route(&self, method: &str, target: &str) -> Result<Endpoint, Response> {
        service::route(method, target).map_err(refusal)
    }

    fn call(
        self: Rc<Self>,
        endpoint: Endpoint,
        request: Request,
        connection: Connection,
    ) -> Pin<Box<dyn Future<Output = Response>>> {
        Box::pin(async move { handle(&self, endpoint, &request, &connection).await })
    }

    fn answered(
        &self,
        endpoint: Option<&Endpoint>,
        method: &str,
        path: &str,
        status: u16,
        took: Duration,
    ) {
        let label = endpoint.map_or("unknown", Endpoint::label);
        self.metrics.borrow_mut().request(label, status);
        log::request(method, path, status, took);
    }

    fn turned_away(&self, how: TurnedAway) {
        self.metrics.borrow_mut().turned_away(how.label());
    }
}

async fn handle(
    state: &State,
    endpoint: Endpoint,
    request: &Request,
    connection: &Connection,
) -> Response {
    let credential = state.read_credential.as_ref();
    if let Err(r) = service::authorize(credential, &endpoint, request.header("authorization")) {
        return refusal(r);
    }
    match endpoint {
        Endpoint::Webhook(target) => webhook(state, request, &target).await,
        Endpoint::Abort { id, .. } => abort(state, request, id),
        Endpoint::Deployment { id, .. } => {
            let mut body = String::new();
            match state.deployments.write_events(id, &mut body) {
                Some(Ok(())) => Response::json(200, body),
                Some(Err(_)) => Response::text(500, "the events could not be written"),
                None => refusal(Refusal::new(Reason::NoSuchDeployment)),
            }
        }
        Endpoint::Deployments { .. } => {
            let mut body = String::new();
            match state.deployments.write_listing(&mut body) {
                Ok(()) => Response::json(200, body),
                Err(_) => Response::text(500, "the listing could not be written"),
            }
        }
        Endpoint::Events { .. } => events(state, request.method == "HEAD", connection),
        Endpoint::Ui { .. } => ui::page(),
        Endpoint::Health if state.draining.get() => refusal(Refusal::new(Reason::ShuttingDown)),
        Endpoint::Health if state.deployments.journal_broken() => Response::text(
            200,
            &format!(
                "ok; the journal cannot be written ({}): webhooks are refused with 503 and no \
                 step starts until it can",
                state.deployments.journal_place()
            ),
        ),
        Endpoint::Health => match state.deployments.link() {
            // Still healthy: webhooks are taken, and their deployments wait for ConductR.
            Link::Down(fault) => Response::text(
                200,
                &format!("ok; the ConductR control API does not answer ({fault})"),
            ),
            Link::Up | Link::Unknown => Response::text(200, "ok"),
        },
        Endpoint::Metrics => {
            let now = state.deployments.time().now();
            let replay = state.webhooks.borrow().replay_fill(now);
            let (bytes, syncs, rewrites) = state.deployments.journal_stats();
            state.metrics.borrow_mut().journal(JournalStats {
                bytes,
                syncs,
                rewrites,
                writable: !state.deployments.journal_broken(),
                etcd_answers: state.deployments.etcd_answers(),
            });
            let text = state.metrics.borrow().render(
                state.deployments.in_flight(),
                replay,
                state.replay_capacity,
                connection.load(),
            );
            Response::new(200, "text/plain; version=0.0.4; charset=utf-8", text)
        }
    }
}

fn new_id() -> DeploymentId {
    // Without the OS's randomness no id can be drawn; a fixed one would collide, so fail loud.
    let bytes = crate::random::id_bytes().expect("the OS random number generator failed");
    DeploymentId::random_v4(bytes)
}

async fn webhook(state: &State, request: &Request, target: &service::Destination) -> Response {
    let hook = Webhook {
        target,
        content_type: request.header("content-type"),
        signatures: Headers {
            bintray: request.header("x-bintray-hook-hmac"),
            lockstep: request.header("x-lockstep-signature"),
        },
        body: &request.body,
    };
    let now = state.deployments.time().now();
    let accepted = state
        .webhooks
        .borrow_mut()
        .accept(now, &hook, new_id(), |request, asks| {
            state.deployments.notify(request, asks)
        });
    match accepted {
        Ok(accepted) => {
            // Nothing is answered 202 that is not recorded: the deployment's record, its
            // first events and the signature's replay-cache entry are durable first.
            let stamp = accepted.stamp.map(|s| state.deployments.record_stamp(s));
            if matches!(stamp, Some(Err(_))) || state.deployments.commit().is_err() {
                state.webhooks.borrow_mut().set_recording(false);
                return refusal(Refusal::new(Reason::Unrecorded));
            }
            let id = accepted.admitted.id;
            // A new deployment screens its version first (docs/DESIGN.md rule 12): a downgrade
            // found in time is answered 409, as a later webhook of the version would be.
            if !accepted.admitted.redelivery
                && let Some(failed) = state.deployments.screened(id).await
            {
                let _ = state.deployments.commit();
                let now = state.deployments.time().now();
                return refusal(Refusal::new(Reason::failed_version(now, failed)));
            }
            let location = format!("{}/{}", target.prefix.as_str(), id);
            Response::new(202, "text/plain; charset=utf-8", id.to_string())
                .with_header("Location", location)
        }
        Err(r) => {
            if let Some(label) = r.reason.signature_refusal() {
                state.metrics.borrow_mut().signature_refusal(label);
            }
            refusal(r)
        }
    }
}

/// `POST /deployments/{id}/abort`: core checks it and the agent carries it out; the answer is
/// sent once what it changed is recorded.
fn abort(state: &State, request: &Request, id: DeploymentId) -> Response {
    let abort = AbortRequest {
        id,
        content_type: request.header("content-type"),
        signatures: Headers {
            bintray: None,
            lockstep: request.header("x-lockstep-signature"),
        },
        body: &request.body,
    };
    let now = state.deployments.time().now();
    let done = state
        .webhooks
        .borrow_mut()
        .abort(now, &abort, |id| state.deployments.abort(id));
    match done {
        Ok(done) => {
            if state.deployments.record_stamp(done.stamp).is_err()
                || state.deployments.commit().is_err()
            {
                state.webhooks.borrow_mut().set_recording(false);
                return refusal(Refusal::new(Reason::Unrecorded));
            }
            log::info(&format!("deployment {id}: {}", done.aborted));
            Response::text(200, &done.aborted.to_string())
        }
        Err(r) => {
            if let Some(label) = r.reason.signature_refusal() {
                state.metrics.borrow_mut().signature_refusal(label);
            }
            refusal(r)
        }
    }
}

/// Writes the request lines held (`log::HELD`) once the tasks woken before this one ran:
/// the lines of the requests answered in one turn of the executor go out in one write.
async fn write_request_lines() {
    loop {
        std::future::poll_fn(log::held).await;
        log::flush();
    }
}

/// Keeps the journal bounded and repairs it: rewrites it when a commit found it past its
/// bound, and every second while it cannot be written (webhooks are refused meanwhile).
async fn keep_journal(state: Rc<State>) {
    loop {
        if state.deployments.journal_broken() {
            Timer::after(JOURNAL_RETRY).await;
        } else {
            state.deployments.rewrite_wanted().await;
        }
        if !state.deployments.wants_rewrite() || !state.deployments.may_rewrite() {
            continue;
        }
        let now = state.deployments.time().now();
        let stamps: Vec<_> = state.webhooks.borrow().stamps(now).collect();
        let written = state.deployments.rewrite(stamps).is_ok();
        state.webhooks.borrow_mut().set_recording(written);
    }
}

/// Cluster mode: takes a lease from etcd, tells `listening`, then relays every connection
/// `listener` accepts to the active instance until this one is the active one.
async fn join_cluster(
    executor: &Rc<LocalExecutor<'static>>,
    cluster: &ClusterOptions,
    listener: &async_net::TcpListener,
    max_connections: usize,
    listening: &mut dyn FnMut(SocketAddr),
) -> std::io::Result<Arc<Member>> {
    let address = match cluster.advertise {
        Some(addr) => addr,
        None => listener.local_addr()?,
    };
    let etcd = Arc::new(Etcd::new(cluster.endpoints.clone(), ETCD_TIMEOUT));
    let member = Arc::new(
        Member::join(etcd, cluster.lease_ttl, address.to_string())
            .map_err(|e| std::io::Error::other(format!("--etcd: {e}")))?,
    );
    // A member of the cluster: it answers from now on (relaying, until it is the active one).
    listening(listener.local_addr()?);
    let leader: Leader = Arc::default();
    let (won, won_told) = async_channel::bounded(1);
    let (campaigner, told) = (member.clone(), leader.clone());
    std::thread::Builder::new()
        .name("campaign".into())
        .spawn(move || {
            campaigner.campaign(|at| {
                *told
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(at.to_owned());
            });
            let _ = won.send_blocking(());
        })?;
    relay_until_won(
        executor.clone(),
        listener.clone(),
        leader,
        won_told,
        max_connections,
    )
    .await;
    Ok(member)
}

/// How often a journal that cannot be written is tried again.
const JOURNAL_RETRY: Duration = Duration::from_secs(1);

/// On SIGTERM or SIGINT: refuse new webhooks and answer /healthz 503 while the commands under
/// way finish, up to `deadline`; then the future returned completes (and `run` returns: exit
/// 0). Deployments still in flight stay where their last step left the cluster, and resume
/// from their records at the next start.
fn spawn_drain(
    executor: &Rc<LocalExecutor<'static>>,
    state: Rc<State>,
    deadline: Duration,
) -> impl Future<Output = ()> + 'static {
    // Caught now, not when the task first runs: the `listening` line may be printed before.
    let mut stop = Stop::catch();
    let (drained, done) = async_channel::bounded::<()>(1);
    executor
        .spawn(async move {
            let signal = stop.signalled().await;
            state.draining.set(true);
            state.webhooks.borrow_mut().shut_down();
            state.deployments.drain();
            log::info(&format!(
                "{signal:?}: draining; new webhooks are refused, running steps may take {}ms",
                deadline.as_millis()
            ));
            let until = Instant::now() + deadline;
            while state.deployments.busy() > 0 && Instant::now() < until {
                Timer::after(Duration::from_millis(20)).await;
            }
            let busy = state.deployments.busy();
            if busy > 0 {
                log::warn(&format!(
                    "the drain deadline of {}ms passed with {busy} command(s) still under way",
                    deadline.as_millis()
                ));
            }
            // What ended meanwhile is recorded: a restart does not run it again.
            let _ = state.deployments.commit();
            let left = state.deployments.in_flight();
            log::info(&format!(
                "drained; {left} deployment(s) left in flight, where their last step left them"
            ));
            let pending = state.deployments.notifications_pending();
            if pending > 0 {
                log::warn(&format!(
                    "{pending} outcome notification(s) not delivered are abandoned (they are \
                     kept in memory only)"
                ));
            }
            drained.close();
        })
        .detach();
    async move {
        let _ = done.recv().await;
    }
}

/// `GET /deployments/events`: every event as `event:<type>\ndata:<id>\n\n`, and a heartbeat
/// every interval, on a stream slot of the connection budget (503 beyond
/// `--max-event-streams`), released when the connection closes. `HEAD` takes one too, to
/// answer as `GET` would, and gets the head alone.
fn events(state: &State, head: bool, connection: &Connection) -> Response {
    // A stale connection cannot be here: a shed connection's task never runs again.
    if connection.stream().is_err() {
        let mut response = refusal(Refusal::new(Reason::StreamsFull));
        // Told to come back later: its connection is no use meanwhile.
        response.close = true;
        return response;
    }
    let (tx, rx) = async_channel::bounded::<Vec<u8>>(256);
    if head {
        drop(tx);
        return Response::event_stream(rx);
    }
    let subscription = state.deployments.subscribe();
    let heartbeat = state.heartbeat;
    state
        .executor
        .spawn(async move {
            loop {
                let next = async { subscription.recv().await.ok() }
                    .or(async {
                        Timer::after(heartbeat).await;
                        None
                    })
                    .await;
                let frame = match next {
                    Some(event) => {
                        let mut frame = String::new();
                        if write_sse(event.kind.event_type(), event.deployment, &mut frame).is_err()
                        {
                            continue;
                        }
                        frame.into_bytes()
                    }
                    None => SSE_HEARTBEAT.as_bytes().to_vec(),
                };
                // The client is gone: stop.
                if tx.send(frame).await.is_err() {
                    return;
                }
            }
        })
        .detach();
    Response::event_stream(rx)
}

/// Runs the service until drained after SIGTERM or SIGINT; prints `listening on
/// http://IP:PORT`.
pub fn run(options: Options, out: &mut dyn Write) -> std::io::Result<()> {
    let executor = Rc::new(LocalExecutor::new());
    let started = Instant::now();
    let told = Cell::new(false);
    let mut tell = |addr: SocketAddr| {
        let _ = writeln!(out, "listening on http://{addr}");
        let _ = out.flush();
        told.set(true);
    };
    let service = async_io::block_on(executor.run(start_telling(&executor, options, &mut tell)))?;
    let drained = service.drain_on_signals(&executor);
    if !told.get() {
        tell(service.addr());
    }
    log::info(&format!("ready in {}ms", started.elapsed().as_millis()));
    async_io::block_on(executor.run(drained));
    // Drained and committed: a standby may take over now.
    service.state.deployments.leave_cluster();
    // Releases the data directory's lock.
    drop(service);
    Ok(())
}
