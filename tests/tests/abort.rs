//! Aborting a deployment (`POST /deployments/{id}/abort`, `lockstep abort`) end to end, in
//! every phase: resolving, queued, each step of the lock-step, rolling back, ended; with the
//! sandbox's history within N−1..N+1 throughout. Each test starts its own processes.

use lockstep_tests::stack::{
    Bundle, Mark, SECRET, Sandbox, Serve, accepted, assert_cluster_replaced_at_scale_3,
    assert_history_within_2_to_4, assert_rolled_back, bundles, ended, events, failure,
    lockstep_header, mark, notify, now_secs, post, run_lockstep, sandbox, serve, serve_on,
    serve_runtime, the_running_bundle,
};
use lockstep_tests::{Response, eventually};
use serde_json::Value;

const WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `POST /deployments/{id}/abort`, signed for `id`; each body its own, as `lockstep abort`
/// makes them.
fn abort(v: &Serve, id: &str) -> Response {
    static SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let body = format!(r#"{{"deploymentId":"{id}","requested":"{n}"}}"#);
    let header = lockstep_header(body.as_bytes(), now_secs());
    post(
        v,
        &format!("/deployments/{id}/abort"),
        &[("X-Lockstep-Signature", &header)],
        body.as_bytes(),
    )
}

/// The deployment's events once `done` holds of them.
fn events_until(v: &Serve, id: &str, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    eventually(what, WAIT, || {
        let e = events(v, "/deployments", id);
        done(&e).then_some(e)
    })
}

fn deploy_events(events: &[Value]) -> usize {
    events.iter().filter(|e| e["eventType"] == "deploy").count()
}

/// The deployment's state in the listing.
fn state(v: &Serve, id: &str) -> String {
    let listing = v.client.get("/deployments").json();
    listing
        .as_array()
        .expect("an array")
        .iter()
        .find(|d| d["deploymentId"] == id)
        .and_then(|d| d["state"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// A deployment of the demo's first compatible version, whose instances never start: it
/// stands in the first step of its lock-step (new to 1), waiting.
struct Stuck {
    s: Sandbox,
    v: Serve,
    old: Bundle,
    mark: Mark,
    id: String,
}

fn stuck_in_the_first_step(flags: &[&str]) -> Stuck {
    let s = sandbox(&[]);
    let v = serve(&s, flags);
    let old = the_running_bundle(&s);
    let new = s.compatible(0);
    s.never_start(&new);
    let mark = mark(&s);
    let id = accepted(&v, &notify(&v, &new), "/deployments");
    events_until(&v, &id, "the first lock-step step", |e| {
        deploy_events(e) >= 1
    });
    Stuck {
        s,
        v,
        old,
        mark,
        id,
    }
}

lockstep_tests::on_both_runtimes! {
    fn test_abort_while_resolving_ends_it_and_changes_nothing(runtime: Runtime) {
        let s = sandbox(&[]);
        // The download is held: the deployment stays resolving.
        let zip = s.compatible(0).zip_path();
        s.add_faults(&format!(r#"{{"requests":[{{"path":"{zip}","hold":true}}]}}"#));
        let v = serve_runtime(runtime, &s, &[]);
        let before = bundles(&s);
        let id = accepted(&v, &notify(&v, &s.compatible(0)), "/deployments");
        eventually("the download to be held", WAIT, || {
            let held = s.client.get("/sandbox/held").json();
            (!held.as_array()?.is_empty()).then_some(())
        });
        let r = abort(&v, &id);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "aborted: it had changed nothing in the cluster\n");
        let events = ended(&v, &id);
        assert_eq!(failure(&events), "aborted");
        assert_eq!(bundles(&s), before);
        // Idempotent; an unknown id is 404; a signature for another deployment is refused.
        let again = abort(&v, &id);
        assert_eq!(
            (again.status, again.text()),
            (200, "it has ended already: nothing changed\n".to_owned())
        );
        let unknown = abort(&v, "0f5e2c8e-4b8a-4e43-9d8e-3a0c1b2d4e5f");
        assert_eq!(unknown.status, 404, "{}", unknown.text());
        let body = r#"{"deploymentId":"0f5e2c8e-4b8a-4e43-9d8e-3a0c1b2d4e5f"}"#;
        let header = lockstep_header(body.as_bytes(), now_secs());
        let other = post(
            &v,
            &format!("/deployments/{id}/abort"),
            &[("X-Lockstep-Signature", &header)],
            body.as_bytes(),
        );
        assert_eq!(other.status, 400, "{}", other.text());
        let unsigned = post(&v, &format!("/deployments/{id}/abort"), &[], b"{}");
        assert_eq!(unsigned.status, 401, "{}", unsigned.text());
    }
}

#[test]
fn test_abort_queued_ends_it_and_leaves_the_active_one_to_its_abort() {
    let Stuck {
        s,
        v,
        old,
        mark,
        id: active,
    } = stuck_in_the_first_step(&[]);
    let queued = accepted(&v, &notify(&v, &s.compatible(1)), "/deployments");
    eventually("the second to be queued", WAIT, || {
        (state(&v, &queued) == "queued").then_some(())
    });
    let r = abort(&v, &queued);
    assert_eq!(r.text(), "aborted: it had changed nothing in the cluster\n");
    assert_eq!(failure(&ended(&v, &queued)), "aborted");
    assert_eq!(state(&v, &active), "deploying");
    // The active one, waiting for an instance that never starts, rolls back.
    let r = abort(&v, &active);
    assert_eq!(r.text(), "aborted: its lock-step is being rolled back\n");
    let f = failure(&ended(&v, &active));
    assert_eq!(
        f,
        "scaling the new bundle to 1: aborted; rolled back: the old bundle runs at 3 again"
    );
    assert_rolled_back(&s, &old.id);
    assert_history_within_2_to_4(&s, mark);
}

#[test]
fn test_abort_in_each_step_of_the_lockstep_rolls_back_within_bounds() {
    let s = sandbox(&[]);
    // Each scale request is answered 300 ms late: the deployment stands at each step long
    // enough to be aborted there.
    s.add_faults(r#"{"requests":[{"method":"PUT","path":"/v2/bundles/","delayMs":300}]}"#);
    let v = serve(&s, &[]);
    let old = the_running_bundle(&s);
    for (k, version) in [(2, 0), (3, 1), (4, 0), (5, 1), (6, 0)] {
        let mark = mark(&s);
        let new = s.compatible(version);
        let id = accepted(&v, &notify(&v, &new), "/deployments");
        // `deploy` events: 3v0, then one per step.
        events_until(&v, &id, "the step to abort at", |e| deploy_events(e) >= k);
        let r = abort(&v, &id);
        assert_eq!(r.status, 200, "step {k}: {}", r.text());
        let events = ended(&v, &id);
        let f = failure(&events);
        assert!(
            f.starts_with("scaling the ")
                && f.ends_with(": aborted; rolled back: the old bundle runs at 3 again"),
            "step {k}: {f}"
        );
        assert_rolled_back(&s, &old.id);
        assert_history_within_2_to_4(&s, mark);
    }
}

#[test]
fn test_abort_while_rolling_back_lets_the_rollback_finish() {
    let Stuck {
        s,
        v,
        old,
        mark,
        id,
    } = stuck_in_the_first_step(&["--io-timeout", "1s"]);
    // Every scale request is held (carried out, never answered) until the faults are
    // cleared: the deployment stands rolling back, its agent retrying after each time-out.
    s.add_faults(r#"{"requests":[{"method":"PUT","path":"/v2/bundles/","hold":true}]}"#);
    assert_eq!(
        abort(&v, &id).text(),
        "aborted: its lock-step is being rolled back\n"
    );
    let again = abort(&v, &id);
    assert_eq!(
        (again.status, again.text()),
        (
            200,
            "it is rolling back already: the rollback goes on\n".to_owned()
        )
    );
    assert_eq!(state(&v, &id), "rollingBack");
    let cleared = s.client.request("DELETE", "/sandbox/faults", &[], b"");
    assert_eq!(cleared.status, 200);
    let f = failure(&ended(&v, &id));
    assert!(
        f.ends_with("rolled back: the old bundle runs at 3 again"),
        "{f}"
    );
    assert_rolled_back(&s, &old.id);
    assert_history_within_2_to_4(&s, mark);
}

#[test]
fn test_lockstep_abort_command_and_an_ended_deployment() {
    let s = sandbox(&[]);
    let v = serve(&s, &[]);
    let old = the_running_bundle(&s);
    let new = s.compatible(0);
    let id = accepted(&v, &notify(&v, &new), "/deployments");
    let events = ended(&v, &id);
    assert_eq!(events.last().unwrap()["eventType"], "deploymentSuccess");
    let after = bundles(&s);
    let url = format!("http://{}", v.client.addr);
    let home = lockstep_tests::TempDir::new("lockstep-abort-home");
    let home = home.path_text();
    let env = [("HOME", home.as_str()), ("BINTRAY_WEBHOOK_SECRET", SECRET)];
    let ran = run_lockstep(&["abort", "--url", &url, &id], &env, b"");
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    assert_eq!(
        ran.stdout,
        format!("{id}: it has ended already: nothing changed\n")
    );
    assert_eq!(
        bundles(&s),
        after,
        "an abort with nothing in flight changes nothing"
    );
    assert_cluster_replaced_at_scale_3(&s, &new, &old);
    // Refused: an unknown id (exit 1), a wrong secret (exit 1, with the hint).
    let unknown = "0f5e2c8e-4b8a-4e43-9d8e-3a0c1b2d4e5f";
    let ran = run_lockstep(&["abort", "--url", &url, unknown], &env, b"");
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert!(ran.stderr.contains("refused the abort: 404"), "{ran:#?}");
    // Nobody listening: exit 1, saying so.
    let nobody = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        format!("http://{}", listener.local_addr().expect("its address"))
    };
    let ran = run_lockstep(&["abort", "--url", &nobody, &id], &env, b"");
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert!(
        ran.stderr
            .starts_with("lockstep abort: the abort got no answer: "),
        "{ran:#?}"
    );
    let wrong = [
        ("HOME", home.as_str()),
        ("BINTRAY_WEBHOOK_SECRET", "not-it"),
    ];
    let ran = run_lockstep(&["abort", "--url", &url, &id], &wrong, b"");
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert!(
        ran.stderr.contains("403") && ran.stderr.contains("secret"),
        "{ran:#?}"
    );
}

#[test]
fn test_an_abort_answered_survives_a_kill_and_the_rollback_finishes_after_the_restart() {
    let Stuck {
        s,
        v,
        old,
        mark,
        id,
    } = stuck_in_the_first_step(&[]);
    // Every scale request from now on is held: the rollback cannot move before the kill.
    s.add_faults(r#"{"requests":[{"method":"PUT","path":"/v2/bundles/","hold":true}]}"#);
    assert_eq!(
        abort(&v, &id).text(),
        "aborted: its lock-step is being rolled back\n"
    );
    // Answered means recorded: SIGKILL now, no drain.
    let Serve {
        mut process, dir, ..
    } = v;
    process.signal("KILL");
    assert_eq!(process.wait(WAIT), None, "killed by a signal");
    // Restarted with the scale requests still held, it can only stand where it stood: the
    // listing is read before the rollback can move (cleared first, a quick rollback could
    // end before the listing is read).
    let v = serve_on(&s, dir, &[], &[("BINTRAY_WEBHOOK_SECRET", SECRET)]);
    assert_eq!(state(&v, &id), "rollingBack", "resumed where it stood");
    let cleared = s.client.request("DELETE", "/sandbox/faults", &[], b"");
    assert_eq!(cleared.status, 200);
    let f = failure(&ended(&v, &id));
    assert_eq!(
        f,
        "scaling the new bundle to 1: aborted; rolled back: the old bundle runs at 3 again"
    );
    assert_rolled_back(&s, &old.id);
    assert_history_within_2_to_4(&s, mark);
}
