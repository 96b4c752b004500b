//! What the app and the agent wait on, on the runtime of `rt`: the clocks, picoserve's timer
//! and socket, the agent's TCP connections, and SIGTERM/SIGINT.

use std::future::Future;
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration as StdDuration;

use futures_lite::FutureExt as _;
use lockstep::platform::StdTime;
use lockstep_core::agent::http::{Origin, Scheme};
use lockstep_core::agent::{ConnectError, Connector, Time, TlsError};
use lockstep_core::time::{Instant, Now};

use crate::rt::{Io, Runtime, Sleep};

/// Both clocks (runtime-std's), and waiting on the runtime's timers.
#[derive(Debug)]
pub(crate) struct RtTime {
    pub(crate) std: StdTime,
    rt: &'static Runtime,
}

impl RtTime {
    pub(crate) fn new(rt: &'static Runtime) -> Self {
        Self {
            std: StdTime::new(),
            rt,
        }
    }
}

impl Time for RtTime {
    fn now(&self) -> Now {
        self.std.now()
    }

    async fn at(&self, deadline: Instant) {
        match self.std.std_instant(deadline) {
            Some(at) => Sleep::until(self.rt, at).await,
            None => std::future::pending().await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// picoserve
// ---------------------------------------------------------------------------------------------

/// The runtime marker of picoserve's traits on `rt`.
#[derive(Debug)]
pub(crate) struct Rt;

/// picoserve's timer on the runtime's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RtTimer(pub(crate) &'static Runtime);

impl picoserve::Timer<Rt> for RtTimer {
    fn delay(&self, duration: picoserve::time::Duration) -> impl Future<Output = ()> {
        Sleep::after(self.0, StdDuration::from_millis(duration.as_millis()))
    }
}

/// An accepted connection.
#[derive(Debug)]
pub(crate) struct Tcp(pub(crate) Io<TcpStream>);

/// Its read half.
#[derive(Debug)]
pub(crate) struct TcpRead<'a>(&'a Io<TcpStream>);

/// Its write half, buffered: a response's head goes out in one write.
#[derive(Debug)]
pub(crate) struct TcpWrite<'a> {
    stream: &'a Io<TcpStream>,
    buf: Box<[u8; 1024]>,
    len: usize,
    /// A flush let the response head in `buf` wait (see [`TcpWrite::holds_only_a_head`]).
    head_waits: bool,
}

async fn read(stream: &Io<TcpStream>, buf: &mut [u8]) -> io::Result<usize> {
    stream.read_with(|mut s| s.read(buf)).await
}

async fn write(stream: &Io<TcpStream>, buf: &[u8]) -> io::Result<usize> {
    stream.write_with(|mut s| s.write(buf)).await
}

async fn write_all(stream: &Io<TcpStream>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match write(stream, buf).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => buf = buf.get(n..).unwrap_or_default(),
        }
    }
    Ok(())
}

impl picoserve::io::ErrorType for TcpRead<'_> {
    type Error = io::Error;
}

impl picoserve::io::ErrorType for TcpWrite<'_> {
    type Error = io::Error;
}

impl picoserve::io::Read for TcpRead<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, io::Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        read(self.0, buf).await
    }
}

impl TcpWrite<'_> {
    async fn send(&mut self) -> Result<(), io::Error> {
        let len = self.len;
        self.len = 0;
        self.head_waits = false;
        write_all(self.stream, self.buf.get(..len).unwrap_or_default()).await
    }
}

impl picoserve::io::BaseWrite for TcpWrite<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, io::Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.len == self.buf.len() {
            self.send().await?;
        }
        if self.len == 0 && buf.len() >= self.buf.len() {
            return write(self.stream, buf).await;
        }
        let n = buf.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&buf[..n]);
        self.len += n;
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), io::Error> {
        if self.len == 0 {
            return Ok(());
        }
        if !self.head_waits && self.holds_only_a_head() {
            self.head_waits = true;
            return Ok(());
        }
        self.send().await
    }
}

impl TcpWrite<'_> {
    /// Whether the buffer holds a response's head and nothing else: picoserve flushes after
    /// the head and again after the body, and every body flushes (its own, `Closing` and the
    /// event stream's first thing), so the head waits for the body's flush and the answer goes
    /// out in one `send`, not two (two of the five system calls a kept-alive request cost, by
    /// `strace -c`). It waits
    /// for one flush only: the next sends it, body or none (a `HEAD`).
    fn holds_only_a_head(&self) -> bool {
        let held = self.buf.get(..self.len).unwrap_or_default();
        held.starts_with(b"HTTP/1.1 ") && held.ends_with(b"\r\n\r\n")
    }
}

impl picoserve::io::Write for TcpWrite<'_> {
    async fn write_with<F: FnOnce(picoserve::mem::BorrowedCursor<'_>) -> R, R>(
        &mut self,
        f: F,
    ) -> Result<R, io::Error> {
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

impl picoserve::io::Socket<Rt> for Tcp {
    type Error = io::Error;
    type ReadHalf<'a> = TcpRead<'a>;
    type WriteHalf<'a> = TcpWrite<'a>;

    fn split(&mut self) -> (TcpRead<'_>, TcpWrite<'_>) {
        (
            TcpRead(&self.0),
            TcpWrite {
                stream: &self.0,
                buf: Box::new([0; 1024]),
                len: 0,
                head_waits: false,
            },
        )
    }

    async fn abort<T: picoserve::Timer<Rt>>(
        self,
        _timeouts: &picoserve::Timeouts,
        _timer: &T,
    ) -> Result<(), picoserve::Error<io::Error>> {
        // Dropping the stream closes it.
        Ok(())
    }

    async fn shutdown<T: picoserve::Timer<Rt>>(
        self,
        timeouts: &picoserve::Timeouts,
        timer: &T,
    ) -> Result<(), picoserve::Error<io::Error>> {
        let _ = self.0.get_ref().shutdown(std::net::Shutdown::Write);
        // Read what the client still sends until it closes, within the read time-out: a
        // close with unread data would reset the connection and lose the answer.
        let mut sink = [0u8; 256];
        let _ = timer
            .run_with_timeout(timeouts.read_request, async {
                while let Ok(1..) = read(&self.0, &mut sink).await {}
            })
            .await;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The agent's connections
// ---------------------------------------------------------------------------------------------

/// Opens the agent's TCP connections: non-blocking connects on the runtime, `TCP_NODELAY`
/// set, giving up after a time-out (name resolution and every address tried included). A
/// name is resolved by the system's resolver on a thread of its own (the runtime's thread
/// never blocks on it); an address needs no thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RtConnector {
    rt: &'static Runtime,
    timeout: StdDuration,
}

impl RtConnector {
    pub(crate) const fn new(rt: &'static Runtime, timeout: StdDuration) -> Self {
        Self { rt, timeout }
    }

    async fn connect_any(&self, host: &str, port: u16) -> io::Result<Io<TcpStream>> {
        let addrs = resolve(host, port).await?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
        for addr in addrs {
            match connect(self.rt, addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

impl Connector for RtConnector {
    type Connection = RtConnection;

    /// Plain TCP only: `https://` is [`TlsError::Unsupported`] (the minimal runtime's size
    /// budget has no room for TLS; its configuration refuses https:// URLs up front).
    async fn connect(&self, origin: Origin<'_>) -> Result<RtConnection, ConnectError> {
        if origin.scheme != Scheme::Http {
            return Err(ConnectError::Tls(TlsError::Unsupported));
        }
        let (host, port) = (lockstep::platform::unbracketed(origin.host), origin.port);
        let connect = async { self.connect_any(host, port).await.ok() };
        let timeout = async {
            Sleep::after(self.rt, self.timeout).await;
            None
        };
        let stream = connect.or(timeout).await.ok_or(ConnectError::Failed)?;
        // A request written in pieces (a head, then a body) would otherwise wait for the
        // peer's delayed ACK. Failing to set it costs latency only.
        let _ = stream.get_ref().set_nodelay(true);
        Ok(RtConnection(stream))
    }
}

/// The most addresses of a name tried.
const MAX_ADDRESSES: usize = 8;
type Addresses = heapless::Vec<SocketAddr, MAX_ADDRESSES>;

/// The addresses of `host` (the first [`MAX_ADDRESSES`]): itself when it is one (no
/// allocation), else the system resolver's answer, from a thread of its own.
async fn resolve(host: &str, port: u16) -> io::Result<Addresses> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(core::iter::once(SocketAddr::new(ip, port)).collect());
    }
    type Answer = (Option<io::Result<Addresses>>, Option<Waker>);
    let shared: Arc<Mutex<Answer>> = Arc::new(Mutex::new((None, None)));
    let theirs = shared.clone();
    let name = host.to_owned();
    std::thread::Builder::new()
        .name("resolve".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            let answer = (name.as_str(), port)
                .to_socket_addrs()
                .map(|addrs| addrs.take(MAX_ADDRESSES).collect());
            let mut shared = theirs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            shared.0 = Some(answer);
            if let Some(waker) = shared.1.take() {
                waker.wake();
            }
        })?;
    std::future::poll_fn(|cx| {
        let mut shared = shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match shared.0.take() {
            Some(answer) => Poll::Ready(answer),
            None => {
                shared.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    })
    .await
}

/// A non-blocking connect to `addr`, completed on the runtime.
async fn connect(rt: &'static Runtime, addr: SocketAddr) -> io::Result<Io<TcpStream>> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let socket = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    match rustix::net::connect(&socket, &addr) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    let stream = Io::new(rt, TcpStream::from(socket))?;
    // Writable once connected or failed: the socket's error says which; still connecting
    // (a spurious wake-up) has no peer yet.
    stream
        .write_with(|s| match s.take_error()? {
            Some(e) => Err(e),
            None => match s.peer_addr() {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    Err(io::ErrorKind::WouldBlock.into())
                }
                Err(e) => Err(e),
            },
        })
        .await?;
    Ok(stream)
}

/// An agent's connection as an `embedded_io_async` stream; reads and writes are cancel-safe
/// (a dropped one has done nothing).
#[derive(Debug)]
pub(crate) struct RtConnection(Io<TcpStream>);

impl embedded_io_async::ErrorType for RtConnection {
    type Error = io::Error;
}

impl embedded_io_async::Read for RtConnection {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, io::Error> {
        read(&self.0, buf).await
    }
}

impl embedded_io_async::Write for RtConnection {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, io::Error> {
        match write(&self.0, buf).await {
            // embedded-io's `write_all` panics on `Ok(0)` where std's returns `WriteZero`.
            Ok(0) if !buf.is_empty() => Err(io::ErrorKind::WriteZero.into()),
            other => other,
        }
    }

    async fn flush(&mut self) -> Result<(), io::Error> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------------------------

/// SIGTERM and SIGINT, caught from the moment it is made: each writes a byte to a pipe the
/// runtime waits on.
#[derive(Debug)]
pub(crate) struct Stop {
    pipes: Vec<(&'static str, Io<UnixStream>)>,
}

impl Stop {
    /// Catches SIGTERM and SIGINT from now on. When that fails (logged), they keep their
    /// default action: the process ends at once, without its drain.
    pub(crate) fn catch(rt: &'static Runtime) -> Self {
        let mut pipes = Vec::new();
        for (name, signal) in [
            ("SIGTERM", signal_hook::consts::SIGTERM),
            ("SIGINT", signal_hook::consts::SIGINT),
        ] {
            let caught = UnixStream::pair().and_then(|(read, write)| {
                write.set_nonblocking(true)?;
                signal_hook::low_level::pipe::register(signal, write)?;
                Io::new(rt, read)
            });
            match caught {
                Ok(read) => pipes.push((name, read)),
                Err(e) => lockstep::log::warn(&format!(
                    "{name} cannot be handled ({e}): it will end the process without its drain"
                )),
            }
        }
        Self { pipes }
    }

    /// The name of the next signal caught; never, when none is caught.
    pub(crate) async fn signalled(&self) -> &'static str {
        std::future::poll_fn(|cx| {
            for (name, pipe) in &self.pipes {
                let mut byte = [0u8; 16];
                let read = pipe.read_with(|mut p| p.read(&mut byte));
                if let Poll::Ready(Ok(1..)) = std::pin::pin!(read).poll(cx) {
                    return Poll::Ready(*name);
                }
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::Capacity;
    use std::net::TcpListener;

    fn runtime() -> &'static Runtime {
        let capacity = Capacity {
            tasks: 2,
            sources: 8,
            timers: 8,
        };
        Box::leak(Box::new(Runtime::new(capacity).unwrap()))
    }

    #[test]
    fn test_connector_by_address_and_by_name_and_echo() {
        let rt = runtime();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 4];
                s.read_exact(&mut buf).unwrap();
                s.write_all(&buf).unwrap();
            }
        });
        let connector = RtConnector::new(rt, StdDuration::from_secs(10));
        for host in ["127.0.0.1", "localhost"] {
            let echoed = rt.block_on(async {
                use embedded_io_async::{Read as _, Write as _};
                let mut c = connector
                    .connect(Origin::http(host, port))
                    .await
                    .expect(host);
                c.write_all(b"ping").await.unwrap();
                let mut buf = [0u8; 4];
                c.read_exact(&mut buf).await.unwrap();
                buf
            });
            assert_eq!(&echoed, b"ping", "{host}");
        }
        server.join().unwrap();
    }

    #[test]
    fn test_an_answer_goes_out_in_one_send() {
        use embedded_io_async::Write as _;
        use picoserve::io::Socket as _;
        let rt = runtime();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        client.set_nonblocking(true).unwrap();
        let mut tcp = Tcp(Io::new(rt, server).unwrap());
        let mut buf = [0u8; 256];
        let mut pending = |client: &mut TcpStream| match client.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            got => Some(buf[..got.unwrap()].to_vec()),
        };
        rt.block_on(async {
            let (_, mut w) = tcp.split();
            // The head's flush waits for the body's.
            w.write_all(b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\n")
                .await
                .unwrap();
            w.flush().await.unwrap();
            assert_eq!(pending(&mut client), None);
            w.write_all(b"ok").await.unwrap();
            w.flush().await.unwrap();
            // Anything else is sent at its flush: an event stream's frame, say.
            w.write_all(b"2\r\nhi\r\n").await.unwrap();
            w.flush().await.unwrap();
            // A HEAD: the head waits for one flush, and goes at the next, bodiless.
            w.write_all(b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\n")
                .await
                .unwrap();
            w.flush().await.unwrap();
            w.flush().await.unwrap();
        });
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
        let want: &[u8] = b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok2\r\nhi\r\n\
            HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\n";
        while got.len() < want.len() && std::time::Instant::now() < deadline {
            got.extend(pending(&mut client).unwrap_or_default());
        }
        assert_eq!(got, want);
    }

    #[test]
    fn test_connector_closed_port_and_unknown_name_fail() {
        let rt = runtime();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let connector = RtConnector::new(rt, StdDuration::from_secs(10));
        assert!(
            rt.block_on(connector.connect(Origin::http("127.0.0.1", port)))
                .is_err()
        );
        assert!(
            rt.block_on(connector.connect(Origin::http("no-such-host.invalid", port)))
                .is_err()
        );
    }

    #[test]
    fn test_connector_gives_up_at_its_timeout() {
        let rt = runtime();
        // A listener that never accepts, its queue filled (std's backlog is 128): a further
        // connect neither completes nor fails by itself.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let queued: Vec<_> = std::iter::from_fn(|| {
            TcpStream::connect_timeout(&addr, StdDuration::from_millis(100)).ok()
        })
        .take(4096)
        .collect();
        assert!(queued.len() < 4096, "the accept queue never filled");
        let connector = RtConnector::new(rt, StdDuration::from_millis(300));
        let start = std::time::Instant::now();
        assert!(
            rt.block_on(connector.connect(Origin::http("127.0.0.1", addr.port())))
                .is_err()
        );
        let took = start.elapsed();
        assert!(took >= StdDuration::from_millis(300), "{took:?}");
        assert!(took < StdDuration::from_secs(5), "{took:?}");
        assert_eq!(rt.block_on(async { 1 }), 1, "the runtime still runs");
    }
}
