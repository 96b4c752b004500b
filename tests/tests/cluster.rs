//! Cluster mode (`lockstep serve --etcd`): a real etcd, the sandbox, and instances of the real
//! binary. One instance is active; a standby takes over when the active one dies and finishes
//! what it was doing; etcd away means 503 and no step, and nothing lost when it returns.

use std::time::{Duration, Instant};

use lockstep_tests::etcd::EtcdServer;
use lockstep_tests::stack::*;
use lockstep_tests::{Client, Process, TempDir, binary, eventually};

/// The lease of the tests' instances: a dead active instance is replaced within it.
const TTL: &str = "3s";

fn cluster_flags(etcd: &EtcdServer) -> Vec<String> {
    vec![
        "--etcd".into(),
        etcd.url(),
        "--lease-ttl".into(),
        TTL.into(),
    ]
}

/// An instance of the cluster, started; it may be the active one or a standby.
fn instance(s: &Sandbox, etcd: &EtcdServer) -> (Process, TempDir) {
    let flags = cluster_flags(etcd);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    start_program_on(
        &binary("lockstep", "lockstep"),
        &["serve"],
        s,
        TempDir::new("lockstep-cluster-data"),
        &flags,
        &[("BINTRAY_WEBHOOK_SECRET", SECRET)],
    )
}

/// The active instance, once it listens.
fn active((mut process, dir): (Process, TempDir)) -> Serve {
    let addr = process.listening();
    Serve {
        process,
        client: Client::new(addr),
        dir,
    }
}

/// An active instance and a standby (waiting, not listening).
fn active_and_standby(s: &Sandbox, etcd: &EtcdServer) -> (Serve, (Process, TempDir)) {
    let a = active(instance(s, etcd));
    let (b, b_dir) = instance(s, etcd);
    eventually("the second instance to wait as a standby", WAIT, || {
        b.stderr().contains("cluster: standby").then_some(())
    });
    (a, (b, b_dir))
}

/// A deployment of the first compatible version on `a`, its six scale requests slowed down
/// (700 ms each): its id, the new version, the bundle it replaces, and the history's mark.
fn slow_deployment(s: &Sandbox, a: &Serve) -> (String, Version, Bundle, Mark) {
    s.add_faults(
        r#"{"requests": [{"method": "PUT", "path": "/v2/bundles/", "delayMs": 700, "times": 6}]}"#,
    );
    let old = the_running_bundle(s);
    let new = s.compatible(0);
    let before = mark(s);
    let id = accepted(a, &notify(a, &new), "/deployments");
    (id, new, old, before)
}

fn held(s: &Sandbox) -> usize {
    let r = s.client.get("/sandbox/held");
    r.json().as_array().map_or(0, Vec::len)
}

#[test]
fn test_cluster_standby_finishes_the_deployment_of_a_killed_active_instance() {
    let etcd = EtcdServer::start();
    let s = sandbox(&[]);
    let (a, (b, b_dir)) = active_and_standby(&s, &etcd);
    // The bundle event stream of the active instance is connected before a rule can hold it.
    eventually("the event stream to connect", WAIT, || {
        let count = s.client.get("/sandbox/faults").json()["requestCount"].as_u64()?;
        (count >= 1).then_some(())
    });
    // The lock-step's third scale request (new 2) is carried out, its answer withheld.
    s.add_faults(
        r#"{"requests": [{"method": "PUT", "path": "/v2/bundles/", "delayMs": 0, "times": 2},
                         {"method": "PUT", "path": "/v2/bundles/", "hold": true, "times": 1}]}"#,
    );
    let old = the_running_bundle(&s);
    let new = s.compatible(0);
    let before = mark(&s);
    let id = accepted(&a, &notify(&a, &new), "/deployments");
    eventually("the third scale request to be held", WAIT, || {
        (held(&s) > 0).then_some(())
    });
    let Serve { mut process, .. } = a;
    process.signal("KILL");
    let killed = Instant::now();
    assert_eq!(process.wait(WAIT), None, "killed by a signal");
    let b = active((b, b_dir));
    let took = killed.elapsed();
    // Same id, its events kept; it ends replaced at scale 3, never more than 4 instances. (Its
    // downloads were the killed instance's: a step that needs them may show twice.)
    let events = ended(&b, &id);
    assert_succeeded(&events);
    assert_eq!(events[0]["deploymentId"], id.as_str());
    assert_cluster_replaced_at_scale_3(&s, &new, &old);
    assert_history_within_2_to_4(&s, before);
    assert!(
        b.process
            .stderr()
            .contains("cluster: this instance is active"),
        "{}",
        b.process.stderr()
    );
    println!(
        "take-over after SIGKILL: {}ms (lease TTL {TTL})",
        took.as_millis()
    );
    // Within the TTL plus the restore (a step's worth of slack).
    assert!(took < Duration::from_secs(3 + 10), "{took:?}");
}

#[test]
fn test_cluster_etcd_away_refuses_webhooks_and_the_deployment_finishes_when_it_returns() {
    let mut etcd = EtcdServer::start();
    let s = sandbox(&[]);
    let a = active(instance(&s, &etcd));
    // The deployment is under way while etcd is away.
    let (id, new, old, before) = slow_deployment(&s, &a);
    etcd.stop();
    let stopped = Instant::now();
    // A webhook meanwhile: 503 with Retry-After, never a 202 for what is not recorded.
    let later = s.compatible(1);
    let refused = eventually("a webhook refused while etcd is away", WAIT, || {
        let r = notify(&a, &later);
        assert_ne!(r.status, 202, "accepted while etcd is away: {}", r.text());
        (r.status == 503).then_some(r)
    });
    assert!(
        refused.header("retry-after").is_some(),
        "{}",
        refused.text()
    );
    // etcd stays away for 10 s (the scenario's length, not a synchronisation).
    std::thread::sleep(Duration::from_secs(10).saturating_sub(stopped.elapsed()));
    let r = notify(&a, &later);
    assert_eq!(r.status, 503, "still away: {}", r.text());
    etcd.restart();
    let events = ended(&a, &id);
    assert_succeeded(&events);
    assert_replaced_at_scale_3(&s, &a, &id, &new, &old);
    assert_history_within_2_to_4(&s, before);
    // Webhooks are accepted again; the listing holds each deployment once.
    let second = eventually("a webhook accepted again", WAIT, || {
        let r = notify(&a, &later);
        (r.status == 202).then(|| r.text())
    });
    let listed: Vec<String> = listing(&a, "/deployments")
        .iter()
        .filter_map(|d| d["deploymentId"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(listed.iter().filter(|l| **l == id).count(), 1, "{listed:?}");
    assert_eq!(
        listed.iter().filter(|l| **l == second).count(),
        1,
        "{listed:?}"
    );
}

#[test]
fn test_cluster_a_paused_active_instance_is_replaced_and_exits_when_it_wakes() {
    let etcd = EtcdServer::start();
    let s = sandbox(&[]);
    let (mut a, (b, b_dir)) = active_and_standby(&s, &etcd);
    let (id, new, old, before) = slow_deployment(&s, &a);
    // A long pause: its lease lapses, and the standby takes over.
    a.process.signal("STOP");
    let b = active((b, b_dir));
    let events = ended(&b, &id);
    assert_succeeded(&events);
    assert_cluster_replaced_at_scale_3(&s, &new, &old);
    // Never two deployments of the bundle at once: at most one instance more than the scale.
    assert_history_within_2_to_4(&s, before);
    // Woken, the paused instance learns its lease is gone and exits before doing more.
    a.process.signal("CONT");
    assert_eq!(a.process.wait(WAIT), Some(1), "{}", a.process.stderr());
    assert!(
        a.process.stderr().contains("has expired"),
        "{}",
        a.process.stderr()
    );
}

#[test]
fn test_cluster_sigterm_hands_over_at_once() {
    let etcd = EtcdServer::start();
    let s = sandbox(&[]);
    let (a, (b, b_dir)) = active_and_standby(&s, &etcd);
    // What a deployment costs in etcd: one transaction per journal commit.
    let syncs = |v: &Serve| {
        let text = v.client.get("/metrics").text();
        text.lines()
            .find_map(|l| l.strip_prefix("lockstep_journal_syncs_total "))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .expect("lockstep_journal_syncs_total")
    };
    let first = syncs(&a);
    let id = accepted(&a, &notify(&a, &s.compatible(0)), "/deployments");
    let events = ended(&a, &id);
    let spent = syncs(&a) - first;
    println!(
        "a scale-3 deployment: {spent} etcd transactions for {} events ({:.1} per event)",
        events.len(),
        spent as f64 / events.len() as f64
    );
    assert!(
        spent <= 2 * events.len() as u64 + 2,
        "{spent} for {events:#?}"
    );
    let Serve { mut process, .. } = a;
    let stopped = Instant::now();
    process.stop("TERM", WAIT);
    let b = active((b, b_dir));
    let took = stopped.elapsed();
    assert!(
        process.stderr().contains("the lease is given back"),
        "{}",
        process.stderr()
    );
    let r = b.client.get("/healthz");
    assert_eq!(r.status, 200, "{}", r.text());
    println!("hand-over after SIGTERM: {}ms", took.as_millis());
}
