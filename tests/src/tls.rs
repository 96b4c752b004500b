//! HTTPS for the suites: a throwaway certificate authority ([`TestCa`]) and a TLS-terminating
//! reverse proxy ([`HttpsServer`]) put in front of a plain-HTTP server such as `lockstep
//! sandbox`. Blocking, one thread per connection, on rustls with ring (never a process-wide
//! provider). The proxy records every request head it gets, counts the handshakes clients
//! refused, and can demand a credential or redirect the bundles' zips elsewhere ([`Rules`]).

use std::fmt::{self, Write as _};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, date_time_ymd,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// The longest request or response head read.
const MAX_HEAD: usize = 16 * 1024;
/// A client connection idle this long is closed; an upstream gets as long to answer.
const IDLE: Duration = Duration::from_secs(30);

/// A throwaway certificate authority, its certificate written to `ca.pem`.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pem_path: PathBuf,
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa")
            .field("pem_path", &self.pem_path)
            .finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new self-signed CA (valid 2019–2100), its certificate written as PEM to `dir/ca.pem`.
    ///
    /// # Panics
    /// When the certificate cannot be made or written.
    pub fn new(dir: &Path) -> Self {
        let mut params = CertificateParams::new(Vec::new()).expect("CA parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "lockstep test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = date_time_ymd(2019, 1, 1);
        params.not_after = date_time_ymd(2100, 1, 1);
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        let pem_path = dir.join("ca.pem");
        std::fs::write(&pem_path, issuer.pem()).expect("write ca.pem");
        Self { issuer, pem_path }
    }

    /// The CA's certificate, PEM.
    pub fn pem_path(&self) -> PathBuf {
        self.pem_path.clone()
    }

    /// A server certificate signed by this CA for `names` (an IP address becomes an IP SAN,
    /// anything else a DNS SAN): valid 2024–2099, or 2020–2021 when `expired`.
    ///
    /// # Panics
    /// When a name is not a valid DNS name or the certificate cannot be made.
    pub fn issue(&self, names: &[&str], expired: bool) -> Identity {
        let names: Vec<String> = names.iter().map(|&name| name.to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("subject alternative names");
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        (params.not_before, params.not_after) = if expired {
            (date_time_ymd(2020, 1, 1), date_time_ymd(2021, 1, 1))
        } else {
            (date_time_ymd(2024, 1, 1), date_time_ymd(2099, 1, 1))
        };
        let key = KeyPair::generate().expect("server key");
        let leaf = params
            .signed_by(&key, &*self.issuer)
            .expect("server certificate");
        Identity {
            chain: vec![leaf.der().clone(), self.issuer.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        }
    }
}

/// A server's certificate chain and private key.
pub struct Identity {
    /// The leaf certificate, then the CA's.
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// The private key (PKCS #8).
    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// What an [`HttpsServer`] does with a request.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Where requests are proxied: plain HTTP, no path, e.g. `http://127.0.0.1:1234`.
    pub upstream: String,
    /// When set, a request without exactly this `Authorization` gets `401 Unauthorized`.
    pub require_authorization: Option<String>,
    /// When set, a request for a `.zip` gets `302 Found` to this base followed by its target,
    /// e.g. `https://localhost:5678`.
    pub redirect_zips_to: Option<String>,
}

/// A request head an [`HttpsServer`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target, e.g. `/repository/versions.json`.
    pub target: String,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

#[derive(Debug)]
struct Shared {
    rules: Rules,
    stop: AtomicBool,
    requests: Mutex<Vec<Seen>>,
    handshakes_failed: AtomicUsize,
}

/// A TLS-terminating reverse proxy on `127.0.0.1`, at a port the OS chose; stops accepting
/// when dropped.
#[derive(Debug)]
pub struct HttpsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl HttpsServer {
    /// Serves HTTPS with `identity` and `rules` on a background thread.
    ///
    /// # Panics
    /// When the identity is unusable or no port can be bound.
    pub fn start(identity: &Identity, rules: Rules) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(identity.chain.clone(), identity.key())
            .expect("server certificate");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            rules,
            stop: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
            handshakes_failed: AtomicUsize::new(0),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                for tcp in listener.incoming() {
                    if shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(tcp) = tcp else { continue };
                    let (config, shared) = (Arc::clone(&config), Arc::clone(&shared));
                    std::thread::spawn(move || serve(tcp, config, &shared));
                }
            })
        };
        Self {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request head received so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many TLS handshakes failed (clients that refused the certificate). A connection
    /// closed before it sent anything is not counted.
    pub fn handshakes_failed(&self) -> usize {
        self.shared.handshakes_failed.load(Ordering::SeqCst)
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // A connection wakes the acceptor blocked in `accept`; without one, leave it be.
        if TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok()
            && let Some(acceptor) = self.acceptor.take()
        {
            let _ = acceptor.join();
        }
    }
}

/// One client connection: the handshake, then requests until the client closes.
fn serve(tcp: TcpStream, config: Arc<ServerConfig>, shared: &Shared) {
    let _ = tcp.set_read_timeout(Some(IDLE));
    let _ = tcp.set_write_timeout(Some(IDLE));
    let _ = tcp.set_nodelay(true);
    if !matches!(tcp.peek(&mut [0]), Ok(1..)) {
        return; // closed before a ClientHello: a probe, no handshake
    }
    let Ok(conn) = ServerConnection::new(config) else {
        return;
    };
    let mut tls = StreamOwned::new(conn, tcp);
    if tls.conn.complete_io(&mut tls.sock).is_err() || tls.conn.is_handshaking() {
        shared.handshakes_failed.fetch_add(1, Ordering::SeqCst);
        return;
    }
    let mut buf = Vec::new();
    while let Some(head) = read_head(&mut tls, &mut buf) {
        let Some(seen) = parse_request(&head) else {
            break;
        };
        let length = content_length(&seen.headers).unwrap_or(0);
        let Some(body) = read_body(&mut tls, &mut buf, length) else {
            break;
        };
        shared
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(seen.clone());
        let close = seen
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let (response, stream) = answer(&shared.rules, &seen, &body);
        if tls.write_all(&response).and_then(|()| tls.flush()).is_err() || close {
            break;
        }
        if let Some(mut up) = stream {
            let mut chunk = [0; 4096];
            while let Ok(n @ 1..) = up.read(&mut chunk) {
                if tls
                    .write_all(&chunk[..n])
                    .and_then(|()| tls.flush())
                    .is_err()
                {
                    break;
                }
            }
            break;
        }
    }
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

/// The response to one request, by the [`Rules`], and the upstream still to relay when it is
/// an event stream.
fn answer(rules: &Rules, seen: &Seen, body: &[u8]) -> (Vec<u8>, Option<TcpStream>) {
    if let Some(expected) = &rules.require_authorization
        && seen.header("authorization") != Some(expected.as_str())
    {
        let challenge = [("WWW-Authenticate", "Basic realm=\"test\"")];
        return (
            message("HTTP/1.1 401 Unauthorized", challenge, Some(0), b""),
            None,
        );
    }
    let path = seen.target.split(['?', '#']).next().unwrap_or_default();
    if let Some(base) = &rules.redirect_zips_to
        && path.ends_with(".zip")
    {
        let location = format!("{base}{}", seen.target);
        let redirect = message(
            "HTTP/1.1 302 Found",
            [("Location", &*location)],
            Some(0),
            b"",
        );
        return (redirect, None);
    }
    proxy(&rules.upstream, seen, body)
        .unwrap_or_else(|| (message("HTTP/1.1 502 Bad Gateway", [], Some(0), b""), None))
}

/// The upstream's answer to the request, rewritten for a kept-alive connection (no chunks, a
/// fresh `Content-Length`); `None` when the upstream cannot be reached or answers nonsense.
/// An event stream never ends: its head and what came with it, to close the connection, and
/// the upstream to relay the rest from as it comes.
fn proxy(upstream: &str, seen: &Seen, body: &[u8]) -> Option<(Vec<u8>, Option<TcpStream>)> {
    let authority = upstream.strip_prefix("http://")?.trim_end_matches('/');
    let mut up = TcpStream::connect(authority).ok()?;
    up.set_read_timeout(Some(IDLE)).ok()?;
    let (method, target) = (&seen.method, &seen.target);
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\n");
    for (name, value) in &seen.headers {
        if !name.eq_ignore_ascii_case("connection") && !name.eq_ignore_ascii_case("host") {
            let _ = write!(head, "{name}: {value}\r\n");
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes()).ok()?;
    up.write_all(body).ok()?;
    let mut payload = Vec::new();
    let (status, headers) = parse_head(&read_head(&mut up, &mut payload)?)?;
    let dropped = [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
    ];
    let kept = headers
        .iter()
        .filter(|(name, _)| !dropped.iter().any(|d| name.eq_ignore_ascii_case(d)))
        .map(|(name, value)| (name.as_str(), value.as_str()));
    if header(&headers, "content-type").is_some_and(|v| v.starts_with("text/event-stream")) {
        up.set_read_timeout(None).ok()?;
        return Some((message(&status, kept, None, &payload), Some(up)));
    }
    up.read_to_end(&mut payload).ok()?;
    let chunked = header(&headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        payload = dechunk(&payload)?;
    } else if let Some(length) = content_length(&headers) {
        payload.truncate(length);
    }
    // A response to HEAD has no body but the length of the one GET would get.
    let length = match seen.method.as_str() {
        "HEAD" => content_length(&headers).unwrap_or(0),
        _ => payload.len(),
    };
    Some((message(&status, kept, Some(length), &payload), None))
}

/// A response: its status line, headers, `Content-Length: length` (or `Connection: close`
/// without a length) and body.
fn message<'a>(
    status_line: &str,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    length: Option<usize>,
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!("{status_line}\r\n");
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let _ = match length {
        Some(length) => write!(head, "Content-Length: {length}\r\n\r\n"),
        None => write!(head, "Connection: close\r\n\r\n"),
    };
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A chunked body, decoded (trailers ignored); `None` when malformed or cut short.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(data.get(..size)?);
        data = data.get(size.checked_add(2)?..)?;
    }
}

/// Where a head ends: just past its blank line.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// The next head from `from` (blank line included), `buf` holding what was read past it;
/// `None` at the end of the stream, on an error, or past [`MAX_HEAD`].
fn read_head(from: &mut impl Read, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(end) = head_end(buf) {
            let rest = buf.split_off(end);
            return Some(std::mem::replace(buf, rest));
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        read_more(from, buf)?;
    }
}

/// The next `length` bytes, the first of them from `buf`.
fn read_body(from: &mut impl Read, buf: &mut Vec<u8>, length: usize) -> Option<Vec<u8>> {
    while buf.len() < length {
        read_more(from, buf)?;
    }
    let rest = buf.split_off(length);
    Some(std::mem::replace(buf, rest))
}

/// Appends what `from` has to `buf`; `None` at the end of the stream or on an error.
fn read_more(from: &mut impl Read, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0; 4096];
    let n = from.read(&mut chunk).ok().filter(|&n| n > 0)?;
    buf.extend_from_slice(&chunk[..n]);
    Some(())
}

/// A head's first line and its headers (names and values trimmed).
fn parse_head(head: &[u8]) -> Option<(String, Vec<(String, String)>)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n").filter(|line| !line.is_empty());
    let first = lines.next()?.to_owned();
    let headers = lines
        .map(|line| {
            line.split_once(':')
                .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        })
        .collect::<Option<_>>()?;
    Some((first, headers))
}

fn parse_request(head: &[u8]) -> Option<Seen> {
    let (first, headers) = parse_head(head)?;
    let mut parts = first.split(' ');
    let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    Some(Seen {
        method,
        target,
        headers,
    })
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn content_length(headers: &[(String, String)]) -> Option<usize> {
    header(headers, "content-length")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use rustls::pki_types::ServerName;
    use rustls::pki_types::pem::PemObject;
    use rustls::{CertificateError, ClientConfig, ClientConnection, Error, RootCertStore};

    use super::*;
    use crate::{TempDir, eventually};

    const WAIT: Duration = Duration::from_secs(10);

    type Tls = StreamOwned<ClientConnection, TcpStream>;

    /// `hello upstream`, chunked, and the end of the connection.
    const HELLO: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\
        Connection: close\r\n\r\n6\r\nhello \r\n8;x=y\r\nupstream\r\n0\r\n\r\n";
    /// The start of an event stream that goes on.
    const EVENTS: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\n";

    /// A plain-HTTP upstream that answers every request `answer` (then closes the connection
    /// unless it is [`EVENTS`]), and sends the request heads it got.
    fn upstream(answer: &'static [u8]) -> (String, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (heads, got) = mpsc::channel();
        std::thread::spawn(move || {
            let mut open = Vec::new();
            for mut tcp in listener.incoming().flatten() {
                let Some(head) = read_head(&mut tcp, &mut Vec::new()) else {
                    continue;
                };
                let _ = heads.send(String::from_utf8_lossy(&head).into_owned());
                let _ = tcp.write_all(answer);
                if answer == EVENTS {
                    open.push(tcp);
                }
            }
        });
        (url, got)
    }

    fn client(roots: RootCertStore) -> Arc<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    fn trusting(ca: &TestCa) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca.pem_path()).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        roots
    }

    /// A connection to `server` for `name`, handshaken, or the client's TLS error.
    fn connect(server: &HttpsServer, config: Arc<ClientConfig>, name: &str) -> Result<Tls, Error> {
        let tcp = TcpStream::connect(server.addr()).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let mut tls = StreamOwned::new(ClientConnection::new(config, name).unwrap(), tcp);
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            return Err(*e.into_inner().unwrap().downcast::<Error>().unwrap());
        }
        Ok(tls)
    }

    /// Status, headers and body of a request sent on a kept-alive connection.
    fn request(tls: &mut Tls, target: &str, extra: &str) -> (u16, Vec<(String, String)>, String) {
        let head = format!(
            "GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n{extra}\r\n"
        );
        tls.write_all(head.as_bytes()).unwrap();
        tls.flush().unwrap();
        let mut buf = Vec::new();
        let (status, headers) = parse_head(&read_head(tls, &mut buf).unwrap()).unwrap();
        let body = read_body(tls, &mut buf, content_length(&headers).unwrap()).unwrap();
        let status = status.split(' ').nth(1).unwrap().parse().unwrap();
        (status, headers, String::from_utf8(body).unwrap())
    }

    /// Why the client refused the certificate, its context left out.
    fn refusal(error: &Error) -> &'static str {
        use CertificateError::{Expired, ExpiredContext, NotValidForName, NotValidForNameContext};
        match error {
            Error::InvalidCertificate(Expired | ExpiredContext { .. }) => "expired",
            Error::InvalidCertificate(NotValidForName | NotValidForNameContext { .. }) => "name",
            Error::InvalidCertificate(CertificateError::UnknownIssuer) => "issuer",
            _ => "something else",
        }
    }

    fn setup(rules: Rules, names: &[&str], expired: bool) -> (TempDir, TestCa, HttpsServer) {
        let dir = TempDir::new("tls");
        let ca = TestCa::new(dir.path());
        let server = HttpsServer::start(&ca.issue(names, expired), rules);
        (dir, ca, server)
    }

    #[test]
    fn proxies_two_requests_on_one_connection() {
        let (upstream, heads) = upstream(HELLO);
        let rules = Rules {
            upstream: upstream.clone(),
            ..Rules::default()
        };
        let (_dir, ca, server) = setup(rules, &["localhost", "127.0.0.1"], false);
        let mut tls = connect(&server, client(trusting(&ca)), "localhost").unwrap();
        for target in ["/repository/versions.json", "/bundles"] {
            let (status, headers, body) = request(&mut tls, target, "X-Test: 1\r\n");
            assert_eq!((status, body.as_str()), (200, "hello upstream"));
            assert_eq!(header(&headers, "content-length"), Some("14"));
            assert_eq!(header(&headers, "content-type"), Some("text/plain"));
            assert_eq!(header(&headers, "transfer-encoding"), None);
            let head = heads.recv_timeout(WAIT).unwrap();
            assert!(
                head.starts_with(&format!("GET {target} HTTP/1.1\r\n")),
                "{head}"
            );
            let host = upstream.trim_start_matches("http://");
            assert!(head.contains(&format!("Host: {host}\r\n")), "{head}");
            assert!(
                head.contains("X-Test: 1\r\nConnection: close\r\n\r\n"),
                "{head}"
            );
            assert!(!head.contains("keep-alive"), "{head}");
        }
        let seen = server.requests();
        let targets: Vec<_> = seen.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(targets, ["/repository/versions.json", "/bundles"]);
        assert_eq!(seen[0].header("x-TEST"), Some("1"));
        assert_eq!(seen[0].method, "GET");
        assert_eq!(server.handshakes_failed(), 0);
    }

    #[test]
    fn demands_the_authorization() {
        let (upstream, _heads) = upstream(HELLO);
        let credential = "Basic dXNlcjpwYXNz".to_owned();
        let rules = Rules {
            upstream,
            require_authorization: Some(credential),
            ..Rules::default()
        };
        let (_dir, ca, server) = setup(rules, &["localhost"], false);
        let mut tls = connect(&server, client(trusting(&ca)), "localhost").unwrap();
        let (status, headers, _) = request(&mut tls, "/bundles", "");
        assert_eq!(status, 401);
        assert_eq!(
            header(&headers, "www-authenticate"),
            Some("Basic realm=\"test\"")
        );
        let (status, _, _) = request(&mut tls, "/bundles", "Authorization: Basic d3Jvbmc=\r\n");
        assert_eq!(status, 401);
        let (status, _, body) = request(
            &mut tls,
            "/bundles",
            "Authorization: Basic dXNlcjpwYXNz\r\n",
        );
        assert_eq!((status, body.as_str()), (200, "hello upstream"));
    }

    #[test]
    fn redirects_zips_and_answers_502_without_upstream() {
        let base = "https://localhost:5678".to_owned();
        let rules = Rules {
            upstream: "http://127.0.0.1:1".to_owned(),
            redirect_zips_to: Some(base),
            ..Rules::default()
        };
        let (_dir, ca, server) = setup(rules, &["127.0.0.1"], false);
        let mut tls = connect(&server, client(trusting(&ca)), "127.0.0.1").unwrap();
        let target = "/repository/visualizer-1.1.0-0123abc.zip?x=1";
        let (status, headers, _) = request(&mut tls, target, "");
        assert_eq!(status, 302);
        let location = format!("https://localhost:5678{target}");
        assert_eq!(header(&headers, "location"), Some(location.as_str()));
        let (status, _, _) = request(&mut tls, "/repository/versions.json", "");
        assert_eq!(status, 502);
    }

    #[test]
    fn refused_certificates_fail_the_handshake_and_are_counted() {
        let dir = TempDir::new("tls");
        let ca = TestCa::new(dir.path());
        let cases = [
            (ca.issue(&["localhost"], true), trusting(&ca), "expired"),
            (ca.issue(&["other.example"], false), trusting(&ca), "name"),
            (
                ca.issue(&["localhost"], false),
                RootCertStore::empty(),
                "issuer",
            ),
        ];
        for (identity, roots, expected) in cases {
            let server = HttpsServer::start(&identity, Rules::default());
            let error = connect(&server, client(roots), "localhost").err().unwrap();
            assert_eq!(refusal(&error), expected, "{error:?}");
            eventually("the failed handshake counted", WAIT, || {
                (server.handshakes_failed() == 1).then_some(())
            });
            assert!(server.requests().is_empty());
        }
    }

    #[test]
    fn relays_an_event_stream_as_it_comes() {
        let (upstream, _heads) = upstream(EVENTS);
        let rules = Rules {
            upstream,
            ..Rules::default()
        };
        let (_dir, ca, server) = setup(rules, &["localhost"], false);
        let mut tls = connect(&server, client(trusting(&ca)), "localhost").unwrap();
        let head = "GET /v2/bundles/events HTTP/1.1\r\nHost: localhost\r\n\r\n";
        tls.write_all(head.as_bytes()).unwrap();
        tls.flush().unwrap();
        let mut buf = Vec::new();
        let (status, headers) = parse_head(&read_head(&mut tls, &mut buf).unwrap()).unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(header(&headers, "connection"), Some("close"));
        assert_eq!(header(&headers, "content-length"), None);
        // The upstream holds its connection open: the event comes through before any end.
        while buf != b"data: 1\n\n" {
            assert!(buf.len() < 9, "{buf:?}");
            read_more(&mut tls, &mut buf).expect("the first event");
        }
    }
}
