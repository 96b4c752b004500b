//! The agent's platform on std: the clock and timers ([`StdTime`]), TCP and TLS connections
//! ([`TcpConnector`]), a deployment's files in a directory ([`DirStore`]) and bundles from a
//! repository on the local disk ([`LocalRepository`]).
//!
//! Connections are `embedded_io_async` streams written by hand over async-net's
//! [`TcpStream`]: embedded-io-adapters' futures adapter would do the same in a few lines, but
//! pulls in the whole `futures` 0.3 crate, where futures-lite is already here.
//!
//! Files are read and written with plain blocking calls from async functions: they are local,
//! and each write or read is small (one transfer buffer), so the executor is held up no longer
//! than by a page-cache copy. Nothing is fsynced: the store's files are working copies of what
//! the repository and the cluster hold.

use std::fs::{self, File};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration as StdDuration, Instant as StdInstant, SystemTime, UNIX_EPOCH};

use async_io::Timer;
use async_net::TcpStream;
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use futures_rustls::client::TlsStream;
use lockstep_core::agent::http::{Origin, Scheme};
use lockstep_core::agent::{
    self, ConnectError, Connector, FetchError, FileKey, FileKind, IndexLocation, Location,
    Repository, Store, StoreError, Time,
};
use lockstep_core::archive::RandomAccess;
use lockstep_core::bundle::Version;
use lockstep_core::deployer::DeploymentId;
use lockstep_core::time::{Duration, Instant, Now, UnixTime};

use crate::repository::DirRepository;
use crate::tls::Trust;

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

/// The clocks and timers of std and async-io. Its monotonic [`Instant`]s count milliseconds
/// from an origin it holds (its creation, by default); copies share the origin, and so the
/// clock.
#[derive(Clone, Copy, Debug)]
pub struct StdTime {
    origin: StdInstant,
}

impl StdTime {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self::with_origin(StdInstant::now())
    }

    /// A clock whose origin is `origin`.
    pub const fn with_origin(origin: StdInstant) -> Self {
        Self { origin }
    }

    /// The std instant that is [`Instant::ZERO`].
    pub const fn origin(&self) -> StdInstant {
        self.origin
    }

    /// `at` on this clock, in whole milliseconds rounded down; an instant before the origin is
    /// [`Instant::ZERO`].
    pub fn instant(&self, at: StdInstant) -> Instant {
        Instant::from_millis(saturating_millis(at.saturating_duration_since(self.origin)))
    }

    /// The std instant of `at`, or `None` when std's clock cannot represent it (so far ahead
    /// that it never comes).
    pub fn std_instant(&self, at: Instant) -> Option<StdInstant> {
        self.origin
            .checked_add(StdDuration::from_millis(at.as_millis()))
    }
}

impl Default for StdTime {
    fn default() -> Self {
        Self::new()
    }
}

impl Time for StdTime {
    fn now(&self) -> Now {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(UnixTime::EPOCH, |d| {
                UnixTime::from_millis(saturating_millis(d))
            });
        Now::new(self.instant(StdInstant::now()), unix)
    }

    async fn at(&self, deadline: Instant) {
        // async-io fires a timer whose instant has passed on its first poll.
        let timer = self
            .std_instant(deadline)
            .map_or_else(Timer::never, Timer::at);
        timer.await;
    }
}

/// `d` as a std duration.
pub const fn to_std_duration(d: Duration) -> StdDuration {
    StdDuration::from_millis(d.as_millis())
}

/// `d` in whole milliseconds, rounded down, saturating at [`Duration::MAX`].
pub fn from_std_duration(d: StdDuration) -> Duration {
    Duration::from_millis(saturating_millis(d))
}

fn saturating_millis(d: StdDuration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------

/// Opens TCP connections with async-net, `TCP_NODELAY` set, giving up after a time-out of its
/// own (name resolution, every address tried and the TLS handshake included); TLS over them
/// for `https://`, trusting what its [`Trust`] says.
#[derive(Clone, Debug)]
pub struct TcpConnector {
    timeout: StdDuration,
    trust: Trust,
}

impl TcpConnector {
    /// The time-out of [`TcpConnector::default`].
    pub const DEFAULT_TIMEOUT: StdDuration = StdDuration::from_secs(10);

    /// A connector that gives up on a connection after `timeout`, trusting the system's CAs.
    pub fn new(timeout: StdDuration) -> Self {
        Self {
            timeout,
            trust: Trust::system(),
        }
    }

    /// The connector of an agent configured with `config`: a connection may take its
    /// `io_timeout` (`--io-timeout`), as every read and write does, not a time-out of its own.
    pub fn for_agent(config: &agent::Config) -> Self {
        Self::new(to_std_duration(config.io_timeout))
    }

    /// This connector, trusting `trust` for `https://`.
    #[must_use]
    pub fn with_trust(mut self, trust: Trust) -> Self {
        self.trust = trust;
        self
    }

    /// How long a connection may take.
    pub const fn timeout(&self) -> StdDuration {
        self.timeout
    }
}

impl Default for TcpConnector {
    fn default() -> Self {
        Self::new(Self::DEFAULT_TIMEOUT)
    }
}

impl Connector for TcpConnector {
    type Connection = TcpConnection;

    async fn connect(&self, origin: Origin<'_>) -> Result<TcpConnection, ConnectError> {
        let host = unbracketed(origin.host);
        let port = origin.port;
        let connect = async {
            let Ok(stream) = TcpStream::connect((host, port)).await else {
                return Err(ConnectError::Failed);
            };
            // A request written in pieces (a head, then a body) would otherwise wait for the
            // peer's delayed ACK. Failing to set it costs latency only.
            let _ = stream.set_nodelay(true);
            match origin.scheme {
                Scheme::Http => Ok(TcpConnection::Plain(stream)),
                Scheme::Https => Ok(TcpConnection::Tls(Box::new(
                    self.trust.connect(stream, host, port).await?,
                ))),
            }
        };
        let timeout = async {
            Timer::after(self.timeout).await;
            Err(ConnectError::Failed)
        };
        connect.or(timeout).await
    }
}

/// `host` as a resolver takes it: an IPv6 literal without the brackets a URL writes it in.
pub fn unbracketed(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// A TCP connection, or TLS over one, as an `embedded_io_async` stream. Plain reads and writes
/// are cancel-safe (async-io's are): a dropped read has read nothing, a dropped write has
/// written nothing. A dropped TLS read or write may leave the session unusable: the client
/// drops the connection after any abandoned call, so it is never reused.
#[derive(Debug)]
pub enum TcpConnection {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`.
    Tls(Box<TlsStream<TcpStream>>),
}

impl embedded_io_async::ErrorType for TcpConnection {
    type Error = io::Error;
}

impl embedded_io_async::Read for TcpConnection {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, io::Error> {
        match self {
            Self::Plain(s) => AsyncReadExt::read(s, buf).await,
            Self::Tls(s) => AsyncReadExt::read(s, buf).await,
        }
    }
}

impl embedded_io_async::Write for TcpConnection {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, io::Error> {
        let written = match self {
            Self::Plain(s) => AsyncWriteExt::write(s, buf).await,
            Self::Tls(s) => AsyncWriteExt::write(s, buf).await,
        };
        nonzero_write(buf, written)
    }

    async fn flush(&mut self) -> Result<(), io::Error> {
        match self {
            Self::Plain(s) => AsyncWriteExt::flush(s).await,
            Self::Tls(s) => AsyncWriteExt::flush(s).await,
        }
    }
}

/// embedded-io's `write_all` panics on `Ok(0)` where std's returns `WriteZero`: make it the
/// error std would have given.
fn nonzero_write(buf: &[u8], written: io::Result<usize>) -> io::Result<usize> {
    match written {
        Ok(0) if !buf.is_empty() => Err(io::ErrorKind::WriteZero.into()),
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

/// A deployment's files in a directory: `<root>/<deployment id>/bundle.zip` and
/// `<root>/<deployment id>/configuration.zip`. A deployment id is written as its UUID (hex
/// digits and `-`), so no key names anything outside the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// The store under `root`, which [`Store::create`] creates when needed.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of a deployment's files: `<root>/<deployment id>`.
    pub fn dir_of(&self, deployment: DeploymentId) -> PathBuf {
        self.root.join(deployment.to_text().as_str())
    }

    /// Where a file lives.
    pub fn path_of(&self, key: FileKey) -> PathBuf {
        self.dir_of(key.deployment).join(match key.kind {
            FileKind::Bundle => "bundle.zip",
            FileKind::Configuration => "configuration.zip",
        })
    }
}

impl Store for DirStore {
    type Writer = FileWriter;
    type Reader = FileReader;

    /// Directories 0700 and files 0600: a configuration holds the bundle's secrets.
    async fn create(&self, key: FileKey) -> Result<FileWriter, StoreError> {
        crate::deployments::create_private_dir(&self.dir_of(key.deployment))
            .map_err(|_| StoreError)?;
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(self.path_of(key))
            .map_err(|_| StoreError)?;
        Ok(FileWriter(file))
    }

    async fn open(&self, key: FileKey) -> Result<FileReader, StoreError> {
        let file = File::open(self.path_of(key)).map_err(|_| StoreError)?;
        let len = file.metadata().map_err(|_| StoreError)?.len();
        Ok(FileReader { file, len })
    }

    async fn remove(&self, deployment: DeploymentId) {
        // Nothing to report to: an absent directory is the goal, and any other failure leaves
        // files that the next removal of the same id, or an operator, deletes.
        let _ = fs::remove_dir_all(self.dir_of(deployment));
    }
}

/// A [`DirStore`] file being written (blocking writes: see the module doc).
#[derive(Debug)]
pub struct FileWriter(File);

impl embedded_io_async::ErrorType for FileWriter {
    type Error = io::Error;
}

impl embedded_io_async::Write for FileWriter {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, io::Error> {
        loop {
            match self.0.write(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                written => return nonzero_write(buf, written),
            }
        }
    }

    async fn flush(&mut self) -> Result<(), io::Error> {
        self.0.flush()
    }
}

/// A [`DirStore`] file being read at random; its length is the file's when it was opened.
#[derive(Debug)]
pub struct FileReader {
    file: File,
    len: u64,
}

impl RandomAccess for FileReader {
    type Error = io::Error;

    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), io::Error> {
        let end = u64::try_from(buf.len())
            .ok()
            .and_then(|n| offset.checked_add(n));
        if end.is_none_or(|end| end > self.len) {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        read_exact_at(&mut self.file, offset, buf)
    }
}

#[cfg(unix)]
fn read_exact_at(file: &mut File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_exact_at(file: &mut File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    std::io::Seek::seek(file, io::SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

// ---------------------------------------------------------------------------------------------
// The repository
// ---------------------------------------------------------------------------------------------

/// Bundles from a repository in a directory ([`DirRepository`]'s layout, docs/PROTOCOL.md §4), read
/// with blocking calls (see the module doc).
#[derive(Debug)]
pub struct LocalRepository {
    repo: DirRepository,
}

impl LocalRepository {
    /// Fetches from `repo`.
    pub const fn new(repo: DirRepository) -> Self {
        Self { repo }
    }

    /// The repository.
    pub const fn repository(&self) -> &DirRepository {
        &self.repo
    }
}

impl Repository for LocalRepository {
    /// [`FetchError::NotFound`] when the version's zip is absent, [`FetchError::Unreachable`]
    /// when it cannot be read (or `buf` is empty, which cannot carry it), [`FetchError::Write`]
    /// when `out` fails.
    async fn fetch<W: embedded_io_async::Write>(
        &self,
        location: &Location<'_>,
        out: &mut W,
        buf: &mut [u8],
    ) -> Result<u64, FetchError> {
        let version = Version {
            tag: location.tag,
            digest: location.digest,
        };
        let path = self
            .repo
            .path_of(location.org, location.repo, location.package, &version);
        copy_file(&path, out, buf).await
    }

    /// The package's `versions.json` where [`DirRepository::index_path`] keeps it; the errors
    /// are [`fetch`](Repository::fetch)'s ([`FetchError::NotFound`]: no index).
    async fn fetch_index<W: embedded_io_async::Write>(
        &self,
        at: &IndexLocation<'_>,
        out: &mut W,
        buf: &mut [u8],
    ) -> Result<u64, FetchError> {
        let path = self.repo.index_path(at.org, at.repo, at.package);
        copy_file(&path, out, buf).await
    }
}

/// Writes the file at `path` to `out` through `buf`: what both fetches of [`LocalRepository`]
/// do.
async fn copy_file<W: embedded_io_async::Write>(
    path: &Path,
    out: &mut W,
    buf: &mut [u8],
) -> Result<u64, FetchError> {
    if buf.is_empty() {
        return Err(FetchError::Unreachable);
    }
    let mut file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => FetchError::NotFound,
        _ => FetchError::Unreachable,
    })?;
    let mut total = 0u64;
    loop {
        let n = match file.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(FetchError::Unreachable),
        };
        out.write_all(&buf[..n])
            .await
            .map_err(|_| FetchError::Write)?;
        total = total.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use embedded_io_async::{Read as _, Write as _};
    use futures_lite::future::{self, block_on};
    use lockstep_core::agent::{TimedOut, with_deadline};
    use lockstep_core::bundle::{Digest, Segment};

    use super::*;

    use crate::testing::temp_dir;

    /// A writer into a `Vec` that fails once it holds `cap` bytes.
    struct CappedVec {
        bytes: Vec<u8>,
        cap: usize,
    }

    impl CappedVec {
        fn new(cap: usize) -> Self {
            Self {
                bytes: Vec::new(),
                cap,
            }
        }
    }

    impl embedded_io_async::ErrorType for CappedVec {
        type Error = embedded_io_async::ErrorKind;
    }

    impl embedded_io_async::Write for CappedVec {
        async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            let room = self.cap - self.bytes.len();
            if room == 0 && !buf.is_empty() {
                return Err(embedded_io_async::ErrorKind::OutOfMemory);
            }
            let n = buf.len().min(room);
            self.bytes.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        async fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    fn id(n: u8) -> DeploymentId {
        DeploymentId::random_v4([n; 16])
    }

    fn key(n: u8, kind: FileKind) -> FileKey {
        FileKey {
            deployment: id(n),
            kind,
        }
    }

    fn seg(s: &str) -> Segment<'_> {
        Segment::parse(s).unwrap()
    }

    // --- time ---------------------------------------------------------------------------------

    #[test]
    fn test_time_now() {
        let time = StdTime::new();
        let a = time.now();
        let b = time.now();
        assert!(b.instant >= a.instant);
        // After 2020-01-01: the wall clock is read, not the monotonic one.
        assert!(a.unix.as_secs() > 1_577_836_800, "{:?}", a.unix);
    }

    #[test]
    fn test_time_at_past_deadline_completes() {
        let time = StdTime::new();
        block_on(time.at(Instant::ZERO));
        let now = time.now().instant;
        block_on(time.at(now));
    }

    #[test]
    fn test_time_with_deadline() {
        let time = StdTime::new();
        let deadline = time.now().instant.saturating_add(Duration::from_millis(20));
        let never = future::pending::<()>();
        assert_eq!(
            block_on(with_deadline(&time, deadline, never)),
            Err(TimedOut)
        );
        let far = time.now().instant.saturating_add(Duration::from_secs(3600));
        assert_eq!(block_on(with_deadline(&time, far, async { 7 })), Ok(7));
        // An instant std cannot represent never comes: the future still wins.
        let end = Instant::from_millis(u64::MAX);
        assert_eq!(block_on(with_deadline(&time, end, async { 8 })), Ok(8));
    }

    #[test]
    fn test_time_conversions() {
        let origin = StdInstant::now();
        let time = StdTime::with_origin(origin);
        assert_eq!(time.origin(), origin);
        let later = origin + StdDuration::from_millis(1_500) + StdDuration::from_micros(999);
        assert_eq!(time.instant(later), Instant::from_millis(1_500));
        assert_eq!(
            time.std_instant(Instant::from_millis(1_500)),
            Some(origin + StdDuration::from_millis(1_500))
        );
        let earlier = StdTime::with_origin(later);
        assert_eq!(earlier.instant(origin), Instant::ZERO);
        assert_eq!(
            to_std_duration(Duration::from_millis(1_234)),
            StdDuration::from_millis(1_234)
        );
        assert_eq!(
            from_std_duration(StdDuration::from_micros(1_234_999)),
            Duration::from_millis(1_234)
        );
        assert_eq!(from_std_duration(StdDuration::MAX), Duration::MAX);
    }

    // --- connections --------------------------------------------------------------------------

    #[test]
    fn test_connector_echo() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let echo = std::thread::spawn(move || {
            use std::io::{Read as _, Write as _};

            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            loop {
                match stream.read(&mut buf).unwrap() {
                    0 => break,
                    n => stream.write_all(&buf[..n]).unwrap(),
                }
            }
        });
        let connector = TcpConnector::default();
        assert_eq!(connector.timeout(), StdDuration::from_secs(10));
        block_on(async {
            let mut conn = connector
                .connect(Origin::http("127.0.0.1", port))
                .await
                .unwrap();
            let TcpConnection::Plain(stream) = &conn else {
                panic!("plain TCP for http://")
            };
            assert!(stream.nodelay().unwrap());
            conn.write_all(b"hello, ").await.unwrap();
            conn.write_all(b"lockstep").await.unwrap();
            conn.flush().await.unwrap();
            let mut back = [0u8; 15];
            conn.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"hello, lockstep");
        });
        echo.join().unwrap();
    }

    #[test]
    fn test_connector_by_name_and_bracketed_address() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connector = TcpConnector::new(StdDuration::from_secs(5));
        block_on(async {
            connector
                .connect(Origin::http("localhost", port))
                .await
                .unwrap();
        });
        if let Ok(v6) = TcpListener::bind("[::1]:0") {
            let port = v6.local_addr().unwrap().port();
            block_on(async {
                connector
                    .connect(Origin::http("[::1]", port))
                    .await
                    .unwrap();
                connector.connect(Origin::http("::1", port)).await.unwrap();
            });
        }
    }

    /// A listener whose accept queue is full, and the connections that fill it: a further
    /// connect to it is not answered (Linux drops its SYN) until the client gives up. No
    /// address is reliably blackholed everywhere (this very sandbox answers them all).
    fn full_listener() -> (TcpListener, Vec<std::net::TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        // std listens with a backlog of 128: about 129 connections fill it. A kernel that never
        // fills it fails the test rather than hanging it.
        loop {
            assert!(queued.len() < 4096, "the accept queue never filled");
            match std::net::TcpStream::connect_timeout(&addr, StdDuration::from_millis(100)) {
                Ok(stream) => queued.push(stream),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
                Err(e) => panic!("filling the accept queue: {e}"),
            }
        }
        (listener, queued)
    }

    #[test]
    fn test_connector_for_agent_gives_up_at_the_io_timeout() {
        let (listener, _queued) = full_listener();
        let port = listener.local_addr().unwrap().port();
        let config = agent::Config {
            io_timeout: Duration::from_millis(300),
            ..agent::Config::default()
        };
        let connector = TcpConnector::for_agent(&config);
        let started = StdInstant::now();
        let connected = block_on(connector.connect(Origin::http("127.0.0.1", port)));
        let took = started.elapsed();
        assert_eq!(connected.err(), Some(ConnectError::Failed));
        // At its deadline, not before; and long before the connector's default of 10 s.
        assert!(took >= StdDuration::from_millis(300), "{took:?}");
        assert!(took < TcpConnector::DEFAULT_TIMEOUT / 2, "{took:?}");
    }

    #[test]
    fn test_connector_closed_port() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let connector = TcpConnector::default();
        assert_eq!(
            block_on(connector.connect(Origin::http("127.0.0.1", port))).err(),
            Some(ConnectError::Failed)
        );
    }

    // --- the store ----------------------------------------------------------------------------

    #[test]
    fn test_store_round_trip() {
        let tmp = temp_dir();
        let store = DirStore::new(tmp.path().join("store"));
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        block_on(async {
            let mut writer = store.create(key(1, FileKind::Bundle)).await.unwrap();
            for chunk in data.chunks(777) {
                writer.write_all(chunk).await.unwrap();
            }
            writer.flush().await.unwrap();
            drop(writer);

            let mut reader = store.open(key(1, FileKind::Bundle)).await.unwrap();
            assert_eq!(reader.len(), 10_000);
            assert!(!reader.is_empty());
            for (offset, len) in [
                (0, 10),
                (1, 1),
                (5_000, 777),
                (9_990, 10),
                (0, 10_000),
                (10_000, 0),
            ] {
                let mut buf = vec![0u8; len];
                reader.read_exact_at(offset as u64, &mut buf).unwrap();
                assert_eq!(buf, data[offset..offset + len], "{offset}+{len}");
            }
            // Past the end, partly or wholly, or with an offset that overflows.
            let mut buf = [0u8; 11];
            for offset in [9_990, 10_000, 20_000, u64::MAX] {
                let e = reader.read_exact_at(offset, &mut buf).unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
            }

            // Creating again truncates.
            let mut writer = store.create(key(1, FileKind::Bundle)).await.unwrap();
            writer.write_all(b"short").await.unwrap();
            drop(writer);
            let mut reader = store.open(key(1, FileKind::Bundle)).await.unwrap();
            assert_eq!(reader.len(), 5);
            let mut buf = [0u8; 5];
            reader.read_exact_at(0, &mut buf).unwrap();
            assert_eq!(&buf, b"short");
        });
    }

    #[test]
    fn test_store_deployments_apart() {
        let tmp = temp_dir();
        let store = DirStore::new(tmp.path());
        block_on(async {
            for (n, kind, text) in [
                (1, FileKind::Bundle, b"b1"),
                (1, FileKind::Configuration, b"c1"),
                (2, FileKind::Bundle, b"b2"),
            ] {
                let mut writer = store.create(key(n, kind)).await.unwrap();
                writer.write_all(text).await.unwrap();
            }
            let store = &store;
            let read = |n, kind| async move {
                let mut reader = store.open(key(n, kind)).await?;
                let mut buf = [0u8; 2];
                reader.read_exact_at(0, &mut buf).map_err(|_| StoreError)?;
                Ok::<_, StoreError>(buf)
            };
            assert_eq!(read(1, FileKind::Bundle).await, Ok(*b"b1"));
            assert_eq!(read(1, FileKind::Configuration).await, Ok(*b"c1"));
            assert_eq!(read(2, FileKind::Bundle).await, Ok(*b"b2"));
            assert_eq!(read(2, FileKind::Configuration).await, Err(StoreError));

            // Removing one deployment leaves the other; removing again, or one never stored,
            // is harmless.
            store.remove(id(1)).await;
            assert!(!store.dir_of(id(1)).exists());
            assert_eq!(read(1, FileKind::Bundle).await, Err(StoreError));
            assert_eq!(read(2, FileKind::Bundle).await, Ok(*b"b2"));
            store.remove(id(1)).await;
            store.remove(id(3)).await;
            store.remove(id(2)).await;
        });
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn test_store_paths_stay_under_root() {
        let store = DirStore::new("/srv/lockstep");
        let deployment = DeploymentId::parse("7C1F21A3-91D1-44FA-8875-CF9A316D68CE").unwrap();
        let path = store.path_of(FileKey {
            deployment,
            kind: FileKind::Configuration,
        });
        assert_eq!(
            path,
            store
                .root()
                .join("7c1f21a3-91d1-44fa-8875-cf9a316d68ce")
                .join("configuration.zip")
        );
        for n in [0, 0x2e, 0x2f, 0xff] {
            let dir = store.dir_of(DeploymentId::from_bytes([n; 16]));
            assert_eq!(dir.parent(), Some(store.root()));
            assert_eq!(dir.file_name().unwrap().len(), 36);
        }
    }

    #[test]
    fn test_store_create_fails() {
        // The root is a file: no deployment directory can be made under it.
        let tmp = temp_dir();
        let root = tmp.path().join("file");
        fs::write(&root, b"").unwrap();
        let store = DirStore::new(&root);
        block_on(async {
            assert!(store.create(key(1, FileKind::Bundle)).await.is_err());
            assert!(store.open(key(1, FileKind::Bundle)).await.is_err());
            store.remove(id(1)).await;
        });
        assert!(root.is_file());
    }

    // --- the repository -----------------------------------------------------------------------

    #[test]
    fn test_repository_fetch() {
        let tmp = temp_dir();
        let dir = DirRepository::new(tmp.path());
        let zip: Vec<u8> = (0..5_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let published = dir
            .publish(
                "typesafe",
                "bundle",
                "visualizer",
                "1.0.0",
                &zip,
                SystemTime::now(),
            )
            .unwrap();
        let repo = LocalRepository::new(dir);
        assert_eq!(repo.repository().root(), tmp.path());
        let location = Location {
            org: seg("typesafe"),
            repo: seg("bundle"),
            package: seg("visualizer"),
            tag: seg("1.0.0"),
            digest: published.digest(),
        };
        block_on(async {
            let mut buf = [0u8; 512];
            let mut out = CappedVec::new(usize::MAX);
            assert_eq!(repo.fetch(&location, &mut out, &mut buf).await, Ok(5_000));
            assert_eq!(out.bytes, zip);

            // A buffer of one byte still carries it.
            let mut out = Vec::new();
            assert_eq!(
                repo.fetch(&location, &mut out, &mut [0u8; 1]).await,
                Ok(5_000)
            );
            assert_eq!(out, zip);

            // The writer's failure is the writer's.
            let mut small = CappedVec::new(4_000);
            assert_eq!(
                repo.fetch(&location, &mut small, &mut buf).await,
                Err(FetchError::Write)
            );
            assert_eq!(
                repo.fetch(&location, &mut Vec::new(), &mut []).await,
                Err(FetchError::Unreachable)
            );

            // Another digest, tag or package: not found.
            let missing = [
                Location {
                    digest: Digest::from_bytes([0; 32]),
                    ..location
                },
                Location {
                    tag: seg("2.0.0"),
                    ..location
                },
                Location {
                    package: seg("other"),
                    ..location
                },
            ];
            for location in missing {
                assert_eq!(
                    repo.fetch(&location, &mut Vec::new(), &mut buf).await,
                    Err(FetchError::NotFound),
                    "{location:?}"
                );
            }
        });
    }

    #[test]
    fn test_repository_fetch_index() {
        let tmp = temp_dir();
        let dir = DirRepository::new(tmp.path());
        dir.publish(
            "typesafe",
            "bundle",
            "visualizer",
            "1.0.0",
            b"one",
            SystemTime::now(),
        )
        .unwrap();
        dir.publish(
            "typesafe",
            "bundle",
            "visualizer",
            "1.1.0",
            b"two",
            SystemTime::now(),
        )
        .unwrap();
        let text =
            fs::read(dir.index_path(seg("typesafe"), seg("bundle"), seg("visualizer"))).unwrap();
        let repo = LocalRepository::new(dir);
        let at = IndexLocation {
            org: seg("typesafe"),
            repo: seg("bundle"),
            package: seg("visualizer"),
        };
        block_on(async {
            let mut out = Vec::new();
            let fetched = repo.fetch_index(&at, &mut out, &mut [0u8; 7]).await;
            assert_eq!(fetched, Ok(u64::try_from(text.len()).unwrap()));
            assert_eq!(out, text);

            // Another package, repository or organisation has none.
            for at in [
                IndexLocation {
                    package: seg("other"),
                    ..at
                },
                IndexLocation {
                    repo: seg("other"),
                    ..at
                },
                IndexLocation {
                    org: seg("other"),
                    ..at
                },
            ] {
                assert_eq!(
                    repo.fetch_index(&at, &mut Vec::new(), &mut [0u8; 64]).await,
                    Err(FetchError::NotFound),
                    "{at:?}"
                );
            }
        });
    }

    // An HTTP repository over a real socket, a file server of a published directory: the
    // index streamed, a redirect followed, 404 for a package without one.
    #[test]
    fn test_http_repository_fetch_index_over_loopback() {
        use lockstep_core::agent::http::{HttpRepository, Url};
        use lockstep_core::bundle::BundleId;
        use lockstep_core::index::IndexScan;

        let tmp = temp_dir();
        let dir = DirRepository::new(tmp.path());
        let old = dir
            .publish(
                "typesafe",
                "bundle",
                "visualizer",
                "1.0.0",
                b"one",
                SystemTime::now(),
            )
            .unwrap();
        let new = dir
            .publish(
                "typesafe",
                "bundle",
                "visualizer",
                "1.1.0",
                b"two",
                SystemTime::now(),
            )
            .unwrap();
        let root = tmp.path().to_path_buf();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            use std::io::{BufRead as _, BufReader, Write as _};

            let mut targets = Vec::new();
            for _ in 0..3 {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let target = line.split(' ').nth(1).unwrap().to_owned();
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    if header == "\r\n" {
                        break;
                    }
                }
                let mut stream = stream;
                let response = if let Some(path) = target.strip_prefix("/moved/") {
                    format!("HTTP/1.1 301 Moved\r\nLocation: /repository/{path}\r\n\r\n")
                        .into_bytes()
                } else {
                    let path = target.strip_prefix("/repository/").unwrap();
                    match fs::read(root.join(path)) {
                        Ok(body) => {
                            let head = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                                body.len()
                            );
                            [head.into_bytes(), body].concat()
                        }
                        Err(_) => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
                    }
                };
                stream.write_all(&response).unwrap();
                targets.push(target);
            }
            targets
        });
        let connector = TcpConnector::default();
        let time = StdTime::new();
        let at = IndexLocation {
            org: seg("typesafe"),
            repo: seg("bundle"),
            package: seg("visualizer"),
        };
        block_on(async {
            let base = format!("http://127.0.0.1:{port}/moved");
            let repository = HttpRepository::new(
                Url::parse(&base).unwrap(),
                &connector,
                &time,
                Duration::from_secs(5),
            );
            let mut element = [0u8; 512];
            let mut scan = IndexScan::new(
                &mut element,
                old.digest(),
                BundleId::of(&new.digest(), None),
            );
            let mut buf = [0u8; 4096];
            let fetched = repository.fetch_index(&at, &mut scan, &mut buf).await;
            assert!(fetched.is_ok(), "{fetched:?}");
            assert_eq!(scan.finish().unwrap().unwrap().as_str(), "1.1.0");

            let base = format!("http://127.0.0.1:{port}/repository");
            let repository = HttpRepository::new(
                Url::parse(&base).unwrap(),
                &connector,
                &time,
                Duration::from_secs(5),
            );
            let other = IndexLocation {
                package: seg("other"),
                ..at
            };
            assert_eq!(
                repository
                    .fetch_index(&other, &mut Vec::new(), &mut buf)
                    .await,
                Err(FetchError::NotFound)
            );
        });
        assert_eq!(
            server.join().unwrap(),
            [
                "/moved/typesafe/bundle/typesafe/visualizer/versions.json",
                "/repository/typesafe/bundle/typesafe/visualizer/versions.json",
                "/repository/typesafe/bundle/typesafe/other/versions.json",
            ]
        );
    }
}
