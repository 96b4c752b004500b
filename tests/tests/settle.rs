//! `lockstep serve --settle`: after each step that starts an instance of the new bundle, its
//! instances are watched for the settle time before the old bundle goes down; an instance
//! lost meanwhile fails the step, which is rolled back (docs/DESIGN.md rule 6). Each test
//! starts its own processes.

use lockstep_tests::eventually;
use lockstep_tests::stack::{
    Serve, accepted, assert_cluster_replaced_at_scale_3, assert_history_within_2_to_4,
    assert_rolled_back, assert_succeeded, ended, event_types, events, failure, lockstep_header,
    mark, notify, now_secs, post, sandbox, serve, the_running_bundle,
};
use serde_json::Value;

const WAIT: std::time::Duration = std::time::Duration::from_secs(30);

#[test]
fn test_settle_catches_an_instance_that_crashes_after_starting() {
    // Instances take 500 ms to start, a replacement too: the crash is seen before the cluster
    // replaces the lost instance.
    let s = sandbox(&["--start-delay", "500ms"]);
    let v = serve(&s, &["--settle", "5s"]);
    let old = the_running_bundle(&s);
    let new = s.compatible(0);
    s.add_faults(&format!(
        r#"{{"bundles":[{{"match":"{}","crashAfterMs":100,"crashes":1}}]}}"#,
        &new.digest[..12]
    ));
    let mark = mark(&s);
    let id = accepted(&v, &notify(&v, &new), "/deployments");
    let events = ended(&v, &id);
    assert_eq!(
        failure(&events),
        "scaling the new bundle to 1: an instance was lost while it settled; rolled back: the \
         old bundle runs at 3 again"
    );
    // The step's instance started (logged), then the rollback: the old bundle never went down.
    let deploys: Vec<(u64, u64)> = events
        .iter()
        .filter(|e| e["eventType"] == "deploy")
        .map(|e| {
            (
                e["bundleOld"]["scale"].as_u64().unwrap(),
                e["bundleNew"]["scale"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(deploys.first(), Some(&(3, 0)), "{events:#?}");
    assert_eq!(deploys.get(1), Some(&(3, 1)), "{events:#?}");
    assert!(deploys.iter().all(|(old, _)| *old == 3), "{deploys:?}");
    assert_rolled_back(&s, &old.id);
    assert_history_within_2_to_4(&s, mark);
}

#[test]
fn test_settle_holds_the_step_until_its_time_is_over() {
    let s = sandbox(&[]);
    // An hour: the first step, once its instance started, is watched, not left.
    let v = serve(&s, &["--settle", "1h"]);
    let old = the_running_bundle(&s);
    let new = s.compatible(0);
    let id = accepted(&v, &notify(&v, &new), "/deployments");
    eventually("the first instance of the new bundle", WAIT, || {
        let e = events(&v, "/deployments", &id);
        e.iter()
            .any(|e: &Value| e["eventType"] == "deploy" && e["bundleNew"]["scale"] == 1)
            .then_some(())
    });
    // Without a settle time the old bundle would be going down by now, in the same step that
    // logged the instance: an abort names the step it stands in.
    let body = format!(r#"{{"deploymentId":"{id}"}}"#);
    let header = lockstep_header(body.as_bytes(), now_secs());
    let r = post(
        &v,
        &format!("/deployments/{id}/abort"),
        &[("X-Lockstep-Signature", &header)],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        failure(&ended(&v, &id)),
        "scaling the new bundle to 1: aborted; rolled back: the old bundle runs at 3 again"
    );
    assert_rolled_back(&s, &old.id);
}

#[test]
fn test_settle_goes_on_after_its_time_and_succeeds() {
    let s = sandbox(&[]);
    let v: Serve = serve(&s, &["--settle", "200ms"]);
    let old = the_running_bundle(&s);
    let new = s.compatible(0);
    let mark = mark(&s);
    let id = accepted(&v, &notify(&v, &new), "/deployments");
    let events = ended(&v, &id);
    assert_succeeded(&events);
    assert_eq!(
        event_types(&events),
        lockstep_tests::stack::event_types_at_scale_3()
    );
    assert_cluster_replaced_at_scale_3(&s, &new, &old);
    assert_history_within_2_to_4(&s, mark);
}
