//! A small HTTP/1.1 server on async-io, for the sandbox and `lockstep serve`.
//!
//! Request heads are parsed with httparse, bodies read by `Content-Length` only, and framing
//! is strict, so that nothing of one request is ever read as the next (request smuggling): a
//! chunked request body is refused with 411; several `Content-Length` headers (even equal),
//! a value that is not plain digits, or `Transfer-Encoding` beside `Content-Length` with 400.
//! An absolute-form target (`http://host/path`) is served by its path and query; `HEAD` is
//! answered as `GET` without the body. Every limit is explicit ([`Limits`]): head bytes
//! (431), body bytes (413), the time a request may take to arrive (408), the idle time of a
//! kept-alive connection, the connections held at once and the event streams among them. A
//! refusal answers one line of text and closes the connection, saying `Connection: close`
//! as every answer after which the connection closes does. Responses are whole
//! ([`Body::Bytes`], with `Content-Length`), streamed ([`Body::Stream`], chunked:
//! server-sent events) or relayed, head included, from another server ([`Body::Relay`]: the
//! sandbox's forwarding to a lockstep service). For fault injection (the sandbox's), a
//! response can be held back ([`Hold`]): none of it sent, or its head and the first bytes of
//! its body, the connection then held open until its client closes it.
//!
//! Connections are admitted by core's [`lockstep_core::budget`]: accepting never stops; at the limit a new
//! connection takes the slot of the one that has waited longest without a request under way
//! (idle, or a head not complete yet), which is closed; when every slot is working or
//! streaming, the new one is answered 503 (if its socket takes the line at once) and closed.
//!
//! What it serves is an [`App`]: each request is routed once, from its head, before its body
//! is read; the route is kept until the request is answered. It runs on a single-threaded
//! executor: apps share state through `Rc`.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use async_executor::{LocalExecutor, Task};
use async_io::Timer;
use async_net::{TcpListener, TcpStream};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use lockstep_core::budget::{Budget, BudgetError, ConnId, Opened, Slot, StreamError};
use lockstep_core::service::{Reason, Refusal};

/// The most headers a request may have.
const MAX_HEADERS: usize = 64;

/// The server's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes of a request head (request line and headers): 431 above.
    pub head_bytes: usize,
    /// The most bytes of a request body: 413 above.
    pub body_bytes: usize,
    /// How long a request may take to arrive, from its first byte: 408 after.
    pub read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// How long writing a response may take before the connection is dropped.
    pub write_timeout: Duration,
    /// How many connections are held at once: at the limit a waiting one is shed for a new
    /// one, or the new one refused when all are working or streaming.
    pub max_connections: usize,
    /// How many of them may serve an event stream (fewer than `max_connections`).
    pub max_event_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            head_bytes: 8 * 1024,
            body_bytes: 8 * 1024,
            read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_connections: 256,
            max_event_streams: 32,
        }
    }
}

/// A request, read whole.
#[derive(Debug)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target in origin form: path and query (an absolute-form target's
    /// authority is dropped).
    pub target: String,
    /// The headers, names in lowercase, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
    /// Who sent it.
    pub peer: SocketAddr,
}

impl Request {
    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(path, _)| path)
    }

    /// The query, without the `?`.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The value of a query parameter, if given once or more (the first).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query()?
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first header of that name as text, if it is UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// A response body.
#[derive(Debug)]
pub enum Body {
    /// Sent whole, with `Content-Length`.
    Bytes(Vec<u8>),
    /// Sent in chunks as they come, until the channel closes; the connection closes after.
    Stream(async_channel::Receiver<Vec<u8>>),
    /// The whole answer, head and body, as another server sends it on `upstream`: `answer`
    /// (what of it was read already), then the rest byte for byte as it comes, until that
    /// server closes; the connection closes after. The server writes no head of its own, so
    /// the response's status and headers are for the logs only. The client closing its side
    /// is passed on to `upstream` (which may end an event stream for it).
    Relay {
        /// What was read of the answer already (at least its status line).
        answer: Vec<u8>,
        /// The connection the rest comes on (boxed: a socket is larger than the other
        /// bodies).
        upstream: Box<TcpStream>,
    },
}

/// A response.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers other than `Content-Length`, `Transfer-Encoding` and `Connection`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
    /// Close the connection after it.
    pub close: bool,
    /// Hold it back (fault injection): see [`Hold`].
    pub hold: Option<Hold>,
}

/// A response held back, for fault injection (the sandbox's `hold` and `holdAfterBytes`):
/// nothing of it is sent, or its head and the first bytes of its body; then nothing more,
/// and the connection is held open, what its client sends read and ignored, until the client
/// closes it (or the server stops); then it closes. While held, the connection is working:
/// it keeps its slot and is never shed.
pub struct Hold {
    /// `None`: nothing is sent, not even the head. `Some(n)`: the head and the first `n`
    /// bytes of the body are sent (and flushed), then the connection is held; a body of `n`
    /// bytes or fewer (a `HEAD`'s answer has none) is sent whole and nothing is held, the
    /// connection going on as without the hold. A streamed body is held after its head.
    pub after_body_bytes: Option<usize>,
    /// Told when the hold begins; dropped when it ends, or at once if it never begins.
    pub holder: Box<dyn Holder>,
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold")
            .field("after_body_bytes", &self.after_body_bytes)
            .finish_non_exhaustive()
    }
}

/// Who is told of a held response: [`Holder::holding`] when the hold begins, and the holder
/// is dropped when it ends (its client closed the connection, a write failed, or the server
/// stopped).
pub trait Holder {
    /// The hold begins, `sent_body_bytes` of the body sent (and flushed) before it.
    fn holding(&mut self, sent_body_bytes: usize);
}

impl Response {
    /// A response with a body of this content type.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: Body::Bytes(body.into()),
            close: false,
            hold: None,
        }
    }

    /// A one-line text answer (a newline is added).
    pub fn text(status: u16, line: &str) -> Self {
        Self::new(status, "text/plain; charset=utf-8", format!("{line}\n"))
    }

    /// A JSON answer.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status, "application/json", body)
    }

    /// A stream of server-sent events.
    pub fn event_stream(events: async_channel::Receiver<Vec<u8>>) -> Self {
        Self {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "text/event-stream".into()),
                ("Cache-Control".into(), "no-cache".into()),
            ],
            body: Body::Stream(events),
            close: true,
            hold: None,
        }
    }

    /// An answer relayed from another server ([`Body::Relay`]); `status` is its status, for
    /// the logs.
    pub fn relayed(status: u16, answer: Vec<u8>, upstream: TcpStream) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Body::Relay {
                answer,
                upstream: Box::new(upstream),
            },
            close: true,
            hold: None,
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Holds it back (fault injection): see [`Hold`].
    #[must_use]
    pub fn held(mut self, after_body_bytes: Option<usize>, holder: impl Holder + 'static) -> Self {
        self.hold = Some(Hold {
            after_body_bytes,
            holder: Box::new(holder),
        });
        self
    }
}

/// The standard reason phrase of a status lockstep answers.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        300 => "Multiple Choices",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// What a server serves.
pub trait App: 'static {
    /// What a request is, decided from its head; owned, so it is kept until the answer (the
    /// app gets one copy to answer with, [`App::answered`] another).
    type Route: Clone + 'static;

    /// Routes a request from its method and origin-form target (path and query), once, before
    /// its body is read: the route is checked before the transport limits (docs/PROTOCOL.md
    /// §7). A refusal (404, 405, 400) is answered at once, the body unread, and the
    /// connection closed. A `HEAD` is routed as such; the server sends its answer without the
    /// body.
    fn route(&self, method: &str, target: &str) -> Result<Self::Route, Response>;

    /// Answers a routed request, its body read within the limits; `connection` is what the
    /// request may ask of its connection (to become an event stream).
    fn call(
        self: Rc<Self>,
        route: Self::Route,
        request: Request,
        connection: Connection,
    ) -> Pin<Box<dyn Future<Output = Response>>>;

    /// Called after each answer, for request logs and metrics: with the route, unless the
    /// request was refused before it had one; the method and path are `-` when the head
    /// could not be read.
    fn answered(
        &self,
        route: Option<&Self::Route>,
        method: &str,
        path: &str,
        status: u16,
        took: Duration,
    ) {
        let _ = (route, method, path, status, took);
    }

    /// Called when the connection budget turns a connection away, for metrics.
    fn turned_away(&self, how: TurnedAway) {
        let _ = how;
    }
}

/// How the connection budget turned a connection away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnedAway {
    /// A waiting connection (idle, or its head incomplete) was closed for a new one.
    Shed,
    /// A new connection was refused: every slot was working or streaming.
    Refused,
}

impl TurnedAway {
    /// A short stable label, for metrics.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Shed => "shed",
            Self::Refused => "refused",
        }
    }
}

/// How many connections the budget holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// Connections held.
    pub connections: usize,
    /// Event streams among them.
    pub streams: usize,
}

/// The budget and the clock it is told the time by, shared by the accepting loop and every
/// connection.
#[derive(Debug)]
struct Admission {
    budget: RefCell<Budget<Vec<Slot>>>,
    origin: std::time::Instant,
}

impl Admission {
    fn now(&self) -> lockstep_core::time::Instant {
        let millis = self.origin.elapsed().as_millis();
        lockstep_core::time::Instant::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
    }
}

/// A request's connection, as the app sees it.
#[derive(Clone, Debug)]
pub struct Connection {
    admission: Rc<Admission>,
    id: ConnId,
}

impl Connection {
    /// Makes the connection an event stream, within `max_event_streams`; it stays one until
    /// it closes. A refusal is core's 503 ([`Reason::StreamsFull`]).
    pub fn stream(&self) -> Result<(), StreamError> {
        self.admission.budget.borrow_mut().stream(self.id)
    }

    /// The connections and streams held now.
    pub fn load(&self) -> Load {
        let budget = self.admission.budget.borrow();
        Load {
            connections: budget.in_use(),
            streams: budget.streams(),
        }
    }

    /// Its request is read whole: it is working, no longer shed for a newcomer.
    fn request_read(&self) {
        // Stale only once shed, and a shed connection's task never runs again.
        let _ = self.admission.budget.borrow_mut().request_read(self.id);
    }

    /// Answered and kept alive: it waits for its next request from now.
    fn answered(&self) {
        let now = self.admission.now();
        let _ = self.admission.budget.borrow_mut().answered(self.id, now);
    }
}

/// Holds a connection's slot until it ends, however it ends: when a shed connection's task is
/// dropped, its id is stale and freeing it changes nothing.
#[derive(Debug)]
struct Held(Connection);

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.0.admission.budget.borrow_mut().close(self.0.id);
    }
}

/// Accepts and serves connections on `listener` until the executor is dropped; refuses limits
/// whose event streams are not fewer than their connections.
pub fn serve<A: App>(
    executor: Rc<LocalExecutor<'static>>,
    listener: TcpListener,
    limits: Limits,
    app: Rc<A>,
) -> Result<impl Future<Output = ()>, BudgetError> {
    let budget = Budget::new(
        vec![Slot::FREE; limits.max_connections],
        limits.max_event_streams,
    )?;
    let admission = Rc::new(Admission {
        budget: RefCell::new(budget),
        origin: std::time::Instant::now(),
    });
    Ok(accept(executor, listener, limits, app, admission))
}

async fn accept<A: App>(
    executor: Rc<LocalExecutor<'static>>,
    listener: TcpListener,
    limits: Limits,
    app: Rc<A>,
    admission: Rc<Admission>,
) {
    // The task serving each slot: dropping a task's handle cancels it, which closes its
    // socket. Replacing a shed connection's handle is what closes it.
    let mut tasks: Vec<Option<Task<()>>> = (0..limits.max_connections).map(|_| None).collect();
    loop {
        // Never paused: a connection left in the listen backlog could not shed anyone.
        let Ok((stream, peer)) = listener.accept().await else {
            // Out of file descriptors or the like: wait a moment rather than spin.
            Timer::after(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let now = admission.now();
        let opened = admission.budget.borrow_mut().open(now);
        let Ok(Opened { id, shed }) = opened else {
            refuse_at_once(stream).await;
            app.turned_away(TurnedAway::Refused);
            continue;
        };
        let held = Held(Connection {
            admission: admission.clone(),
            id,
        });
        let served = app.clone();
        let task = executor.spawn(async move {
            let _ = connection(stream, peer, limits, served, held).await;
        });
        // The slot's previous task: finished, or the shed connection's, cancelled here.
        let previous = tasks[id.slot()].replace(task);
        if shed.is_some() {
            drop(previous);
            app.turned_away(TurnedAway::Shed);
        }
        // Let the new connection read what it was sent before the next is accepted: in a
        // burst of connections, one whose request has arrived must be working, not shed
        // for the next newcomer before it was even read.
        futures_lite::future::yield_now().await;
    }
}

/// Refuses a connection before reading anything: one try at the 503 line, never a wait, so
/// that a refusal costs no task and no time. A fresh socket's send buffer takes these few
/// bytes; the client may still see a reset instead if its request was not read.
async fn refuse_at_once(mut stream: TcpStream) {
    let bytes = encode(
        &refusal(Refusal::new(Reason::ConnectionsFull)),
        false,
        Persist::Close,
    );
    let _ = futures_lite::future::poll_once(stream.write_all(&bytes)).await;
}

/// The answer to a refusal of core's: its status, its line, `Allow` or `Retry-After`; the
/// connection closes after it.
pub fn refusal(refusal: Refusal) -> Response {
    let mut response = Response::text(refusal.status().code(), &refusal.reason.to_string());
    if let Some(allow) = refusal.allow {
        response = response.with_header("Allow", allow);
    }
    if let Some(secs) = refusal.retry_after() {
        response = response.with_header("Retry-After", secs.to_string());
    }
    if let Some(challenge) = refusal.challenge() {
        response = response.with_header("WWW-Authenticate", challenge);
    }
    response
}

/// Why reading a request stopped.
enum ReadError<R> {
    /// The peer closed, or went quiet between requests: close without answering.
    Closed,
    /// A refusal before the request was routed (its status and line are core's), then close.
    Refuse(Reason),
    /// A refusal of a routed request (its route, method and path), then close.
    RefuseRouted(Reason, R, String, String),
    /// The app refused the route (the body unread): answer, then close.
    Unrouted(Response, String, String),
}

async fn with_timeout<T>(
    deadline: std::time::Instant,
    fut: impl Future<Output = io::Result<T>>,
) -> Result<io::Result<T>, ()> {
    async { Ok(fut.await) }
        .or(async {
            Timer::at(deadline).await;
            Err(())
        })
        .await
}

/// Whether a connection stays open after an answer, as its request asked (RFC 9112 §9.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Persist {
    /// Closed after the answer, which says `Connection: close`.
    Close,
    /// Kept open (HTTP/1.1's default).
    KeepAlive,
    /// Kept open as an HTTP/1.0 request's `Connection: keep-alive` asked; the answer says so.
    KeepAlive10,
}

impl Persist {
    /// From the request's HTTP minor version and `Connection` headers (tokens, any case).
    fn of(minor_version: u8, headers: &[(String, Vec<u8>)]) -> Self {
        let tokens = headers
            .iter()
            .filter(|(n, _)| n == "connection")
            .flat_map(|(_, v)| v.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii);
        let (mut close, mut keep_alive) = (false, false);
        for token in tokens {
            close |= token.eq_ignore_ascii_case(b"close");
            keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
        }
        match (minor_version, close, keep_alive) {
            (_, true, _) | (0, false, false) => Self::Close,
            (0, false, true) => Self::KeepAlive10,
            _ => Self::KeepAlive,
        }
    }
}

/// Serves one connection: requests in turn, while kept alive.
async fn connection<A: App>(
    mut stream: TcpStream,
    peer: SocketAddr,
    limits: Limits,
    app: Rc<A>,
    held: Held,
) -> io::Result<()> {
    let connection = &held.0;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let read = read_request(&mut stream, &mut buf, peer, &limits, &*app, connection).await;
        let started = std::time::Instant::now();
        let (route, request, persist) = match read {
            Ok(ok) => ok,
            Err(ReadError::Closed) => return Ok(()),
            Err(ReadError::Refuse(reason)) => {
                let response = refusal(Refusal::new(reason));
                let status = response.status;
                let _ = write_response(&mut stream, response, &limits, false, Persist::Close).await;
                app.answered(None, "-", "-", status, started.elapsed());
                return Ok(());
            }
            Err(ReadError::RefuseRouted(reason, route, method, path)) => {
                let response = refusal(Refusal::new(reason));
                let status = response.status;
                let head_only = method == "HEAD";
                let _ =
                    write_response(&mut stream, response, &limits, head_only, Persist::Close).await;
                app.answered(Some(&route), &method, &path, status, started.elapsed());
                return Ok(());
            }
            Err(ReadError::Unrouted(response, method, path)) => {
                let status = response.status;
                let head_only = method == "HEAD";
                let _ =
                    write_response(&mut stream, response, &limits, head_only, Persist::Close).await;
                app.answered(None, &method, &path, status, started.elapsed());
                return Ok(());
            }
        };
        let (method, path) = (request.method.clone(), request.path().to_owned());
        let mut response = app
            .clone()
            .call(route.clone(), request, connection.clone())
            .await;
        let status = response.status;
        let persist = if response.close {
            Persist::Close
        } else {
            persist
        };
        let head_only = method == "HEAD";
        let written = match response.hold.take() {
            None => write_response(&mut stream, response, &limits, head_only, persist)
                .await
                .map(|()| Sent::Whole),
            Some(hold) => {
                hold_response(&mut stream, response, hold, &limits, head_only, persist).await
            }
        };
        app.answered(Some(&route), &method, &path, status, started.elapsed());
        if written? == Sent::Held || persist == Persist::Close {
            return Ok(());
        }
        connection.answered();
    }
}

/// The origin form of a request target (RFC 9112 §3.2): an absolute-form target
/// (`http://host/path?query`) is served by its path and query. Its authority is ignored, as
/// `Host` is: lockstep answers whatever name it is reached by. Any other form is kept as it
/// is, and matches no route.
fn origin_form(target: &str) -> String {
    let scheme = ["http://", "https://"].into_iter().find(|scheme| {
        target
            .get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    });
    let Some(scheme) = scheme else {
        return target.to_owned();
    };
    let rest = &target[scheme.len()..];
    match rest.find(['/', '?']) {
        Some(at) if rest[at..].starts_with('/') => rest[at..].to_owned(),
        // `http://host?query`: the path of an empty path is `/` (RFC 9110 §4.2.3).
        Some(at) => format!("/{}", &rest[at..]),
        None => "/".to_owned(),
    }
}

/// A `Content-Length` value: plain ASCII digits, with the optional whitespace around a field
/// value (RFC 9110 §5.5); a number past `usize` is as large as `usize` goes (413). Anything
/// else (`+5`, `-1`, `5 5`, `0x5`, empty) is `None`.
fn parse_length(value: &[u8]) -> Option<usize> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0usize, |n, d| {
        n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    }))
}

/// The body's length from the headers: `Content-Length` alone frames a body. A chunked body
/// is refused (411) rather than read; several `Content-Length` headers, even equal ones, a
/// value that is not plain digits, or `Transfer-Encoding` beside one, are 400 (RFC 9112
/// §6.3): the sender and lockstep could disagree on where the body ends.
fn body_length(method: &str, headers: &[(String, Vec<u8>)]) -> Result<usize, Reason> {
    let named = |name: &'static str| headers.iter().filter(move |(n, _)| n == name);
    let chunked = named("transfer-encoding").next().is_some();
    let mut lengths = named("content-length");
    match (lengths.next(), lengths.next(), chunked) {
        (Some(_), _, true) | (Some(_), Some(_), false) => Err(Reason::MalformedHead),
        (None, _, true) => Err(Reason::LengthRequired),
        (Some((_, value)), None, false) => parse_length(value).ok_or(Reason::MalformedHead),
        (None, _, false) if matches!(method, "POST" | "PUT" | "PATCH") => {
            Err(Reason::LengthRequired)
        }
        (None, _, false) => Ok(0),
    }
}

/// Reads one request into `buf` (which may hold bytes of it already); returns it and whether
/// the connection stays open after its answer.
async fn read_request<A: App>(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    peer: SocketAddr,
    limits: &Limits,
    app: &A,
    connection: &Connection,
) -> Result<(A::Route, Request, Persist), ReadError<A::Route>> {
    let mut chunk = [0u8; 4096];
    // Between requests: wait for a first byte up to the idle time-out.
    if buf.is_empty() {
        let idle = std::time::Instant::now() + limits.idle_timeout;
        match with_timeout(idle, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(()) => return Err(ReadError::Closed),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let deadline = std::time::Instant::now() + limits.read_timeout;
    // The head. Empty lines before the request line are skipped (RFC 9112 §2.2, httparse
    // does it); anything else there is malformed.
    let (head_len, method, target, headers, persist) = loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut slots);
        match parsed.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                if len > limits.head_bytes {
                    return Err(ReadError::Refuse(Reason::HeadTooLarge));
                }
                let headers: Vec<(String, Vec<u8>)> = parsed
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                    .collect();
                let persist = Persist::of(parsed.version.unwrap_or(1), &headers);
                break (
                    len,
                    parsed.method.unwrap_or("").to_owned(),
                    origin_form(parsed.path.unwrap_or("")),
                    headers,
                    persist,
                );
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > limits.head_bytes {
                    return Err(ReadError::Refuse(Reason::HeadTooLarge));
                }
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ReadError::Refuse(Reason::HeadTooLarge));
            }
            Err(_) => return Err(ReadError::Refuse(Reason::MalformedHead)),
        }
        match with_timeout(deadline, stream.read(&mut chunk)).await {
            Err(()) => return Err(ReadError::Refuse(Reason::Timeout)),
            Ok(Ok(0)) | Ok(Err(_)) => return Err(ReadError::Closed),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    // The route before the transport: an unknown path or method is refused as such.
    let path = target
        .split_once('?')
        .map_or(target.as_str(), |(path, _)| path)
        .to_owned();
    let route = match app.route(&method, &target) {
        Ok(route) => route,
        Err(response) => return Err(ReadError::Unrouted(response, method, path)),
    };
    let refuse =
        |reason| ReadError::RefuseRouted(reason, route.clone(), method.clone(), path.clone());
    let length = body_length(&method, &headers).map_err(refuse)?;
    if length > limits.body_bytes {
        return Err(refuse(Reason::BodyTooLarge));
    }
    let end = head_len.saturating_add(length);
    while buf.len() < end {
        match with_timeout(deadline, stream.read(&mut chunk)).await {
            Err(()) => return Err(refuse(Reason::Timeout)),
            Ok(Ok(0)) | Ok(Err(_)) => return Err(ReadError::Closed),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    // From here the connection has a whole request to answer: it is no longer shed. Until
    // here, a client sending its head or body slowly is waiting, and may be.
    connection.request_read();
    // The loop above read at least `end` bytes.
    let body = buf[head_len..end].to_vec();
    // Keep what follows (a pipelined next request).
    buf.drain(..end);
    Ok((
        route,
        Request {
            method,
            target,
            headers,
            body,
            peer,
        },
        persist,
    ))
}

/// A response's head, and its whole body unless `head_only` (a stream's chunks follow);
/// `Content-Length` is the body's whether it is sent or not: a `HEAD`'s answer is `GET`'s
/// without the body.
fn encode(response: &Response, head_only: bool, persist: Persist) -> Vec<u8> {
    use std::io::Write as _;
    let body = match (&response.body, head_only) {
        (Body::Bytes(body), false) => body.as_slice(),
        _ => &[],
    };
    // One buffer, sized for the head and the body: written in one `send`.
    let headers: usize = response
        .headers
        .iter()
        .map(|(name, value)| name.len() + value.len() + 4)
        .sum();
    let mut out = Vec::with_capacity(96 + headers + body.len());
    // Writing into a Vec cannot fail.
    let status = response.status;
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in &response.headers {
        for part in [name.as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
            out.extend_from_slice(part);
        }
    }
    match response.body {
        Body::Bytes(ref all) => {
            let _ = write!(out, "Content-Length: {}\r\n", all.len());
        }
        Body::Stream(_) => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        // Never encoded: a relayed answer brings its own head.
        Body::Relay { .. } => {}
    }
    match persist {
        Persist::Close => out.extend_from_slice(b"Connection: close\r\n"),
        Persist::KeepAlive10 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Persist::KeepAlive => {}
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Writes `bytes` and flushes them within the write time-out.
async fn send(stream: &mut TcpStream, bytes: &[u8], limits: &Limits) -> io::Result<()> {
    let deadline = std::time::Instant::now() + limits.write_timeout;
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "write timed out");
    with_timeout(deadline, stream.write_all(bytes))
        .await
        .map_err(|()| timed_out())??;
    with_timeout(deadline, stream.flush())
        .await
        .map_err(|()| timed_out())?
}

/// Writes a response (its head only for a `HEAD`); a stream goes chunk by chunk until its
/// channel closes or its client goes; a relayed answer as it comes ([`relay_answer`]).
async fn write_response(
    stream: &mut TcpStream,
    response: Response,
    limits: &Limits,
    head_only: bool,
    persist: Persist,
) -> io::Result<()> {
    let response = match response {
        Response {
            body: Body::Relay { answer, upstream },
            ..
        } => return relay_answer(stream, &answer, *upstream, limits).await,
        response => response,
    };
    send(stream, &encode(&response, head_only, persist), limits).await?;
    let Body::Stream(chunks) = response.body else {
        return Ok(());
    };
    if head_only {
        return Ok(());
    }
    // The client going away ends the stream at once, not at the next failed write: its slot
    // is free for someone else. What it sends meanwhile is read and ignored.
    let mut reader = stream.clone();
    let mut gone = std::pin::pin!(async move {
        let mut sink = [0u8; 512];
        while let Ok(1..) = reader.read(&mut sink).await {}
        None
    });
    while let Some(chunk) = async { chunks.recv().await.ok() }.or(gone.as_mut()).await {
        if chunk.is_empty() {
            continue;
        }
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(&chunk);
        framed.extend_from_slice(b"\r\n");
        send(stream, &framed, limits).await?;
    }
    send(stream, b"0\r\n\r\n", limits).await
}

/// Relays an answer another server sends ([`Body::Relay`]): what was read of it, then the
/// rest as it comes (an event stream included, event by event), until that server closes the
/// connection or a write to the client fails (each within the write time-out). What the
/// client sends meanwhile is read and dropped; its closing its side is passed on, so that the
/// other server, which sees its client go as lockstep does, ends an event stream for it.
async fn relay_answer(
    stream: &mut TcpStream,
    answer: &[u8],
    mut upstream: TcpStream,
    limits: &Limits,
) -> io::Result<()> {
    send(stream, answer, limits).await?;
    let mut reader = stream.clone();
    let told = upstream.clone();
    let passed_on = async move {
        let mut sink = [0u8; 512];
        while let Ok(1..) = reader.read(&mut sink).await {}
        let _ = told.shutdown(std::net::Shutdown::Write);
        // The rest of the answer may still come: the copy below ends the relay.
        futures_lite::future::pending::<io::Result<()>>().await
    };
    let copy = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match upstream.read(&mut buf).await {
                Ok(0) | Err(_) => return Ok(()),
                Ok(n) => send(stream, &buf[..n], limits).await?,
            }
        }
    };
    copy.or(passed_on).await
}

/// How a response went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    /// Whole: the connection goes on as it asked.
    Whole,
    /// Held, until its client closed the connection: it closes.
    Held,
}

/// Sends what a held response sends ([`Hold`]), then holds the connection until its client
/// closes it: what it sends meanwhile is read and ignored.
async fn hold_response(
    stream: &mut TcpStream,
    response: Response,
    hold: Hold,
    limits: &Limits,
    head_only: bool,
    persist: Persist,
) -> io::Result<Sent> {
    let Hold {
        after_body_bytes,
        mut holder,
    } = hold;
    let sent = match (after_body_bytes, &response.body) {
        // A relayed answer is held before any of it is sent.
        (None, _) | (Some(_), Body::Relay { .. }) => 0,
        // A stream has no length to cut it at: its head, then held.
        (Some(_), Body::Stream(_)) => {
            send(stream, &encode(&response, true, persist), limits).await?;
            0
        }
        (Some(n), Body::Bytes(all)) if !head_only && all.len() > n => {
            let mut bytes = encode(&response, true, persist);
            bytes.extend_from_slice(all.get(..n).unwrap_or(all));
            send(stream, &bytes, limits).await?;
            n
        }
        // All of it goes (a `HEAD`'s answer has no body): sent whole, nothing held.
        (Some(_), Body::Bytes(_)) => {
            drop(holder);
            write_response(stream, response, limits, head_only, persist).await?;
            return Ok(Sent::Whole);
        }
    };
    // Nothing more of it will be sent (a stream's channel closes here).
    drop(response);
    holder.holding(sent);
    let mut sink = [0u8; 512];
    while let Ok(1..) = stream.read(&mut sink).await {}
    drop(holder);
    Ok(Sent::Held)
}

/// Writes `response` on a connection that closes after it (nothing of the request read), with
/// `deadline` for the write.
pub async fn answer_and_close(stream: &mut TcpStream, response: &Response, deadline: Duration) {
    let bytes = encode(response, false, Persist::Close);
    let _ = stream
        .write_all(&bytes)
        .or(async {
            Timer::after(deadline).await;
            Ok(())
        })
        .await;
}

/// Binds a listener, with the OS choosing the port when it is 0.
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn test_origin_form() {
        for (target, origin) in [
            ("/deployments/a/b/a?tag=x", "/deployments/a/b/a?tag=x"),
            (
                "http://host/deployments/a/b/a?tag=x",
                "/deployments/a/b/a?tag=x",
            ),
            ("HTTP://host:9010/healthz", "/healthz"),
            ("https://user@host/metrics", "/metrics"),
            ("http://host", "/"),
            ("http://host?x=1", "/?x=1"),
            ("*", "*"),
            ("ftp://host/healthz", "ftp://host/healthz"),
            ("http:/healthz", "http:/healthz"),
        ] {
            assert_eq!(origin_form(target), origin, "{target}");
        }
    }

    #[test]
    fn test_parse_length() {
        assert_eq!(parse_length(b"0"), Some(0));
        assert_eq!(parse_length(b"42"), Some(42));
        // Optional whitespace around a field value.
        assert_eq!(parse_length(b" \t42\t "), Some(42));
        // Past usize: as large as it goes, refused as too large.
        assert_eq!(parse_length(b"99999999999999999999999"), Some(usize::MAX));
        for bad in [
            &b""[..],
            b" ",
            b"+5",
            b"-1",
            b"5 5",
            b"0x5",
            b"5,5",
            b"5.0",
            b"\xff",
        ] {
            assert_eq!(
                parse_length(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn test_body_length() {
        let length = |method, pairs: &[(&str, &str)]| body_length(method, &headers(pairs));
        assert_eq!(length("GET", &[]), Ok(0));
        assert_eq!(length("POST", &[]), Err(Reason::LengthRequired));
        assert_eq!(length("POST", &[("content-length", "5")]), Ok(5));
        assert_eq!(
            length("GET", &[("transfer-encoding", "chunked")]),
            Err(Reason::LengthRequired)
        );
        for pairs in [
            &[("content-length", "5"), ("content-length", "5")][..],
            &[("content-length", "0"), ("content-length", "5")],
            &[("content-length", "5"), ("transfer-encoding", "chunked")],
            &[("transfer-encoding", "chunked"), ("content-length", "5")],
            &[("content-length", "+5")],
        ] {
            assert_eq!(
                length("POST", pairs),
                Err(Reason::MalformedHead),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn test_persist() {
        let persist = |minor, pairs: &[(&str, &str)]| Persist::of(minor, &headers(pairs));
        assert_eq!(persist(1, &[]), Persist::KeepAlive);
        assert_eq!(persist(1, &[("connection", "close")]), Persist::Close);
        assert_eq!(
            persist(1, &[("connection", "Keep-Alive, CLOSE")]),
            Persist::Close
        );
        assert_eq!(
            persist(1, &[("connection", "keep-alive"), ("connection", "close")]),
            Persist::Close
        );
        assert_eq!(persist(1, &[("connection", "closed")]), Persist::KeepAlive);
        assert_eq!(persist(0, &[]), Persist::Close);
        assert_eq!(
            persist(0, &[("connection", "keep-alive")]),
            Persist::KeepAlive10
        );
        assert_eq!(
            persist(0, &[("connection", "keep-alive, close")]),
            Persist::Close
        );
    }

    #[test]
    fn test_encode_says_how_the_connection_goes_on() {
        let response = Response::text(200, "ok");
        let text = |persist| String::from_utf8(encode(&response, false, persist)).unwrap();
        assert!(text(Persist::Close).contains("\r\nConnection: close\r\n"));
        assert!(text(Persist::KeepAlive10).contains("\r\nConnection: keep-alive\r\n"));
        assert!(!text(Persist::KeepAlive).contains("Connection:"));
        assert!(text(Persist::KeepAlive).ends_with("\r\n\r\nok\n"));
        // A HEAD's answer: GET's Content-Length, no body.
        let head = String::from_utf8(encode(&response, true, Persist::KeepAlive)).unwrap();
        assert!(head.contains("\r\nContent-Length: 3\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
    }

    #[test]
    fn test_serve_refuses_streams_not_below_connections() {
        let executor = Rc::new(LocalExecutor::new());
        let listener = futures_lite::future::block_on(bind(([127, 0, 0, 1], 0).into())).unwrap();
        let limits = Limits {
            max_connections: 2,
            max_event_streams: 2,
            ..Limits::default()
        };
        struct Nothing;
        impl App for Nothing {
            type Route = ();
            fn route(&self, _: &str, _: &str) -> Result<(), Response> {
                Ok(())
            }
            fn call(
                self: Rc<Self>,
                (): (),
                _: Request,
                _: Connection,
            ) -> Pin<Box<dyn Future<Output = Response>>> {
                Box::pin(async { Response::text(200, "ok") })
            }
        }
        assert!(matches!(
            serve(executor, listener, limits, Rc::new(Nothing)),
            Err(BudgetError::StreamsNotBelowCapacity)
        ));
    }
}
