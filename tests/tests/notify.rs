//! Outcome notifications (`lockstep serve --notify URL`, docs/PROTOCOL.md §11) end to end:
//! receivers run in this process, on loopback ports the OS chooses, and answer as each test
//! scripts them; signatures are checked with python3's `hmac`, independently of lockstep's
//! code. Each test starts its own processes.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lockstep_tests::stack::{
    HOOK, SECRET, Serve, Version, WAIT, accepted, bundle_of, bundles, ended, failure, listing,
    lockstep_header, now_secs, post_signed, python_hmac, run_to_exit, sandbox, serve, serve_on,
    the_running_bundle,
};
use lockstep_tests::tls::{HttpsServer, Rules, TestCa};
use lockstep_tests::{TempDir, eventually, prometheus};
use serde_json::Value;

// ---- a receiver ------------------------------------------------------------------------------

/// What a receiver does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// Answer with this status (and close).
    Status(u16),
    /// Answer nothing, and keep the connection open until [`Receiver::release`].
    Hold,
}

/// A request a receiver read, and what it answered (so far).
#[derive(Clone, Debug)]
struct Received {
    /// The request line's target.
    target: String,
    /// The headers, names in lower case.
    headers: HashMap<String, String>,
    body: Vec<u8>,
    answer: Answer,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header: {self:#?}"))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn delivered(&self) -> bool {
        matches!(self.answer, Answer::Status(200..=299))
    }
}

/// How a receiver answers: given the request and how many requests of its deployment it has
/// read (this one included).
type Policy = Box<dyn FnMut(&Received, usize) -> Answer + Send>;

struct Shared {
    received: Vec<Received>,
    /// The connections held unanswered, with the index of their request.
    held: Vec<(usize, TcpStream)>,
    policy: Policy,
}

/// An HTTP server that takes notifications: one request per connection, answered as its
/// policy says.
struct Receiver {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start(policy: impl FnMut(&Received, usize) -> Answer + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a receiver");
        let addr = listener.local_addr().expect("its address");
        let shared = Arc::new(Mutex::new(Shared {
            received: Vec::new(),
            held: Vec::new(),
            policy: Box::new(policy),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (accepting, stopping) = (shared.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let shared = accepting.clone();
                std::thread::spawn(move || serve_one(conn, &shared));
            }
        });
        Self { addr, shared, stop }
    }

    fn url(&self, target: &str) -> String {
        format!("http://{}{target}", self.addr)
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.shared.lock().unwrap().received.clone()
    }

    fn held(&self) -> usize {
        self.shared.lock().unwrap().held.len()
    }

    /// Answers every request from now on with `status`.
    fn answer_with(&self, status: u16) {
        self.shared.lock().unwrap().policy = Box::new(move |_, _| Answer::Status(status));
    }

    /// Answers every held connection with `status`, and every request from now on.
    fn release(&self, status: u16) {
        self.answer_with(status);
        let mut shared = self.shared.lock().unwrap();
        for (index, mut conn) in std::mem::take(&mut shared.held) {
            answer(&mut conn, status);
            shared.received[index].answer = Answer::Status(status);
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accepting thread, which sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads one request from `conn` and answers it as the policy says.
fn serve_one(mut conn: TcpStream, shared: &Mutex<Shared>) {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    let (head, body_at, length) = loop {
        let Ok(n) = conn.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&buf[..n]);
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(request[..end].to_vec()).expect("an ASCII head");
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().expect("a length"))
                })
                .unwrap_or(0);
            break (head, end + 4, length);
        }
    };
    while request.len() < body_at + length {
        let Ok(n) = conn.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let mut lines = head.lines();
    let request_line = lines.next().expect("a request line");
    assert!(request_line.starts_with("POST "), "{request_line}");
    let target = request_line.split(' ').nth(1).expect("a target").to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut received = Received {
        target,
        headers,
        body: request[body_at..body_at + length].to_vec(),
        answer: Answer::Hold,
    };
    let deployment = received.json()["deploymentId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut shared = shared.lock().unwrap();
    let attempts = 1 + shared
        .received
        .iter()
        .filter(|r| r.json()["deploymentId"] == deployment.as_str())
        .count();
    received.answer = (shared.policy)(&received, attempts);
    shared.received.push(received.clone());
    match received.answer {
        Answer::Status(status) => answer(&mut conn, status),
        Answer::Hold => {
            let index = shared.received.len() - 1;
            shared.held.push((index, conn));
        }
    }
}

fn answer(conn: &mut TcpStream, status: u16) {
    let _ = conn.write_all(
        format!("HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
}

// ---- the service -----------------------------------------------------------------------------

/// Deploys `version` with a webhook body of its own that asks to retry it (so that the same
/// version, the incompatible one that fails at once included, can be deployed again once it
/// ended); answers the deployment's id once it ended.
fn deploy(v: &Serve, version: &Version) -> String {
    static SENT: AtomicU64 = AtomicU64::new(0);
    let n = SENT.fetch_add(1, Ordering::Relaxed);
    let body = format!(
        r#"{{"package":"{}","version":"{}","released":"{n}","retry":true}}"#,
        version.name,
        version.full()
    );
    let id = accepted(
        v,
        &post_signed(v, HOOK, body.as_bytes(), now_secs()),
        "/deployments",
    );
    ended(v, &id);
    id
}

/// A sample of `/metrics` (0 when the series is not there yet).
fn metric(v: &Serve, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = v.client.get("/metrics").text();
    prometheus::parse(&text)
        .expect("the exposition parses")
        .value(name, labels)
        .unwrap_or(0.0)
}

fn notifications(v: &Serve, outcome: &str) -> f64 {
    metric(v, "lockstep_notifications_total", &[("outcome", outcome)])
}

/// Waits until nothing is left to deliver and `outcome` counts `n`.
fn settled(v: &Serve, outcome: &str, n: f64) {
    eventually(&format!("{n} notification(s) {outcome}"), WAIT, || {
        let done = notifications(v, outcome) == n
            && metric(v, "lockstep_notifications_queued", &[]) == 0.0;
        done.then_some(())
    });
}

/// The service's log lines about notifications to `origin`, once there are `n` of them (its
/// stderr is read by a thread of the test's: a line written may not be there at once).
fn logged(v: &Serve, origin: &str, n: usize) -> Vec<String> {
    let receiver = format!("receiver={origin}");
    let lines = eventually(
        &format!("{n} notification line(s) for {origin}"),
        WAIT,
        || {
            let lines: Vec<String> = v
                .process
                .stderr()
                .lines()
                .filter(|l| l.contains(" notification ") && l.contains(&receiver))
                .map(str::to_owned)
                .collect();
            (lines.len() >= n).then_some(lines)
        },
    );
    assert_eq!(lines.len(), n, "{lines:#?}");
    lines
}

/// The deployment as `GET /deployments` lists it.
fn listed(v: &Serve, id: &str) -> Value {
    listing(v, "/deployments")
        .into_iter()
        .find(|d| d["deploymentId"] == id)
        .unwrap_or_else(|| panic!("{id} is not listed"))
}

/// A bundle id's short form: 7 characters of each part.
fn short(id: &str) -> String {
    id.split('-')
        .map(|part| &part[..7])
        .collect::<Vec<_>>()
        .join("-")
}

/// The request carries `X-Lockstep-Signature: t=<now>,v1=<HMAC-SHA256(secret, "<t>." + body)>`,
/// as python3's `hmac` computes it, and as lockstep's own signer does.
fn assert_signed(r: &Received) {
    let header = r.header("x-lockstep-signature");
    let (t, v1) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .unwrap_or_else(|| panic!("not t=...,v1=...: {header}"));
    let t: u64 = t.parse().expect("t, in seconds");
    assert!(t.abs_diff(now_secs()) < 300, "{header}");
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(&r.body);
    assert_eq!(v1, python_hmac(SECRET, &message, "hex"), "{header}");
    assert_eq!(header, lockstep_header(&r.body, t));
}

/// The notification's fields that `GET /deployments` lists are the listing's, and the
/// duration is the listing's `endedAt - startedAt`.
fn assert_is_the_listing(summary: &Value, listed: &Value) {
    for (field, value) in listed.as_object().expect("an object") {
        assert_eq!(&summary[field], value, "{field}: {summary:#}");
    }
    let took = listed["endedAt"].as_u64().unwrap() - listed["startedAt"].as_u64().unwrap();
    assert_eq!(summary["durationMs"], took, "{summary:#}");
    assert_eq!(summary["org"], "typesafe");
    assert_eq!(summary["repo"], "bundle");
}

// ---- the tests -------------------------------------------------------------------------------

#[test]
fn test_a_receiver_that_fails_twice_then_accepts_gets_one_delivery_per_deployment() {
    let s = sandbox(&[]);
    // 500 to the first two attempts of each deployment's notification, then 200.
    let receiver =
        Receiver::start(|_, attempts| Answer::Status(if attempts <= 2 { 500 } else { 200 }));
    let url = receiver.url("/hooks/token-8c1f2a?channel=ops");
    let mut v = serve(
        &s,
        &[
            "--notify",
            &url,
            "--notify-retry",
            "50ms",
            "--notify-timeout",
            "5s",
        ],
    );
    // The receiver's path and query are a credential: never printed.
    v.process.guard_secret("token-8c1f2a");
    v.process.guard_secret("channel=ops");
    let old = the_running_bundle(&s);
    let (first, second) = (s.compatible(0), s.compatible(1));
    let one = deploy(&v, &first);
    let two = deploy(&v, &second);
    settled(&v, "delivered", 2.0);
    assert_eq!(notifications(&v, "failed"), 0.0);
    assert_eq!(notifications(&v, "dropped"), 0.0);

    let received = receiver.received();
    for r in &received {
        assert_eq!(r.target, "/hooks/token-8c1f2a?channel=ops");
        assert_eq!(r.header("content-type"), "application/json");
        assert!(r.header("user-agent").starts_with("lockstep/"), "{r:?}");
        assert_signed(r);
    }
    // Three attempts each, in the order the deployments ended, the same body each time.
    let answers: Vec<(String, Answer)> = received
        .iter()
        .map(|r| {
            (
                r.json()["deploymentId"].as_str().unwrap().to_owned(),
                r.answer,
            )
        })
        .collect();
    let expected: Vec<(String, Answer)> = [&one, &two]
        .iter()
        .flat_map(|id| [500, 500, 200].map(|status| ((*id).clone(), Answer::Status(status))))
        .collect();
    assert_eq!(answers, expected);
    assert_eq!(received[0].body, received[2].body);

    let delivered: Vec<Value> = received
        .iter()
        .filter(|r| r.delivered())
        .map(Received::json)
        .collect();
    let first_new = bundle_of(&s, &first.digest);
    let second_new = bundle_of(&s, &second.digest);
    for (summary, id, old_id, new_id) in [
        (&delivered[0], &one, &old.id, &first_new.id),
        (&delivered[1], &two, &first_new.id, &second_new.id),
    ] {
        assert_is_the_listing(summary, &listed(&v, id));
        assert_eq!(summary["state"], "succeeded");
        assert_eq!(summary["outcome"], "succeeded");
        assert_eq!(summary["compatibilityVersion"], "1");
        assert!(summary.get("failure").is_none(), "{summary:#}");
        assert_eq!(
            summary["bundleOld"],
            serde_json::json!({"bundleId": old_id, "scale": 0})
        );
        assert_eq!(
            summary["bundleNew"],
            serde_json::json!({"bundleId": new_id, "scale": 3})
        );
    }
    // One line per attempt, naming the receiver by its origin.
    let lines = logged(&v, &receiver.origin(), 6);
    assert!(lines[0].contains("attempt=1") && lines[0].contains("status=500"));
    assert!(lines[0].contains("outcome=retrying") && lines[0].contains("retry_in_ms=50"));
    assert!(lines[1].contains("attempt=2") && lines[1].contains("retry_in_ms=100"));
    assert!(lines[2].contains("attempt=3") && lines[2].contains("outcome=delivered"));
}

#[test]
fn test_a_rollback_and_a_failure_are_notified_with_where_the_bundles_were_left() {
    let s = sandbox(&[]);
    let receiver = Receiver::start(|_, _| Answer::Status(204));
    let v = serve(
        &s,
        &["--notify", &receiver.url("/"), "--step-deadline", "1s"],
    );
    let old = the_running_bundle(&s);
    // Its instances never start: the first step's deadline passes, and it is rolled back.
    let new = s.compatible(0);
    s.never_start(&new);
    let rolled_back = deploy(&v, &new);
    let incompatible = deploy(&v, &s.incompatible());
    settled(&v, "delivered", 2.0);

    let received = receiver.received();
    assert_eq!(received.len(), 2, "{received:#?}");
    let summary = received[0].json();
    assert_eq!(summary["deploymentId"], rolled_back.as_str());
    assert_is_the_listing(&summary, &listed(&v, &rolled_back));
    assert_eq!(summary["state"], "failed");
    assert_eq!(summary["outcome"], "rolledBack");
    assert_eq!(
        summary["failure"],
        "scaling the new bundle to 1: the deadline passed; rolled back: the old bundle runs at \
         3 again"
    );
    assert_eq!(
        summary["failure"],
        failure(&ended(&v, &rolled_back)).as_str()
    );
    let new_id = bundle_of(&s, &new.digest).id;
    assert_eq!(
        summary["bundleOld"],
        serde_json::json!({"bundleId": old.id, "scale": 3})
    );
    assert_eq!(
        summary["bundleNew"],
        serde_json::json!({"bundleId": new_id, "scale": 0})
    );
    assert_eq!(bundles(&s).iter().map(|b| b.started).sum::<usize>(), 3);

    // Nothing was touched: no bundle to tell of.
    let summary = received[1].json();
    assert_eq!(summary["deploymentId"], incompatible.as_str());
    assert_is_the_listing(&summary, &listed(&v, &incompatible));
    assert_eq!(summary["outcome"], "failed");
    assert_eq!(summary["compatibilityVersion"], "2");
    assert_eq!(
        summary["failure"],
        "no running bundle with compatibilityVersion 2 (a bundle with compatibilityVersion 1 \
         runs)"
    );
    assert!(summary.get("bundleOld").is_none() && summary.get("bundleNew").is_none());
}

#[test]
fn test_slack_format_is_one_line_of_text() {
    let s = sandbox(&[]);
    let receiver = Receiver::start(|_, _| Answer::Status(200));
    let v = serve(
        &s,
        &[
            "--notify",
            &receiver.url("/services/T0/B0/x"),
            "--notify-format",
            "slack",
        ],
    );
    let old = the_running_bundle(&s);
    let new = s.compatible(0);
    let id = deploy(&v, &new);
    settled(&v, "delivered", 1.0);

    let received = receiver.received();
    assert_eq!(received.len(), 1, "{received:#?}");
    assert_signed(&received[0]);
    assert_eq!(received[0].header("content-type"), "application/json");
    let body = received[0].json();
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    let listed = listed(&v, &id);
    let ms = listed["endedAt"].as_u64().unwrap() - listed["startedAt"].as_u64().unwrap();
    let new_id = bundle_of(&s, &new.digest).id;
    assert_eq!(
        body["text"],
        format!(
            "lockstep: visualizer {}-{} succeeded in {}.{} s (compatibilityVersion 1). New \
             bundle {} at 3, old bundle {} at 0. Deployment {id}.",
            new.tag,
            &new.digest[..7],
            ms / 1000,
            ms % 1000 / 100,
            short(&new_id),
            short(&old.id),
        )
    );
}

/// A receiver that takes the connection and never answers: each deployment still ends, and
/// each webhook is answered, while the notifications wait; past 64 waiting, the oldest is
/// dropped. Answered at last, the receiver gets every one that was not dropped, in order.
#[test]
fn test_a_receiver_that_never_answers_delays_nothing_and_its_queue_drops_the_oldest() {
    let s = sandbox(&[]);
    let receiver = Receiver::start(|_, _| Answer::Hold);
    let v = serve(
        &s,
        &["--notify", &receiver.url("/"), "--notify-timeout", "2m"],
    );
    let version = s.incompatible();
    let first = deploy(&v, &version);
    eventually("the first notification to be held", WAIT, || {
        (receiver.held() == 1).then_some(())
    });
    // The first is being delivered, unanswered; 64 more fill the queue.
    let mut ids = vec![first];
    for _ in 0..64 {
        ids.push(deploy(&v, &version));
    }
    assert_eq!(metric(&v, "lockstep_notifications_queued", &[]), 65.0);
    assert_eq!(notifications(&v, "dropped"), 0.0);
    // One more: the oldest waiting (the second deployment's) is dropped.
    ids.push(deploy(&v, &version));
    assert_eq!(metric(&v, "lockstep_notifications_queued", &[]), 65.0);
    assert_eq!(notifications(&v, "dropped"), 1.0);
    let dropped = logged(&v, &receiver.origin(), 1);
    assert!(
        dropped[0].contains(&format!("deployment={}", ids[1]))
            && dropped[0].contains("outcome=dropped")
            && dropped[0].contains("waiting=64"),
        "{}",
        dropped[0]
    );
    assert_eq!(receiver.held(), 1);

    receiver.release(200);
    settled(&v, "delivered", 65.0);
    let got: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.json()["deploymentId"].as_str().unwrap().to_owned())
        .collect();
    let mut expected = ids.clone();
    expected.remove(1);
    assert_eq!(got, expected);
}

#[test]
fn test_a_refused_connection_is_retried_then_given_up_and_a_4xx_given_up_at_once() {
    let s = sandbox(&[]);
    let gone = TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = format!("http://{}", gone.local_addr().unwrap());
    drop(gone);
    let not_found = Receiver::start(|_, _| Answer::Status(404));
    let v = serve(
        &s,
        &[
            "--notify",
            &refused,
            "--notify",
            &not_found.url("/gone"),
            "--notify-retry",
            "20ms",
        ],
    );
    let id = deploy(&v, &s.compatible(0));
    settled(&v, "failed", 2.0);
    assert_eq!(notifications(&v, "delivered"), 0.0);
    assert_eq!(not_found.received().len(), 1);
    let attempts = logged(&v, &refused, 8);
    for (i, line) in attempts.iter().enumerate() {
        assert!(line.contains(&format!("deployment={id}")), "{line}");
        assert!(
            line.contains(&format!("attempt={} attempts=8", i + 1)),
            "{line}"
        );
        if i < 7 {
            let pause = 20 << i;
            assert!(line.contains(&format!("retry_in_ms={pause} ")), "{line}");
            assert!(line.contains("outcome=retrying"), "{line}");
        } else {
            assert!(line.contains("outcome=gave_up"), "{line}");
        }
    }
    let given_up = logged(&v, &not_found.origin(), 1);
    assert!(
        given_up[0].contains("status=404") && given_up[0].contains("outcome=gave_up"),
        "{}",
        given_up[0]
    );
}

/// Notifications are in memory: one still pending at SIGTERM is abandoned (and logged), and
/// a deployment read back from the journal at the next start is never notified again.
#[test]
fn test_a_restart_abandons_what_is_pending_and_never_notifies_a_restored_deployment() {
    let s = sandbox(&[]);
    let receiver = Receiver::start(|_, _| Answer::Hold);
    let flags = ["--notify", &receiver.url("/"), "--notify-timeout", "2m"];
    let v = serve(&s, &flags);
    let first = deploy(&v, &s.incompatible());
    eventually("the notification to be held", WAIT, || {
        (receiver.held() == 1).then_some(())
    });
    let Serve {
        mut process, dir, ..
    } = v;
    process.stop("TERM", WAIT);
    let stderr = process.stderr();
    assert!(
        stderr.contains("1 outcome notification(s) not delivered are abandoned"),
        "{stderr}"
    );
    drop(process);

    receiver.answer_with(200);
    let v = serve_on(&s, dir, &flags, &[("BINTRAY_WEBHOOK_SECRET", SECRET)]);
    assert_eq!(listed(&v, &first)["state"], "failed");
    let second = deploy(&v, &s.incompatible());
    settled(&v, "delivered", 1.0);
    // The first's attempt, never answered; then the second's alone.
    let got: Vec<(String, Answer)> = receiver
        .received()
        .iter()
        .map(|r| {
            (
                r.json()["deploymentId"].as_str().unwrap().to_owned(),
                r.answer,
            )
        })
        .collect();
    assert_eq!(got, [(first, Answer::Hold), (second, Answer::Status(200))]);
}

/// An `https://` receiver is trusted through `--ca-file`, as the repository is; without it,
/// the refused certificate gives the notification up at once (trying again cannot change a
/// certificate).
#[test]
fn test_an_https_receiver_is_trusted_through_ca_file() {
    let s = sandbox(&[]);
    let dir = TempDir::new("lockstep-notify-pki");
    let ca = TestCa::new(dir.path());
    let receiver = Receiver::start(|_, _| Answer::Status(200));
    let proxy = HttpsServer::start(
        &ca.issue(&["127.0.0.1", "localhost"], false),
        Rules {
            upstream: receiver.origin(),
            ..Rules::default()
        },
    );
    let url = format!("https://localhost:{}/hooks/lockstep", proxy.port());
    let pem = ca.pem_path().display().to_string();
    let v = serve(&s, &["--notify", &url, "--ca-file", &pem]);
    let id = deploy(&v, &s.incompatible());
    settled(&v, "delivered", 1.0);
    let received = receiver.received();
    assert_eq!(received.len(), 1, "{received:#?}");
    assert_eq!(received[0].target, "/hooks/lockstep");
    assert_eq!(received[0].json()["deploymentId"], id.as_str());
    assert_signed(&received[0]);

    let untrusting = serve(&s, &["--notify", &url, "--notify-retry", "20ms"]);
    deploy(&untrusting, &s.incompatible());
    settled(&untrusting, "failed", 1.0);
    assert_eq!(receiver.received().len(), 1);
    assert!(proxy.handshakes_failed() >= 1);
    let attempts = logged(
        &untrusting,
        &format!("https://localhost:{}", proxy.port()),
        1,
    );
    assert!(
        attempts[0].contains("attempt=1 attempts=8") && attempts[0].contains("outcome=gave_up"),
        "{}",
        attempts[0]
    );
}

#[test]
fn test_a_bad_notify_url_refuses_to_start() {
    for (args, message) in [
        (
            ["serve", "--notify", "ftp://hooks.example/secret-path"],
            "lockstep serve: --notify: a URL must start with http:// or https://\n",
        ),
        (
            ["serve", "--notify", "http://hooks.example/a b"],
            "lockstep serve: --notify: a URL's path and query may hold only visible ASCII \
             characters (percent-encode the others), and no fragment\n",
        ),
        (
            ["serve", "--notify-format", "xml"],
            "lockstep serve: --notify-format: `xml` is not json or slack\n",
        ),
    ] {
        let (code, stderr) = run_to_exit(&args, &[]);
        assert_eq!((code, stderr.as_str()), (Some(2), message), "{args:?}");
    }
}
