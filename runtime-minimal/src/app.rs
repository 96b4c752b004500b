//! The service: every endpoint of `lockstep serve` (docs/PROTOCOL.md §2, §7) on picoserve,
//! deciding nothing itself: core's `service` routes and checks, the agent deploys, the
//! ledger answers reads, `Refusal` says every refusal's status, line and headers.

use core::cell::{Cell, RefCell};
use core::fmt::Write as _;
use core::future::poll_fn;

use lockstep_core::agent::{Agent, Link, SCREENING_WAIT, Sink, Time, with_deadline};
use lockstep_core::deployer::{DeploymentId, SSE_HEARTBEAT, write_sse};
use lockstep_core::journal::Journal;
use lockstep_core::ledger::Shelf;
use lockstep_core::service::{
    self, AbortRequest, Destination, Endpoint, Reason, Refusal, Webhook, Webhooks,
};
use lockstep_core::signature::Headers;
use lockstep_core::time::{Duration, Instant};
use picoserve::io::{Read, Write};
use picoserve::request::{Path, Request, RequestParts};
use picoserve::response::custom::{CustomBody, CustomResponse};
use picoserve::response::{ResponseWriter, StatusCode};
use picoserve::routing::PathRouterService;
use picoserve::{ResponseSent, Router};

use crate::http::{Bytes, Closing, Guarded, SliceWriter};
use crate::hub::{Hub, MAX_STREAMS};

/// The bytes of a short answer written on the stack: a refusal's line, `/healthz`, `/metrics`.
const LINE: usize = 512;

/// The longest request target (path and query) routed; a longer one is refused with 431.
pub const MAX_TARGET: usize = 2048;

/// What the app needs of its platform besides the agent's own traits.
pub trait Platform {
    /// The platform's sink (log lines), behind the app's [`Hub`].
    type Sink: Sink;
    /// Where retained deployments live.
    type Shelf: Shelf;
    /// What survives a restart.
    type Journal: Journal;
    /// The clocks.
    type Time: Time;

    /// 16 random bytes, for a deployment id.
    fn random(&self) -> [u8; 16];

    /// A request was answered (one log line): its method, path (without the query), status
    /// and how long it took.
    fn answered(&self, method: &str, path: &str, status: u16, took: Duration);

    /// How many heap allocations the process has made, where the platform counts them (a
    /// test build): `/metrics` shows it as `lockstep_heap_allocations_total`. None by default.
    fn heap_allocations(&self) -> Option<u64> {
        None
    }
}

/// What a connection's admission hears of it: a runtime's connection budget
/// (`lockstep_core::budget`, which sheds the longest-waiting connection for a newcomer) is told
/// when its request was read whole (working: not shed), when it was answered (waiting again),
/// and when it became an event stream. `()` hears nothing (no budget).
pub trait Admission {
    /// The request was read whole, its body included.
    fn request_read(&self) {}
    /// Answered; the connection waits for its next request.
    fn answered(&self) {}
    /// The connection becomes an event stream; `false` when the budget's streams are full.
    fn stream(&self) -> bool {
        true
    }
}

impl Admission for () {}

/// The app's settings.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// The interval of the event stream's heartbeats.
    pub heartbeat: Duration,
    /// The largest webhook body (413 above).
    pub max_body: usize,
    /// Event streams served at once (503 above), at most [`MAX_STREAMS`].
    pub max_streams: usize,
    /// The replay cache's capacity (for `/metrics`).
    pub replay_capacity: usize,
}

/// The agent of an app with `N` deployments in flight.
pub type AppAgent<const N: usize, P> =
    Agent<N, Hub<<P as Platform>::Sink>, <P as Platform>::Shelf, <P as Platform>::Journal>;

/// The service's state: the agent (deployments), the webhook checks with a replay cache of
/// `R` signatures, the event streams; everything borrowed from the caller.
pub struct App<'a, const N: usize, const R: usize, P: Platform> {
    agent: &'a AppAgent<N, P>,
    time: &'a P::Time,
    platform: &'a P,
    webhooks: RefCell<Webhooks<R>>,
    settings: Settings,
    draining: Cell<bool>,
    /// A bit per stream slot in use.
    streams: Cell<u32>,
    /// Connections served now (for `/metrics`).
    connections: Cell<usize>,
    /// Where a listing or a deployment's events is written before it is sent: one at a time.
    render: Cell<Option<&'a mut [u8]>>,
}

impl<const N: usize, const R: usize, P: Platform> core::fmt::Debug for App<'_, N, R, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

/// What is answered, before it is written.
struct Answer<'b> {
    status: u16,
    content_type: &'static str,
    body: &'b [u8],
    close: bool,
    location: Option<&'b str>,
    refusal: Option<Refusal>,
}

impl<'a, const N: usize, const R: usize, P: Platform> App<'a, N, R, P> {
    /// The app around `agent`; `render` holds a listing or a deployment's events while it is
    /// sent (one at a time; too small a buffer answers 500, as a write failure would).
    pub fn new(
        agent: &'a AppAgent<N, P>,
        time: &'a P::Time,
        platform: &'a P,
        webhooks: Webhooks<R>,
        settings: Settings,
        render: &'a mut [u8],
    ) -> Self {
        Self {
            agent,
            time,
            platform,
            webhooks: RefCell::new(webhooks),
            settings,
            draining: Cell::new(false),
            streams: Cell::new(0),
            connections: Cell::new(0),
            render: Cell::new(Some(render)),
        }
    }

    /// The agent.
    pub const fn agent(&self) -> &'a AppAgent<N, P> {
        self.agent
    }

    /// The webhook checks (the replay cache's stamps for a rewrite; recording on or off).
    pub const fn webhooks(&self) -> &RefCell<Webhooks<R>> {
        &self.webhooks
    }

    /// Shutting down: `/healthz` and every webhook answer 503 `shutting down`, and the agent
    /// starts no new command.
    pub fn shut_down(&self) {
        self.draining.set(true);
        self.webhooks.borrow_mut().shut_down();
        self.agent.drain();
    }

    /// Whether [`App::shut_down`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.draining.get()
    }

    /// Serves one connection on picoserve until it closes; `buf` holds its requests (head
    /// and body: at least the head limit and `max_body`).
    pub async fn serve<Rt, S: picoserve::io::Socket<Rt>, T: picoserve::Timer<Rt>>(
        &self,
        socket: S,
        timer: T,
        config: &picoserve::Config,
        buf: &mut [u8],
        admission: &dyn Admission,
    ) {
        let cut = Cell::new(false);
        let router = Router::from_service(Connection {
            app: self,
            cut: &cut,
            admission,
        });
        self.connections.set(self.connections.get() + 1);
        let socket = Guarded { socket, cut: &cut };
        let _ = picoserve::Server::custom(&router, timer, config, buf)
            .serve(socket)
            .await;
        self.connections
            .set(self.connections.get().saturating_sub(1));
    }

    async fn handle<Rd: Read, W: ResponseWriter<Error = Rd::Error>>(
        &self,
        cut: &Cell<bool>,
        admission: &dyn Admission,
        request: Request<'_, Rd>,
        writer: W,
    ) -> Result<ResponseSent, W::Error> {
        let started = self.time.now().instant;
        let Request {
            parts,
            mut body_connection,
        } = request;
        let method = parts.method();
        let head = method == "HEAD";
        let path = origin_form(parts.path().encoded());
        let mut target = heapless::String::<MAX_TARGET>::new();
        let fits = target.push_str(path).is_ok()
            && parts
                .query()
                .is_none_or(|q| target.push('?').is_ok() && target.push_str(q.0).is_ok());
        let routed = if fits {
            service::route(method, &target)
        } else {
            Err(Refusal::new(Reason::HeadTooLarge))
        };
        // A webhook or an abort works once its body is read; anything else once its head is.
        if !matches!(routed, Ok(Endpoint::Webhook(_) | Endpoint::Abort { .. })) {
            admission.request_read();
        }
        let mut line = heapless::String::<LINE>::new();
        let mut id_text = heapless::String::<40>::new();
        let mut location = heapless::String::<{ MAX_TARGET + 48 }>::new();
        let answer = match routed {
            Err(refusal) => refuse(&mut line, refusal),
            Ok(endpoint) => match framing(method, &parts) {
                Err(reason) => refuse(&mut line, Refusal::new(reason)),
                Ok(length) => match endpoint {
                    with_body @ (Endpoint::Webhook(_) | Endpoint::Abort { .. }) => {
                        if length > self.settings.max_body {
                            refuse(&mut line, Refusal::new(Reason::BodyTooLarge))
                        } else {
                            let read = body_connection.body().read_all().await;
                            admission.request_read();
                            match (read, with_body) {
                                (Ok(body), Endpoint::Webhook(destination)) => {
                                    self.webhook(
                                        &parts,
                                        &destination,
                                        body,
                                        &mut line,
                                        &mut id_text,
                                        &mut location,
                                    )
                                    .await
                                }
                                (Ok(body), Endpoint::Abort { id, .. }) => {
                                    self.abort(&parts, id, body, &mut line)
                                }
                                (
                                    Err(picoserve::request::ReadAllBodyError::IO(
                                        picoserve::io::ErrorKind::TimedOut,
                                    )),
                                    _,
                                ) => refuse(&mut line, Refusal::new(Reason::Timeout)),
                                // Only the two above read a body.
                                (Ok(_), _) | (Err(_), _) => {
                                    refuse(&mut line, Refusal::new(Reason::MalformedHead))
                                }
                            }
                        }
                    }
                    Endpoint::Deployment { id, .. } => {
                        let connection = body_connection.finalize().await?;
                        let sent = self
                            .render(started, method, path, head, writer, connection, Some(id))
                            .await;
                        admission.answered();
                        return sent;
                    }
                    Endpoint::Deployments { .. } => {
                        let connection = body_connection.finalize().await?;
                        let sent = self
                            .render(started, method, path, head, writer, connection, None)
                            .await;
                        admission.answered();
                        return sent;
                    }
                    Endpoint::Events { .. } => {
                        return self
                            .events(
                                started,
                                method,
                                path,
                                head,
                                cut,
                                admission,
                                body_connection,
                                writer,
                            )
                            .await;
                    }
                    // No page here: its budget (README, "The minimal runtime").
                    Endpoint::Ui { .. } => refuse(&mut line, Refusal::new(Reason::NotFound)),
                    Endpoint::Health => self.health(&mut line),
                    Endpoint::Metrics => self.metrics(&mut line),
                },
            },
        };
        if answer.close {
            // Nothing more is read of this connection: an unread body is not waited for.
            cut.set(true);
        }
        let connection = body_connection.finalize().await?;
        let status = answer.status;
        let sent = write_answer(answer, head, writer, connection).await;
        self.answered(method, path, status, started);
        admission.answered();
        sent
    }

    fn answered(&self, method: &str, path: &str, status: u16, started: Instant) {
        let took = self.time.now().instant.saturating_duration_since(started);
        self.platform.answered(method, path, status, took);
    }

    async fn webhook<'b>(
        &self,
        parts: &RequestParts<'_>,
        destination: &Destination,
        body: &[u8],
        line: &'b mut heapless::String<LINE>,
        id_text: &'b mut heapless::String<40>,
        location: &'b mut heapless::String<{ MAX_TARGET + 48 }>,
    ) -> Answer<'b> {
        let header = |name: &str| parts.headers().get(name).map(|v| v.as_raw());
        let hook = Webhook {
            target: destination,
            content_type: header("content-type"),
            signatures: Headers {
                bintray: header("x-bintray-hook-hmac"),
                lockstep: header("x-lockstep-signature"),
            },
            body,
        };
        let now = self.time.now();
        let id = DeploymentId::random_v4(self.platform.random());
        let accepted = self
            .webhooks
            .borrow_mut()
            .accept(now, &hook, id, |request, asks| {
                self.agent.notify(now, request, asks)
            });
        match accepted {
            Ok(accepted) => {
                // Nothing is answered 202 that is not recorded: the deployment's record, its
                // first events and the signature's replay-cache entry are durable first.
                let stamp = accepted.stamp.map(|s| self.agent.record_stamp(s));
                if matches!(stamp, Some(Err(_))) || self.agent.commit().is_err() {
                    self.webhooks.borrow_mut().set_recording(false);
                    return self.after_body(refuse(line, Refusal::new(Reason::Unrecorded)));
                }
                let id = accepted.admitted.id;
                // A new deployment screens its version first (docs/DESIGN.md rule 12): a
                // downgrade found in time is answered 409, as a later webhook of it would be.
                if !accepted.admitted.redelivery
                    && let Some(failed) = self.agent.screened(self.time, id, SCREENING_WAIT).await
                {
                    let _ = self.agent.commit();
                    let reason = Reason::failed_version(self.time.now(), failed);
                    return self.after_body(refuse(line, Refusal::new(reason)));
                }
                let _ = write!(id_text, "{id}");
                let _ = write!(location, "{}/{id}", destination.prefix.as_str());
                Answer {
                    status: 202,
                    content_type: TEXT,
                    body: id_text.as_bytes(),
                    close: false,
                    location: Some(location.as_str()),
                    refusal: None,
                }
            }
            Err(refusal) => self.after_body(refuse(line, refusal)),
        }
    }

    /// `POST {prefix}/{id}/abort`: core checks it and the agent carries it out; answered once
    /// what it changed is recorded.
    fn abort<'b>(
        &self,
        parts: &RequestParts<'_>,
        id: DeploymentId,
        body: &[u8],
        line: &'b mut heapless::String<LINE>,
    ) -> Answer<'b> {
        let header = |name: &str| parts.headers().get(name).map(|v| v.as_raw());
        let request = AbortRequest {
            id,
            content_type: header("content-type"),
            signatures: Headers {
                bintray: None,
                lockstep: header("x-lockstep-signature"),
            },
            body,
        };
        let now = self.time.now();
        let done = self
            .webhooks
            .borrow_mut()
            .abort(now, &request, |id| self.agent.abort(now, id));
        match done {
            Ok(done) => {
                if self.agent.record_stamp(done.stamp).is_err() || self.agent.commit().is_err() {
                    self.webhooks.borrow_mut().set_recording(false);
                    return self.after_body(refuse(line, Refusal::new(Reason::Unrecorded)));
                }
                let _ = writeln!(line, "{}", done.aborted);
                ok(200, TEXT, line.as_bytes())
            }
            Err(refusal) => self.after_body(refuse(line, refusal)),
        }
    }

    /// A refusal of a request whose body was read whole (docs/PROTOCOL.md §7, "Order of
    /// checks", step 4): the connection stays open for the client's next request, as `lockstep
    /// serve` keeps it, unless the app is draining.
    fn after_body<'b>(&self, mut answer: Answer<'b>) -> Answer<'b> {
        answer.close = self.draining.get();
        answer
    }

    fn health<'b>(&self, line: &'b mut heapless::String<LINE>) -> Answer<'b> {
        if self.draining.get() {
            return refuse(line, Refusal::new(Reason::ShuttingDown));
        }
        let _ = match self.agent.link() {
            // Still healthy: webhooks are taken, and their deployments wait for ConductR.
            Link::Down(fault) => writeln!(
                line,
                "ok; the ConductR control API does not answer ({fault})"
            ),
            Link::Up | Link::Unknown => line.push_str("ok\n").map_err(|_| core::fmt::Error),
        };
        ok(200, TEXT, line.as_bytes())
    }

    fn metrics<'b>(&self, out: &'b mut heapless::String<LINE>) -> Answer<'b> {
        // A few gauges and counters, named as `lockstep serve` names them.
        let _ = self.write_metrics(out);
        ok(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            out.as_bytes(),
        )
    }

    fn write_metrics(&self, out: &mut impl core::fmt::Write) -> core::fmt::Result {
        let now = self.time.now();
        let in_flight = self.agent.read(|deployer, _| deployer.in_flight());
        let replay = self.webhooks.borrow().replay_fill(now);
        let (succeeded, failed) = self.agent.with_sink(|hub| hub.outcomes());
        writeln!(out, "lockstep_deployments_in_flight {in_flight}")?;
        writeln!(
            out,
            "lockstep_deployments_total{{outcome=\"succeeded\"}} {succeeded}"
        )?;
        writeln!(
            out,
            "lockstep_deployments_total{{outcome=\"failed\"}} {failed}"
        )?;
        writeln!(out, "lockstep_replay_cache_entries {replay}")?;
        writeln!(
            out,
            "lockstep_replay_cache_capacity {}",
            self.settings.replay_capacity
        )?;
        writeln!(out, "lockstep_connections_open {}", self.connections.get())?;
        writeln!(
            out,
            "lockstep_event_streams_open {}",
            self.streams.get().count_ones()
        )?;
        if let Some(n) = self.platform.heap_allocations() {
            writeln!(out, "lockstep_heap_allocations_total {n}")?;
        }
        Ok(())
    }

    /// `GET {prefix}/{id}` (`Some(id)`) or `GET {prefix}`, written into the render buffer
    /// (waiting for it while another request's answer is being sent from it).
    #[allow(
        clippy::too_many_arguments,
        reason = "one request's parts, passed through"
    )]
    async fn render<Rd: Read, W: ResponseWriter<Error = Rd::Error>>(
        &self,
        started: Instant,
        method: &str,
        path: &str,
        head: bool,
        writer: W,
        connection: picoserve::response::Connection<'_, Rd>,
        id: Option<DeploymentId>,
    ) -> Result<ResponseSent, W::Error> {
        // Taken while its bytes are sent; put back after.
        let render = loop {
            if let Some(render) = self.render.take() {
                break render;
            }
            let at = self
                .time
                .now()
                .instant
                .saturating_add(Duration::from_millis(2));
            self.time.at(at).await;
        };
        let mut out = SliceWriter {
            buf: &mut *render,
            len: 0,
        };
        let written = self.agent.read(|deployer, ledger| match id {
            Some(id) => ledger.events(id).map(|log| log.write_json(&mut out)),
            None => Some(ledger.write_listing(deployer.records(), &mut out)),
        });
        let len = out.len;
        let mut line = heapless::String::<LINE>::new();
        let answer = match written {
            Some(Ok(())) => ok(
                200,
                "application/json",
                render.get(..len).unwrap_or_default(),
            ),
            Some(Err(_)) => {
                let what = if id.is_some() {
                    "the events"
                } else {
                    "the listing"
                };
                let _ = writeln!(line, "{what} could not be written");
                ok(500, TEXT, line.as_bytes())
            }
            None => refuse(&mut line, Refusal::new(Reason::NoSuchDeployment)),
        };
        let status = answer.status;
        let sent = write_answer(answer, head, writer, connection).await;
        self.render.set(Some(render));
        self.answered(method, path, status, started);
        sent
    }

    /// `GET {prefix}/events`: every event as `event:<type>\ndata:<id>\n\n`, a heartbeat
    /// every interval, on a stream slot (503 beyond the limit); the connection closes after.
    #[allow(
        clippy::too_many_arguments,
        reason = "one request's parts, passed through"
    )]
    async fn events<Rd: Read, W: ResponseWriter<Error = Rd::Error>>(
        &self,
        started: Instant,
        method: &str,
        path: &str,
        head: bool,
        cut: &Cell<bool>,
        admission: &dyn Admission,
        body_connection: picoserve::request::RequestBodyConnection<'_, Rd>,
        writer: W,
    ) -> Result<ResponseSent, W::Error> {
        let slot = if admission.stream() {
            self.take_stream()
        } else {
            None
        };
        let Some(slot) = slot else {
            let mut line = heapless::String::<LINE>::new();
            let answer = refuse(&mut line, Refusal::new(Reason::StreamsFull));
            cut.set(true);
            let connection = body_connection.finalize().await?;
            let sent = write_answer(answer, head, writer, connection).await;
            self.answered(method, path, 503, started);
            return sent;
        };
        let stream = Stream {
            app: self,
            slot,
            head,
        };
        let connection = body_connection.finalize().await?;
        // The request line is logged when the stream starts (it has no end to wait for).
        self.answered(method, path, 200, started);
        use picoserve::response::IntoResponse;
        CustomResponse::build(StatusCode::OK)
            .with_header("Content-Type", "text/event-stream")
            .with_header("Cache-Control", "no-cache")
            .with_header("Transfer-Encoding", "chunked")
            .with_body(stream)
            .write_to(connection, writer)
            .await
    }

    fn take_stream(&self) -> Option<usize> {
        let used = self.streams.get();
        let limit = self.settings.max_streams.min(MAX_STREAMS);
        if used.count_ones() as usize >= limit {
            return None;
        }
        let slot = (!used).trailing_zeros() as usize;
        (slot < MAX_STREAMS).then(|| {
            self.streams.set(used | (1 << slot));
            slot
        })
    }

    fn release_stream(&self, slot: usize) {
        self.streams.set(self.streams.get() & !(1u32 << slot));
        self.agent.with_sink(|hub| hub.release(slot));
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

const fn ok<'b>(status: u16, content_type: &'static str, body: &'b [u8]) -> Answer<'b> {
    Answer {
        status,
        content_type,
        body,
        close: false,
        location: None,
        refusal: None,
    }
}

/// A refusal: its status, its one line, its headers; the connection closes after it (unless
/// the body was read whole: [`App::after_body`]).
fn refuse(line: &mut heapless::String<LINE>, refusal: Refusal) -> Answer<'_> {
    line.clear();
    let _ = writeln!(line, "{}", refusal.reason);
    if !line.ends_with('\n') {
        // Cut short: still one line.
        line.pop();
        let _ = line.push('\n');
    }
    Answer {
        status: refusal.status().code(),
        content_type: TEXT,
        body: line.as_bytes(),
        close: true,
        location: None,
        refusal: Some(refusal),
    }
}

/// Writes an answer: whole, kept alive as the client asked; or, for a refusal that closes,
/// saying so and closing.
async fn write_answer<Rd: Read, W: ResponseWriter<Error = Rd::Error>>(
    answer: Answer<'_>,
    head: bool,
    writer: W,
    connection: picoserve::response::Connection<'_, Rd>,
) -> Result<ResponseSent, W::Error> {
    use picoserve::response::IntoResponse;
    let status = StatusCode::new(answer.status);
    if answer.close {
        let refusal = answer.refusal;
        let header = |value: Option<&'static str>, name: &'static str| value.map(|v| (name, v));
        let retry = refusal.and_then(|r| r.retry_after());
        return CustomResponse::build(status)
            .with_header("Content-Type", answer.content_type)
            .with_header("Content-Length", answer.body.len())
            .with_headers(header(refusal.and_then(|r| r.allow), "Allow"))
            .with_headers(retry.map(|secs| ("Retry-After", secs)))
            .with_headers(header(
                refusal.and_then(|r| r.challenge()),
                "WWW-Authenticate",
            ))
            .with_body(Closing {
                data: answer.body,
                head,
            })
            .write_to(connection, writer)
            .await;
    }
    // A refusal kept alive (after a body read whole) brings its headers too.
    let refusal = answer.refusal;
    picoserve::response::Response::new(
        status,
        Bytes {
            data: answer.body,
            content_type: answer.content_type,
            head,
        },
    )
    .with_headers(answer.location.map(|l| ("Location", l)))
    .with_headers(
        refusal
            .and_then(|r| r.retry_after())
            .map(|s| ("Retry-After", s)),
    )
    .with_headers(
        refusal
            .and_then(|r| r.challenge())
            .map(|c| ("WWW-Authenticate", c)),
    )
    .write_to(connection, writer)
    .await
}

/// The body's length from the headers, strictly (as `lockstep serve`): `Content-Length`
/// alone frames a body; a chunked body is refused (411), several `Content-Length`s, one not
/// plain digits, or one beside `Transfer-Encoding` are 400; a POST needs one (411).
fn framing(method: &str, parts: &RequestParts<'_>) -> Result<usize, Reason> {
    let (mut lengths, mut chunked, mut length) = (0usize, false, None);
    for (name, value) in parts.headers().iter() {
        if name == "content-length" {
            lengths += 1;
            length = parse_length(value.as_raw());
        } else if name == "transfer-encoding" {
            chunked = true;
        }
    }
    match (lengths, chunked) {
        (1.., true) | (2.., false) => Err(Reason::MalformedHead),
        (0, true) => Err(Reason::LengthRequired),
        (1, false) => length.ok_or(Reason::MalformedHead),
        _ if matches!(method, "POST" | "PUT" | "PATCH") => Err(Reason::LengthRequired),
        _ => Ok(0),
    }
}

/// A `Content-Length` value: plain ASCII digits (saturating), or `None`.
fn parse_length(value: &[u8]) -> Option<usize> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0usize, |n, d| {
        n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    }))
}

/// The path of an absolute-form target (`http://host/path`); any other is kept as it is.
fn origin_form(path: &str) -> &str {
    let scheme = ["http://", "https://"].into_iter().find(|scheme| {
        path.get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    });
    let Some(scheme) = scheme else {
        return path;
    };
    let rest = path.get(scheme.len()..).unwrap_or_default();
    match rest.find('/') {
        Some(at) => rest.get(at..).unwrap_or("/"),
        None => "/",
    }
}

/// One connection's router: every request to the app.
struct Connection<'c, 'a, const N: usize, const R: usize, P: Platform> {
    app: &'c App<'a, N, R, P>,
    cut: &'c Cell<bool>,
    admission: &'c dyn Admission,
}

impl<const N: usize, const R: usize, P: Platform> PathRouterService
    for Connection<'_, '_, N, R, P>
{
    async fn call_path_router_service<Rd: Read, W: ResponseWriter<Error = Rd::Error>>(
        &self,
        _state: &(),
        _path_parameters: (),
        _path: Path<'_>,
        request: Request<'_, Rd>,
        writer: W,
    ) -> Result<ResponseSent, W::Error> {
        self.app
            .handle(self.cut, self.admission, request, writer)
            .await
    }
}

/// The event stream's body: chunked frames until the client goes (picoserve stops it then).
struct Stream<'c, 'a, const N: usize, const R: usize, P: Platform> {
    app: &'c App<'a, N, R, P>,
    slot: usize,
    head: bool,
}

impl<const N: usize, const R: usize, P: Platform> Drop for Stream<'_, '_, N, R, P> {
    fn drop(&mut self) {
        self.app.release_stream(self.slot);
    }
}

impl<const N: usize, const R: usize, P: Platform> CustomBody for Stream<'_, '_, N, R, P> {
    async fn write_response_body<W: Write>(self, mut writer: W) -> Result<(), W::Error> {
        writer.flush().await?;
        if self.head {
            crate::http::yield_once().await;
            return Ok(());
        }
        let app = self.app;
        let mut cursor = app.agent.with_sink(|hub| hub.cursor());
        loop {
            let due = app
                .time
                .now()
                .instant
                .saturating_add(app.settings.heartbeat);
            let next = with_deadline(
                app.time,
                due,
                poll_fn(|cx| {
                    app.agent
                        .with_sink(|hub| hub.poll_next(&mut cursor, self.slot, cx))
                }),
            )
            .await;
            let mut frame = heapless::String::<128>::new();
            match next {
                Ok(event) => {
                    if write_sse(event.kind.event_type(), event.deployment, &mut frame).is_err() {
                        continue;
                    }
                }
                Err(_) => {
                    let _ = frame.push_str(SSE_HEARTBEAT);
                }
            }
            write!(writer, "{:x}\r\n", frame.len()).await?;
            writer.write_all(frame.as_bytes()).await?;
            writer.write_all(b"\r\n").await?;
            writer.flush().await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_origin_form() {
        assert_eq!(origin_form("/deployments"), "/deployments");
        assert_eq!(origin_form("http://h:1/deployments"), "/deployments");
        assert_eq!(origin_form("HTTP://h"), "/");
        assert_eq!(origin_form("*"), "*");
    }

    #[test]
    fn test_parse_length() {
        assert_eq!(parse_length(b"12"), Some(12));
        assert_eq!(parse_length(b" 7 "), Some(7));
        assert_eq!(parse_length(b"+5"), None);
        assert_eq!(parse_length(b""), None);
        assert_eq!(parse_length(b"0x5"), None);
    }
}
