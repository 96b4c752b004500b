//! A failed version stays failed (docs/DESIGN.md rule 11, docs/PROTOCOL.md §1 and §7): a
//! webhook for a version whose last deployment failed is refused 409, saying when and why,
//! until a webhook under lockstep's signature asks `"retry": true` (`lockstep deploy
//! --retry`); the refusal survives a restart. Each test starts its own processes.

use lockstep_core::signature::bintray_sign;
use lockstep_tests::Response;
use lockstep_tests::stack::{
    HOOK, SECRET, Serve, Version, accepted, assert_cluster_replaced_at_scale_3,
    assert_history_within_2_to_4, assert_refused, assert_succeeded, deploy_cli as deploy, ended,
    failure, listing, mark, notify, now_secs, post, post_signed, sandbox, secret, serve, serve_on,
    serve_runtime, the_running_bundle,
};

/// Notifies `version`, lockstep-signed now, in a body of its own (a registry's redelivery
/// within the same second must not read as a replay of the first).
fn redeliver(v: &Serve, version: &Version) -> Response {
    static SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let body = format!(
        r#"{{"package":"{}","version":"{}","release_notes":"{n}"}}"#,
        version.name,
        version.full()
    );
    post_signed(v, HOOK, body.as_bytes(), now_secs())
}

/// The body of a webhook for `version` of the demo's bundle asking to retry it.
fn retry_body(full: &str) -> String {
    format!(r#"{{"package":"visualizer","version":"{full}","retry":true}}"#)
}

/// The 409 line for `tag` failed in deployment `id` with `failure`.
fn assert_held(line: &str, tag: &str, id: &str, failure: &str) {
    assert!(
        line.starts_with(&format!("version {tag} failed ")),
        "{line}"
    );
    assert!(
        line.ends_with(&format!(
            "s ago (deployment {id}): {failure}; `lockstep deploy --retry` deploys it again"
        )),
        "{line}"
    );
}

lockstep_tests::on_both_runtimes! {
    fn test_a_failed_version_is_refused_409_unless_lockstep_signed_asks_to_retry(
        runtime: Runtime
    ) {
        let s = sandbox(&[]);
        let v = serve_runtime(runtime, &s, &[]);
        let before = the_running_bundle(&s);
        // Of another compatibilityVersion: it fails at once, for itself.
        let bad = s.incompatible();
        let first = accepted(&v, &notify(&v, &bad), "/deployments");
        let why = failure(&ended(&v, &first));
        assert!(why.starts_with("no running bundle with compatibilityVersion"), "{why}");

        // A registry's redelivery: 409, one line saying when and why; nothing created.
        let listed = listing(&v, "/deployments").len();
        let line = assert_refused(&redeliver(&v, &bad), 409, "a failed version");
        assert_held(&line, &bad.tag, &first, &why);
        // The Bintray scheme signs no body: its `retry` is not honoured.
        let mac = bintray_sign(&secret(), "visualizer").as_str().to_owned();
        let body = retry_body(&bad.full());
        let r = post(&v, HOOK, &[("X-Bintray-Hook-Hmac", &mac)], body.as_bytes());
        assert_held(&assert_refused(&r, 409, "bintray retry"), &bad.tag, &first, &why);
        assert_eq!(listing(&v, "/deployments").len(), listed, "nothing was created");
        // `retry` must be a boolean.
        let body = format!(
            r#"{{"package":"visualizer","version":"{}","retry":"yes"}}"#,
            bad.full()
        );
        let r = post_signed(&v, HOOK, body.as_bytes(), now_secs());
        assert_eq!(
            assert_refused(&r, 400, "retry as a string"),
            "field `retry` must be true or false"
        );

        // Lockstep's signature covers `retry`: a new deployment, which fails again, and is
        // then the one the refusal names.
        let body = retry_body(&bad.full());
        let r = post_signed(&v, HOOK, body.as_bytes(), now_secs());
        let second = accepted(&v, &r, "/deployments");
        assert_ne!(second, first);
        assert_eq!(failure(&ended(&v, &second)), why);
        let line = assert_refused(&redeliver(&v, &bad), 409, "failed twice");
        assert_held(&line, &bad.tag, &second, &why);
        assert_eq!(the_running_bundle(&s), before);

        // Another version is not concerned.
        let good = s.compatible(0);
        let id = accepted(&v, &notify(&v, &good), "/deployments");
        assert_succeeded(&ended(&v, &id));
    }
}

#[test]
fn test_lockstep_deploy_retry_deploys_a_version_that_failed_and_the_refusal_survives_a_restart() {
    let s = sandbox(&[]);
    let v = serve(&s, &["--step-deadline", "1s"]);
    let old = the_running_bundle(&s);
    let new = s.compatible(0);
    let mark = mark(&s);
    // Its instances never start: the first step's deadline fails it, and it is rolled back.
    s.never_start(&new);
    let first = accepted(&v, &notify(&v, &new), "/deployments");
    let why = failure(&ended(&v, &first));
    assert!(
        why.ends_with("rolled back: the old bundle runs at 3 again"),
        "{why}"
    );
    let cleared = s.client.request("DELETE", "/sandbox/faults", &[], b"");
    assert_eq!(cleared.status, 200);

    // Restarted on its data directory, it still holds the version.
    let Serve {
        mut process, dir, ..
    } = v;
    process.signal("TERM");
    assert_eq!(process.wait(std::time::Duration::from_secs(30)), Some(0));
    let v = serve_on(&s, dir, &[], &[("BINTRAY_WEBHOOK_SECRET", SECRET)]);
    let line = assert_refused(&redeliver(&v, &new), 409, "after a restart");
    assert_held(&line, &new.tag, &first, &why);

    // `lockstep deploy` says why, and how to ask again.
    let ran = deploy(&s, &v, &[&format!("visualizer:{}", new.tag)]);
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert!(ran.stderr.contains("refused the webhook: 409"), "{ran:#?}");
    assert!(ran.stderr.contains("--retry"), "{ran:#?}");
    assert_eq!(ran.stderr.lines().count(), 1, "{ran:#?}");

    // `--retry` deploys it, now that its instances start.
    let ran = deploy(&s, &v, &["--retry", &format!("visualizer:{}", new.tag)]);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    let id = ran
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Deployment id: "))
        .expect("an id")
        .to_owned();
    assert_succeeded(&ended(&v, &id));
    assert_cluster_replaced_at_scale_3(&s, &new, &old);
    assert_history_within_2_to_4(&s, mark);
    // Succeeded: the version is no longer held (the same version again has nothing to do).
    let again = accepted(&v, &redeliver(&v, &new), "/deployments");
    assert_succeeded(&ended(&v, &again));
}
