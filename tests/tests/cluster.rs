//! Cluster mode (`lockstep serve --etcd`): a real etcd, the sandbox, and instances of the real
//! binary. One instance is active; a standby relays every connection to it (every instance
//! answers the same), takes over when the active one dies and finishes what it was doing; etcd
//! away means 503 and no step, and nothing lost when it returns.

use std::time::{Duration, Instant};

use lockstep_core::signature::bintray_sign;
use lockstep_tests::etcd::EtcdServer;
use lockstep_tests::stack::*;
use lockstep_tests::{TempDir, binary, eventually};

/// The lease of the tests' instances: a dead active instance is replaced within it.
const TTL: &str = "3s";

/// An instance of the cluster, listening: the active one, or a standby that relays.
fn instance(s: &Sandbox, etcd: &EtcdServer) -> Serve {
    let url = etcd.url();
    serve_program_on(
        &binary("lockstep", "lockstep"),
        &["serve"],
        s,
        TempDir::new("lockstep-cluster-data"),
        &["--etcd", &url, "--lease-ttl", TTL],
        &[("BINTRAY_WEBHOOK_SECRET", SECRET)],
    )
}

/// Waits until `v` is the active instance and serves (it says `ready` once its deployments are
/// restored and it answers itself; until then, a connection it relays to a dead active
/// instance gets 503).
fn wait_active(v: &Serve) {
    eventually("the instance to be the active one, serving", WAIT, || {
        let stderr = v.process.stderr();
        let active = stderr.find("cluster: this instance is active")?;
        stderr[active..].contains("ready in").then_some(())
    });
}

/// An active instance and a standby.
fn active_and_standby(s: &Sandbox, etcd: &EtcdServer) -> (Serve, Serve) {
    let a = instance(s, etcd);
    wait_active(&a);
    let b = instance(s, etcd);
    eventually("the second instance to wait as a standby", WAIT, || {
        b.process
            .stderr()
            .contains("cluster: standby")
            .then_some(())
    });
    (a, b)
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
    let (a, b) = active_and_standby(&s, &etcd);
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
    let header = lockstep_header(new.body().as_bytes(), now_secs());
    let signed = [("X-Lockstep-Signature", header.as_str())];
    let id = accepted(
        &a,
        &post(&a, HOOK, &signed, new.body().as_bytes()),
        "/deployments",
    );
    // The same signature sent to the standby is the same replay, refused.
    assert_refused(
        &post(&b, HOOK, &signed, new.body().as_bytes()),
        403,
        "replay through the standby",
    );
    eventually("the third scale request to be held", WAIT, || {
        (held(&s) > 0).then_some(())
    });
    // Every instance answers the same: the standby relays to the active one. A redelivery
    // sent to it gets the same id; the listing and the deployment's events are the same.
    let mac = bintray_sign(&secret(), "visualizer").as_str().to_owned();
    let redelivered = post(
        &b,
        HOOK,
        &[("X-Bintray-Hook-Hmac", &mac)],
        new.body().as_bytes(),
    );
    assert_eq!(
        (redelivered.status, redelivered.text()),
        (202, id.clone()),
        "a redelivery through the standby"
    );
    assert_eq!(listing(&b, "/deployments"), listing(&a, "/deployments"));
    assert_eq!(
        events(&b, "/deployments", &id),
        events(&a, "/deployments", &id)
    );
    let Serve { mut process, .. } = a;
    process.signal("KILL");
    let killed = Instant::now();
    assert_eq!(process.wait(WAIT), None, "killed by a signal");
    wait_active(&b);
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
    let a = instance(&s, &etcd);
    wait_active(&a);
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
    let (mut a, b) = active_and_standby(&s, &etcd);
    let (id, new, old, before) = slow_deployment(&s, &a);
    // A long pause: its lease lapses, and the standby takes over.
    a.process.signal("STOP");
    wait_active(&b);
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
    let (a, b) = active_and_standby(&s, &etcd);
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
    wait_active(&b);
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

/// The bundles of the HAProxy test: four keys (name, compatibilityVersion 1).
const BUNDLES: [&str; 4] = ["visualizer", "catalog", "orders", "billing"];

/// For each bundle, its started instances stay within 2..=4 at every change since `mark`: one
/// deployment of its key at a time, each within N-1..=N+1 for N = 3.
fn assert_each_bundle_within_2_to_4(s: &Sandbox, mark: &Mark) {
    let names: std::collections::HashMap<String, String> = s
        .client
        .get("/v2/bundles")
        .json()
        .as_array()
        .expect("an array")
        .iter()
        .map(|b| {
            let id = b["bundleId"].as_str().expect("bundleId").to_owned();
            let name = b["attributes"]["bundleName"]
                .as_str()
                .expect("bundleName")
                .to_owned();
            (id, name)
        })
        .collect();
    let mut started = mark.started.clone();
    for entry in &s.history()[mark.seen..] {
        let id = entry["bundleId"].as_str().expect("bundleId").to_owned();
        started.insert(id.clone(), entry["started"].as_u64().expect("started"));
        let name = &names[&id];
        let total: u64 = started
            .iter()
            .filter(|(bundle, _)| names.get(*bundle) == Some(name))
            .map(|(_, n)| n)
            .sum();
        assert!(
            (2..=4).contains(&total),
            "{name}: {total} started at {entry}"
        );
    }
}

/// The README's HAProxy backend for two instances, as written (only the two addresses
/// replaced), in front of an active instance and a standby: 20 signed webhooks round-robin
/// over both, for four bundles and two versions of each, each redelivered at once to one of
/// the instances directly. Every redelivery gets its webhook's id, every accepted deployment
/// ends, no bundle ever has two deployments at once (never more than one instance over its
/// scale, never fewer than one under), and both instances list the same deployments.
#[test]
fn test_cluster_behind_the_readmes_haproxy_round_robin() {
    let haproxy = lockstep_tests::provide("haproxy", "haproxy");
    let readme = include_str!("../../README.md");
    let start = readme
        .find("    backend lockstep\n        balance roundrobin\n")
        .expect("the README's cluster backend");
    let block: Vec<&str> = readme[start..]
        .lines()
        .take_while(|l| l.starts_with("    "))
        .map(|l| &l[4..])
        .collect();
    let etcd = EtcdServer::start();
    let s = sandbox(&["--bundles", &BUNDLES.join(",")]);
    let (a, b) = active_and_standby(&s, &etcd);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = format!(
        "defaults\n    mode http\n    timeout connect 5s\n    timeout client 60s\n    \
         timeout server 60s\nfrontend webhooks\n    bind 127.0.0.1:{port}\n    \
         default_backend lockstep\n{}\n",
        block
            .join("\n")
            .replace("10.0.0.5:9010", &a.client.addr.to_string())
            .replace("10.0.0.6:9010", &b.client.addr.to_string())
    );
    let dir = TempDir::new("lockstep-haproxy");
    let file = dir.path().join("haproxy.cfg");
    std::fs::write(&file, config).expect("write the configuration");
    let _haproxy = lockstep_tests::Process::start(
        &haproxy,
        &["-db", "-f", file.to_str().expect("UTF-8")],
        &[],
    );
    let front =
        lockstep_tests::Client::new(format!("127.0.0.1:{port}").parse().expect("an address"));
    eventually("HAProxy to find both instances up", WAIT, || {
        let ups = (0..4)
            .filter(|_| {
                front
                    .try_request("GET", "/healthz", &[], b"")
                    .is_ok_and(|r| r.status == 200)
            })
            .count();
        (ups == 4).then_some(())
    });
    let before = mark(&s);
    let mut ids = Vec::new();
    for i in 0..20 {
        let name = BUNDLES[i % BUNDLES.len()];
        let version = s.version_of(name, "compatible", (i / BUNDLES.len()) % 2);
        let mac = bintray_sign(&secret(), name).as_str().to_owned();
        let headers = [
            ("Content-Type", "application/json"),
            ("X-Bintray-Hook-Hmac", mac.as_str()),
        ];
        let body = version.body();
        let r = front.request("POST", HOOK, &headers, body.as_bytes());
        // The third round (1.1.0 over the running 1.2.0) is refused as a downgrade
        // (docs/DESIGN.md rule 12): 409 through HAProxy, and from the instance it is sent
        // to straight after; the fifth, 1.1.0 again, the same.
        if matches!(i / BUNDLES.len(), 2 | 4) {
            let direct = if i % 2 == 0 { &a } else { &b };
            let again = direct
                .client
                .request("POST", HOOK, &headers, body.as_bytes());
            for (answer, via) in [(&r, "HAProxy"), (&again, "an instance")] {
                assert_eq!(
                    answer.status,
                    409,
                    "webhook {i} via {via}: {}",
                    answer.text()
                );
                assert!(
                    answer.text().contains("refused a downgrade"),
                    "{}",
                    answer.text()
                );
            }
            continue;
        }
        assert_eq!(r.status, 202, "webhook {i}: {}", r.text());
        let id = r.text();
        // Redelivered at once, straight to one of the instances: the same deployment. Only
        // the first two rounds deploy anything that takes time: the fourth finds its version
        // running, so a redelivery could come after its end (a new deployment).
        if i / BUNDLES.len() < 2 {
            let direct = if i % 2 == 0 { &a } else { &b };
            let again = direct
                .client
                .request("POST", HOOK, &headers, body.as_bytes());
            assert_eq!(
                (again.status, again.text()),
                (202, id.clone()),
                "redelivery {i}"
            );
        }
        if !ids.contains(&id) {
            ids.push(id);
        }
        // After each round of the four bundles, what was sent so far ends: the next round
        // deploys anew.
        if i % BUNDLES.len() == BUNDLES.len() - 1 {
            for id in &ids {
                ended(&a, id);
            }
        }
    }
    assert_each_bundle_within_2_to_4(&s, &before);
    let listed = listing(&a, "/deployments");
    assert_eq!(listing(&b, "/deployments"), listed);
    for id in &ids {
        assert!(
            listed.iter().any(|d| d["deploymentId"] == id.as_str()),
            "{id} in {listed:#?}"
        );
    }
    println!(
        "20 webhooks through HAProxy for {} bundles: {} deployments accepted, all ended (8 \
         webhooks of downgrades refused 409)",
        BUNDLES.len(),
        ids.len()
    );
}

/// A journal in etcd damaged before its last frame: the instance refuses to take it, saying
/// how to start without it; nothing is deployed.
#[test]
fn test_cluster_damaged_journal_in_etcd_refuses_to_start() {
    use lockstep::etcd::{Etcd, Op};
    let etcd = EtcdServer::start();
    let client = Etcd::new(
        vec![lockstep::url::BaseUrl::parse(&etcd.url()).expect("a URL")],
        Duration::from_secs(5),
    );
    let chunk = b"/lockstep/journal/00000000000000000001/00000000000000000000";
    let garbage = [0x5a_u8; 64];
    let written = client
        .txn(
            &[],
            &[
                Op::Put {
                    key: b"/lockstep/generation",
                    value: b"1",
                    lease: 0,
                },
                Op::Put {
                    key: chunk,
                    value: &garbage,
                    lease: 0,
                },
            ],
            &[],
        )
        .expect("etcd answers");
    assert!(written.succeeded);
    let s = sandbox(&[]);
    let before = bundles(&s);
    let mut v = instance(&s, &etcd);
    assert_eq!(v.process.wait(WAIT), Some(1), "{}", v.process.stderr());
    let stderr = v.process.stderr();
    assert!(
        stderr.contains("etcdctl del --prefix /lockstep/journal/"),
        "{stderr}"
    );
    assert_eq!(bundles(&s), before, "nothing deployed");
}
