//! `lockstep serve` against a real `lockstep sandbox`, both on OS-chosen loopback ports
//! (docs/PROTOCOL.md §2 and §7): signed webhooks deploy, every refusal of the status table changes
//! nothing, the transport limits hold, and the event stream speaks what the official client reads.
//!
//! The webhook, deployment and refusal tests are defined once and run against both runtimes,
//! `lockstep serve` and `lockstep-minimal` (`on_both_runtimes!`: `<test>::serve` and
//! `<test>::minimal`).
//!
//! Webhooks are signed with core's signers; one signature of each scheme is also computed by
//! an independent implementation (python3's `hmac`), so that a bug shared by core's signer and
//! verifier cannot pass. Each test starts its own processes and shares nothing.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use lockstep_core::signature::{Secret, bintray_sign, lockstep_sign};
use lockstep_tests::raw::*;
use lockstep_tests::stack::*;
use lockstep_tests::{Client, Process, TempDir, binary, eventually};
use serde_json::{Value, json};
// ---- 1. a signed webhook deploys -------------------------------------------------------------

lockstep_tests::on_both_runtimes! {
    fn test_serve_lockstep_signed_webhook_deploys_at_scale_3(runtime: Runtime) {
        let s = sandbox(&[]);
        let v = serve_runtime(runtime, &s, &[]);
        let old = the_running_bundle(&s);
        let mark = mark(&s);
        let new = s.compatible(0);
        let body = new.body();
        let t = now_secs();
        // Signed by python3, and core's signer agrees with it.
        let mac = python_hmac(SECRET, format!("{t}.{body}").as_bytes(), "hex");
        let header = format!("t={t},v1={mac}");
        assert_eq!(header, lockstep_header(body.as_bytes(), t));
        let r = post(
            &v,
            HOOK,
            &[("X-Lockstep-Signature", &header)],
            body.as_bytes(),
        );
        let id = accepted(&v, &r, "/deployments");
        assert_replaced_at_scale_3(&s, &v, &id, &new, &old);
        assert_history_within_2_to_4(&s, mark);
    }
}

lockstep_tests::on_both_runtimes! {
    fn test_serve_bintray_signed_webhook_under_v2_deploys_at_scale_3(runtime: Runtime) {
        // The independent implementation agrees with docs/PROTOCOL.md §1's test vector.
        assert_eq!(
            python_hmac("secret", b"reactive-maps-backend-summary", "base64"),
            "2un791uBDf59/fHrIOWMqt0mhwEoH0yqkZXmz//4alQ="
        );
        let s = sandbox(&[]);
        let v = serve_runtime(runtime, &s, &[]);
        let old = the_running_bundle(&s);
        let mark = mark(&s);
        let new = s.compatible(1);
        let mac = python_hmac(SECRET, b"visualizer", "base64");
        assert_eq!(mac, bintray_sign(&secret(), "visualizer").as_str());
        let r = post(
            &v,
            HOOK_V2,
            &[("X-Bintray-Hook-Hmac", &mac)],
            new.body().as_bytes(),
        );
        let id = accepted(&v, &r, "/v2/deployments");
        assert_replaced_at_scale_3(&s, &v, &id, &new, &old);
        assert_eq!(
            events(&v, "/v2/deployments", &id),
            events(&v, "/deployments", &id)
        );
        assert_history_within_2_to_4(&s, mark);
    }
}

// ---- 2. compatibility mismatch ---------------------------------------------------------------

lockstep_tests::on_both_runtimes! {
    fn test_serve_incompatible_version_fails_and_changes_nothing(runtime: Runtime) {
        let s = sandbox(&[]);
        let v = serve_runtime(runtime, &s, &[]);
        let before = bundles(&s);
        let old = the_running_bundle(&s);
        let new = s.incompatible();
        let id = accepted(&v, &notify(&v, &new), "/deployments");
        let events = ended(&v, &id);
        let failure = failure(&events);
        assert!(failure.contains("compatibilityVersion"), "{failure}");
        assert_eq!(bundles(&s), before, "the cluster changed");
        assert_eq!(the_running_bundle(&s).id, old.id);
        let listed = listing(&v, "/deployments");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["state"], "failed");
        assert_eq!(listed[0]["failure"], failure.as_str());
        assert_eq!(listed[0]["compatibilityVersion"], "2");
    }
}

// ---- 3. nothing running ----------------------------------------------------------------------

/// Stops the demo's running bundle through the sandbox; returns it once it has no executions.
fn stop_the_running_bundle(s: &Sandbox) -> Bundle {
    let old = the_running_bundle(s);
    let r = s
        .client
        .request("PUT", &format!("/v2/bundles/{}?scale=0", old.id), &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    eventually("the running bundle to stop", WAIT, || {
        let all = bundles(s);
        (all.len() == 1 && all[0].executions == 0).then(|| all[0].clone())
    })
}

lockstep_tests::on_both_runtimes! {
    fn test_serve_nothing_running_fails(runtime: Runtime) {
        let s = sandbox(&[]);
        let v = serve_runtime(runtime, &s, &[]);
        stop_the_running_bundle(&s);
        let before = bundles(&s);
        let id = accepted(&v, &notify(&v, &s.compatible(0)), "/deployments");
        let failure = failure(&ended(&v, &id));
        assert!(failure.starts_with("no running bundle"), "{failure}");
        assert_eq!(bundles(&s), before, "the cluster changed");
        assert_store_emptied(&v);
    }
}

#[test]
fn test_serve_nothing_running_start_one_starts_the_new_version_at_scale_1() {
    let s = sandbox(&[]);
    let v = serve(&s, &["--nothing-running", "start-one"]);
    let old = stop_the_running_bundle(&s);
    let new = s.compatible(0);
    let id = accepted(&v, &notify(&v, &new), "/deployments");
    // No bundle to take a configuration from: loaded without one, then started.
    let expected = [
        json!({"eventType": "deploymentStarted", "deploymentSequence": 1, "deploymentId": id,
               "bundleName": "visualizer", "compatibleVersion": new.tag}),
        json!({"eventType": "bundleDownload", "deploymentSequence": 2}),
        json!({"eventType": "load", "deploymentSequence": 3}),
        json!({"eventType": "deploy", "deploymentSequence": 4,
               "bundleOld": {"scale": 0}, "bundleNew": {"scale": 0}}),
        json!({"eventType": "deploy", "deploymentSequence": 5,
               "bundleOld": {"scale": 0}, "bundleNew": {"scale": 1}}),
        json!({"eventType": "deploymentSuccess", "deploymentSequence": 6}),
    ];
    assert_eq!(ended(&v, &id), expected);
    let started = bundle_of(&s, &new.digest);
    assert_eq!(
        (started.scale, started.started),
        (Some(1), 1),
        "{started:?}"
    );
    let old_after = bundle_of(&s, &old.digest);
    assert_eq!(old_after.executions, 0, "{old_after:?}");
}

// ---- 4. signatures ---------------------------------------------------------------------------

lockstep_tests::on_both_runtimes! {
    fn test_serve_refused_signatures_change_nothing(runtime: Runtime) {
        let s = sandbox(&[]);
        let v = serve_runtime(runtime, &s, &[]);
        let before = bundles(&s);
        let version = s.compatible(0);
        let body = version.body();
        let body = body.as_bytes();
        let now = now_secs();
        let other = Secret::new(b"another secret").expect("a secret");

        let bad_mac = lockstep_sign(&other, now, body);
        let r = post(
            &v,
            HOOK,
            &[("X-Lockstep-Signature", bad_mac.as_str())],
            body,
        );
        assert_eq!(assert_refused(&r, 403, "bad MAC"), "signature rejected");
        assert_unchanged(&s, &v, &before, "bad MAC");

        // Past the 300 s window by 2 s, the time taken afresh: a second may tick between the
        // signature and the server's clock, and the checks above may take seconds on a loaded
        // machine.
        let r = post_signed(&v, HOOK, body, now_secs() - 302);
        assert_eq!(assert_refused(&r, 403, "expired"), "signature rejected");
        assert_unchanged(&s, &v, &before, "expired");

        let r = post_signed(&v, HOOK, body, now_secs() + 302);
        assert_eq!(
            assert_refused(&r, 403, "from the future"),
            "signature rejected"
        );
        assert_unchanged(&s, &v, &before, "from the future");

        let bad_bintray = bintray_sign(&other, "visualizer");
        let r = post(
            &v,
            HOOK,
            &[("X-Bintray-Hook-Hmac", bad_bintray.as_str())],
            body,
        );
        assert_eq!(
            assert_refused(&r, 403, "bad Bintray MAC"),
            "signature rejected"
        );
        assert_unchanged(&s, &v, &before, "bad Bintray MAC");

        // Both headers: only the lockstep one is checked, no fallback to the weaker scheme.
        let good_bintray = bintray_sign(&secret(), "visualizer");
        let r = post(
            &v,
            HOOK,
            &[
                ("X-Lockstep-Signature", bad_mac.as_str()),
                ("X-Bintray-Hook-Hmac", good_bintray.as_str()),
            ],
            body,
        );
        assert_eq!(assert_refused(&r, 403, "no fallback"), "signature rejected");
        assert_unchanged(&s, &v, &before, "no fallback");

        let malformed = format!("t=abc,v1={}", "0".repeat(64));
        let r = post(&v, HOOK, &[("X-Lockstep-Signature", &malformed)], body);
        assert_refused(&r, 401, "malformed");
        assert_unchanged(&s, &v, &before, "malformed");

        let r = post(&v, HOOK, &[("X-Bintray-Hook-Hmac", "not base64")], body);
        assert_refused(&r, 401, "malformed Bintray");
        assert_unchanged(&s, &v, &before, "malformed Bintray");

        let r = post(&v, HOOK, &[], body);
        assert_refused(&r, 401, "no header");
        assert_unchanged(&s, &v, &before, "no header");

        // A replay: the first is accepted (a version whose deployment fails without touching the
        // cluster), the same header again is refused, in flight or ended.
        let incompatible = s.incompatible().body();
        let header = lockstep_header(incompatible.as_bytes(), now_secs());
        let replay_to = |path: &str, header: &str| {
            post(
                &v,
                path,
                &[("X-Lockstep-Signature", header)],
                incompatible.as_bytes(),
            )
        };
        let replay = || replay_to(HOOK, &header);
        let id = accepted(&v, &replay(), "/deployments");
        assert_eq!(
            assert_refused(&replay(), 403, "replay in flight"),
            "signature rejected"
        );
        failure(&ended(&v, &id));
        assert_eq!(
            assert_refused(&replay(), 403, "replay after the end"),
            "signature rejected"
        );
        // The same signature written otherwise, or sent to the other prefix, is the same replay.
        let (t, mac) = header
            .strip_prefix("t=")
            .and_then(|h| h.split_once(",v1="))
            .expect("t=..,v1=..");
        for (path, written) in [
            (HOOK_V2, header.clone()),
            (HOOK, format!("t={t},v1={}", mac.to_ascii_uppercase())),
            (HOOK, format!("v1={mac}, t={t}")),
        ] {
            let what = format!("replay as {written} to {path}");
            let r = replay_to(path, &written);
            assert_eq!(assert_refused(&r, 403, &what), "signature rejected");
        }
        let listed = listing(&v, "/deployments");
        assert_eq!(listed.len(), 1, "the replays created nothing: {listed:#?}");
        assert_eq!(listed[0]["deploymentId"], id.as_str());
        assert_eq!(bundles(&s), before, "the cluster changed");
    }
}

lockstep_tests::on_both_runtimes! {
    fn test_serve_signature_window_edges_are_accepted(runtime: Runtime) {
        let s = sandbox(&[]);
        let v = serve_runtime(runtime, &s, &[]);
        // The version fails at once: the second asks to retry it.
        let body = s.incompatible().retry_body();
        // |now - t| <= 300 s; a second of slack for the clock to tick between signing and checking.
        for t in [now_secs() - 299, now_secs() + 299] {
            let r = post_signed(&v, HOOK, body.as_bytes(), t);
            let id = accepted(&v, &r, "/deployments");
            failure(&ended(&v, &id));
        }
    }
}

// ---- 5. redelivery ---------------------------------------------------------------------------

lockstep_tests::on_both_runtimes! {
    fn test_serve_redelivery_lands_on_the_deployment_in_flight(runtime: Runtime) {
        let s = sandbox(&[]);
        // lockstep-minimal takes --step-deadline too.
        let v = serve_runtime(runtime, &s, &["--step-deadline", "2s"]);
        let new = s.compatible(0);
        // Its instances never start: the deployment stays in flight until its step deadline.
        s.never_start(&new);
        let body = new.body();
        let t = now_secs();
        let first = accepted(
            &v,
            &post_signed(&v, HOOK, body.as_bytes(), t),
            "/deployments",
        );
        // Signed afresh (another timestamp), as a registry redelivers.
        let second = accepted(
            &v,
            &post_signed(&v, HOOK, body.as_bytes(), t - 1),
            "/deployments",
        );
        assert_eq!(first, second);
        let third = accepted(
            &v,
            &post_signed(&v, HOOK_V2, body.as_bytes(), t - 2),
            "/v2/deployments",
        );
        assert_eq!(first, third);
        let listed = listing(&v, "/deployments");
        assert_eq!(listed.len(), 1, "{listed:#?}");
        assert!(listed[0].get("endedAt").is_none(), "still in flight");
        failure(&ended(&v, &first));
        assert_eq!(listing(&v, "/deployments").len(), 1);
    }
}

// ---- 6. supersession -------------------------------------------------------------------------

/// Waits until the deployment is in its lock-step (a `deploy` event): the key's active one.
fn wait_until_deploying(v: &Serve, id: &str) {
    eventually(&format!("{id} to be deploying"), WAIT, || {
        event_types(&events(v, "/deployments", id))
            .iter()
            .any(|t| t == "deploy")
            .then_some(())
    });
}

/// The `compatibleBundleId` of a deployment's configDownload: the bundle it replaced.
fn replaced(events: &[Value]) -> String {
    events
        .iter()
        .find(|e| e["eventType"] == "configDownload")
        .and_then(|e| e["compatibleBundleId"].as_str())
        .unwrap_or_else(|| panic!("no configDownload: {events:#?}"))
        .to_owned()
}

fn id_with_config(version: &Version, old: &Bundle) -> String {
    let (_, config) = old.id.split_once('-').expect("a config part");
    format!("{}-{config}", &version.digest[..32])
}

#[test]
fn test_serve_later_notification_runs_after_the_active_one() {
    let s = sandbox(&["--start-delay", "1s"]);
    let v = serve(&s, &[]);
    let original = the_running_bundle(&s);
    let mark = mark(&s);
    let (a, b) = (s.compatible(0), s.compatible(1));
    let id_a = accepted(&v, &notify(&v, &a), "/deployments");
    wait_until_deploying(&v, &id_a);
    let id_b = accepted(&v, &notify(&v, &b), "/deployments");
    // B resolves and waits for the key as its pending deployment.
    eventually("B to be queued behind A", WAIT, || {
        let listed = listing(&v, "/deployments");
        let state = |id: &str| {
            listed
                .iter()
                .find(|d| d["deploymentId"] == id)
                .map(|d| d["state"].clone())
        };
        assert_eq!(state(&id_a), Some(json!("deploying")), "{listed:#?}");
        (state(&id_b) == Some(json!("queued"))).then_some(())
    });
    let events_a = ended(&v, &id_a);
    assert_succeeded(&events_a);
    assert_eq!(replaced(&events_a), original.id);
    let events_b = ended(&v, &id_b);
    assert_succeeded(&events_b);
    // B waited for A, then replaced it.
    assert_eq!(replaced(&events_b), id_with_config(&a, &original));
    let deploys: Vec<&Value> = events_b
        .iter()
        .filter(|e| e["eventType"] == "deploy")
        .collect();
    assert_eq!(deploys.len(), LOCK_STEP_3.len(), "{events_b:#?}");
    let after = bundles(&s);
    assert_eq!(after.len(), 3, "{after:#?}");
    for bundle in &after {
        let want = if bundle.digest == b.digest {
            (Some(3), 3)
        } else {
            (Some(0), 0)
        };
        assert_eq!((bundle.scale, bundle.executions), want, "{bundle:?}");
    }
    let ids: Vec<Value> = listing(&v, "/deployments")
        .iter()
        .map(|d| d["deploymentId"].clone())
        .collect();
    assert_eq!(ids, [json!(id_b), json!(id_a)], "newest first");
    assert_history_within_2_to_4(&s, mark);
}

#[test]
fn test_serve_pending_deployment_is_superseded_by_a_later_one() {
    let s = sandbox(&["--start-delay", "1s"]);
    let v = serve(&s, &[]);
    let original = the_running_bundle(&s);
    let mark = mark(&s);
    // Three versions of the key: A and B are the compatible ones; C is the running version
    // itself (notification order decides, not versions). C is published before A, which it
    // replaces: its webhook allows the downgrade (docs/DESIGN.md rule 12).
    let (a, b, c) = (s.compatible(0), s.compatible(1), s.running());
    let id_a = accepted(&v, &notify(&v, &a), "/deployments");
    // A is active while B and C arrive: whichever of B and C resolves first, B ends
    // superseded by C (pending B replaced by later C, or B notified earlier than pending C).
    wait_until_deploying(&v, &id_a);
    let id_b = accepted(&v, &notify(&v, &b), "/deployments");
    let allowing = c.body().replace('}', r#","allow_downgrade":true}"#);
    let r = post_signed(&v, HOOK, allowing.as_bytes(), now_secs());
    let id_c = accepted(&v, &r, "/deployments");
    let events_b = ended(&v, &id_b);
    assert_eq!(failure(&events_b), format!("superseded by {id_c}"));
    assert!(
        !event_types(&events_b).iter().any(|t| t == "load"),
        "B was never loaded: {events_b:#?}"
    );
    let events_a = ended(&v, &id_a);
    assert_succeeded(&events_a);
    let events_c = ended(&v, &id_c);
    assert_succeeded(&events_c);
    // C replaced the one that ran: A.
    assert_eq!(replaced(&events_c), id_with_config(&a, &original));
    let after = bundles(&s);
    assert!(
        after.iter().all(|x| x.digest != b.digest),
        "B loaded: {after:#?}"
    );
    for bundle in &after {
        let want = if bundle.digest == c.digest {
            (Some(3), 3)
        } else {
            (Some(0), 0)
        };
        assert_eq!((bundle.scale, bundle.executions), want, "{bundle:?}");
    }
    let listed = listing(&v, "/deployments");
    let ids: Vec<&Value> = listed.iter().map(|d| &d["deploymentId"]).collect();
    assert_eq!(
        ids,
        [&json!(id_c), &json!(id_b), &json!(id_a)],
        "newest first"
    );
    assert_eq!(listed[1]["state"], "failed");
    assert_eq!(listed[1]["failure"], json!(format!("superseded by {id_c}")));
    assert_store_emptied(&v);
    assert_history_within_2_to_4(&s, mark);
}

// ---- 7. rollback -----------------------------------------------------------------------------

/// Every scale request of the new bundle fails once it runs 2 of 3 (the sandbox refuses each
/// `PUT` to it with 500): the lock-step fails at new → 3 and its rollback at new → 2. The
/// failure says where the bundles are — old at 1, new at 2, as the cluster shows them — not
/// where they were asked to be (new at 3, a request that never took effect).
#[test]
fn test_serve_failed_rollback_reports_the_bundles_where_they_are() {
    // Slow stops leave room to install the fault between new → 2 and new → 3.
    let s = sandbox(&["--stop-delay", "1s"]);
    let v = serve(&s, &["--io-timeout", "500ms"]);
    let new = s.compatible(0);
    let id = accepted(&v, &notify(&v, &new), "/deployments");
    eventually("new at 2", WAIT, || {
        let events = events(&v, "/deployments", &id);
        events
            .iter()
            .any(|e| e["eventType"] == "deploy" && e["bundleNew"]["scale"] == 2)
            .then_some(())
    });
    s.add_faults(&format!(
        r#"{{"requests":[{{"method":"PUT","path":"/v2/bundles/{}","status":500}}]}}"#,
        &new.digest[..32]
    ));
    let events = ended(&v, &id);
    let failure = failure(&events);
    assert!(
        failure.starts_with(
            "scaling the new bundle to 3: the control API answered 500; the rollback failed too \
             (scaling the new bundle to 2: the control API answered 500)"
        ),
        "{failure}"
    );
    assert!(
        failure.ends_with("old bundle at 1, new bundle at 2 (started instances, as last observed)"),
        "{failure}"
    );
    let running = |digest: &str| {
        bundles(&s)
            .into_iter()
            .find(|b| b.digest.starts_with(digest))
            .map(|b| b.started)
    };
    assert_eq!(running(&new.digest), Some(2));
    assert_eq!(running(&s.running().digest), Some(1));
}

#[test]
fn test_serve_instance_that_never_starts_is_rolled_back() {
    let s = sandbox(&[]);
    let v = serve(&s, &["--step-deadline", "2s"]);
    let old = the_running_bundle(&s);
    let new = s.compatible(0);
    s.never_start(&new);
    let mark = mark(&s);
    let id = accepted(&v, &notify(&v, &new), "/deployments");
    let events = ended(&v, &id);
    let failure = failure(&events);
    assert!(failure.contains("rolled back"), "{failure}");
    let last_deploy = events
        .iter()
        .rev()
        .find(|e| e["eventType"] == "deploy")
        .expect("deploy events");
    assert_eq!(
        (&last_deploy["bundleOld"], &last_deploy["bundleNew"]),
        (&json!({"scale": 3}), &json!({"scale": 0})),
        "{events:#?}"
    );
    assert_store_emptied(&v);
    let old_after = bundle_of(&s, &old.digest);
    assert_eq!((old_after.scale, old_after.started), (Some(3), 3));
    let new_after = bundle_of(&s, &new.digest);
    assert_eq!(new_after.scale, Some(0), "{new_after:?}");
    assert_eq!(new_after.started, 0);
    // Between N-1 and N+1 started instances of the two, at every change after the
    // notification.
    assert_history_within_2_to_4(&s, mark);
}

// ---- 8. the status table ---------------------------------------------------------------------

/// `{"package":"visualizer","version":..,"x":<a value nested to depth levels in all>}`.
fn nested_body(version: &Version, depth: usize) -> String {
    format!(
        r#"{{"package":"visualizer","version":"{}","x":{}1{}}}"#,
        version.full(),
        "[".repeat(depth - 1),
        "]".repeat(depth - 1)
    )
}

lockstep_tests::on_both_runtimes! {
    fn test_serve_400_malformed_webhooks(runtime: Runtime) {
        let s = sandbox(&[]);
        let v = serve_runtime(runtime, &s, &[]);
        let before = bundles(&s);
        let version = s.incompatible();
        let good = version.body();
        let now = now_secs();
        let cases: Vec<(&str, &str, Vec<u8>)> = vec![
            (
                "`%` in a segment",
                "/deployments/type%73afe/bundle/typesafe",
                good.clone().into_bytes(),
            ),
            (
                "invalid JSON",
                HOOK,
                br#"{"package":"visualizer","#.to_vec(),
            ),
            (
                "invalid UTF-8",
                HOOK,
                [
                    &br#"{"package":"visual"#[..],
                    b"\xff",
                    format!(r#"izer","version":"{}"}}"#, version.full()).as_bytes(),
                ]
                .concat(),
            ),
            (
                "duplicate field",
                HOOK,
                format!(
                    r#"{{"package":"visualizer","package":"visualizer","version":"{}"}}"#,
                    version.full()
                )
                .into_bytes(),
            ),
            (
                "missing field",
                HOOK,
                br#"{"package":"visualizer"}"#.to_vec(),
            ),
            ("17 deep", HOOK, nested_body(&version, 17).into_bytes()),
        ];
        for (what, path, body) in &cases {
            // Lockstep-signed: the signature holds, only the request itself is at fault.
            let r = post_signed(&v, path, body, now);
            assert_refused(&r, 400, what);
            assert_unchanged(&s, &v, &before, what);
        }
        // A head that is not HTTP.
        let mut stream = connect(v.client.addr);
        stream.write_all(b"NOT HTTP AT ALL\r\n\r\n").expect("write");
        refused_then_closed(&mut stream, 400, "not HTTP");
        assert_unchanged(&s, &v, &before, "not HTTP");
        // 16 deep is accepted (a version whose deployment fails without touching the cluster).
        let r = post_signed(&v, HOOK, nested_body(&version, 16).as_bytes(), now);
        let id = accepted(&v, &r, "/deployments");
        failure(&ended(&v, &id));
        assert_eq!(bundles(&s), before);
    }
}

#[test]
fn test_serve_403_package_outside_the_allow_list() {
    let s = sandbox(&[]);
    let v = serve(&s, &["--allow", "typesafe/bundle/other"]);
    let before = bundles(&s);
    let r = notify(&v, &s.compatible(0));
    assert_refused(&r, 403, "not allowed");
    assert_unchanged(&s, &v, &before, "not allowed");
    // The package is the body's, not the third path segment (which repeats the org).
    let body = s.compatible(0).body();
    let r = post_signed(
        &v,
        "/deployments/typesafe/bundle/other",
        body.as_bytes(),
        now_secs(),
    );
    assert_refused(&r, 403, "not allowed, other third segment");
    assert_unchanged(&s, &v, &before, "not allowed, other third segment");
    let bintray = bintray_sign(&secret(), "visualizer");
    let r = post(
        &v,
        HOOK,
        &[("X-Bintray-Hook-Hmac", bintray.as_str())],
        s.compatible(0).body().as_bytes(),
    );
    assert_refused(&r, 403, "not allowed, Bintray");
    assert_unchanged(&s, &v, &before, "not allowed, Bintray");

    // Allowed, whatever the third segment is.
    let allowed = serve(&s, &["--allow", "typesafe/*/visualizer"]);
    let body = s.incompatible().body();
    let r = post_signed(
        &allowed,
        "/deployments/typesafe/bundle/whatever",
        body.as_bytes(),
        now_secs(),
    );
    let id = accepted(&allowed, &r, "/deployments");
    failure(&ended(&allowed, &id));
}

lockstep_tests::on_both_runtimes! {
    fn test_serve_404_and_405(runtime: Runtime) {
        let s = sandbox(&[]);
        let v = serve_runtime(runtime, &s, &[]);
        let before = bundles(&s);
        for path in [
            "/nope",
            "/deployments/a/b",
            "/deployments/a/b/c/d",
            "/v2/deployments/a/b",
            "/deploymentsx",
            "/deployments/not-an-id",
            // A valid v4 id never used.
            "/deployments/7c1f21a3-91d1-44fa-8875-cf9a316d68ce",
            "/v2/deployments/7c1f21a3-91d1-44fa-8875-cf9a316d68ce",
        ] {
            assert_refused(&v.client.get(path), 404, path);
        }
        for (method, path, allow) in [
            ("DELETE", "/deployments", "GET, HEAD"),
            ("POST", "/deployments", "GET, HEAD"),
            ("POST", "/v2/deployments/events", "GET, HEAD"),
            (
                "PUT",
                "/deployments/7c1f21a3-91d1-44fa-8875-cf9a316d68ce",
                "GET, HEAD",
            ),
            ("GET", HOOK, "POST"),
            ("GET", HOOK_V2, "POST"),
            ("POST", "/healthz", "GET, HEAD"),
        ] {
            let r = v.client.request(method, path, &[], b"");
            let what = format!("{method} {path}");
            assert_refused(&r, 405, &what);
            assert_eq!(r.header("allow"), Some(allow), "{what}");
        }
        assert_unchanged(&s, &v, &before, "404 and 405");
    }
}

#[test]
fn test_serve_408_431_at_their_edges() {
    let s = sandbox(&[]);
    let v = serve(
        &s,
        &[
            "--read-timeout",
            "300ms",
            "--max-body",
            "100",
            "--max-head",
            "512",
        ],
    );
    let before = bundles(&s);
    let addr = v.client.addr;

    // 408: half a head, then nothing: the answer, then the connection closes.
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .expect("write");
    refused_then_closed(&mut stream, 408, "half a head");
    // And so for a body that does not come.
    let mut stream = connect(addr);
    stream
        .write_all(
            format!("POST {HOOK} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{{\"pack")
                .as_bytes(),
        )
        .expect("write");
    refused_then_closed(&mut stream, 408, "half a body");
    assert_unchanged(&s, &v, &before, "408");

    // 413 at its edge: test_413_at_its_edge, for both runtimes.

    // 431: a head of exactly 512 bytes is read, 513 is not.
    let head = |len: usize| {
        let bare = "GET /healthz HTTP/1.1\r\nX-Pad: \r\n\r\n".len();
        format!(
            "GET /healthz HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(len - bare)
        )
    };
    let mut stream = connect(addr);
    let h512 = head(512);
    assert_eq!(h512.len(), 512);
    stream.write_all(h512.as_bytes()).expect("write");
    let raw = read_response(&mut stream).expect("a response");
    assert_eq!((raw.status, raw.body.as_slice()), (200, &b"ok\n"[..]));
    let mut stream = connect(addr);
    stream.write_all(head(513).as_bytes()).expect("write");
    refused_then_closed(&mut stream, 431, "a head of 513 bytes");
    assert_unchanged(&s, &v, &before, "431");
}

lockstep_tests::on_both_runtimes! {
    fn test_serve_411_and_a_chunked_body_is_never_read_as_a_request(runtime: Runtime) {
        let s = sandbox(&[]);
        let v = serve_runtime(runtime, &s, &[]);
        let before = bundles(&s);
        let addr = v.client.addr;
        let body = s.compatible(0).body();
        let header = lockstep_header(body.as_bytes(), now_secs());

        // A POST without Content-Length.
        // Each request is written in one piece: the server closes after its refusal, and a
        // piece arriving after that would be reset, failing the test's write, not the server.
        let mut stream = connect(addr);
        let request = format!(
            "POST {HOOK} HTTP/1.1\r\nContent-Type: application/json\r\nX-Lockstep-Signature: \
             {header}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("write");
        refused_then_closed(&mut stream, 411, "no Content-Length");
        assert_unchanged(&s, &v, &before, "no Content-Length");

        // A chunked body holding a request; then a last request that closes. Whether the server
        // closes after the 411 or skips the body, the request inside the body is never answered.
        let inner = "GET /healthz HTTP/1.1\r\n\r\n";
        let mut stream = connect(addr);
        let request = format!(
            "POST {HOOK} HTTP/1.1\r\nContent-Type: application/json\r\nX-Lockstep-Signature: \
             {header}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{inner}\r\n0\r\n\r\n\
             GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n",
            inner.len()
        );
        stream.write_all(request.as_bytes()).expect("write");
        let raw = read_response(&mut stream).expect("a response");
        assert_refused(&raw.response(), 411, "chunked");
        let text = String::from_utf8_lossy(&read_until_closed(&mut stream)).into_owned();
        let statuses: Vec<&str> = text
            .match_indices("HTTP/1.1 ")
            .map(|(at, _)| &text[at + 9..at + 12])
            .collect();
        assert!(
            statuses.is_empty() || statuses == ["404"],
            "the chunked body was read as a request: {text}"
        );
        assert_unchanged(&s, &v, &before, "chunked");
    }
}

lockstep_tests::on_both_runtimes! {
    fn test_serve_415_and_422(runtime: Runtime) {
        let s = sandbox(&[]);
        let v = serve_runtime(runtime, &s, &[]);
        let before = bundles(&s);
        let version = s.incompatible();
        // It fails at once: each accepted one below asks to retry it.
        let body = version.retry_body();
        let header = lockstep_header(body.as_bytes(), now_secs());
        let r = v.client.request(
            "POST",
            HOOK,
            &[
                ("Content-Type", "text/plain"),
                ("X-Lockstep-Signature", &header),
            ],
            body.as_bytes(),
        );
        assert_refused(&r, 415, "text/plain");
        assert_unchanged(&s, &v, &before, "415");

        let now = now_secs();
        let full = version.full();
        for (what, package, version) in [
            ("no digest", "visualizer", version.tag.clone()),
            (
                "63 hex",
                "visualizer",
                format!("{}-{}", version.tag, &version.digest[..63]),
            ),
            (
                "65 hex",
                "visualizer",
                format!("{}-{}0", version.tag, version.digest),
            ),
            ("package not a segment", "visu alizer", full.clone()),
        ] {
            let body = format!(r#"{{"package":"{package}","version":"{version}"}}"#);
            let r = post_signed(&v, HOOK, body.as_bytes(), now);
            assert_refused(&r, 422, what);
            assert_unchanged(&s, &v, &before, what);
        }

        // Parameters and the case of the media type are ignored, and a missing one is accepted;
        // so is a digest in upper case, normalised (a version that changes nothing).
        let upper = format!(
            r#"{{"package":"visualizer","version":"{}-{}","retry":true}}"#,
            version.tag,
            version.digest.to_ascii_uppercase()
        );
        for (n, (content_type, body)) in [
            (Some("application/json; charset=utf-8"), &body),
            (Some("Application/JSON"), &body),
            (None, &body),
            (Some("application/json"), &upper),
        ]
        .into_iter()
        .enumerate()
        {
            let header = lockstep_header(body.as_bytes(), now - n as u64);
            let mut headers = vec![("X-Lockstep-Signature", header.as_str())];
            headers.extend(content_type.map(|t| ("Content-Type", t)));
            let r = v.client.request("POST", HOOK, &headers, body.as_bytes());
            let id = accepted(&v, &r, "/deployments");
            failure(&ended(&v, &id));
        }
        assert_eq!(bundles(&s), before);
        for d in listing(&v, "/deployments") {
            assert_eq!(d["version"], full.as_str(), "{d}");
        }
    }
}

#[test]
fn test_serve_503_when_the_deployments_in_flight_are_at_the_limit() {
    let s = sandbox(&[]);
    let v = serve(&s, &["--max-in-flight", "1", "--step-deadline", "3s"]);
    let (first, second) = (s.compatible(0), s.compatible(1));
    // An ended deployment leaves the table.
    let ended_one = accepted(&v, &notify(&v, &s.incompatible()), "/deployments");
    failure(&ended(&v, &ended_one));
    // The first never gets its instance started: in flight until its step deadline.
    s.never_start(&first);
    let body = first.body();
    let t = now_secs();
    let id = accepted(
        &v,
        &post_signed(&v, HOOK, body.as_bytes(), t),
        "/deployments",
    );
    let stuck = eventually("the first to wait for its instance", WAIT, || {
        let all = bundles(&s);
        all.iter()
            .any(|b| b.digest == first.digest && b.scale == Some(1) && b.executions == 1)
            .then_some(all)
    });
    let second_body = second.body();
    let second_header = lockstep_header(second_body.as_bytes(), now_secs());
    let post_second = || {
        post(
            &v,
            HOOK,
            &[("X-Lockstep-Signature", &second_header)],
            second_body.as_bytes(),
        )
    };
    let r = post_second();
    assert_refused(&r, 503, "busy");
    let retry: u32 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(retry > 0);
    assert_eq!(bundles(&s), stuck, "the cluster changed");
    let listed = listing(&v, "/deployments");
    assert_eq!(listed.len(), 2, "{listed:#?}");
    assert_eq!(listed[0]["deploymentId"], id.as_str());
    // A redelivery of the one in flight is still answered.
    let again = post_signed(&v, HOOK, body.as_bytes(), t - 1);
    assert_eq!(accepted(&v, &again, "/deployments"), id);
    // Once the first ended, the table has room; the refused signature was not remembered,
    // so the same request is accepted now.
    let failure = failure(&ended(&v, &id));
    assert!(failure.contains("rolled back"), "{failure}");
    let later = accepted(&v, &post_second(), "/deployments");
    assert_succeeded(&ended(&v, &later));
}

#[test]
fn test_serve_503_when_the_replay_cache_is_full() {
    let s = sandbox(&[]);
    let v = serve(&s, &["--replay-cache", "1", "--replay-window", "2s"]);
    let before = bundles(&s);
    let version = s.incompatible();
    let t = now_secs();
    let id = accepted(
        &v,
        &post_signed(&v, HOOK, version.body().as_bytes(), t),
        "/deployments",
    );
    // Another lockstep signature while the first is live: no room to remember it.
    let body = nested_body(&version, 2);
    let r = post_signed(&v, HOOK, body.as_bytes(), t);
    assert_refused(&r, 503, "replay cache full");
    assert!(r.header("retry-after").is_some(), "Retry-After");
    failure(&ended(&v, &id));
    let listed = listing(&v, "/deployments");
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(bundles(&s), before);
    // The Bintray scheme has no replay cache: not 503, but 409, as the version failed (and
    // a Bintray-signed body cannot ask to retry it).
    let bintray = bintray_sign(&secret(), "visualizer");
    let r = post(
        &v,
        HOOK,
        &[("X-Bintray-Hook-Hmac", bintray.as_str())],
        version.retry_body().as_bytes(),
    );
    assert_refused(&r, 409, "the version failed, Bintray");
    // Once the first signature's window has passed, its slot is free again.
    let body = version.retry_body();
    let third = eventually("the replay cache to have room", WAIT, || {
        let r = post_signed(&v, HOOK, body.as_bytes(), now_secs());
        if r.status == 202 {
            return Some(r);
        }
        assert_refused(&r, 503, "replay cache still full");
        None
    });
    accepted(&v, &third, "/deployments");
}

#[test]
fn test_serve_retention_forgets_the_oldest_ended_deployment() {
    let s = sandbox(&[]);
    let v = serve(&s, &["--retention", "1"]);
    let body = s.incompatible().body();
    let t = now_secs();
    let r = post_signed(&v, HOOK, body.as_bytes(), t);
    let first = accepted(&v, &r, "/deployments");
    failure(&ended(&v, &first));
    assert_eq!(events(&v, "/deployments", &first).len(), 3);
    // The same version again, signed afresh and asking to retry it: a new deployment.
    let r = post_signed(&v, HOOK, s.incompatible().retry_body().as_bytes(), t - 1);
    let second = accepted(&v, &r, "/deployments");
    assert_ne!(first, second);
    failure(&ended(&v, &second));
    for prefix in ["/deployments", "/v2/deployments"] {
        let r = v.client.get(&format!("{prefix}/{first}"));
        assert_refused(&r, 404, "forgotten");
        let listed = listing(&v, prefix);
        assert_eq!(listed.len(), 1, "{listed:#?}");
        assert_eq!(listed[0]["deploymentId"], second.as_str());
    }
}

// ---- 9. transport limits ---------------------------------------------------------------------

#[test]
fn test_serve_closes_an_idle_kept_alive_connection() {
    let s = sandbox(&[]);
    let v = serve(&s, &["--idle-timeout", "300ms"]);
    // An event stream is not idle: it outlives the idle time-out (heartbeats every 100 ms).
    let mut events = v.client.stream("/deployments/events");
    let opened = Instant::now();
    events.read_until(WAIT, |t| {
        heartbeats(t) >= 3 && opened.elapsed() > Duration::from_millis(600)
    });
    let mut stream = connect(v.client.addr);
    // Kept alive: two requests on the connection.
    assert_eq!(ask_healthz(&mut stream), 200);
    assert_eq!(ask_healthz(&mut stream), 200);
    // Then idle: the server closes it (the read waits up to WAIT for that).
    let mut buf = [0u8; 16];
    let n = stream.read(&mut buf).expect("closed, not timed out");
    assert_eq!(n, 0, "{:?}", &buf[..n]);
}

#[test]
fn test_serve_max_connections_sheds_the_longest_waiting() {
    let s = sandbox(&[]);
    let v = serve(&s, &["--max-connections", "2", "--max-event-streams", "1"]);
    let addr = v.client.addr;
    let mut first = connect(addr);
    let mut second = connect(addr);
    assert_eq!(ask_healthz(&mut first), 200);
    assert_eq!(ask_healthz(&mut second), 200);
    // Both wait, kept alive; a third is served at once, and the one that has waited longest
    // is closed for it.
    let mut third = connect(addr);
    assert_eq!(ask_healthz(&mut third), 200);
    assert_eq!(read_until_closed(&mut first), b"");
    assert_eq!(ask_healthz(&mut second), 200);
    assert_eq!(ask_healthz(&mut third), 200);
}

#[test]
fn test_serve_max_connections_refuses_when_every_slot_is_busy() {
    let s = sandbox(&[]);
    let v = serve(&s, &["--max-connections", "2", "--max-event-streams", "1"]);
    let addr = v.client.addr;
    let mut events = v.client.stream("/deployments/events");
    events.read_until(WAIT, |t| heartbeats(t) >= 1);
    // The other slot works: it sends thousands of pipelined requests for the metrics and
    // reads only the first answer, so the server answers one after the other and soon blocks
    // writing them into the full socket, working. (A request whose head or body is still
    // coming does not work: it waits, and would be shed for a newcomer; so does a connection
    // between two requests, for the moment the server reads the next.) A newcomer that met
    // it in such a moment took its place and was answered: then try again, until one meets
    // every slot busy and is refused at once, 503 and closed.
    let (answer, _working) = eventually("a newcomer refused with every slot busy", WAIT, || {
        let mut working = connect(addr);
        let requests = "GET /metrics HTTP/1.1\r\nHost: l\r\n\r\n".repeat(3000);
        working.write_all(requests.as_bytes()).ok()?;
        let first = read_response(&mut working).ok()?;
        assert_eq!(first.status, 200);
        let mut newcomer = connect(addr);
        newcomer
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n")
            .ok()?;
        let answer = String::from_utf8(read_until_closed(&mut newcomer)).ok()?;
        answer
            .starts_with("HTTP/1.1 503 ")
            .then_some((answer, working))
    });
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("\r\nRetry-After: 5\r\n"), "{answer}");
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\ntoo many connections; retry later\n"),
        "{answer}"
    );
    // The busy ones are untouched: the stream goes on.
    events.read_until(WAIT, |t| heartbeats(t) >= 2);
    // The stream's client goes: its slot is free for the next connection.
    drop(events);
    eventually("a slot to be free again", WAIT, || {
        let mut next = connect(addr);
        next.write_all(b"GET /healthz HTTP/1.1\r\nHost: lockstep\r\n\r\n")
            .ok()?;
        let raw = read_response(&mut next).ok()?;
        (raw.status == 200).then_some(())
    });
}

// ---- 10. the event stream --------------------------------------------------------------------

/// The complete frames (`...\n\n`) of a stream's text.
fn frames(text: &str) -> Vec<&str> {
    let complete = &text[..text.rfind("\n\n").map_or(0, |at| at + 2)];
    complete
        .split("\n\n")
        .filter(|frame| !frame.is_empty())
        .collect()
}

fn heartbeats(text: &str) -> usize {
    frames(text).iter().filter(|f| **f == ":").count()
}

lockstep_tests::on_both_runtimes! {
    fn test_serve_event_stream(runtime: Runtime) {
        let s = sandbox(&[]);
        let v = serve_runtime(runtime, &s, &[]);
        let mut streams = [
            v.client.stream("/deployments/events"),
            v.client.stream("/v2/deployments/events"),
        ];
        let mut texts = [String::new(), String::new()];
        for (stream, text) in streams.iter_mut().zip(&mut texts) {
            *text = stream.read_until(WAIT, |t| heartbeats(t) >= 3);
        }
        let id = accepted(&v, &notify(&v, &s.compatible(0)), "/deployments");
        let end = format!("event:deploymentSuccess\ndata:{id}\n\n");
        for (stream, text) in streams.iter_mut().zip(&mut texts) {
            let rest = stream.read_until(WAIT, |t| {
                t.contains(&end) || t.contains("event:deploymentFailure")
            });
            text.push_str(&rest);
        }
        let logged = event_types(&ended(&v, &id));
        for text in &texts {
            for line in text.lines().filter(|l| !l.is_empty()) {
                assert_eq!(line.matches(':').count(), 1, "{line:?} in {text:?}");
            }
            let mut streamed = vec![];
            for frame in frames(text) {
                if frame == ":" {
                    continue;
                }
                let (kind, data) = frame
                    .strip_prefix("event:")
                    .and_then(|f| f.split_once("\ndata:"))
                    .unwrap_or_else(|| panic!("not an event frame: {frame:?}"));
                assert_eq!(data, id, "{frame:?}");
                streamed.push(kind.to_owned());
            }
            assert_eq!(streamed, logged, "{text}");
            assert!(heartbeats(text) >= 3);
        }
        assert_eq!(logged.last().map(String::as_str), Some("deploymentSuccess"));
    }
}

// ---- 11, 12. /v2 and /healthz ----------------------------------------------------------------

lockstep_tests::on_both_runtimes! {
    fn test_serve_v2_answers_as_v1(runtime: Runtime) {
        let s = sandbox(&[]);
        let v = serve_runtime(runtime, &s, &[]);
        let same = |path: &str| {
            let (a, b) = (v.client.get(path), v.client.get(&format!("/v2{path}")));
            assert_eq!(
                (a.status, a.header("content-type"), &a.body),
                (b.status, b.header("content-type"), &b.body),
                "{path}"
            );
            a
        };
        assert_eq!(same("/deployments").json(), json!([]));
        let version = s.incompatible();
        let body = version.body();
        let t = now_secs();
        let r = post_signed(&v, HOOK_V2, body.as_bytes(), t);
        let id = accepted(&v, &r, "/v2/deployments");
        failure(&ended(&v, &id));
        assert_eq!(
            same("/deployments").json().as_array().map(Vec::len),
            Some(1)
        );
        assert_eq!(same(&format!("/deployments/{id}")).status, 200);
        assert_refused(
            &same("/deployments/7c1f21a3-91d1-44fa-8875-cf9a316d68ce"),
            404,
            "unknown id",
        );
        assert_refused(&same("/deployments/x/y"), 404, "unknown path");
        // The webhook is the same under both prefixes: a redelivery under /deployments of what
        // /v2 notified would land on it while in flight; here it ended (failed), so asked to
        // retry it, it is a new one.
        let r = post_signed(&v, HOOK, version.retry_body().as_bytes(), t - 1);
        let again = accepted(&v, &r, "/deployments");
        failure(&ended(&v, &again));
        assert_eq!(
            same("/deployments").json().as_array().map(Vec::len),
            Some(2)
        );
    }
}

lockstep_tests::on_both_runtimes! {
    fn test_serve_healthz(runtime: Runtime) {
        let s = sandbox(&[]);
        let v = serve_runtime(runtime, &s, &[]);
        let r = v.client.get("/healthz");
        assert_eq!(r.status, 200);
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with("text/plain"))
        );
        assert_eq!(r.text(), "ok\n");
    }
}

#[test]
fn test_serve_header_of_a_disabled_scheme_is_ignored() {
    let s = sandbox(&[]);
    let version = s.incompatible();
    let body = version.body();
    let bintray = bintray_sign(&secret(), "visualizer");
    let bad_lockstep = format!("t={},v1={}", now_secs(), "0".repeat(64));

    let lockstep_only = serve(&s, &["--schemes", "lockstep"]);
    let before = bundles(&s);
    let r = post(
        &lockstep_only,
        HOOK,
        &[("X-Bintray-Hook-Hmac", bintray.as_str())],
        body.as_bytes(),
    );
    // The 401 names only the scheme accepted.
    assert_eq!(
        assert_refused(&r, 401, "Bintray header, lockstep scheme only"),
        "a signature is required: X-Lockstep-Signature"
    );
    assert_unchanged(&s, &lockstep_only, &before, "Bintray header ignored");

    let bintray_only = serve(&s, &["--schemes", "bintray"]);
    let r = post(&bintray_only, HOOK, &[], body.as_bytes());
    assert_eq!(
        assert_refused(&r, 401, "no header, Bintray scheme only"),
        "a signature is required: X-Bintray-Hook-Hmac"
    );
    let r = post(
        &bintray_only,
        HOOK,
        &[
            ("X-Lockstep-Signature", &bad_lockstep),
            ("X-Bintray-Hook-Hmac", bintray.as_str()),
        ],
        body.as_bytes(),
    );
    let id = accepted(&bintray_only, &r, "/deployments");
    failure(&ended(&bintray_only, &id));
}

// ---- 13. start-up ----------------------------------------------------------------------------

/// With `--read-credential-file`, the reads (the deployments, their events and stream, the
/// metrics) need it as HTTP Basic authentication; webhooks (their signature is their
/// credential) and `/healthz` do not. Without it, reads are open (every other test).
#[test]
fn test_serve_read_credential_guards_the_reads() {
    let s = sandbox(&[]);
    let dir = TempDir::new("lockstep-read-credential");
    let file = dir.path().join("readers");
    std::fs::write(&file, "reader:s3cret-pass\n").expect("write the credential");
    let file = file.display().to_string();
    let v = serve(&s, &["--read-credential-file", &file]);
    // RFC 7617: base64 of "reader:s3cret-pass".
    let good = ("Authorization", "Basic cmVhZGVyOnMzY3JldC1wYXNz");
    let wrong = ("Authorization", "Basic cmVhZGVyOndyb25n");
    // The webhook needs no read credential.
    let r = notify(&v, &s.compatible(0));
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.text();
    for path in [
        "/deployments".to_owned(),
        format!("/deployments/{id}"),
        format!("/v2/deployments/{id}"),
        "/metrics".to_owned(),
        "/deployments/events".to_owned(),
    ] {
        for headers in [&[][..], &[wrong][..]] {
            let r = v.client.request("GET", &path, headers, b"");
            assert_refused(&r, 401, &path);
            assert_eq!(
                r.header("www-authenticate"),
                Some("Basic realm=\"lockstep\", charset=\"UTF-8\""),
                "{path}"
            );
            assert_eq!(r.text(), "reading needs the read credential\n", "{path}");
        }
        if path.ends_with("/events") {
            continue;
        }
        let r = v.client.request("GET", &path, &[good], b"");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    assert_eq!(v.client.get("/healthz").status, 200);
    let events = eventually("the deployment to end", WAIT, || {
        let r = v
            .client
            .request("GET", &format!("/deployments/{id}"), &[good], b"");
        let events = r.json().as_array().cloned()?;
        (events.last()?["eventType"] == "deploymentSuccess").then_some(events)
    });
    assert_succeeded(&events);
}

/// ConductR not answering at start-up is no reason to refuse: lockstep starts, warns once,
/// and `/healthz` says so in its body (still 200: webhooks are taken, and their deployments
/// wait for ConductR up to their deadlines).
#[test]
fn test_serve_starts_when_conductr_does_not_answer_and_says_so() {
    let s = sandbox(&[]);
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let nowhere = format!("http://127.0.0.1:{port}");
    let v = serve(&s, &["--conductr", &nowhere]);
    let body = eventually("/healthz to say ConductR does not answer", WAIT, || {
        let r = v.client.get("/healthz");
        assert_eq!(r.status, 200);
        let text = r.text();
        text.contains("does not answer").then_some(text)
    });
    assert!(
        body.starts_with("ok; the ConductR control API does not answer ("),
        "{body}"
    );
    eventually("a warning on stderr", WAIT, || {
        v.process
            .stderr()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("the ConductR control API does not answer"))
            .then_some(())
    });
}

/// The scheme of the repository's URL is not case-sensitive: `HTTP://` is a URL, not a
/// directory that would fail at the first webhook.
#[test]
fn test_serve_repository_scheme_in_any_case() {
    let s = sandbox(&[]);
    let repository = s.url().replacen("http://", "HTTP://", 1) + "/repository";
    let v = serve(&s, &["--repository", &repository]);
    let id = accepted(&v, &notify(&v, &s.compatible(0)), "/deployments");
    assert_succeeded(&ended(&v, &id));
}

#[test]
fn test_serve_refuses_to_start_without_a_secret() {
    let (code, stderr) = run_to_exit(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--repository",
            "http://127.0.0.1:9/repository",
        ],
        &[],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("BINTRAY_WEBHOOK_SECRET") && stderr.contains("--secret-file"),
        "{stderr}"
    );
    // An empty one is no secret either, from the environment or from a file.
    let (code, stderr) = run_to_exit(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--repository",
            "http://127.0.0.1:9/repository",
        ],
        &[("BINTRAY_WEBHOOK_SECRET", "")],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("BINTRAY_WEBHOOK_SECRET"), "{stderr}");
    let dir = TempDir::new("lockstep-serve-empty-secret");
    let file = dir.path().join("secret");
    std::fs::write(&file, "\n").expect("write the secret file");
    let (code, stderr) = run_to_exit(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--repository",
            "http://127.0.0.1:9/repository",
            "--secret-file",
            file.to_str().expect("UTF-8"),
        ],
        &[],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--secret-file"), "{stderr}");
}

#[test]
fn test_serve_refuses_to_start_without_a_repository() {
    let (code, stderr) = run_to_exit(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("BINTRAY_WEBHOOK_SECRET", SECRET)],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--repository"), "{stderr}");
}

#[test]
fn test_serve_listens_where_deployments_bind_says() {
    let s = sandbox(&[]);
    let dir = TempDir::new("lockstep-serve-bind");
    let conductr = s.url();
    let repository = format!("{conductr}/repository");
    let data = dir.path().to_str().expect("UTF-8").to_owned();
    let mut p = Process::start(
        &binary("lockstep", "lockstep"),
        &[
            "serve",
            "--conductr",
            &conductr,
            "--repository",
            &repository,
            "--data-dir",
            &data,
        ],
        &[
            ("BINTRAY_WEBHOOK_SECRET", SECRET),
            ("DEPLOYMENTS_BIND_IP", "127.0.0.1"),
            ("DEPLOYMENTS_BIND_PORT", "0"),
        ],
    );
    let addr = p.listening();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);
    assert_eq!(Client::new(addr).get("/healthz").text(), "ok\n");
}

#[test]
fn test_serve_secret_file_with_a_trailing_newline() {
    let s = sandbox(&[]);
    let dir = TempDir::new("lockstep-serve-secret");
    let file = dir.path().join("secret");
    std::fs::write(&file, format!("{SECRET}\n")).expect("write the secret file");
    let file = file.to_str().expect("UTF-8").to_owned();
    // No secret in the environment: the file's alone.
    let v = serve_with(&s, &["--secret-file", &file], &[]);
    let version = s.incompatible();
    let body = version.body();
    let with_newline = Secret::new(format!("{SECRET}\n").as_bytes()).expect("a secret");
    let header = lockstep_sign(&with_newline, now_secs(), body.as_bytes());
    let r = post(
        &v,
        HOOK,
        &[("X-Lockstep-Signature", header.as_str())],
        body.as_bytes(),
    );
    assert_eq!(
        assert_refused(&r, 403, "the newline is not part of the secret"),
        "signature rejected"
    );
    let id = accepted(&v, &notify(&v, &version), "/deployments");
    failure(&ended(&v, &id));
    // The Bintray MAC verifies with the file's secret too: past the signature, the 409 of a
    // version that failed.
    let bintray = bintray_sign(&secret(), "visualizer");
    let r = post(
        &v,
        HOOK,
        &[("X-Bintray-Hook-Hmac", bintray.as_str())],
        body.as_bytes(),
    );
    assert_refused(&r, 409, "past the Bintray signature");
}

// ---- lockstep-minimal: where it answers otherwise (README, "The minimal runtime") -----------

lockstep_tests::on_both_runtimes! {
    fn test_413_at_its_edge(runtime: Runtime) {
        let s = sandbox(&[]);
        let v = serve_runtime(runtime, &s, &["--max-body", "100"]);
        let before = bundles(&s);
        let short = r#"{"package":"visualizer","version":"1.0.0-9f8928a"}"#;
        let body100 = format!("{short}{}", " ".repeat(100 - short.len()));
        let r = post_signed(&v, HOOK, body100.as_bytes(), now_secs());
        assert_refused(&r, 422, "100 bytes");
        let body101 = format!("{body100} ");
        let r = post_signed(&v, HOOK, body101.as_bytes(), now_secs());
        assert_refused(&r, 413, "101 bytes");
        assert_unchanged(&s, &v, &before, "413");
    }
}

/// Each documented difference of `lockstep-minimal` is safe: it changes nothing, and the
/// connection is closed; and at its connection limit it sheds as serve does.
#[test]
fn test_minimal_differences_change_nothing_and_close() {
    let s = sandbox(&[]);
    let v = serve_runtime(
        Runtime::Minimal,
        &s,
        &["--io-timeout", "300ms", "--max-connections", "2"],
    );
    let before = bundles(&s);
    let addr = v.client.addr;

    // No reason phrase in the status line.
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        .expect("write");
    let raw = read_response(&mut stream).expect("a response");
    assert!(raw.head.starts_with("HTTP/1.1 200 \r\n"), "{}", raw.head);

    // Half a head, then nothing: closed without an answer (serve: 408).
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .expect("write");
    assert_eq!(read_until_closed(&mut stream), b"", "half a head");

    // A head larger than the buffer: picoserve's 400, then closed (serve: 431).
    let mut stream = connect(addr);
    let pad = "a".repeat(64 * 1024);
    let _ = write!(stream, "GET /healthz HTTP/1.1\r\nX-Pad: {pad}\r\n\r\n");
    let answered = read_until_closed(&mut stream);
    let text = String::from_utf8_lossy(&answered);
    assert!(
        text.starts_with("HTTP/1.1 400"),
        "an oversized head: {text}"
    );

    // A malformed request line: picoserve's 400, then closed (serve: 400 `malformed request`).
    let mut stream = connect(addr);
    stream.write_all(b"NOT HTTP AT ALL\r\n\r\n").expect("write");
    let text = String::from_utf8_lossy(&read_until_closed(&mut stream)).into_owned();
    assert!(text.starts_with("HTTP/1.1 400"), "a malformed line: {text}");

    // Past --max-connections, as serve does: the longest-waiting connection is shed for the
    // newcomer, which is served.
    let mut idle: Vec<_> = (0..2).map(|_| connect(addr)).collect();
    // Accepted in the order they connected: both held, waiting, when the newcomer comes.
    let mut third = connect(addr);
    assert_eq!(ask_healthz(&mut third), 200);
    // The first, waiting longest, was closed without an answer.
    assert_eq!(read_until_closed(&mut idle[0]), b"", "the shed connection");
    drop(idle);
    assert_unchanged(&s, &v, &before, "the differences");
}

/// `lockstep-minimal` serves a kept-alive connection without a heap allocation: built with a
/// counting allocator (feature `count-allocations`, its count in `/metrics`), it answers
/// 10,000 webhooks (redeliveries under both prefixes) and 10,000 reads (listings, a
/// deployment's events under both prefixes, `/healthz`) after a warm-up, while a deployment is
/// in flight and its agent waits, and the count has not moved.
#[test]
fn test_minimal_serves_kept_alive_requests_without_allocating() {
    let s = sandbox(&[]);
    let program = lockstep_tests::binary_with_feature(
        "lockstep-minimal",
        "lockstep-minimal",
        Some("count-allocations"),
    );
    let v = serve_program_on(
        &program,
        &[],
        &s,
        TempDir::new("lockstep-serve-data"),
        // The held download must not time out while the test runs.
        &["--io-timeout", "1h"],
        &[("BINTRAY_WEBHOOK_SECRET", SECRET)],
    );
    // The deployment stays in flight, its download held: every webhook of its version is a
    // redelivery, and the agent waits.
    let new = s.compatible(0);
    let zip = new.zip_path();
    s.add_faults(&format!(
        r#"{{"requests": [{{"path": "{zip}", "holdAfterBytes": 64, "times": 1}}]}}"#
    ));
    let body = new.body();
    let mac = bintray_sign(&secret(), "visualizer").as_str().to_owned();
    let id = accepted(
        &v,
        &post(&v, HOOK, &[("X-Bintray-Hook-Hmac", &mac)], body.as_bytes()),
        "/deployments",
    );
    eventually("the download to be held", WAIT, || {
        let held = s.client.get("/sandbox/held").json();
        (!held.as_array()?.is_empty()).then_some(())
    });

    let webhook = |path: &str, header: &str, value: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: lockstep\r\nContent-Type: application/json\r\n\
             {header}: {value}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let read = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: lockstep\r\n\r\n").into_bytes();
    // A refusal closes the connection (a new one costs its task and buffers): the webhooks
    // of a kept-alive connection are the accepted ones.
    let webhooks = [
        (webhook(HOOK, "X-Bintray-Hook-Hmac", &mac, &body), 202),
        (webhook(HOOK_V2, "X-Bintray-Hook-Hmac", &mac, &body), 202),
    ];
    let reads = [
        (read("/deployments"), 200),
        (read(&format!("/deployments/{id}")), 200),
        (read(&format!("/v2/deployments/{id}")), 200),
        (read("/healthz"), 200),
    ];
    fn ask(stream: &mut std::net::TcpStream, request: &[u8], status: u16) -> Raw {
        stream.write_all(request).expect("write");
        let raw = read_response(stream).expect("a response");
        assert_eq!(raw.status, status, "{}", String::from_utf8_lossy(request));
        raw
    }
    let mut stream = connect(v.client.addr);
    let allocations = |stream: &mut std::net::TcpStream| {
        let metrics = ask(stream, &read("/metrics"), 200);
        let text = String::from_utf8_lossy(&metrics.body).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("lockstep_heap_allocations_total "))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no allocation count in /metrics:\n{text}"))
    };
    let round = |stream: &mut std::net::TcpStream, n: usize| {
        for i in 0..n {
            let (request, status) = &webhooks[i % webhooks.len()];
            let raw = ask(stream, request, *status);
            if *status == 202 {
                assert_eq!(raw.body, id.as_bytes(), "a redelivery gets the same id");
            }
            let (request, status) = &reads[i % reads.len()];
            ask(stream, request, *status);
        }
    };
    round(&mut stream, 200);
    let warm = allocations(&mut stream);
    round(&mut stream, 10_000);
    let after = allocations(&mut stream);
    assert_eq!(
        after - warm,
        0,
        "heap allocations while serving 10,000 webhooks and 10,000 reads (after {warm} at \
         start-up and warm-up)"
    );
    println!("{warm} allocations at start-up and warm-up; none after");
}

lockstep_tests::on_both_runtimes! {
    /// A refusal of a webhook whose body was read whole (docs/PROTOCOL.md §7, "Order of
    /// checks", step 4) leaves a kept-alive connection open: 401, 403, 400, 422 and 409 are each
    /// followed by another request on the same connection, and say nothing of closing.
    fn test_a_webhook_refused_after_its_body_keeps_the_connection(runtime: Runtime) {
        let s = sandbox(&[]);
        let v = serve_runtime(runtime, &s, &[]);
        let mut stream = connect(v.client.addr);
        let good = s.compatible(0).body();
        let signed = |body: &str| lockstep_header(body.as_bytes(), now_secs());
        let wrong = lockstep_header(b"another body", now_secs());
        let cases: [(u16, Option<String>, String); 4] = [
            (401, None, good.clone()),
            (403, Some(wrong), good.clone()),
            (400, Some(signed("[1]")), "[1]".to_owned()),
            (422, Some(signed(r#"{"package":"a/b","version":"x"}"#)),
                r#"{"package":"a/b","version":"x"}"#.to_owned()),
        ];
        for (status, signature, body) in cases {
            let header = signature
                .map(|h| format!("X-Lockstep-Signature: {h}\r\n"))
                .unwrap_or_default();
            let request = format!(
                "POST {HOOK} HTTP/1.1\r\nHost: lockstep\r\nContent-Type: application/json\r\n\
                 {header}Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(request.as_bytes()).expect("write");
            let raw = read_response(&mut stream).expect("an answer");
            assert_eq!(raw.status, status, "{}", raw.head);
            assert_ne!(raw.header("connection").as_deref(), Some("close"), "{status}");
            assert_eq!(ask_healthz(&mut stream), 200, "after {status}");
        }
        // A 409 (a failed version) too, with nothing created by it.
        let bad = s.incompatible();
        let first = accepted(&v, &notify(&v, &bad), "/deployments");
        ended(&v, &first);
        let body = bad.body().replace('}', r#","release_notes":"again"}"#);
        let request = format!(
            "POST {HOOK} HTTP/1.1\r\nHost: lockstep\r\nX-Lockstep-Signature: {}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            signed(&body),
            body.len()
        );
        stream.write_all(request.as_bytes()).expect("write");
        let raw = read_response(&mut stream).expect("an answer");
        assert_eq!(raw.status, 409, "{}", raw.head);
        assert_eq!(ask_healthz(&mut stream), 200, "after 409");
    }
}
