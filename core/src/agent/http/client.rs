//! The client: requests streamed out, responses streamed in, one kept-alive connection.

use core::fmt::{self, Write as _};

use embedded_io_async::{Read, Write};

use super::chunked::Chunked;
use super::{
    DEFAULT_IDLE_LIMIT, DISCARD_LIMIT, HttpError, MAX_CONTENT_TYPE_LEN, MAX_HEADERS, MAX_HOST_LEN,
    MAX_INTERIM_RESPONSES, Method, Origin, Scheme, is_host,
};
use crate::agent::{Connector, Time, TimedOut, with_deadline};
use crate::text::{Cursor, InlineStr, is_tchar, len_u64, min_len};
use crate::time::{Duration, Instant};

/// The head of a response, as [`Client::response`] read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ResponseHead {
    /// The status code, 200 to 599 (`1xx` interim responses are skipped).
    pub status: u16,
    /// The `Content-Type`, trimmed; empty when there is none. One longer than
    /// [`MAX_CONTENT_TYPE_LEN`] is refused ([`HttpError::ContentTypeTooLong`]), never cut: a cut
    /// multipart boundary would still look like one.
    pub content_type: InlineStr<MAX_CONTENT_TYPE_LEN>,
    /// The `Content-Length` as declared (also on a response that has no body: to `HEAD`, a 204
    /// or a 304); `None` for a chunked body or one that ends when the connection closes.
    pub content_length: Option<u64>,
    /// Whether the connection will be reused once the body is read to its end: the server
    /// keeps it alive and the body's end is framed (not "until the connection closes").
    pub keep_alive: bool,
}

/// An HTTP/1.1 client over the platform's [`Connector`], with one caller buffer and at most one
/// open connection.
///
/// An exchange is, in this order:
/// 1. [`begin`](Self::begin): connects (or reuses the kept connection) and writes the request
///    head;
/// 2. [`write`](Self::write), as often as needed: exactly the declared `Content-Length` of
///    request body (no chunked request bodies);
/// 3. [`response`](Self::response): reads the response head;
/// 4. [`read`](Self::read) until it answers 0 (or [`discard`](Self::discard)): the body,
///    de-chunked.
///
/// [`get`](Self::get) is steps 1 and 3 for a `GET`. A call out of this order answers
/// [`HttpError::Sequence`]; a new [`begin`](Self::begin) is always allowed, and closes the
/// connection if the previous exchange was left unfinished.
///
/// The connection is kept for the next request when the server allows it (HTTP/1.1 without
/// `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`), the body was read to its
/// end and nothing followed it; it is reused only for the same host and port, and only while it
/// has been idle for at most the idle limit ([`DEFAULT_IDLE_LIMIT`] unless
/// [`set_idle_limit`](Self::set_idle_limit)). Any error closes it.
///
/// Every connect, read, write and flush runs under its own deadline, `timeout` after it starts
/// ([`with_deadline`]): the time-out bounds each wait for the peer, not a whole exchange.
///
/// The buffer holds the request head while it is written, then the response head (which must
/// fit: [`HttpError::HeadTooLarge`]) and whatever body bytes arrived with it. Body reads go
/// straight into the caller's buffer whenever none are buffered. 1 KiB is enough for the
/// ConductR control API and a repository; 4 KiB leaves room for proxies' headers.
///
/// If a future of this client is dropped before it completes (a caller's own time-out), the
/// exchange is abandoned: [`read`](Self::read), [`write`](Self::write) and
/// [`response`](Self::response) answer [`HttpError::Sequence`], and the next
/// [`begin`](Self::begin) opens a new connection.
pub struct Client<'b, C: Connector, T: Time> {
    connector: &'b C,
    time: &'b T,
    buffer: Buffer<'b>,
    timeout: Duration,
    idle_limit: Duration,
    conn: Option<Kept<C::Connection>>,
    state: State,
}

/// The open connection, and whom it goes to.
struct Kept<S> {
    stream: S,
    scheme: Scheme,
    host: InlineStr<MAX_HOST_LEN>,
    port: u16,
    /// When its last exchange ended (or it was opened).
    idle_since: Instant,
}

/// Where the exchange stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// None under way: the kept connection, if any, is ready for a request.
    Idle,
    /// The request head is written; `left` body bytes are still to come.
    Sending { left: u64, head_request: bool },
    /// The response head is read; the body is being.
    Receiving { body: Body, keep_alive: bool },
    /// An error or an abandoned call: nothing but `begin`.
    Failed,
}

/// How the response body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    /// After this many more bytes.
    Length(u64),
    /// With the last chunk.
    Chunked(Chunked),
    /// When the server closes the connection.
    UntilClose,
}

/// Where body bytes go.
enum Sink<'o> {
    /// Into the caller's buffer.
    Copy(&'o mut [u8]),
    /// Nowhere, at most this many.
    Skip(u64),
}

impl Sink<'_> {
    fn room(&self) -> u64 {
        match self {
            Self::Copy(out) => len_u64(out.len()),
            Self::Skip(n) => *n,
        }
    }
}

/// The client's buffer: the bytes read from the connection since the last
/// [`clear`](Self::clear), of which those from `start` on are not used yet.
///
/// Its methods keep `start ≤ end ≤ buf.len()`, checking every count that comes from outside
/// (a read, a parser), so that its views cannot fail.
struct Buffer<'b> {
    buf: &'b mut [u8],
    start: usize,
    end: usize,
}

impl<'b> Buffer<'b> {
    fn new(buf: &'b mut [u8]) -> Self {
        Self {
            buf,
            start: 0,
            end: 0,
        }
    }

    fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Forgets every byte read.
    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// The whole buffer, to write a request head in: forgets every byte read.
    fn scratch(&mut self) -> &mut [u8] {
        self.clear();
        self.buf
    }

    /// Whether every byte read was used.
    fn is_drained(&self) -> bool {
        self.start >= self.end
    }

    /// The bytes read and not used yet.
    fn unread(&self) -> &[u8] {
        // The clamps spell out the invariant: they change nothing.
        let (filled, _) = self.buf.split_at(self.end.min(self.buf.len()));
        filled.split_at(self.start.min(filled.len())).1
    }

    /// The room after the bytes read, for the next read.
    fn spare(&mut self) -> &mut [u8] {
        let end = self.end.min(self.buf.len());
        self.buf.split_at_mut(end).1
    }

    /// Counts `n` more bytes read into [`spare`](Self::spare), and answers them; a count past
    /// the room is a read that failed.
    fn commit(&mut self, n: usize) -> Result<&[u8], HttpError> {
        let start = self.end;
        let end = start.checked_add(n).ok_or(HttpError::Io)?;
        let read = self.buf.get(start..end).ok_or(HttpError::Io)?;
        self.end = end;
        Ok(read)
    }

    /// Marks the first `n` unread bytes used; a count past them (which neither the head
    /// parser nor the chunk framing answers) is refused.
    fn consume(&mut self, n: usize) -> Result<(), HttpError> {
        self.start = self
            .start
            .checked_add(n)
            .filter(|&start| start <= self.end)
            .ok_or(HttpError::Malformed)?;
        Ok(())
    }

    /// Moves the unread bytes to the front.
    fn compact(&mut self) {
        if self.is_drained() {
            self.clear();
        } else if self.start > 0 && self.end <= self.buf.len() {
            // `0 < start < end ≤ len`: the range is within the buffer.
            self.buf.copy_within(self.start..self.end, 0);
            self.end = self.end.saturating_sub(self.start);
            self.start = 0;
        }
    }
}

/// A response head, parsed.
struct Parsed {
    status: u16,
    /// How many bytes of the `Location` of a `3xx` were copied out (0: none).
    location_len: usize,
    content_type: InlineStr<MAX_CONTENT_TYPE_LEN>,
    content_length: Option<u64>,
    chunked: bool,
    keep_alive: bool,
}

impl<C: Connector, T: Time> fmt::Debug for Client<'_, C, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("capacity", &self.buffer.capacity())
            .field("timeout", &self.timeout)
            .field("connected", &self.conn.is_some())
            .field("state", &self.state)
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl<C: Connector, T: Time> defmt::Format for Client<'_, C, T> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Client {{ capacity: {=usize}, connected: {=bool} }}",
            self.buffer.capacity(),
            self.conn.is_some()
        );
    }
}

impl<'b, C: Connector, T: Time> Client<'b, C, T> {
    /// A client that connects through `connector`, waits on `time`, keeps heads in `buf`, and
    /// gives up on any single connect, read or write after `timeout`.
    pub fn new(connector: &'b C, time: &'b T, buf: &'b mut [u8], timeout: Duration) -> Self {
        Self {
            connector,
            time,
            buffer: Buffer::new(buf),
            timeout,
            idle_limit: DEFAULT_IDLE_LIMIT,
            conn: None,
            state: State::Idle,
        }
    }

    /// Reuses a kept connection only if it has been idle for at most `limit`
    /// ([`Duration::ZERO`]: a new connection for every request, unless no time passed).
    pub fn set_idle_limit(&mut self, limit: Duration) {
        self.idle_limit = limit;
    }

    /// The time-out of each connect, read and write.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether a connection is open (kept for the next request, or in use).
    pub const fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Starts a request: connects to `origin` (its host a name, an IPv4 address, or an IPv6
    /// address with or without brackets; TLS for `https`) or reuses the kept connection to the
    /// same origin, and writes the request head:
    ///
    /// ```text
    /// {method} {target} HTTP/1.1
    /// Host: {host}[:{port} unless the scheme's default]
    /// Connection: keep-alive
    /// {name}: {value}            for each of `headers`
    /// Content-Length: {n}        when `content_length` is given
    /// ```
    ///
    /// `target` is written with `Display` (a `&str`, or [`crate::conductr::ScaleTarget`] and
    /// the like), and must be visible ASCII without spaces. The caller's headers may not be
    /// `Host`, `Connection`, `Content-Length` or `Transfer-Encoding`
    /// ([`HttpError::InvalidRequest`], checked before anything is sent). With a
    /// `content_length`, exactly that many bytes must follow through [`write`](Self::write).
    pub async fn begin(
        &mut self,
        method: Method,
        origin: Origin<'_>,
        target: impl fmt::Display,
        headers: &[(&str, &str)],
        content_length: Option<u64>,
    ) -> Result<(), HttpError> {
        self.begin_dyn(method, origin, &target, headers, content_length)
            .await
    }

    /// [`begin`](Self::begin), compiled once for every kind of target.
    async fn begin_dyn(
        &mut self,
        method: Method,
        origin: Origin<'_>,
        target: &dyn fmt::Display,
        headers: &[(&str, &str)],
        content_length: Option<u64>,
    ) -> Result<(), HttpError> {
        if self.state != State::Idle {
            // The previous exchange stopped somewhere in the middle.
            self.conn = None;
            self.state = State::Idle;
        }
        self.buffer.clear();
        let Origin { scheme, host, port } = origin;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if !is_host(host) {
            return Err(HttpError::InvalidRequest);
        }
        let key = InlineStr::new(host).map_err(|_| HttpError::InvalidRequest)?;
        let head = write_head(
            self.buffer.scratch(),
            method,
            Origin { scheme, host, port },
            target,
            headers,
            content_length,
        )?;

        self.state = State::Failed;
        let now = self.time.now().instant;
        let reuse = self.conn.as_ref().is_some_and(|kept| {
            kept.host.as_str().eq_ignore_ascii_case(host)
                && kept.port == port
                && kept.scheme == scheme
                && now.saturating_duration_since(kept.idle_since) <= self.idle_limit
        });
        if !reuse {
            self.conn = None;
            let deadline = now.saturating_add(self.timeout);
            let origin = Origin { scheme, host, port };
            let stream =
                with_deadline(self.time, deadline, self.connector.connect(origin)).await??;
            self.conn = Some(Kept {
                stream,
                scheme,
                host: key,
                port,
                idle_since: now,
            });
        }
        let Some(kept) = self.conn.as_mut() else {
            return Err(HttpError::Sequence);
        };
        if let Err(e) = send(self.time, self.timeout, &mut kept.stream, head).await {
            self.conn = None;
            return Err(e);
        }
        self.state = State::Sending {
            left: content_length.unwrap_or(0),
            head_request: method == Method::Head,
        };
        Ok(())
    }

    /// Writes request body bytes. More than the declared `Content-Length` in all is refused
    /// ([`HttpError::BodyTooLong`]) without writing any of `bytes`, and closes the connection.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), HttpError> {
        let State::Sending { left, head_request } = self.state else {
            return Err(HttpError::Sequence);
        };
        let n = len_u64(bytes.len());
        if n > left {
            self.fail();
            return Err(HttpError::BodyTooLong);
        }
        let Some(kept) = self.conn.as_mut() else {
            return Err(HttpError::Sequence);
        };
        self.state = State::Failed;
        if let Err(e) = send(self.time, self.timeout, &mut kept.stream, bytes).await {
            self.fail();
            return Err(e);
        }
        self.state = State::Sending {
            left: left.saturating_sub(n),
            head_request,
        };
        Ok(())
    }

    /// Flushes the request and reads the response head: `1xx` heads are skipped; the body is
    /// framed by `Transfer-Encoding: chunked`, else by `Content-Length`, else by the connection's
    /// end (which is then not reused); a response to `HEAD`, a 204 and a 304 have none. Asking
    /// before the declared request body was all written is [`HttpError::BodyTooShort`].
    pub async fn response(&mut self) -> Result<ResponseHead, HttpError> {
        Ok(self.response_dyn(None).await?.0)
    }

    /// [`response`](Self::response), also copying the `Location` of a `3xx` answer into
    /// `location`: answers how many bytes it holds (0 when there is none, or the status is not
    /// `3xx`). A `Location` longer than `location` is [`HttpError::HeadTooLarge`].
    pub async fn response_with_location(
        &mut self,
        location: &mut [u8],
    ) -> Result<(ResponseHead, usize), HttpError> {
        self.response_dyn(Some(location)).await
    }

    async fn response_dyn(
        &mut self,
        location: Option<&mut [u8]>,
    ) -> Result<(ResponseHead, usize), HttpError> {
        let State::Sending { left, head_request } = self.state else {
            return Err(HttpError::Sequence);
        };
        if left != 0 {
            self.fail();
            return Err(HttpError::BodyTooShort);
        }
        self.state = State::Failed;
        match self.receive_head(head_request, location).await {
            Ok(head) => Ok(head),
            Err(e) => {
                self.fail();
                Err(e)
            }
        }
    }

    /// Reads body bytes into `out`, de-chunked; 0 at the end of the body (and, as
    /// [`embedded_io_async::Read`] says, for an empty `out`). At the end, the connection is kept
    /// for the next request if it may be. Once the body ended, or when there is no exchange,
    /// it answers 0 again; after an error, [`HttpError::Sequence`].
    pub async fn read(&mut self, out: &mut [u8]) -> Result<usize, HttpError> {
        let (body, keep_alive) = match self.state {
            State::Idle => return Ok(0),
            State::Receiving { body, keep_alive } => (body, keep_alive),
            State::Sending { .. } | State::Failed => return Err(HttpError::Sequence),
        };
        if out.is_empty() {
            return Ok(0);
        }
        self.state = State::Failed;
        match self.read_body(body, keep_alive, Sink::Copy(out)).await {
            Ok(n) => Ok(n),
            Err(e) => {
                self.fail();
                Err(e)
            }
        }
    }

    /// [`read`](Self::read), answering the bytes read: the front of `out`, empty at the end of
    /// the body.
    pub async fn read_chunk<'o>(&mut self, out: &'o mut [u8]) -> Result<&'o [u8], HttpError> {
        let n = self.read(out).await?;
        // `read` counts the bytes it put at the front of `out`: a count past it would be a
        // read that failed.
        out.get(..n).ok_or(HttpError::Io)
    }

    /// Ends the exchange so that the next [`begin`](Self::begin) may reuse the connection: reads
    /// and drops the rest of the body if the connection is to be kept and at most
    /// [`DISCARD_LIMIT`] body bytes remain (chunk framing is not counted), else closes the
    /// connection. An exchange whose request was not finished is closed. A failure while
    /// reading is answered, with the connection closed; either way, the client is then ready
    /// for `begin`.
    pub async fn discard(&mut self) -> Result<(), HttpError> {
        let (mut body, keep_alive) = match self.state {
            State::Idle => return Ok(()),
            State::Receiving { body, keep_alive } => (body, keep_alive),
            State::Sending { .. } | State::Failed => {
                self.close();
                self.state = State::Idle;
                return Ok(());
            }
        };
        let mut budget = DISCARD_LIMIT;
        let hopeless = matches!(body, Body::Length(n) if n > budget);
        if !keep_alive || hopeless {
            self.close();
            self.state = State::Idle;
            return Ok(());
        }
        loop {
            if budget == 0 {
                self.close();
                self.state = State::Idle;
                return Ok(());
            }
            self.state = State::Failed;
            match self.read_body(body, keep_alive, Sink::Skip(budget)).await {
                Ok(n) => budget = budget.saturating_sub(len_u64(n)),
                Err(e) => {
                    self.fail();
                    return Err(e);
                }
            }
            match self.state {
                State::Receiving { body: rest, .. } => body = rest,
                _ => return Ok(()),
            }
        }
    }

    /// `GET {target}`: [`begin`](Self::begin) without a body, then
    /// [`response`](Self::response).
    pub async fn get(
        &mut self,
        origin: Origin<'_>,
        target: impl fmt::Display,
        headers: &[(&str, &str)],
    ) -> Result<ResponseHead, HttpError> {
        self.begin(Method::Get, origin, target, headers, None)
            .await?;
        self.response().await
    }

    /// Closes the connection, if one is open. An exchange under way is abandoned: only
    /// [`begin`](Self::begin) follows.
    pub fn close(&mut self) {
        self.conn = None;
        self.buffer.clear();
        if self.state != State::Idle {
            self.state = State::Failed;
        }
    }

    /// After an error: the connection is gone, only `begin` follows.
    fn fail(&mut self) {
        self.close();
        self.state = State::Failed;
    }

    /// The end of a body: the connection is kept if the server allows it and nothing follows
    /// the body, else closed.
    fn finish(&mut self, keep_alive: bool) {
        let clean = self.buffer.is_drained();
        self.buffer.clear();
        self.state = State::Idle;
        match self.conn.as_mut() {
            Some(kept) if keep_alive && clean => kept.idle_since = self.time.now().instant,
            _ => self.conn = None,
        }
    }

    /// Reads more bytes into the buffer after those it holds, and answers them: none at the
    /// connection's end.
    async fn fill(&mut self) -> Result<&[u8], HttpError> {
        let Some(kept) = self.conn.as_mut() else {
            return Err(HttpError::Sequence);
        };
        let space = self.buffer.spare();
        if space.is_empty() {
            return Err(HttpError::HeadTooLarge);
        }
        let n = receive(self.time, self.timeout, &mut kept.stream, space)
            .await?
            .len();
        self.buffer.commit(n)
    }

    /// Flushes the request, reads response heads until a final one, and sets up its body.
    async fn receive_head(
        &mut self,
        head_request: bool,
        mut location: Option<&mut [u8]>,
    ) -> Result<(ResponseHead, usize), HttpError> {
        let Some(kept) = self.conn.as_mut() else {
            return Err(HttpError::Sequence);
        };
        flush(self.time, self.timeout, &mut kept.stream).await?;
        self.buffer.clear();
        let mut interim = 0u8;
        loop {
            self.buffer.compact();
            // httparse starts over on every attempt: attempt only when a line may have ended.
            let mut attempt = true;
            let (len, parsed) = loop {
                if attempt
                    && let Some(done) = parse_head(self.buffer.unread(), location.as_deref_mut())?
                {
                    break done;
                }
                let new = self.fill().await?;
                if new.is_empty() {
                    return Err(HttpError::Io);
                }
                attempt = new.contains(&b'\n');
            };
            self.buffer.consume(len)?;
            if parsed.status >= 200 {
                return Ok((self.start_body(&parsed, head_request), parsed.location_len));
            }
            // 101 would switch protocols, which was never asked for.
            interim = interim.saturating_add(1);
            if parsed.status == 101 || interim > MAX_INTERIM_RESPONSES {
                return Err(HttpError::Malformed);
            }
        }
    }

    /// Sets up the body of a final response.
    fn start_body(&mut self, parsed: &Parsed, head_request: bool) -> ResponseHead {
        let no_body = head_request || parsed.status == 204 || parsed.status == 304;
        let body = if no_body {
            None
        } else if parsed.chunked {
            Some(Body::Chunked(Chunked::START))
        } else {
            Some(parsed.content_length.map_or(Body::UntilClose, Body::Length))
        };
        let keep_alive = parsed.keep_alive && body != Some(Body::UntilClose);
        match body {
            None | Some(Body::Length(0)) => self.finish(keep_alive),
            Some(body) => self.state = State::Receiving { body, keep_alive },
        }
        ResponseHead {
            status: parsed.status,
            content_type: parsed.content_type,
            content_length: parsed.content_length,
            keep_alive,
        }
    }

    /// Moves body bytes to `sink`: buffered ones first, else from the connection; 0 only at
    /// the end. Leaves the state as the body then stands.
    async fn read_body(
        &mut self,
        mut body: Body,
        keep_alive: bool,
        mut sink: Sink<'_>,
    ) -> Result<usize, HttpError> {
        let limit = loop {
            match body {
                Body::Length(0) | Body::Chunked(Chunked::Done) => {
                    self.finish(keep_alive);
                    return Ok(0);
                }
                Body::Length(left) | Body::Chunked(Chunked::Data(left)) => break left,
                Body::UntilClose => break u64::MAX,
                Body::Chunked(mut framing) => {
                    if self.buffer.is_drained() {
                        self.buffer.clear();
                        if self.fill().await?.is_empty() {
                            return Err(HttpError::Io);
                        }
                    }
                    let used = framing.framing(self.buffer.unread())?;
                    self.buffer.consume(used)?;
                    body = Body::Chunked(framing);
                }
            }
        };
        let n = self.take(limit, &mut sink).await?;
        if n == 0 {
            if body == Body::UntilClose {
                self.conn = None;
                self.finish(false);
                return Ok(0);
            }
            // The connection ended inside the body.
            return Err(HttpError::Io);
        }
        body = match body {
            Body::Length(left) => Body::Length(left.saturating_sub(len_u64(n))),
            Body::Chunked(chunk) => {
                // The framing after the data may already be here: a body whose end is in hand
                // gives the connection back now, for a caller that stops at the last byte.
                let mut next = chunk.took(len_u64(n));
                let mut probe = next;
                if let Ok(used) = probe.framing(self.buffer.unread()) {
                    next = probe;
                    self.buffer.consume(used)?;
                }
                Body::Chunked(next)
            }
            Body::UntilClose => Body::UntilClose,
        };
        match body {
            Body::Length(0) | Body::Chunked(Chunked::Done) => self.finish(keep_alive),
            _ => self.state = State::Receiving { body, keep_alive },
        }
        Ok(n)
    }

    /// Moves up to `limit` body bytes to `sink`: buffered ones, else what one read of the
    /// connection gives (straight into the caller's buffer when it is one); 0 at the
    /// connection's end.
    async fn take(&mut self, limit: u64, sink: &mut Sink<'_>) -> Result<usize, HttpError> {
        let cap = limit.min(sink.room());
        if self.buffer.is_drained() {
            self.buffer.clear();
            if let Sink::Copy(out) = sink {
                let Some(kept) = self.conn.as_mut() else {
                    return Err(HttpError::Sequence);
                };
                // At most the length of `out`: the split is within it.
                let (out, _) = out.split_at_mut(min_len(cap, out.len()));
                let read = receive(self.time, self.timeout, &mut kept.stream, out).await?;
                return Ok(read.len());
            }
            if self.fill().await?.is_empty() {
                return Ok(0);
            }
        }
        let window = self.buffer.unread();
        let n = min_len(cap, window.len());
        if let Sink::Copy(out) = sink {
            let (Some(dst), Some(src)) = (out.get_mut(..n), window.get(..n)) else {
                return Err(HttpError::Sequence);
            };
            dst.copy_from_slice(src);
        }
        self.buffer.consume(n)?;
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------------
// Heads
// ---------------------------------------------------------------------------------------------

/// Writes a request head into `buf`; answers it.
fn write_head<'h>(
    buf: &'h mut [u8],
    method: Method,
    origin: Origin<'_>,
    target: &dyn fmt::Display,
    headers: &[(&str, &str)],
    content_length: Option<u64>,
) -> Result<&'h [u8], HttpError> {
    const FRAMING: [&str; 4] = ["host", "connection", "content-length", "transfer-encoding"];
    let Origin { scheme, host, port } = origin;
    let mut out = Cursor::new(buf);
    let full = |_| HttpError::HeadTooLarge;
    write!(out, "{method} ").map_err(full)?;
    let mut checked = Target {
        out: &mut out,
        len: 0,
        visible: true,
    };
    write!(checked, "{target}").map_err(full)?;
    if checked.len == 0 || !checked.visible {
        return Err(HttpError::InvalidRequest);
    }
    if host.contains(':') {
        write!(out, " HTTP/1.1\r\nHost: [{host}]").map_err(full)?;
    } else {
        write!(out, " HTTP/1.1\r\nHost: {host}").map_err(full)?;
    }
    if port != scheme.default_port() {
        write!(out, ":{port}").map_err(full)?;
    }
    out.write_str("\r\nConnection: keep-alive\r\n")
        .map_err(full)?;
    for (name, value) in headers {
        let name_ok = !name.is_empty() && name.bytes().all(is_tchar);
        let value_ok = value.bytes().all(|b| b == b'\t' || !b.is_ascii_control());
        if !name_ok || !value_ok || FRAMING.iter().any(|f| name.eq_ignore_ascii_case(f)) {
            return Err(HttpError::InvalidRequest);
        }
        write!(out, "{name}: {value}\r\n").map_err(full)?;
    }
    if let Some(n) = content_length {
        write!(out, "Content-Length: {n}\r\n").map_err(full)?;
    }
    out.write_str("\r\n").map_err(full)?;
    Ok(out.into_written())
}

/// Writes a request target through to the head, checking it as it passes: not empty, and
/// visible ASCII only.
struct Target<'c, 'b> {
    out: &'c mut Cursor<'b>,
    len: usize,
    visible: bool,
}

impl fmt::Write for Target<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.len = self.len.saturating_add(s.len());
        self.visible &= s.bytes().all(|b| b.is_ascii_graphic());
        self.out.write_str(s)
    }
}

/// Parses a response head at the start of `bytes`: `None` while it is incomplete, else its
/// length and what the client needs of it.
fn parse_head(
    bytes: &[u8],
    mut location: Option<&mut [u8]>,
) -> Result<Option<(usize, Parsed)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(_) => return Err(HttpError::Malformed),
    };
    let status = response
        .code
        .filter(|code| (100..=599).contains(code))
        .ok_or(HttpError::Malformed)?;
    if !(300..=399).contains(&status) {
        location = None;
    }
    let mut parsed = Parsed {
        status,
        location_len: 0,
        content_type: InlineStr::EMPTY,
        content_length: None,
        chunked: false,
        keep_alive: false,
    };
    let (mut transfer_encoding, mut content_type, mut close, mut keep) =
        (false, false, false, false);
    for header in response.headers.iter() {
        let name = header.name;
        let value = header.value.trim_ascii();
        if name.eq_ignore_ascii_case("content-length") {
            // Repeated, it must say the same; a list (`5, 5`) is refused.
            let n = parse_decimal(value).ok_or(HttpError::Malformed)?;
            if parsed.content_length.is_some_and(|m| m != n) {
                return Err(HttpError::Malformed);
            }
            parsed.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only `chunked`, once: no other coding is decoded.
            transfer_encoding = true;
            for coding in tokens(value) {
                if parsed.chunked || !coding.eq_ignore_ascii_case(b"chunked") {
                    return Err(HttpError::Malformed);
                }
                parsed.chunked = true;
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for option in tokens(value) {
                close |= option.eq_ignore_ascii_case(b"close");
                keep |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-type") && !content_type {
            content_type = true;
            let text = core::str::from_utf8(value).map_err(|_| HttpError::Malformed)?;
            parsed.content_type =
                InlineStr::new(text).map_err(|_| HttpError::ContentTypeTooLong)?;
        } else if name.eq_ignore_ascii_case("location")
            && parsed.location_len == 0
            && let Some(out) = location.as_deref_mut()
        {
            let dst = out.get_mut(..value.len()).ok_or(HttpError::HeadTooLarge)?;
            dst.copy_from_slice(value);
            parsed.location_len = value.len();
        }
    }
    if transfer_encoding && (!parsed.chunked || parsed.content_length.is_some()) {
        return Err(HttpError::Malformed);
    }
    let http11 = response.version == Some(1);
    parsed.keep_alive = !close && (http11 || keep);
    Ok(Some((len, parsed)))
}

/// The non-empty, trimmed elements of a comma-separated header value.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// 1*DIGIT, as a `u64`.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = b.is_ascii_digit().then(|| b.wrapping_sub(b'0'))?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

// ---------------------------------------------------------------------------------------------
// I/O under deadlines
// ---------------------------------------------------------------------------------------------

fn deadline<T: Time>(time: &T, timeout: Duration) -> Instant {
    time.now().instant.saturating_add(timeout)
}

/// Writes all of `bytes`, each write under its own deadline.
async fn send<T: Time, S: Write>(
    time: &T,
    timeout: Duration,
    stream: &mut S,
    mut bytes: &[u8],
) -> Result<(), HttpError> {
    while !bytes.is_empty() {
        match with_deadline(time, deadline(time, timeout), stream.write(bytes)).await {
            Ok(Ok(n)) if n > 0 => bytes = bytes.get(n..).ok_or(HttpError::Io)?,
            // Ok(0) for a non-empty buffer is a writer that will never take more.
            Ok(_) => return Err(HttpError::Io),
            Err(TimedOut) => return Err(HttpError::TimedOut),
        }
    }
    Ok(())
}

async fn flush<T: Time, S: Write>(
    time: &T,
    timeout: Duration,
    stream: &mut S,
) -> Result<(), HttpError> {
    match with_deadline(time, deadline(time, timeout), stream.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(HttpError::Io),
        Err(TimedOut) => Err(HttpError::TimedOut),
    }
}

/// One read into `out` (not empty), under a deadline: the bytes read, none at the
/// connection's end. A stream that claims more bytes than it was given has failed.
async fn receive<'o, T: Time, S: Read>(
    time: &T,
    timeout: Duration,
    stream: &mut S,
    out: &'o mut [u8],
) -> Result<&'o [u8], HttpError> {
    match with_deadline(time, deadline(time, timeout), stream.read(out)).await {
        Ok(Ok(n)) => out.get(..n).ok_or(HttpError::Io),
        Ok(Err(_)) => Err(HttpError::Io),
        Err(TimedOut) => Err(HttpError::TimedOut),
    }
}

#[cfg(test)]
mod tests {
    use std::format;
    use std::string::String;
    use std::vec::Vec;

    use super::super::testing::{Fixture, Script};
    use super::*;

    const HOST: &str = "127.0.0.1";
    const PORT: u16 = 9005;
    const GET_BUNDLES: &str =
        "GET /v2/bundles HTTP/1.1\r\nHost: 127.0.0.1:9005\r\nConnection: keep-alive\r\n\r\n";

    /// Reads the body to its end, in reads of at most `step` bytes.
    async fn body<C: Connector, T: Time>(
        client: &mut Client<'_, C, T>,
        step: usize,
    ) -> Result<Vec<u8>, HttpError> {
        let mut all = Vec::new();
        let mut out = std::vec![0u8; step];
        loop {
            match client.read(&mut out).await? {
                0 => return Ok(all),
                n => all.extend_from_slice(&out[..n]),
            }
        }
    }

    /// GETs `/v2/bundles` from a connection answering `response`: the head and the body.
    fn get_one(response: &[u8]) -> Result<(ResponseHead, Vec<u8>), HttpError> {
        Fixture::new([Script::new().bytes(response)]).run(async |client| {
            let head = client
                .get(Origin::http(HOST, PORT), "/v2/bundles", &[])
                .await?;
            Ok((head, body(client, 64).await?))
        })
    }

    // ----------------------------------------------------------------------------------------
    // Requests
    // ----------------------------------------------------------------------------------------

    #[test]
    fn test_request_head_bytes() {
        let fixture = Fixture::new([Script::new().bytes(b"HTTP/1.1 204 No Content\r\n\r\n")]);
        fixture.run(async |client| {
            let headers = [
                ("Content-Type", "multipart/form-data; boundary=b"),
                ("X-A", "1\t2"),
            ];
            client
                .begin(
                    Method::Post,
                    Origin::http(HOST, PORT),
                    "/v2/bundles",
                    &headers,
                    Some(7),
                )
                .await
                .unwrap();
            client.write(b"abc").await.unwrap();
            client.write(b"").await.unwrap();
            client.write(b"defg").await.unwrap();
            assert_eq!(client.response().await.unwrap().status, 204);
        });
        assert_eq!(
            fixture.connector.written(0),
            "POST /v2/bundles HTTP/1.1\r\nHost: 127.0.0.1:9005\r\nConnection: keep-alive\r\n\
             Content-Type: multipart/form-data; boundary=b\r\nX-A: 1\t2\r\n\
             Content-Length: 7\r\n\r\nabcdefg"
        );
        assert_eq!(fixture.connector.peer(0), (String::from(HOST), PORT));
    }

    #[test]
    fn test_request_host_header_forms() {
        let ok = b"HTTP/1.1 204 No Content\r\n\r\n";
        let fixture = Fixture::new([
            Script::new().bytes(ok),
            Script::new().bytes(ok),
            Script::new().bytes(ok),
        ]);
        fixture.run(async |client| {
            client.get(Origin::http("::1", 80), "/", &[]).await.unwrap();
            client
                .get(Origin::http("[fe80::1]", 8080), "/", &[])
                .await
                .unwrap();
            client
                .get(Origin::http("repo.example", 80), "*", &[])
                .await
                .unwrap();
        });
        let connector = &fixture.connector;
        assert!(connector.written(0).contains("\r\nHost: [::1]\r\n"));
        assert_eq!(connector.peer(0).0, "::1");
        assert!(
            connector
                .written(1)
                .contains("\r\nHost: [fe80::1]:8080\r\n")
        );
        assert_eq!(connector.peer(1).0, "fe80::1");
        assert!(
            connector
                .written(2)
                .starts_with("GET * HTTP/1.1\r\nHost: repo.example\r\n")
        );
    }

    #[test]
    fn test_reject_invalid_requests_before_connecting() {
        let fixture = Fixture::new([]);
        let bad_headers: [&[(&str, &str)]; 6] = [
            &[("X-A", "1\r\nX-B: 2")],
            &[("X A", "1")],
            &[("", "1")],
            &[("content-length", "5")],
            &[("Transfer-Encoding", "chunked")],
            &[("Host", "elsewhere")],
        ];
        fixture.run(async |client| {
            for headers in bad_headers {
                let result = client.get(Origin::http(HOST, PORT), "/", headers).await;
                assert_eq!(result, Err(HttpError::InvalidRequest), "{headers:?}");
            }
            for target in ["", "/a b", "/a\r\n"] {
                let result = client.get(Origin::http(HOST, PORT), target, &[]).await;
                assert_eq!(result, Err(HttpError::InvalidRequest), "{target:?}");
            }
            for host in ["", "a/b", "u@h", "a b"] {
                let result = client.get(Origin::http(host, PORT), "/", &[]).await;
                assert_eq!(result, Err(HttpError::InvalidRequest), "{host:?}");
            }
        });
        assert_eq!(fixture.connector.connects(), 0);
    }

    #[test]
    fn test_reject_request_head_over_buffer() {
        let fixture = Fixture::new([Script::new()]).buffer(64);
        let target = format!("/{}", "x".repeat(64));
        let result =
            fixture.run(async |client| client.get(Origin::http(HOST, PORT), &target, &[]).await);
        assert_eq!(result, Err(HttpError::HeadTooLarge));
        assert_eq!(fixture.connector.connects(), 0);
    }

    #[test]
    fn test_reject_body_over_content_length() {
        let fixture = Fixture::new([Script::new()]);
        fixture.run(async |client| {
            client
                .begin(Method::Put, Origin::http(HOST, PORT), "/x", &[], Some(3))
                .await
                .unwrap();
            client.write(b"ab").await.unwrap();
            assert_eq!(client.write(b"cd").await, Err(HttpError::BodyTooLong));
            assert!(!client.is_connected());
            assert_eq!(client.write(b"c").await, Err(HttpError::Sequence));
            assert_eq!(client.response().await, Err(HttpError::Sequence));
        });
        // Nothing of the refused write went out.
        assert!(fixture.connector.written(0).ends_with("\r\n\r\nab"));
    }

    #[test]
    fn test_reject_response_before_whole_body() {
        Fixture::new([Script::new(), Script::new()]).run(async |client| {
            client
                .begin(Method::Post, Origin::http(HOST, PORT), "/x", &[], Some(3))
                .await
                .unwrap();
            client.write(b"ab").await.unwrap();
            assert_eq!(client.response().await, Err(HttpError::BodyTooShort));
            assert!(!client.is_connected());
            // Without a body at all, too.
            client
                .begin(Method::Post, Origin::http(HOST, PORT), "/x", &[], Some(1))
                .await
                .unwrap();
            assert_eq!(client.response().await, Err(HttpError::BodyTooShort));
        });
    }

    #[test]
    fn test_calls_out_of_order() {
        Fixture::new([Script::new().reset()]).run(async |client| {
            assert_eq!(client.write(b"x").await, Err(HttpError::Sequence));
            assert_eq!(client.response().await, Err(HttpError::Sequence));
            // No exchange: no body.
            assert_eq!(client.read(&mut [0u8; 4]).await, Ok(0));
            assert_eq!(
                client.get(Origin::http(HOST, PORT), "/", &[]).await,
                Err(HttpError::Io)
            );
            // After an error, reading is refused rather than taken for the body's end.
            assert_eq!(client.read(&mut [0u8; 4]).await, Err(HttpError::Sequence));
            assert_eq!(client.discard().await, Ok(()));
            assert_eq!(client.read(&mut [0u8; 4]).await, Ok(0));
        });
    }

    #[test]
    fn test_connect_refused_and_broken_pipe() {
        Fixture::new([Script::new().broken()]).run(async |client| {
            assert_eq!(
                client.get(Origin::http(HOST, PORT), "/", &[]).await,
                Err(HttpError::Io)
            );
            assert!(!client.is_connected());
            // No script left: the connector refuses.
            assert_eq!(
                client.get(Origin::http(HOST, PORT), "/", &[]).await,
                Err(HttpError::Connect)
            );
        });
    }

    // ----------------------------------------------------------------------------------------
    // Response bodies
    // ----------------------------------------------------------------------------------------

    #[test]
    fn test_content_length_body() {
        let (head, body) = get_one(
            b"HTTP/1.1 200 OK\r\nContent-Type:  application/json \r\nContent-Length: 5\r\n\r\nhello",
        )
        .unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.content_type.as_str(), "application/json");
        assert_eq!(head.content_length, Some(5));
        assert!(head.keep_alive);
        assert_eq!(body, b"hello");
    }

    #[test]
    fn test_chunked_body_with_extensions_and_trailer() {
        let (head, body) = get_one(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n\
              4;name=value\r\nWiki\r\n5 ;x\r\npedia\r\n0;last\r\nX-Checksum: 1\r\nX-B: 2\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.content_length, None);
        assert!(head.keep_alive);
        assert!(head.content_type.is_empty());
        assert_eq!(body, b"Wikipedia");
    }

    #[test]
    fn test_body_until_close() {
        let fixture = Fixture::new([Script::new()
            .bytes(b"HTTP/1.1 200 OK\r\n\r\nall ")
            .bytes(b"until the end")]);
        fixture.run(async |client| {
            let head = client
                .get(Origin::http(HOST, PORT), "/", &[])
                .await
                .unwrap();
            assert!(!head.keep_alive);
            assert_eq!(head.content_length, None);
            assert_eq!(body(client, 5).await.unwrap(), b"all until the end");
            assert!(!client.is_connected());
        });
    }

    #[test]
    fn test_head_split_into_single_bytes() {
        let response =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
                         3;e=1\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n";
        let second = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfghi";
        // Every way of cutting the answers, and of reading the bodies, gives the same.
        for max_read in 1..=9 {
            for step in 1..=5 {
                let fixture = Fixture::new([Script::new()
                    .bytes(response)
                    .bytes(second)
                    .max_read(max_read)])
                .buffer(128);
                fixture.run(async |client| {
                    let head = client
                        .get(Origin::http(HOST, PORT), "/", &[])
                        .await
                        .unwrap();
                    assert_eq!(head.content_type.as_str(), "text/plain");
                    assert_eq!(body(client, step).await.unwrap(), b"abcde");
                    assert!(client.is_connected());
                    client
                        .get(Origin::http(HOST, PORT), "/", &[])
                        .await
                        .unwrap();
                    assert_eq!(body(client, step).await.unwrap(), b"fghi");
                    assert!(client.is_connected());
                });
                assert_eq!(fixture.connector.connects(), 1);
            }
        }
    }

    #[test]
    fn test_interim_responses_skipped() {
        let (head, body) = get_one(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
              HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        )
        .unwrap();
        assert_eq!(head.status, 201);
        assert_eq!(body, b"ok");
        let mut many = Vec::new();
        for _ in 0..=MAX_INTERIM_RESPONSES {
            many.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        many.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(get_one(&many), Err(HttpError::Malformed));
        assert_eq!(
            get_one(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
            Err(HttpError::Malformed)
        );
    }

    #[test]
    fn test_no_body_for_head_204_304() {
        let fixture = Fixture::new([Script::new()
            .bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
            .bytes(b"HTTP/1.1 204 No Content\r\n\r\n")
            .bytes(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n")
            .bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")]);
        fixture.run(async |client| {
            client
                .begin(Method::Head, Origin::http(HOST, PORT), "/big", &[], None)
                .await
                .unwrap();
            let head = client.response().await.unwrap();
            assert_eq!(head.content_length, Some(10));
            assert_eq!(client.read(&mut [0u8; 16]).await, Ok(0));
            for status in [204, 304, 200] {
                let head = client
                    .get(Origin::http(HOST, PORT), "/", &[])
                    .await
                    .unwrap();
                assert_eq!(head.status, status);
                assert_eq!(client.read(&mut [0u8; 16]).await, Ok(0));
            }
        });
        assert_eq!(fixture.connector.connects(), 1);
        assert!(
            fixture
                .connector
                .written(0)
                .starts_with("HEAD /big HTTP/1.1\r\n")
        );
    }

    #[test]
    fn test_body_breaks_off() {
        let fixture = Fixture::new([
            Script::new().bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123"),
            Script::new()
                .bytes(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
                .reset(),
            Script::new().bytes(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde"),
            Script::new().bytes(b"HTTP/1.1 200 OK\r\nContent-"),
        ]);
        fixture.run(async |client| {
            for _ in 0..3 {
                client
                    .get(Origin::http(HOST, PORT), "/", &[])
                    .await
                    .unwrap();
                assert_eq!(body(client, 64).await, Err(HttpError::Io));
                assert!(!client.is_connected());
            }
            assert_eq!(
                client.get(Origin::http(HOST, PORT), "/", &[]).await,
                Err(HttpError::Io)
            );
        });
    }

    // ----------------------------------------------------------------------------------------
    // Connections
    // ----------------------------------------------------------------------------------------

    #[test]
    fn test_keep_alive_reuses_connection() {
        let fixture = Fixture::new([Script::new()
            .bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .bytes(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
            .bytes(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n!")]);
        fixture.run(async |client| {
            client
                .get(Origin::http(HOST, PORT), "/v2/bundles", &[])
                .await
                .unwrap();
            assert_eq!(body(client, 64).await.unwrap(), b"ok");
            // Reading exactly the body (not asking for the end) gives the connection back too.
            client
                .get(Origin::http(HOST, PORT), "/v2/bundles", &[])
                .await
                .unwrap();
            let mut two = [0u8; 2];
            assert_eq!(client.read(&mut two).await, Ok(2));
            assert!(client.is_connected());
            let head = client
                .get(Origin::http(HOST, PORT), "/v2/bundles", &[])
                .await
                .unwrap();
            assert!(head.keep_alive);
            assert_eq!(body(client, 64).await.unwrap(), b"!");
        });
        assert_eq!(fixture.connector.connects(), 1);
        assert_eq!(fixture.connector.written(0), GET_BUNDLES.repeat(3));
    }

    #[test]
    fn test_discard_keeps_connection() {
        let fixture = Fixture::new([Script::new()
            .bytes(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot ")
            .bytes(b"found")
            .bytes(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
            .bytes(b"0\r\n\r\n")
            .bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")]);
        fixture.run(async |client| {
            assert_eq!(
                client
                    .get(Origin::http(HOST, PORT), "/", &[])
                    .await
                    .unwrap()
                    .status,
                404
            );
            client.discard().await.unwrap();
            client
                .get(Origin::http(HOST, PORT), "/", &[])
                .await
                .unwrap();
            client.discard().await.unwrap();
            assert!(client.is_connected());
            client
                .get(Origin::http(HOST, PORT), "/", &[])
                .await
                .unwrap();
            assert_eq!(body(client, 64).await.unwrap(), b"ok");
        });
        assert_eq!(fixture.connector.connects(), 1);
    }

    #[test]
    fn test_discard_closes_long_or_unframed_body() {
        let long = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            DISCARD_LIMIT + 1
        );
        let fixture = Fixture::new([
            Script::new().bytes(long.as_bytes()),
            Script::new().bytes(b"HTTP/1.1 200 OK\r\n\r\nuntil close"),
            Script::new().bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ]);
        fixture.run(async |client| {
            for _ in 0..2 {
                client
                    .get(Origin::http(HOST, PORT), "/", &[])
                    .await
                    .unwrap();
                client.discard().await.unwrap();
                assert!(!client.is_connected());
            }
            client
                .get(Origin::http(HOST, PORT), "/", &[])
                .await
                .unwrap();
        });
        assert_eq!(fixture.connector.connects(), 3);
    }

    #[test]
    fn test_connection_close_then_new_connection() {
        let fixture = Fixture::new([
            Script::new()
                .bytes(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na"),
            Script::new().bytes(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nb"),
            Script::new().bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc"),
        ]);
        fixture.run(async |client| {
            for expected in [b"a", b"b", b"c"] {
                let head = client
                    .get(Origin::http(HOST, PORT), "/v2/bundles", &[])
                    .await
                    .unwrap();
                assert_eq!(head.keep_alive, expected == b"c");
                assert_eq!(body(client, 64).await.unwrap(), expected);
            }
        });
        assert_eq!(fixture.connector.connects(), 3);
        for i in 0..3 {
            assert_eq!(fixture.connector.written(i), GET_BUNDLES);
        }
    }

    #[test]
    fn test_new_connection_for_other_peer_unfinished_body_or_idle() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let fixture = Fixture::new([
            Script::new().bytes(ok),
            Script::new().bytes(ok),
            Script::new().bytes(ok).bytes(ok),
            Script::new().bytes(ok),
        ]);
        let time = &fixture.time;
        fixture.run(async |client| {
            client
                .get(Origin::http(HOST, PORT), "/", &[])
                .await
                .unwrap();
            body(client, 64).await.unwrap();
            // Another port.
            client
                .get(Origin::http(HOST, 9006), "/", &[])
                .await
                .unwrap();
            // Its body left unread.
            client
                .get(Origin::http(HOST, 9006), "/", &[])
                .await
                .unwrap();
            body(client, 64).await.unwrap();
            // Idle for exactly the limit: reused.
            time.advance(DEFAULT_IDLE_LIMIT.as_millis());
            client
                .get(Origin::http(HOST, 9006), "/", &[])
                .await
                .unwrap();
            body(client, 64).await.unwrap();
            // Idle for longer: a new one.
            time.advance(DEFAULT_IDLE_LIMIT.as_millis() + 1);
            client
                .get(Origin::http(HOST, 9006), "/", &[])
                .await
                .unwrap();
            body(client, 64).await.unwrap();
        });
        assert_eq!(fixture.connector.connects(), 4);
        assert_eq!(fixture.connector.peer(1), (String::from(HOST), 9006));
    }

    #[test]
    fn test_bytes_after_body_close_connection() {
        let fixture = Fixture::new([
            Script::new().bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"),
            Script::new().bytes(b"HTTP/1.1 204 No Content\r\n\r\n"),
        ]);
        fixture.run(async |client| {
            client
                .get(Origin::http(HOST, PORT), "/", &[])
                .await
                .unwrap();
            assert_eq!(body(client, 64).await.unwrap(), b"ok");
            assert!(!client.is_connected());
            client
                .get(Origin::http(HOST, PORT), "/", &[])
                .await
                .unwrap();
        });
        assert_eq!(fixture.connector.connects(), 2);
    }

    // ----------------------------------------------------------------------------------------
    // Time-outs and limits
    // ----------------------------------------------------------------------------------------

    #[test]
    fn test_read_that_never_completes_times_out() {
        let fixture = Fixture::new([
            Script::new().stall(),
            Script::new()
                .bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
                .stall(),
        ])
        .timeout(Duration::ZERO);
        fixture.run(async |client| {
            assert_eq!(
                client.get(Origin::http(HOST, PORT), "/", &[]).await,
                Err(HttpError::TimedOut)
            );
            assert!(!client.is_connected());
            // What is ready completes even with a zero time-out; what is not, times out.
            client
                .get(Origin::http(HOST, PORT), "/", &[])
                .await
                .unwrap();
            let mut out = [0u8; 8];
            assert_eq!(client.read(&mut out).await, Ok(2));
            assert_eq!(client.read(&mut out).await, Err(HttpError::TimedOut));
            assert!(!client.is_connected());
        });
    }

    #[test]
    fn test_connect_and_write_that_never_complete_time_out() {
        let fixture = Fixture::new([Script::new().stuck()]).timeout(Duration::ZERO);
        let connector = &fixture.connector;
        fixture.run(async |client| {
            assert_eq!(
                client.get(Origin::http(HOST, PORT), "/", &[]).await,
                Err(HttpError::TimedOut)
            );
            connector.stall();
            assert_eq!(
                client.get(Origin::http(HOST, PORT), "/", &[]).await,
                Err(HttpError::TimedOut)
            );
        });
        assert_eq!(connector.connects(), 1);
    }

    #[test]
    fn test_reject_head_over_buffer() {
        let mut response = Vec::from(&b"HTTP/1.1 200 OK\r\nX-Long: "[..]);
        response.resize(200, b'x');
        response.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        let (result, connected) = Fixture::new([Script::new().bytes(&response)])
            .buffer(128)
            .run(async |client| {
                let result = client.get(Origin::http(HOST, PORT), "/", &[]).await;
                (result, client.is_connected())
            });
        assert_eq!(result, Err(HttpError::HeadTooLarge));
        assert!(!connected);

        let mut many = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{i}: 1\r\n"));
        }
        many.push_str("\r\n");
        let result = Fixture::new([Script::new().bytes(many.as_bytes())])
            .buffer(1024)
            .run(async |client| client.get(Origin::http(HOST, PORT), "/", &[]).await);
        assert_eq!(result, Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn test_reject_long_content_type() {
        let long = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: 0\r\n\r\n",
            "a".repeat(MAX_CONTENT_TYPE_LEN + 1)
        );
        assert_eq!(get_one(long.as_bytes()), Err(HttpError::ContentTypeTooLong));
        let fits = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: 0\r\n\r\n",
            "a".repeat(MAX_CONTENT_TYPE_LEN)
        );
        assert!(get_one(fits.as_bytes()).is_ok());
    }

    // ----------------------------------------------------------------------------------------
    // Malformed responses
    // ----------------------------------------------------------------------------------------

    #[test]
    fn test_reject_malformed_status_lines() {
        for response in [
            &b"HTTP/1.1 2000 OK\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.2 200 OK\r\n\r\n",
            b"HTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/1.1 600 High\r\n\r\n",
            b"HTTP/1.1 abc\r\n\r\n",
            b"<html>\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
        ] {
            assert_eq!(
                get_one(response),
                Err(HttpError::Malformed),
                "{:?}",
                String::from_utf8_lossy(response)
            );
        }
    }

    #[test]
    fn test_reject_bad_framing_headers() {
        for response in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n",
            // Even where no body is read, the head is refused.
            b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(
                get_one(response),
                Err(HttpError::Malformed),
                "{:?}",
                String::from_utf8_lossy(response)
            );
        }
        // The same length twice is one length.
        let (head, body) =
            get_one(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nab")
                .unwrap();
        assert_eq!(
            (head.content_length, body.as_slice()),
            (Some(2), &b"ab"[..])
        );
    }

    #[test]
    fn test_reject_bad_chunks() {
        for chunks in [
            &b"zz\r\nab\r\n0\r\n\r\n"[..],
            b"\r\n",
            b"2\r\nabc\r\n0\r\n\r\n",
            b"2\nab\r\n0\r\n\r\n",
            b"1ffffffffffffffff\r\n",
            b"10000000000000000\r\n",
        ] {
            let mut response =
                Vec::from(&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..]);
            response.extend_from_slice(chunks);
            assert_eq!(
                get_one(&response),
                Err(HttpError::Malformed),
                "{:?}",
                String::from_utf8_lossy(chunks)
            );
        }
    }

    #[test]
    fn test_parse_head_incomplete_and_lengths() {
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Le", None)
                .unwrap()
                .is_none()
        );
        let (len, parsed) = parse_head(b"HTTP/1.1 200 OK\r\n\r\nbody", None)
            .unwrap()
            .unwrap();
        assert_eq!(len, 19);
        assert!(parsed.keep_alive);
        let (_, parsed) = parse_head(
            b"HTTP/1.1 200 OK\r\nConnection: Upgrade, CLOSE\r\n\r\n",
            None,
        )
        .unwrap()
        .unwrap();
        assert!(!parsed.keep_alive);
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b""), None);
    }
}
