//! An attacker with only network access must not silence the webhook (docs/PROTOCOL.md §7,
//! "HTTP/1.1, as built"; §8).
//!
//! - The connection budget: while hundreds of event streams, slow heads (slowloris) and idle
//!   connections are open against `lockstep serve` at its default limits — each attack alone,
//!   then all three together — ten signed webhooks in a row are each answered 202 within a
//!   generous bound, and `/healthz` answers. Each attack prints the worst latency it allowed:
//!
//!       cargo test -p lockstep-tests --test attacks -- --nocapture
//!
//!   The bound is not a benchmark: without the budget a webhook waits in the listen backlog
//!   until the read or idle time-out (10 s, 30 s) frees a connection, or forever behind
//!   event streams.
//! - Event streams have a cap of their own, and a stream's slot is free once its client goes.
//! - Strict framing: nothing of a request is read as the next one (request smuggling).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lockstep_tests::raw::*;
use lockstep_tests::stack::*;
use lockstep_tests::{Client, eventually};

/// Connections of each kind an attack opens.
const ATTACKERS: usize = 300;
/// Webhooks sent in a row under each attack.
const WEBHOOKS: u64 = 10;
/// How long one answer may take under attack: generous, for a loaded CI machine.
const BOUND: Duration = Duration::from_secs(5);
/// `--max-connections` and `--max-event-streams` by default: the attacks meet the defaults.
const MAX_CONNECTIONS: usize = 256;
const MAX_EVENT_STREAMS: usize = 32;
/// A slowloris connection sends one byte this often.
const SLOW: Duration = Duration::from_secs(3);
/// What a slowloris connection sends, a byte at a time, and never the blank line that would
/// end the head.
const SLOW_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: lockstep\r\nX-Slow: ";
/// What a slow-body connection sends at once: a whole webhook head, whose body then comes a
/// byte every [`SLOW`] and never ends.
const SLOW_BODY_HEAD: &[u8] = b"POST /deployments/typesafe/bundle/typesafe HTTP/1.1\r\n\
    Host: lockstep\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n";

/// The service of `runtime` with 64 connection slots (lockstep-minimal's default), so that
/// one attack meets both runtimes at the same limit; lockstep-minimal's read time-out is
/// `--io-timeout`, 10 s as serve's `--read-timeout`.
fn serve_at_64(runtime: Runtime, s: &Sandbox) -> Serve {
    serve_runtime(
        runtime,
        s,
        &["--max-connections", "64", "--io-timeout", "10s"],
    )
}

// ---- the attacker ----------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `GET /deployments/events`, then nothing: the stream stays open.
    Stream,
    /// One byte of a head every [`SLOW`], never completing it.
    Slowloris,
    /// Connects and sends nothing.
    Idle,
    /// A whole head, then one byte of its body every [`SLOW`], never completing it.
    SlowBody,
}

const KINDS: [Kind; 4] = [Kind::Stream, Kind::Slowloris, Kind::Idle, Kind::SlowBody];

/// One attacking connection.
struct Attacker {
    kind: Kind,
    stream: TcpStream,
    /// Bytes of [`SLOW_HEAD`] sent (slowloris).
    sent: usize,
    /// The server has not closed it yet.
    open: bool,
}

/// Attacking connections, watched by a thread of their own: it sends the slowloris bytes and
/// notices, by non-blocking reads, which connections the server closed.
struct Attack {
    stop: Arc<AtomicBool>,
    /// Connections still open, by kind (the index of [`Kind`]).
    open: Arc<[AtomicUsize; 4]>,
    /// Rounds of slowloris bytes sent (the first with the connection).
    rounds: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Attack {
    /// Opens [`ATTACKERS`] connections of each kind, interleaved, so that the server meets
    /// them mixed as it would in the wild.
    fn start(addr: SocketAddr, kinds: &[Kind]) -> Self {
        let mut attackers = Vec::new();
        for _ in 0..ATTACKERS {
            for &kind in kinds {
                let mut stream = TcpStream::connect(addr).expect("connect an attacker");
                let sent = match kind {
                    Kind::Stream => {
                        stream
                            .write_all(
                                b"GET /deployments/events HTTP/1.1\r\nHost: lockstep\r\n\r\n",
                            )
                            .expect("ask for a stream");
                        0
                    }
                    Kind::Slowloris => {
                        stream.write_all(&SLOW_HEAD[..1]).expect("a first byte");
                        1
                    }
                    Kind::Idle => 0,
                    Kind::SlowBody => {
                        stream.write_all(SLOW_BODY_HEAD).expect("a head");
                        stream.write_all(b"{").expect("a first byte of the body");
                        1
                    }
                };
                stream.set_nonblocking(true).expect("non-blocking");
                attackers.push(Attacker {
                    kind,
                    stream,
                    sent,
                    open: true,
                });
            }
        }
        let counts =
            KINDS.map(|kind| AtomicUsize::new(if kinds.contains(&kind) { ATTACKERS } else { 0 }));
        let open = Arc::new(counts);
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicUsize::new(1));
        let thread = {
            let (open, stop, rounds) = (open.clone(), stop.clone(), rounds.clone());
            std::thread::spawn(move || watch(attackers, &open, &stop, &rounds))
        };
        Self {
            stop,
            open,
            rounds,
            thread: Some(thread),
        }
    }

    fn open(&self, kind: Kind) -> usize {
        self.open[kind as usize].load(Ordering::SeqCst)
    }

    fn total(&self) -> usize {
        KINDS.iter().map(|kind| self.open(*kind)).sum()
    }

    /// Waits until the server holds exactly `total` of the attack's connections: the attack
    /// is in place. Returns how many of them stream (never more than the cap).
    fn wait_in_place(&self, total: usize) -> usize {
        let what = format!("the server to hold {total} attacking connections");
        let deadline = Instant::now() + WAIT;
        let streams = eventually(&what, WAIT, || {
            let held = (self.total(), self.open(Kind::Stream));
            assert!(Instant::now() < deadline, "{what}: it holds {held:?}");
            (held.0 == total).then_some(held.1)
        });
        assert!(streams <= MAX_EVENT_STREAMS, "{streams} streams");
        streams
    }

    /// Waits until the slow connections (slowloris, slow bodies) have sent a second byte,
    /// [`SLOW`] after the first: they are slow, not dead.
    fn wait_for_a_second_slowloris_round(&self) {
        eventually("a second round of slow bytes", WAIT, || {
            (self.rounds.load(Ordering::SeqCst) >= 2).then_some(())
        });
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The attack's thread: every [`SLOW`], one more byte on each slowloris connection; in
/// between, which connections the server closed.
fn watch(
    mut attackers: Vec<Attacker>,
    open: &[AtomicUsize; 4],
    stop: &AtomicBool,
    rounds: &AtomicUsize,
) {
    let mut next_round = Instant::now() + SLOW;
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let round = Instant::now() >= next_round;
        for a in attackers.iter_mut().filter(|a| a.open) {
            // Whatever it is sent is read and dropped; the end of it is what counts.
            loop {
                match a.stream.read(&mut buf) {
                    Ok(0) => a.open = false,
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => a.open = false,
                }
                break;
            }
            if a.open && round && matches!(a.kind, Kind::Slowloris | Kind::SlowBody) {
                let byte = match a.kind {
                    Kind::Slowloris => SLOW_HEAD.get(a.sent).copied().unwrap_or(b'a'),
                    _ => b' ',
                };
                match a.stream.write(&[byte]) {
                    Ok(_) => a.sent += 1,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => a.open = false,
                }
            }
        }
        if round {
            rounds.fetch_add(1, Ordering::SeqCst);
            next_round += SLOW;
        }
        for kind in KINDS {
            let n = attackers
                .iter()
                .filter(|a| a.open && a.kind == kind)
                .count();
            open[kind as usize].store(n, Ordering::SeqCst);
        }
        // The pace of the watch, not a wait for anything.
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- the webhooks under attack ---------------------------------------------------------------

/// Sends [`WEBHOOKS`] signed webhooks in a row, each on a connection of its own, then
/// `/healthz`: each must be answered within [`BOUND`]. Prints and returns the worst webhook
/// latency.
fn webhooks_answered_under(attack: &str, s: &Sandbox, v: &Serve) -> Duration {
    // A client of its own: a request that waits in the backlog fails after this, not WAIT.
    let client = Client {
        addr: v.client.addr,
        timeout: BOUND * 4,
    };
    // The version fails at once; each webhook asks to retry it, so that each is admitted.
    let body = s.incompatible().retry_body();
    // One time, and a signature of its own for each (t - i): never a replay.
    let t = now_secs();
    let mut worst = Duration::ZERO;
    for i in 0..WEBHOOKS {
        let signature = lockstep_header(body.as_bytes(), t - i);
        let headers = [
            ("Content-Type", "application/json"),
            ("X-Lockstep-Signature", signature.as_str()),
        ];
        let started = Instant::now();
        let r = client
            .try_request("POST", HOOK, &headers, body.as_bytes())
            .unwrap_or_else(|e| panic!("{attack}: webhook {i} not answered: {e}"));
        let took = started.elapsed();
        assert_eq!(r.status, 202, "{attack}: webhook {i}: {}", r.text());
        assert!(took <= BOUND, "{attack}: webhook {i} took {took:?}");
        worst = worst.max(took);
    }
    let started = Instant::now();
    let r = client
        .try_request("GET", "/healthz", &[], b"")
        .unwrap_or_else(|e| panic!("{attack}: /healthz not answered: {e}"));
    let healthz = started.elapsed();
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"), "{attack}");
    assert!(healthz <= BOUND, "{attack}: /healthz took {healthz:?}");
    println!(
        "{attack}: worst webhook latency {worst:?} over {WEBHOOKS} webhooks; /healthz {healthz:?}"
    );
    worst
}

#[test]
fn test_webhooks_answered_under_300_event_streams() {
    let s = sandbox(&[]);
    let v = serve(&s, &[]);
    let attack = Attack::start(v.client.addr, &[Kind::Stream]);
    // The cap holds: 32 stream, the others were refused (503) and closed.
    assert_eq!(attack.wait_in_place(MAX_EVENT_STREAMS), MAX_EVENT_STREAMS);
    webhooks_answered_under("300 event streams", &s, &v);
    assert_eq!(attack.open(Kind::Stream), MAX_EVENT_STREAMS);
}

lockstep_tests::on_both_runtimes! {
    fn test_webhooks_answered_under_300_slowloris_connections_at_64(runtime: Runtime) {
        let s = sandbox(&[]);
        let v = serve_at_64(runtime, &s);
        let attack = Attack::start(v.client.addr, &[Kind::Slowloris]);
        attack.wait_in_place(64);
        attack.wait_for_a_second_slowloris_round();
        webhooks_answered_under("300 slowloris connections", &s, &v);
    }
}

lockstep_tests::on_both_runtimes! {
    fn test_webhooks_answered_under_300_idle_connections_at_64(runtime: Runtime) {
        let s = sandbox(&[]);
        let v = serve_at_64(runtime, &s);
        let attack = Attack::start(v.client.addr, &[Kind::Idle]);
        attack.wait_in_place(64);
        webhooks_answered_under("300 idle connections", &s, &v);
    }
}

lockstep_tests::on_both_runtimes! {
    /// A whole head, then a body that never ends: such a connection has not made a request
    /// yet either (it costs its client nothing), so it is shed for a newcomer like a slow
    /// head. The webhooks come within the read time-out (10 s) of the attackers' heads, so
    /// the attack is still in place when they do.
    fn test_webhooks_answered_under_300_slow_bodies_at_64(runtime: Runtime) {
        let s = sandbox(&[]);
        let v = serve_at_64(runtime, &s);
        let attack = Attack::start(v.client.addr, &[Kind::SlowBody]);
        attack.wait_in_place(64);
        attack.wait_for_a_second_slowloris_round();
        webhooks_answered_under("300 slow bodies", &s, &v);
        let held = attack.open(Kind::SlowBody);
        assert!(
            held > 64 / 2,
            "the attack ended early: {held} held"
        );
    }
}

#[test]
fn test_webhooks_answered_under_all_three_attacks_together() {
    let s = sandbox(&[]);
    let v = serve(&s, &[]);
    let attack = Attack::start(v.client.addr, &[Kind::Stream, Kind::Slowloris, Kind::Idle]);
    // Full: the streams at their cap (or a stream request shed before it was read), the rest
    // slow or idle.
    let streams = attack.wait_in_place(MAX_CONNECTIONS);
    assert!(streams > 0, "no stream among the attackers");
    attack.wait_for_a_second_slowloris_round();
    webhooks_answered_under("all three attacks together", &s, &v);
    // Streams are never shed for a newcomer.
    assert_eq!(attack.open(Kind::Stream), streams);
}

// ---- the event streams' cap ------------------------------------------------------------------

/// Asks for the event stream on a connection of its own: the head of the answer.
fn ask_stream(addr: SocketAddr, method: &str, path: &str) -> (TcpStream, Raw) {
    let mut stream = connect(addr);
    stream
        .write_all(format!("{method} {path} HTTP/1.1\r\nHost: lockstep\r\n\r\n").as_bytes())
        .expect("write");
    let raw = read_head(&mut stream).expect("a head");
    (stream, raw)
}

/// The 503 of a stream beyond the cap: one line (its head alone for `HEAD`), `Retry-After`,
/// and the connection closed.
fn assert_streams_full(mut stream: TcpStream, raw: &Raw, head: bool, what: &str) {
    let line = b"too many event streams; retry later\n";
    assert_eq!(raw.status, 503, "{what}: {}", raw.head);
    assert_eq!(raw.header("retry-after").as_deref(), Some("5"), "{what}");
    assert_eq!(raw.header("connection").as_deref(), Some("close"), "{what}");
    let length = line.len().to_string();
    assert_eq!(raw.header("content-length"), Some(length), "{what}");
    let body = read_until_closed(&mut stream);
    assert_eq!(body, if head { &[][..] } else { line }, "{what}");
}

#[test]
fn test_event_streams_beyond_the_cap_are_503_and_a_slot_is_freed_when_its_client_goes() {
    let s = sandbox(&[]);
    let v = serve(&s, &["--max-event-streams", "2"]);
    let addr = v.client.addr;
    let first = v.client.stream("/deployments/events");
    let _second = v.client.stream("/v2/deployments/events");
    // The cap counts both prefixes, and HEAD as GET.
    for (method, path) in [
        ("GET", "/deployments/events"),
        ("GET", "/v2/deployments/events"),
        ("HEAD", "/deployments/events"),
    ] {
        let (stream, raw) = ask_stream(addr, method, path);
        assert_streams_full(stream, &raw, method == "HEAD", &format!("{method} {path}"));
    }
    // Other requests are served meanwhile.
    assert_eq!(v.client.get("/healthz").status, 200);
    // The first stream's client goes: its slot is free.
    drop(first);
    // Until the server has seen the first client go, a newcomer is still refused (503).
    let mut refused_meanwhile = 0;
    let mut third = eventually("a stream slot to be free again", WAIT, || {
        let (stream, raw) = ask_stream(addr, "GET", "/deployments/events");
        refused_meanwhile += usize::from(raw.status == 503);
        (raw.status == 200).then_some(stream)
    });
    let mut heartbeat = [0u8; 1];
    third
        .read_exact(&mut heartbeat)
        .expect("the stream goes on");
    let metrics = v.client.get("/metrics").text();
    assert!(
        metrics.contains("\nlockstep_event_streams_open 2\n"),
        "{metrics}"
    );
    let refused = 3 + refused_meanwhile;
    assert!(
        metrics.contains(&format!(
            "lockstep_requests_total{{endpoint=\"events\",status=\"503\"}} {refused}\n"
        )),
        "{metrics}"
    );
}

// ---- strict framing --------------------------------------------------------------------------

/// A signed webhook request, whole, as it would be smuggled in another request's body.
fn signed_webhook_request(s: &Sandbox) -> String {
    let body = s.compatible(0).body();
    let signature = lockstep_header(body.as_bytes(), now_secs());
    format!(
        "POST {HOOK} HTTP/1.1\r\nHost: lockstep\r\nContent-Type: application/json\r\n\
         X-Lockstep-Signature: {signature}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `request` on a connection of its own: it must be refused with 400 and the
/// connection closed, nothing of it answered as a next request.
fn bad_request_then_closed(addr: SocketAddr, request: &[u8], what: &str) {
    let mut stream = connect(addr);
    stream.write_all(request).expect("write");
    refused_then_closed(&mut stream, 400, what);
}

#[test]
fn test_smuggled_webhook_behind_two_content_lengths_is_400_and_deploys_nothing() {
    let s = sandbox(&[]);
    let v = serve(&s, &[]);
    let before = bundles(&s);
    let hidden = signed_webhook_request(&s);
    let n = hidden.len().to_string();
    // Either could be believed by the one before lockstep; even equal ones are refused.
    for (first, second) in [
        ("0", n.as_str()),
        (n.as_str(), "0"),
        (n.as_str(), n.as_str()),
    ] {
        let request = format!(
            "GET /healthz HTTP/1.1\r\nHost: lockstep\r\nContent-Length: {first}\r\n\
             Content-Length: {second}\r\n\r\n{hidden}"
        );
        bad_request_then_closed(
            v.client.addr,
            request.as_bytes(),
            &format!("Content-Length {first} then {second}"),
        );
    }
    // Transfer-Encoding beside Content-Length: the same ambiguity.
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: lockstep\r\nContent-Length: 0\r\n\
         Transfer-Encoding: chunked\r\n\r\n{hidden}"
    );
    bad_request_then_closed(v.client.addr, request.as_bytes(), "Transfer-Encoding too");
    assert_unchanged(&s, &v, &before, "smuggling");
}

#[test]
fn test_content_length_that_is_not_plain_digits_is_400() {
    let s = sandbox(&[]);
    let v = serve(&s, &[]);
    let before = bundles(&s);
    let body = s.compatible(0).body();
    let signature = lockstep_header(body.as_bytes(), now_secs());
    let webhook = |length: &str| {
        format!(
            "POST {HOOK} HTTP/1.1\r\nHost: lockstep\r\nContent-Type: application/json\r\n\
             X-Lockstep-Signature: {signature}\r\nContent-Length:{length}\r\n\r\n{body}"
        )
    };
    let n = body.len();
    for length in [
        format!(" +{n}"),
        " -1".to_owned(),
        format!(" {n} {n}"),
        format!(" 0x{n:x}"),
        format!(" {n},{n}"),
        String::new(),
    ] {
        bad_request_then_closed(
            v.client.addr,
            webhook(&length).as_bytes(),
            &format!("Content-Length:{length}"),
        );
    }
    assert_unchanged(&s, &v, &before, "bad Content-Length");
    // Whitespace around the value is the field syntax's, not part of it.
    let mut stream = connect(v.client.addr);
    stream
        .write_all(webhook(&format!(" \t{n}\t ")).as_bytes())
        .expect("write");
    let raw = read_response(&mut stream).expect("an answer");
    accepted(&v, &raw.response(), "/deployments");
}

#[test]
fn test_leading_garbage_is_400_and_leading_empty_lines_are_skipped() {
    let s = sandbox(&[]);
    let v = serve(&s, &[]);
    let healthz = "GET /healthz HTTP/1.1\r\nHost: lockstep\r\n\r\n";
    for garbage in ["x\r\n", " ", "\r\r\n", "\u{16}\u{3}\u{1}", "}\r\n"] {
        bad_request_then_closed(
            v.client.addr,
            format!("{garbage}{healthz}").as_bytes(),
            &format!("{garbage:?} before the request line"),
        );
    }
    // RFC 9112 §2.2: empty lines before a request line are ignored.
    let mut stream = connect(v.client.addr);
    stream
        .write_all(format!("\r\n\n\r\n{healthz}").as_bytes())
        .expect("write");
    let raw = read_response(&mut stream).expect("an answer");
    assert_eq!((raw.status, raw.body.as_slice()), (200, &b"ok\n"[..]));
}
