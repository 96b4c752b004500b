//! No silent downgrade (docs/DESIGN.md rule 12, docs/PROTOCOL.md §1, §2 and §7): a webhook
//! naming a version that the repository's `versions.json` lists before the running one is
//! refused 409 before anything is downloaded (its deployment, screening the version, fails
//! `refused a downgrade`; when the screening takes longer than 2 s, the webhook gets its 202
//! and the deployment fails by itself), and so is every webhook of that version after it,
//! unless a webhook under lockstep's signature asks `"allow_downgrade": true` (`lockstep
//! deploy --allow-downgrade`). The sandbox publishes the demo's versions in order: 1.0.0
//! (running), 1.1.0, 1.2.0, then 2.0.0.

use lockstep_core::signature::bintray_sign;
use lockstep_tests::stack::{
    HOOK, Runtime, Sandbox, Serve, Version, accepted, assert_history_within_2_to_4, assert_refused,
    assert_succeeded, bundle_of, bundles, deploy_cli, ended, event_types, failure, listing, mark,
    notify, now_secs, post, post_signed, sandbox, secret, serve, serve_runtime,
};

/// `version` runs 3 started instances; every other bundle is at scale 0 (never unloaded).
fn assert_runs_at_3(s: &Sandbox, version: &Version) {
    let all = bundles(s);
    for b in &all {
        if b.digest == version.digest {
            assert_eq!(
                (b.scale, b.started, b.executions),
                (Some(3), 3, 3),
                "{all:#?}"
            );
        } else {
            assert_eq!((b.scale, b.executions), (Some(0), 0), "{all:#?}");
        }
    }
    assert!(all.iter().any(|b| b.digest == version.digest), "{all:#?}");
}

/// The body of a webhook for `version` asking `"allow_downgrade": true`.
fn allowing(version: &Version) -> String {
    format!(
        r#"{{"package":"{}","version":"{}","allow_downgrade":true}}"#,
        version.name,
        version.full()
    )
}

/// Deploys 1.2.0 over the running 1.0.0 and answers it: a downgrade to 1.1.0 can then be
/// tried.
fn upgraded(s: &Sandbox, v: &Serve) -> Version {
    let newer = s.compatible(1);
    let id = accepted(v, &notify(v, &newer), "/deployments");
    assert_succeeded(&ended(v, &id));
    newer
}

/// The webhook's answer waits for the screening at most `SCREENING_WAIT` (2 s): past it, 202,
/// and the deployment refuses the downgrade by itself once the index comes.
fn slow_index_is_answered_202_then_refused(runtime: Runtime) {
    let s = sandbox(&[]);
    let v = serve_runtime(runtime, &s, &[]);
    let newer = upgraded(&s, &v);
    let older = s.compatible(0);
    let before = bundles(&s);
    s.add_faults(
        r#"{"requests":[{"path":"/repository/typesafe/bundle/typesafe/visualizer/versions.json",
            "delayMs":3000,"times":1}]}"#,
    );
    let mac = bintray_sign(&secret(), "visualizer").as_str().to_owned();
    let r = post(
        &v,
        HOOK,
        &[("X-Bintray-Hook-Hmac", &mac)],
        older.body().as_bytes(),
    );
    let id = accepted(&v, &r, "/deployments");
    let events = ended(&v, &id);
    assert_eq!(failure(&events), refused_line(&newer, &s));
    assert_eq!(bundles(&s), before, "nothing was loaded or scaled");
}

lockstep_tests::on_both_runtimes! {
    fn test_a_webhook_waits_for_its_screening_at_most_2s(runtime: Runtime) {
        slow_index_is_answered_202_then_refused(runtime);
    }
}

/// What the deployment of a refused downgrade says.
fn refused_line(newer: &Version, s: &Sandbox) -> String {
    format!(
        "refused a downgrade: the repository published this version before the running {} \
         ({}); `lockstep deploy --allow-downgrade` deploys it",
        newer.tag,
        bundle_of(s, &newer.digest).id
    )
}

lockstep_tests::on_both_runtimes! {
    fn test_a_downgrade_is_refused_before_anything_is_loaded_unless_lockstep_signed_allows_it(
        runtime: Runtime
    ) {
        let s = sandbox(&[]);
        let v = serve_runtime(runtime, &s, &[]);
        let newer = upgraded(&s, &v);
        let older = s.compatible(0);
        let before = bundles(&s);
        let mark = mark(&s);

        // A Bintray-signed replay of the older version (the Bintray MAC is the same for every
        // version of the package): its deployment screens it (the running bundles, then
        // versions.json) and ends failed before it downloads anything; the webhook is answered
        // 409, naming that deployment.
        let mac = bintray_sign(&secret(), "visualizer").as_str().to_owned();
        let bintray = [("X-Bintray-Hook-Hmac", mac.as_str())];
        let replay = older.body();
        let r = post(&v, HOOK, &bintray, replay.as_bytes());
        let line = assert_refused(&r, 409, "a downgrade");
        assert!(line.starts_with(&format!("version {} failed 0s ago (deployment ", older.tag)), "{line}");
        let first = line
            .split_once("(deployment ")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(id, _)| id.to_owned())
            .expect("the deployment's id");
        assert!(line.ends_with(&format!("): {}", refused_line(&newer, &s))), "{line}");
        let events = ended(&v, &first);
        assert_eq!(
            event_types(&events),
            ["deploymentStarted", "bundleDownload", "deploymentFailure"]
        );
        assert_eq!(failure(&events), refused_line(&newer, &s));
        assert_eq!(bundles(&s), before, "nothing was loaded or scaled");

        // Every webhook of that version after it: 409 with one line, nothing created, even
        // one asking to retry, and even a Bintray-signed one asking to allow it (the Bintray
        // signature covers no body).
        let listed = listing(&v, "/deployments").len();
        let held = format!(
            "s ago (deployment {first}): {}",
            refused_line(&newer, &s)
        );
        let r = post(&v, HOOK, &bintray, replay.as_bytes());
        let line = assert_refused(&r, 409, "a refused downgrade");
        assert!(line.starts_with(&format!("version {} failed ", older.tag)), "{line}");
        assert!(line.ends_with(&held), "{line}");
        let retry = older.retry_body();
        let r = post_signed(&v, HOOK, retry.as_bytes(), now_secs());
        assert!(assert_refused(&r, 409, "retry").ends_with(&held));
        let body = allowing(&older);
        let r = post(&v, HOOK, &bintray, body.as_bytes());
        assert!(assert_refused(&r, 409, "bintray allow_downgrade").ends_with(&held));
        // `allow_downgrade` must be a boolean.
        let bad = body.replace(":true", ":\"yes\"");
        let r = post_signed(&v, HOOK, bad.as_bytes(), now_secs());
        assert_eq!(
            assert_refused(&r, 400, "allow_downgrade as a string"),
            "field `allow_downgrade` must be true or false"
        );
        assert_eq!(listing(&v, "/deployments").len(), listed, "nothing was created");
        assert_eq!(bundles(&s), before, "nothing was loaded or scaled");

        // Lockstep's signature covers `allow_downgrade`: the older version is deployed over
        // the newer, in lock-step.
        let r = post_signed(&v, HOOK, body.as_bytes(), now_secs());
        let id = accepted(&v, &r, "/deployments");
        assert_succeeded(&ended(&v, &id));
        assert_runs_at_3(&s, &older);
        assert_history_within_2_to_4(&s, mark);

        // A version published after the running one is no downgrade: 1.2.0 again (in a body
        // of its own: the first one's signature is in the replay cache).
        let again = newer.body().replace('}', r#","release_notes":"again"}"#);
        let r = post_signed(&v, HOOK, again.as_bytes(), now_secs());
        let id = accepted(&v, &r, "/deployments");
        assert_succeeded(&ended(&v, &id));
        assert_runs_at_3(&s, &newer);
    }
}

#[test]
fn test_lockstep_deploy_allow_downgrade_deploys_an_older_version() {
    let s = sandbox(&[]);
    let v = serve(&s, &[]);
    let newer = upgraded(&s, &v);
    let older = s.compatible(0);
    let mark = mark(&s);

    // Without the flag, the service refuses it (409), and says what deploys it; asked again,
    // the same.
    let ran = deploy_cli(&s, &v, &[&format!("visualizer:{}", older.tag)]);
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert!(ran.stderr.contains("refused the webhook: 409"), "{ran:#?}");
    assert!(ran.stderr.contains(&refused_line(&newer, &s)), "{ran:#?}");
    let ran = deploy_cli(&s, &v, &[&format!("visualizer:{}", older.tag)]);
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert!(ran.stderr.contains("refused the webhook: 409"), "{ran:#?}");
    assert!(ran.stderr.contains("--allow-downgrade"), "{ran:#?}");
    // `--retry` alone is not enough.
    let ran = deploy_cli(&s, &v, &["--retry", &format!("visualizer:{}", older.tag)]);
    assert!(ran.stderr.contains("refused the webhook: 409"), "{ran:#?}");

    // `--allow-downgrade` is refused with the Bintray scheme, which cannot carry it.
    let ran = deploy_cli(
        &s,
        &v,
        &[
            "--allow-downgrade",
            "--bintray",
            &format!("visualizer:{}", older.tag),
        ],
    );
    assert_eq!(ran.code, Some(2), "{ran:#?}");
    assert!(ran.stderr.contains("--allow-downgrade"), "{ran:#?}");

    // With it, the older version replaces the newer.
    let ran = deploy_cli(
        &s,
        &v,
        &["--allow-downgrade", &format!("visualizer:{}", older.tag)],
    );
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    assert_runs_at_3(&s, &older);
    assert_history_within_2_to_4(&s, mark);
}
