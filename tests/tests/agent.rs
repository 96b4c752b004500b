//! The agent against a running `lockstep sandbox` over loopback: core's agent and deployer, on
//! the std platform, in this test process; the cluster and the repository in the sandbox's.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use lockstep::deployments::{Deployments, Options, RepositoryOption};
use lockstep::url::BaseUrl;
use lockstep_core::agent;
use lockstep_core::bundle::{BundleId, Digest};
use lockstep_core::deployer::{
    Admitted, DeploymentId, Event, EventKind, Name, Policy, Request, Rollback, Tags,
};
use lockstep_core::service::{Asks, NotAdmitted};
use lockstep_core::time::Duration as CoreDuration;
use lockstep_tests::stack::{self, LOCK_STEP_3, Sandbox};
use lockstep_tests::{TempDir, prometheus};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// A sandbox with the demo and quick instances.
fn sandbox() -> Sandbox {
    stack::sandbox(&[])
}

/// `(tag, digest)` of the first compatible demo version.
fn compatible(s: &Sandbox) -> (String, String) {
    let v = s.compatible(0);
    (v.tag, v.digest)
}

/// `GET /v2/bundles`, as JSON.
fn bundles(s: &Sandbox) -> Vec<Value> {
    s.client
        .get("/v2/bundles")
        .json()
        .as_array()
        .unwrap()
        .clone()
}

/// How many control API requests the sandbox counted.
fn request_count(s: &Sandbox) -> u64 {
    s.client.get("/sandbox/faults").json()["requestCount"]
        .as_u64()
        .unwrap()
}

/// The request rules in force, as the sandbox shows them (`times`: how many are left).
fn request_faults(s: &Sandbox) -> Vec<Value> {
    s.client.get("/sandbox/faults").json()["requests"]
        .as_array()
        .unwrap()
        .clone()
}

/// What a notification is answered.
type Admission = Result<Admitted, NotAdmitted>;

/// lockstep's deployments on a thread of their own: notifications in, events and the metrics
/// exposition out.
struct Lockstep {
    notify: mpsc::Sender<(Request, mpsc::Sender<Admission>)>,
    events: mpsc::Receiver<Event>,
    metrics: mpsc::Sender<mpsc::Sender<String>>,
    _data: TempDir,
}

fn options(sandbox: &Sandbox, data: &Path, config: agent::Config) -> Options {
    Options {
        conductr: BaseUrl::parse(&sandbox.url()).expect("the sandbox's URL"),
        repository: RepositoryOption::Http(
            BaseUrl::parse(&format!("{}/repository", sandbox.url())).expect("its repository"),
        ),
        data_dir: data.to_path_buf(),
        workers: 2,
        policy: Policy {
            step_deadline: CoreDuration::from_secs(10),
            ..Policy::default()
        },
        agent: config,
        retention: 100,
        member: None,
        trust: lockstep::tls::Trust::system(),
        repository_credentials: None,
        notify: None,
    }
}

fn quick() -> agent::Config {
    agent::Config {
        io_timeout: CoreDuration::from_millis(500),
        poll_interval: CoreDuration::from_millis(100),
        backoff: CoreDuration::from_millis(20),
        ..agent::Config::default()
    }
}

fn lockstep(sandbox: &Sandbox, config: agent::Config) -> Lockstep {
    // Its log lines show with a failing test's output only.
    lockstep::log::capture_for_tests();
    let data = TempDir::new("lockstep-agent-data");
    let options = options(sandbox, data.path(), config);
    let (notify, notifications) = mpsc::channel::<(Request, mpsc::Sender<Admission>)>();
    let (events_tx, events) = mpsc::channel();
    let (metrics, metrics_requests) = mpsc::channel::<mpsc::Sender<String>>();
    std::thread::spawn(move || {
        let executor = std::rc::Rc::new(async_executor::LocalExecutor::new());
        let (deployments, _) = Deployments::start(&executor, &options).expect("start");
        let subscription = deployments.subscribe();
        futures_lite::future::block_on(executor.run(async {
            loop {
                // Hand over events; take notifications (polled: they come from another
                // thread, this executor has no waker for them).
                while let Ok(event) = subscription.try_recv() {
                    if events_tx.send(event).is_err() {
                        return;
                    }
                }
                while let Ok((request, answer)) = notifications.try_recv() {
                    let _ = answer.send(deployments.notify(request, Asks::default()));
                }
                while let Ok(answer) = metrics_requests.try_recv() {
                    // No replay cache or connections here: those are the HTTP front's.
                    let text = deployments.metrics().borrow().render(
                        deployments.in_flight(),
                        0,
                        0,
                        lockstep::http::Load::default(),
                    );
                    let _ = answer.send(text);
                }
                futures_lite::future::or(
                    async {
                        if let Ok(event) = subscription.recv().await {
                            let _ = events_tx.send(event);
                        }
                    },
                    async {
                        async_io::Timer::after(Duration::from_millis(5)).await;
                    },
                )
                .await;
            }
        }));
    });
    Lockstep {
        notify,
        events,
        metrics,
        _data: data,
    }
}

fn request(id: u8, tag: &str, digest: &str) -> Request {
    Request {
        id: DeploymentId::random_v4([id; 16]),
        org: Name::new("typesafe").unwrap(),
        repo: Name::new("bundle").unwrap(),
        package: Name::new("visualizer").unwrap(),
        tag: Name::new(tag).unwrap(),
        digest: Digest::parse(digest).unwrap(),
        tags: Tags::NONE,
        at: lockstep_core::time::UnixTime::from_secs(1_700_000_000),
        allow_downgrade: false,
    }
}

impl Lockstep {
    fn notify(&self, request: Request) -> Admission {
        let (tx, rx) = mpsc::channel();
        self.notify.send((request, tx)).unwrap();
        rx.recv_timeout(WAIT).unwrap()
    }

    /// How many requests of `command` were tried again, by the metrics exposition (read with
    /// the strict parser).
    fn retries(&self, command: &str) -> f64 {
        let (tx, rx) = mpsc::channel();
        self.metrics.send(tx).unwrap();
        let text = rx.recv_timeout(WAIT).unwrap();
        let m = prometheus::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(m.family("lockstep_retries_total").is_some(), "{text}");
        m.value("lockstep_retries_total", &[("command", command)])
            .unwrap_or(0.0)
    }

    /// The events of `id` until it ends.
    fn until_end(&self, id: DeploymentId) -> Vec<Event> {
        let deadline = std::time::Instant::now() + WAIT;
        let mut events = vec![];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let event = self
                .events
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no end within {WAIT:?}; events: {events:?}"));
            if event.deployment != id {
                continue;
            }
            let end = matches!(
                event.kind,
                EventKind::DeploymentSuccess | EventKind::DeploymentFailure(_)
            );
            events.push(event);
            if end {
                return events;
            }
        }
    }
}

fn event_types(events: &[Event]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e.kind.event_type().as_str())
        .collect()
}

fn deploys(events: &[Event]) -> Vec<(u32, u32)> {
    events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Deploy { old, new } => Some((old, new)),
            _ => None,
        })
        .collect()
}

#[test]
fn test_agent_deploys_scale_3_with_the_configuration() {
    let s = sandbox();
    let old = bundles(&s)[0].clone();
    let old_id = BundleId::parse(old["bundleId"].as_str().unwrap()).unwrap();
    let l = lockstep(&s, quick());
    let (tag, digest) = compatible(&s);
    let r = request(1, &tag, &digest);
    assert_eq!(
        l.notify(r),
        Ok(Admitted {
            id: r.id,
            redelivery: false
        })
    );
    let events = l.until_end(r.id);
    assert_eq!(
        event_types(&events),
        stack::event_types_at_scale_3(),
        "{events:?}"
    );
    assert_eq!(deploys(&events), LOCK_STEP_3);
    // The new bundle carries the old one's configuration: its id ends with the same part.
    let bundles = bundles(&s);
    let new = bundles
        .iter()
        .find(|b| b["bundleDigest"] == digest.as_str())
        .expect("the new bundle is loaded");
    let new_id = new["bundleId"].as_str().unwrap();
    let old_text = old_id.to_string();
    assert_eq!(new_id.split('-').nth(1), old_text.split('-').nth(1));
    assert_eq!(new["bundleScale"]["scale"], 3);
    // The old bundle is still loaded, stopped.
    let old_now = bundles
        .iter()
        .find(|b| b["bundleId"] == old_text.as_str())
        .expect("the old bundle is still loaded");
    assert_eq!(old_now["bundleScale"]["scale"], 0);
    assert_eq!(old_now["bundleExecutions"], serde_json::json!([]));
}

#[test]
fn test_agent_refuses_a_digest_mismatch() {
    let s = sandbox();
    let (tag, digest) = compatible(&s);
    // A file published under a digest that is not its own.
    let wrong = "0".repeat(64);
    let base = s
        .dir
        .path()
        .join("repository/typesafe/bundle/typesafe/visualizer");
    let from = base.join(format!("{tag}-{digest}/visualizer-{tag}-{digest}.zip"));
    let to_dir = base.join(format!("{tag}-{wrong}"));
    std::fs::create_dir_all(&to_dir).unwrap();
    std::fs::copy(&from, to_dir.join(format!("visualizer-{tag}-{wrong}.zip"))).unwrap();
    let l = lockstep(&s, quick());
    let r = request(2, &tag, &wrong);
    l.notify(r).unwrap();
    let events = l.until_end(r.id);
    let EventKind::DeploymentFailure(failure) = events.last().unwrap().kind else {
        panic!("{events:?}");
    };
    assert_eq!(failure.rollback, Rollback::NotNeeded);
    assert!(
        failure
            .to_string()
            .contains("does not match the notified digest"),
        "{failure}"
    );
    assert_eq!(bundles(&s).len(), 1, "nothing loaded");
}

#[test]
fn test_agent_refuses_an_oversized_bundle() {
    let s = sandbox();
    let (tag, digest) = compatible(&s);
    let l = lockstep(
        &s,
        agent::Config {
            max_bundle_size: 1000,
            ..quick()
        },
    );
    let r = request(3, &tag, &digest);
    l.notify(r).unwrap();
    let events = l.until_end(r.id);
    let EventKind::DeploymentFailure(failure) = events.last().unwrap().kind else {
        panic!("{events:?}");
    };
    assert!(
        failure.to_string().contains("over the download size limit"),
        "{failure}"
    );
    assert_eq!(bundles(&s).len(), 1, "nothing loaded");
}

// The repository's download is retried like any idempotent request: a 500, then a hang (ended
// by quick()'s 500 ms io-timeout), then the bundle.
#[test]
fn test_agent_retries_the_download() {
    let s = sandbox();
    let l = lockstep(&s, quick());
    let zip = s.compatible(0).zip_path();
    s.add_faults(&format!(
        r#"{{"requests": [{{"path": "{zip}", "status": 500, "times": 1}},
                         {{"path": "{zip}", "hang": true, "times": 1}}]}}"#
    ));
    let (tag, digest) = compatible(&s);
    let r = request(4, &tag, &digest);
    l.notify(r).unwrap();
    let events = l.until_end(r.id);
    assert_eq!(
        event_types(&events),
        stack::event_types_at_scale_3(),
        "{events:?}"
    );
    let left: Vec<Value> = request_faults(&s)
        .into_iter()
        .map(|r| r["times"].clone())
        .collect();
    assert_eq!(left, [0, 0], "both faults were met");
    // Told before the reply that let the deployment go on: counted by now.
    assert_eq!(l.retries("resolve"), 2.0);
}

// No such version: the repository's 404 fails the deployment after one request.
#[test]
fn test_agent_does_not_retry_a_404_from_the_repository() {
    let s = sandbox();
    let l = lockstep(&s, quick());
    // Counts the repository's requests: each spends one of the rule's times, delayed by nothing.
    let (tag, _) = compatible(&s);
    let zip = format!("/repository/typesafe/bundle/typesafe/visualizer/{tag}-");
    s.add_faults(&format!(
        r#"{{"requests": [{{"path": "{zip}", "delayMs": 0, "times": 100}}]}}"#
    ));
    let r = request(5, &tag, &"1".repeat(64));
    l.notify(r).unwrap();
    let events = l.until_end(r.id);
    let EventKind::DeploymentFailure(failure) = events.last().unwrap().kind else {
        panic!("{events:?}");
    };
    assert!(
        failure
            .to_string()
            .contains("no such version in the repository"),
        "{failure}"
    );
    assert_eq!(
        request_faults(&s)[0]["times"],
        99,
        "one request to the repository"
    );
    assert_eq!(l.retries("resolve"), 0.0);
}

/// Started instances of every bundle over the history entries after `from`: the bound holds
/// whenever the new bundle exists.
fn check_bounds(history: &[Value], from: usize, n: u64) {
    let mut started: std::collections::HashMap<String, u64> = Default::default();
    for (i, entry) in history.iter().enumerate() {
        started.insert(
            entry["bundleId"].as_str().unwrap().to_owned(),
            entry["started"].as_u64().unwrap(),
        );
        if i < from {
            continue;
        }
        let total: u64 = started.values().sum();
        assert!(
            (n - 1..=n + 1).contains(&total),
            "{total} instances after history entry {i}: {history:?}"
        );
    }
}

#[test]
fn test_agent_succeeds_with_a_fault_at_any_one_request() {
    // How many requests a deployment makes when nothing goes wrong.
    let requests = {
        let s = sandbox();
        let l = lockstep(&s, quick());
        let before = request_count(&s);
        let (tag, digest) = compatible(&s);
        let r = request(9, &tag, &digest);
        l.notify(r).unwrap();
        let events = l.until_end(r.id);
        assert!(matches!(
            events.last().unwrap().kind,
            EventKind::DeploymentSuccess
        ));
        request_count(&s) - before
    };
    assert!(requests >= 10, "{requests} requests");
    // One fault is within every request's tries (the download's too): each deployment succeeds.
    for fault in ["\"status\": 500", "\"hang\": true"] {
        for nth in 1..=requests {
            let s = sandbox();
            let l = lockstep(&s, quick());
            let history_before = s.history().len();
            s.add_faults(&format!(r#"{{"requests": [{{"nth": {nth}, {fault}}}]}}"#));
            let (tag, digest) = compatible(&s);
            let r = request(nth as u8, &tag, &digest);
            l.notify(r).unwrap();
            let events = l.until_end(r.id);
            assert!(
                matches!(events.last().unwrap().kind, EventKind::DeploymentSuccess),
                "fault {fault} at request {nth}: {events:?}"
            );
            check_bounds(&s.history(), history_before, 3);
        }
    }
}
