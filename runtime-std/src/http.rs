//! A small HTTP/1.1 server on async-io, for the sandbox and `lockstep serve`.
//!
//! Request heads are parsed with httparse, bodies read by `Content-Length` (a chunked request
//! body is refused with 411, never read as the next request). Every limit is explicit
//! ([`Limits`]): head bytes (431), body bytes (413), the time a request may take to arrive
//! (408), the idle time of a kept-alive connection, and the connections served at once (the
//! others wait in the listen backlog). A refusal answers one line of text and closes the
//! connection. Responses are whole ([`Body::Bytes`], with `Content-Length`) or streamed
//! ([`Body::Stream`], chunked: server-sent events).
//!
//! What it serves is an [`App`]: each request is routed once, from its head, before its body
//! is read; the route is kept until the request is answered. It runs on a single-threaded
//! executor: apps share state through `Rc`.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use async_executor::LocalExecutor;
use async_io::Timer;
use async_net::{TcpListener, TcpStream};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use lockstep_core::service::Reason;

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
    /// How many connections are served at once; the others wait in the listen backlog.
    pub max_connections: usize,
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
        }
    }
}

/// A request, read whole.
#[derive(Debug)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target: path and query.
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
}

impl Response {
    /// A response with a body of this content type.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: Body::Bytes(body.into()),
            close: false,
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
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
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

    /// Routes a request from its method and target (path and query), once, before its body is
    /// read: the route is checked before the transport limits (docs/PROTOCOL.md §7). A refusal
    /// (404, 405, 400) is answered at once, the body unread, and the connection closed.
    fn route(&self, method: &str, target: &str) -> Result<Self::Route, Response>;

    /// Answers a routed request, its body read within the limits.
    fn call(
        self: Rc<Self>,
        route: Self::Route,
        request: Request,
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
}

/// Accepts and serves connections on `listener` until the executor is dropped.
pub async fn serve<A: App>(
    executor: Rc<LocalExecutor<'static>>,
    listener: TcpListener,
    limits: Limits,
    app: Rc<A>,
) {
    let active = Rc::new(Cell::new(0usize));
    let (freed_tx, freed_rx) = async_channel::unbounded::<()>();
    loop {
        // At the limit, stop accepting: further connections wait in the listen backlog.
        while active.get() >= limits.max_connections.max(1) {
            if freed_rx.recv().await.is_err() {
                return;
            }
        }
        let Ok((stream, peer)) = listener.accept().await else {
            // Out of file descriptors or the like: wait a moment rather than spin.
            Timer::after(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        active.set(active.get().saturating_add(1));
        let (active, freed, app) = (active.clone(), freed_tx.clone(), app.clone());
        executor
            .spawn(async move {
                let _ = connection(stream, peer, limits, app).await;
                active.set(active.get().saturating_sub(1));
                let _ = freed.try_send(());
            })
            .detach();
    }
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

/// Serves one connection: requests in turn, while kept alive.
async fn connection<A: App>(
    mut stream: TcpStream,
    peer: SocketAddr,
    limits: Limits,
    app: Rc<A>,
) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let read = read_request(&mut stream, &mut buf, peer, &limits, &*app).await;
        let started = std::time::Instant::now();
        let refused = |reason: Reason| {
            let mut response = Response::text(reason.status().code(), &reason.to_string());
            response.close = true;
            response
        };
        let (route, request, close_after) = match read {
            Ok(ok) => ok,
            Err(ReadError::Closed) => return Ok(()),
            Err(ReadError::Refuse(reason)) => {
                let response = refused(reason);
                let status = response.status;
                let _ = write_response(&mut stream, response, &limits).await;
                app.answered(None, "-", "-", status, started.elapsed());
                return Ok(());
            }
            Err(ReadError::RefuseRouted(reason, route, method, path)) => {
                let response = refused(reason);
                let status = response.status;
                let _ = write_response(&mut stream, response, &limits).await;
                app.answered(Some(&route), &method, &path, status, started.elapsed());
                return Ok(());
            }
            Err(ReadError::Unrouted(mut response, method, path)) => {
                response.close = true;
                let status = response.status;
                let _ = write_response(&mut stream, response, &limits).await;
                app.answered(None, &method, &path, status, started.elapsed());
                return Ok(());
            }
        };
        let (method, path) = (request.method.clone(), request.path().to_owned());
        let response = app.clone().call(route.clone(), request).await;
        let status = response.status;
        let close = close_after || response.close;
        let written = write_response(&mut stream, response, &limits).await;
        app.answered(Some(&route), &method, &path, status, started.elapsed());
        written?;
        if close {
            return Ok(());
        }
    }
}

/// Reads one request into `buf` (which may hold bytes of it already); returns it and whether
/// the connection closes after its answer.
async fn read_request<A: App>(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    peer: SocketAddr,
    limits: &Limits,
    app: &A,
) -> Result<(A::Route, Request, bool), ReadError<A::Route>> {
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
    // The head.
    let (head_len, method, target, headers, close) = loop {
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
                let version = parsed.version.unwrap_or(1);
                let connection = headers
                    .iter()
                    .find(|(n, _)| n == "connection")
                    .map(|(_, v)| String::from_utf8_lossy(v).to_ascii_lowercase());
                let close = match connection.as_deref() {
                    Some(v) if v.contains("close") => true,
                    Some(v) if v.contains("keep-alive") => false,
                    _ => version == 0,
                };
                break (
                    len,
                    parsed.method.unwrap_or("").to_owned(),
                    parsed.path.unwrap_or("").to_owned(),
                    headers,
                    close,
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
    // The body: by Content-Length only.
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    if header("transfer-encoding").is_some() {
        return Err(refuse(Reason::LengthRequired));
    }
    let length = match header("content-length") {
        None if matches!(method.as_str(), "POST" | "PUT" | "PATCH") => {
            return Err(refuse(Reason::LengthRequired));
        }
        None => 0,
        Some(v) => match std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            Some(n) => n,
            None => return Err(refuse(Reason::MalformedHead)),
        },
    };
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
    // The loop above read at least `end` bytes.
    let body = buf[head_len..end].to_vec();
    // Keep what follows (a pipelined next request).
    buf.drain(..end.min(buf.len()));
    Ok((
        route,
        Request {
            method,
            target,
            headers,
            body,
            peer,
        },
        close,
    ))
}

/// Writes a response; a stream goes chunk by chunk until its channel closes.
async fn write_response(
    stream: &mut TcpStream,
    response: Response,
    limits: &Limits,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "write timed out");
    match response.body {
        Body::Bytes(body) => {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            if response.close {
                head.push_str("Connection: close\r\n");
            }
            head.push_str("\r\n");
            let mut out = head.into_bytes();
            out.extend_from_slice(&body);
            let deadline = std::time::Instant::now() + limits.write_timeout;
            with_timeout(deadline, stream.write_all(&out))
                .await
                .map_err(|()| timed_out())??;
            with_timeout(deadline, stream.flush())
                .await
                .map_err(|()| timed_out())?
        }
        Body::Stream(chunks) => {
            head.push_str("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
            let deadline = std::time::Instant::now() + limits.write_timeout;
            with_timeout(deadline, stream.write_all(head.as_bytes()))
                .await
                .map_err(|()| timed_out())??;
            while let Ok(chunk) = chunks.recv().await {
                if chunk.is_empty() {
                    continue;
                }
                let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                framed.extend_from_slice(&chunk);
                framed.extend_from_slice(b"\r\n");
                let deadline = std::time::Instant::now() + limits.write_timeout;
                with_timeout(deadline, stream.write_all(&framed))
                    .await
                    .map_err(|()| timed_out())??;
                with_timeout(deadline, stream.flush())
                    .await
                    .map_err(|()| timed_out())??;
            }
            let deadline = std::time::Instant::now() + limits.write_timeout;
            with_timeout(deadline, stream.write_all(b"0\r\n\r\n"))
                .await
                .map_err(|()| timed_out())?
        }
    }
}

/// Binds a listener, with the OS choosing the port when it is 0.
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
