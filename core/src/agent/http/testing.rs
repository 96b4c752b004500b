//! Test doubles for the client, the repository and the worker: scripted connections, a clock
//! that moves only when told, a `block_on` that fails a test instead of hanging it, and the
//! [`Fixture`] that sets a client up over them.

use core::cell::{Cell, RefCell};
use core::future::{Future, poll_fn};
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use std::collections::VecDeque;
use std::rc::Rc;
use std::string::String;
use std::vec::Vec;

use embedded_io::ErrorKind;

use super::{Client, Origin, Scheme};
use crate::agent::{ConnectError, Connector, Time, TlsError};
use crate::time::{Duration, Instant, Now, UnixTime};

/// What a client test sets up: scripted connections, a clock, and a client buffer (512 bytes
/// and a 5 s time-out unless told otherwise). Each test says only its scripts, what it does
/// with the client in [`run`](Self::run), and what it checks of the connector afterwards.
#[derive(Debug)]
pub(in crate::agent) struct Fixture {
    pub(in crate::agent) connector: Scripted,
    pub(in crate::agent) time: FakeTime,
    buf: RefCell<Vec<u8>>,
    timeout: Duration,
}

impl Fixture {
    pub(in crate::agent) fn new(scripts: impl IntoIterator<Item = Script>) -> Self {
        Self {
            connector: Scripted::new(scripts),
            time: FakeTime::default(),
            buf: RefCell::new(std::vec![0; 512]),
            timeout: Duration::from_secs(5),
        }
    }

    /// A client buffer of `len` bytes.
    pub(in crate::agent) fn buffer(self, len: usize) -> Self {
        self.buf.replace(std::vec![0; len]);
        self
    }

    /// A time-out of each connect, read and write.
    pub(in crate::agent) fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs `test` with a new client over the connector, the clock and the buffer, to
    /// completion. The test may also reach the connector and the clock (`&self`).
    pub(in crate::agent) fn run<R>(
        &self,
        test: impl AsyncFnOnce(&mut Client<'_, Scripted, FakeTime>) -> R,
    ) -> R {
        let mut buf = self.buf.borrow_mut();
        let mut client = Client::new(&self.connector, &self.time, &mut buf, self.timeout);
        block_on(test(&mut client))
    }
}

/// Runs `fut` to completion with a no-op waker: every double here is ready at once or never,
/// so a future still pending after many polls never completes.
pub(in crate::agent) fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..10_000 {
        if let Poll::Ready(output) = fut.as_mut().poll(&mut cx) {
            return output;
        }
    }
    panic!("the future stalled");
}

/// A clock at a fixed instant until [`advance`](Self::advance)d; a timer is ready at once when
/// its deadline is not in the future, and never otherwise. With a zero time-out every deadline
/// is now: an operation that is pending times out, deterministically.
#[derive(Debug, Default)]
pub(in crate::agent) struct FakeTime {
    now: Cell<u64>,
}

impl FakeTime {
    pub(in crate::agent) fn advance(&self, millis: u64) {
        self.now.set(self.now.get() + millis);
    }
}

impl Time for FakeTime {
    fn now(&self) -> Now {
        Now::new(Instant::from_millis(self.now.get()), UnixTime::EPOCH)
    }

    async fn at(&self, deadline: Instant) {
        let now = Instant::from_millis(self.now.get());
        poll_fn(|_| {
            if deadline <= now {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

/// What a scripted connection's reads give, in order; after the last, the end (`Ok(0)`).
#[derive(Debug)]
enum Step {
    Bytes(Vec<u8>),
    /// A read that never completes.
    Stall,
    /// A read that fails (connection reset).
    Reset,
}

/// One connection's script.
#[derive(Debug, Default)]
pub(in crate::agent) struct Script {
    steps: Vec<Step>,
    /// The most bytes one read gives (0: no limit).
    max_read: usize,
    /// Writes fail (broken pipe).
    broken: bool,
    /// Writes never complete.
    stuck: bool,
    /// The connect fails this TLS verification.
    tls: Option<TlsError>,
}

impl Script {
    pub(in crate::agent) fn new() -> Self {
        Self::default()
    }

    pub(in crate::agent) fn bytes(mut self, bytes: &[u8]) -> Self {
        self.steps.push(Step::Bytes(bytes.to_vec()));
        self
    }

    pub(in crate::agent) fn stall(mut self) -> Self {
        self.steps.push(Step::Stall);
        self
    }

    pub(in crate::agent) fn reset(mut self) -> Self {
        self.steps.push(Step::Reset);
        self
    }

    pub(in crate::agent) fn max_read(mut self, n: usize) -> Self {
        self.max_read = n;
        self
    }

    pub(in crate::agent) fn broken(mut self) -> Self {
        self.broken = true;
        self
    }

    pub(in crate::agent) fn stuck(mut self) -> Self {
        self.stuck = true;
        self
    }

    /// The connect fails as a TLS handshake that refused the server.
    pub(in crate::agent) fn tls_refused(mut self, e: TlsError) -> Self {
        self.tls = Some(e);
        self
    }
}

/// Where a connection went, and what was written to it.
type Opened = (String, u16, Scheme, Rc<RefCell<Vec<u8>>>);

/// Hands out connections that follow the scripts, in order; refuses to connect when none is
/// left. Records where each went and what was written to it.
#[derive(Debug, Default)]
pub(in crate::agent) struct Scripted {
    scripts: RefCell<VecDeque<Script>>,
    opened: RefCell<Vec<Opened>>,
    /// Connecting never completes.
    stalls: Cell<bool>,
}

impl Scripted {
    pub(in crate::agent) fn new(scripts: impl IntoIterator<Item = Script>) -> Self {
        Self {
            scripts: RefCell::new(scripts.into_iter().collect()),
            opened: RefCell::new(Vec::new()),
            stalls: Cell::new(false),
        }
    }

    /// From now on, connecting never completes.
    pub(in crate::agent) fn stall(&self) {
        self.stalls.set(true);
    }

    /// How many connections were made.
    pub(in crate::agent) fn connects(&self) -> usize {
        self.opened.borrow().len()
    }

    /// Where connection `i` went.
    pub(in crate::agent) fn peer(&self, i: usize) -> (String, u16) {
        let opened = self.opened.borrow();
        (opened[i].0.clone(), opened[i].1)
    }

    /// Whether connection `i` was asked for TLS.
    pub(in crate::agent) fn scheme(&self, i: usize) -> Scheme {
        self.opened.borrow()[i].2
    }

    /// What was written to connection `i` (text: every request these tests write is).
    pub(in crate::agent) fn written(&self, i: usize) -> String {
        String::from_utf8(self.opened.borrow()[i].3.borrow().clone()).expect("text written")
    }
}

impl Connector for Scripted {
    type Connection = Connection;

    async fn connect(&self, origin: Origin<'_>) -> Result<Connection, ConnectError> {
        if self.stalls.get() {
            return poll_fn(|_| Poll::Pending).await;
        }
        let script = self
            .scripts
            .borrow_mut()
            .pop_front()
            .ok_or(ConnectError::Failed)?;
        if let Some(tls) = script.tls {
            return Err(ConnectError::Tls(tls));
        }
        let written = Rc::new(RefCell::new(Vec::new()));
        self.opened.borrow_mut().push((
            String::from(origin.host),
            origin.port,
            origin.scheme,
            Rc::clone(&written),
        ));
        Ok(Connection {
            steps: script.steps.into(),
            max_read: script.max_read,
            broken: script.broken,
            stuck: script.stuck,
            written,
        })
    }
}

/// A scripted connection.
#[derive(Debug)]
pub(in crate::agent) struct Connection {
    steps: VecDeque<Step>,
    max_read: usize,
    broken: bool,
    stuck: bool,
    written: Rc<RefCell<Vec<u8>>>,
}

impl embedded_io::ErrorType for Connection {
    type Error = ErrorKind;
}

impl embedded_io_async::Read for Connection {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        loop {
            match self.steps.front_mut() {
                None => return Ok(0),
                Some(Step::Stall) => return poll_fn(|_| Poll::Pending).await,
                Some(Step::Reset) => return Err(ErrorKind::ConnectionReset),
                Some(Step::Bytes(bytes)) if bytes.is_empty() => {
                    self.steps.pop_front();
                }
                Some(Step::Bytes(bytes)) => {
                    let limit = if self.max_read == 0 {
                        usize::MAX
                    } else {
                        self.max_read
                    };
                    let n = buf.len().min(bytes.len()).min(limit);
                    buf[..n].copy_from_slice(&bytes[..n]);
                    bytes.drain(..n);
                    return Ok(n);
                }
            }
        }
    }
}

impl embedded_io_async::Write for Connection {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        if self.broken {
            return Err(ErrorKind::BrokenPipe);
        }
        if self.stuck {
            return poll_fn(|_| Poll::Pending).await;
        }
        self.written.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

/// A file being written, that fails once it holds `capacity` bytes.
#[derive(Debug, Default)]
pub(in crate::agent) struct Out {
    pub(in crate::agent) bytes: Vec<u8>,
    pub(in crate::agent) capacity: Option<usize>,
}

impl embedded_io::ErrorType for Out {
    type Error = ErrorKind;
}

impl embedded_io_async::Write for Out {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        let room = self
            .capacity
            .map_or(usize::MAX, |c| c.saturating_sub(self.bytes.len()));
        if room == 0 {
            return Err(ErrorKind::OutOfMemory);
        }
        let n = buf.len().min(room);
        self.bytes.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}
