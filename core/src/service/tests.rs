//! The routes, the order of checks of a webhook, each refusal.

use std::format;
use std::string::{String, ToString};

use super::*;
use crate::deployer::{Admitted, Busy, Cause, Deployer, Failure, Policy, Rollback};
use crate::signature::{bintray_sign, lockstep_sign};
use crate::time::{Instant, UnixTime};

const DIGEST: &str = "6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c";
const T: u64 = 1_700_000_000;

fn now() -> Now {
    Now::new(Instant::from_millis(5), UnixTime::from_secs(T))
}

fn secret() -> Secret {
    Secret::new(b"secret").unwrap()
}

fn body() -> String {
    format!(r#"{{"package":"visualizer","version":"v2-{DIGEST}"}}"#)
}

fn id(byte: u8) -> DeploymentId {
    DeploymentId::from_bytes([byte; 16])
}

/// Runs a webhook through the checks against a real deployer.
struct Fixture {
    hooks: Webhooks<2>,
    deployer: Deployer<2>,
    /// What the last admitted or refused webhook asked.
    asked: Option<Asks>,
    /// A version that failed: a webhook that does not ask to retry it is refused.
    failed: Option<FailedBefore>,
}

impl Fixture {
    fn new(config: Config) -> Self {
        Self {
            hooks: Webhooks::new(secret(), config),
            deployer: Deployer::new(Policy::default()),
            asked: None,
            failed: None,
        }
    }

    fn send(
        &mut self,
        target: &str,
        content_type: Option<&str>,
        signatures: Headers<'_>,
        body: &str,
        new: u8,
    ) -> Result<Admitted, Refusal> {
        let Endpoint::Webhook(target) = route("POST", target).unwrap() else {
            panic!("not a webhook: {target}");
        };
        let hook = Webhook {
            target: &target,
            content_type: content_type.map(str::as_bytes),
            signatures,
            body: body.as_bytes(),
        };
        let deployer = &mut self.deployer;
        let (asked, failed) = (&mut self.asked, self.failed);
        let result = self.hooks.accept(now(), &hook, id(new), |request, asks| {
            *asked = Some(asks);
            match failed {
                Some(failed) if !asks.retry => Err(NotAdmitted::Failed(failed)),
                _ => Ok(deployer.handle_notification(now(), request)?),
            }
        });
        while deployer.poll().is_some() {}
        result.map(|accepted| accepted.admitted)
    }
}

const TARGET: &str = "/deployments/typesafe/bundle/typesafe";

fn lockstep(body: &str, t: u64) -> String {
    lockstep_sign(&secret(), t, body.as_bytes())
        .as_str()
        .to_string()
}

fn bintray() -> String {
    bintray_sign(&secret(), "visualizer").as_str().to_string()
}

fn signed(header: &str) -> Headers<'_> {
    Headers {
        bintray: None,
        lockstep: Some(header.as_bytes()),
    }
}

fn bintray_signed(header: &str) -> Headers<'_> {
    Headers {
        bintray: Some(header.as_bytes()),
        lockstep: None,
    }
}

fn reason(r: Result<Admitted, Refusal>) -> Reason {
    r.unwrap_err().reason
}

// ---- routes ----------------------------------------------------------------------------------

#[test]
fn test_route_every_endpoint_under_both_prefixes() {
    let uuid = id(7).to_string();
    for (prefix, p) in [
        ("/deployments", Prefix::V1),
        ("/v2/deployments", Prefix::V2),
    ] {
        assert_eq!(
            route("GET", prefix),
            Ok(Endpoint::Deployments { prefix: p })
        );
        assert_eq!(
            route("GET", &format!("{prefix}/events")),
            Ok(Endpoint::Events { prefix: p })
        );
        assert_eq!(
            route("GET", &format!("{prefix}/ui?x=1")),
            Ok(Endpoint::Ui { prefix: p })
        );
        assert_eq!(
            route("GET", &format!("{prefix}/{uuid}")),
            Ok(Endpoint::Deployment {
                prefix: p,
                id: id(7)
            })
        );
        let target = format!("{prefix}/typesafe/bundle/typesafe?tag=v1");
        assert!(matches!(route("POST", &target), Ok(Endpoint::Webhook(t)) if t.prefix == p));
    }
    assert_eq!(route("GET", "/healthz"), Ok(Endpoint::Health));
    assert_eq!(route("GET", "/metrics"), Ok(Endpoint::Metrics));
}

#[test]
fn test_route_head_wherever_get() {
    let uuid = id(7).to_string();
    for prefix in ["/deployments", "/v2/deployments"] {
        for path in [
            prefix.to_string(),
            format!("{prefix}/events"),
            format!("{prefix}/ui"),
            format!("{prefix}/{uuid}"),
        ] {
            assert_eq!(route("HEAD", &path), route("GET", &path), "{path}");
        }
        // Not on the webhook: it only takes POST.
        let r = route("HEAD", &format!("{prefix}/typesafe/bundle/typesafe")).unwrap_err();
        assert_eq!(
            (r.status(), r.allow),
            (Status::MethodNotAllowed, Some("POST"))
        );
    }
    assert_eq!(route("HEAD", "/healthz"), Ok(Endpoint::Health));
    assert_eq!(route("HEAD", "/metrics"), Ok(Endpoint::Metrics));
    // Methods are case-sensitive (RFC 9110 §9.1).
    assert_eq!(
        route("head", "/healthz").unwrap_err().allow,
        Some("GET, HEAD")
    );
}

#[test]
fn test_route_refusals() {
    let r = route("POST", "/deployments").unwrap_err();
    assert_eq!(
        (r.status(), r.allow),
        (Status::MethodNotAllowed, Some("GET, HEAD"))
    );
    let r = route("GET", TARGET).unwrap_err();
    assert_eq!(
        (r.status(), r.allow),
        (Status::MethodNotAllowed, Some("POST"))
    );
    assert_eq!(
        route("DELETE", "/healthz").unwrap_err().allow,
        Some("GET, HEAD")
    );
    for path in [
        "/",
        "/deploymentsx",
        "/deployments/a/b",
        "/deployments/a/b/c/d",
        "/v3/deployments",
        "/deployments/ui/",
        "/ui",
    ] {
        assert_eq!(
            route("GET", path).unwrap_err().status(),
            Status::NotFound,
            "{path}"
        );
    }
    for path in [
        "/deployments/not-a-uuid",
        "/deployments/UI",
        "/deployments/ui.js",
    ] {
        assert_eq!(
            route("GET", path).unwrap_err().reason,
            Reason::NoSuchDeployment,
            "{path}"
        );
    }
    // The page only reads.
    let r = route("POST", "/deployments/ui").unwrap_err();
    assert_eq!(
        (r.status(), r.allow),
        (Status::MethodNotAllowed, Some("GET, HEAD"))
    );
    let r = route("POST", "/deployments/a%2e/b/a").unwrap_err();
    assert_eq!(r.status(), Status::BadRequest);
    let r = route("POST", "/deployments/a/b/a?tags=x").unwrap_err();
    assert_eq!(r.status(), Status::BadRequest);
}

// ---- webhooks --------------------------------------------------------------------------------

#[test]
fn test_webhook_lockstep_accepted_and_replay_refused() {
    let mut f = Fixture::new(Config::default());
    let body = body();
    let sig = lockstep(&body, T);
    let accepted = f
        .send(
            TARGET,
            Some("application/json; charset=utf-8"),
            signed(&sig),
            &body,
            1,
        )
        .unwrap();
    assert_eq!(
        accepted,
        Admitted {
            id: id(1),
            redelivery: false
        }
    );
    // The same signature again: replayed, 403 with the same body as a bad one.
    let r = f.send(TARGET, None, signed(&sig), &body, 2).unwrap_err();
    assert_eq!(r.status(), Status::Forbidden);
    assert_eq!(r.reason.to_string(), "signature rejected");
    // Signed afresh: a redelivery of the same deployment.
    let sig = lockstep(&body, T + 1);
    let again = f.send(TARGET, None, signed(&sig), &body, 3).unwrap();
    assert_eq!(
        again,
        Admitted {
            id: id(1),
            redelivery: true
        }
    );
}

#[test]
fn test_webhook_bintray_accepted() {
    let mut f = Fixture::new(Config::default());
    let accepted = f
        .send(TARGET, None, bintray_signed(&bintray()), &body(), 1)
        .unwrap();
    assert_eq!(accepted.id, id(1));
    // The same header again is fine: the scheme cannot tell (docs/PROTOCOL.md §1).
    let again = f
        .send(TARGET, None, bintray_signed(&bintray()), &body(), 2)
        .unwrap();
    assert!(again.redelivery);
}

#[test]
fn test_webhook_order_of_checks() {
    let mut f = Fixture::new(Config::default());
    let garbage = "{not json";
    // Media type first.
    let r = f.send(TARGET, Some("text/plain"), signed("t=1,v1=00"), garbage, 1);
    assert_eq!(reason(r), Reason::MediaType);
    // No signature: 401, whatever the body.
    let r = f.send(TARGET, None, Headers::default(), garbage, 1);
    assert_eq!(reason(r), Reason::Unsigned(Schemes::BOTH));
    // Lockstep scheme: the signature before the body.
    let r = f.send(TARGET, None, signed(&lockstep("other", T)), garbage, 1);
    assert_eq!(reason(r).status(), Status::Forbidden);
    // Bintray scheme: the body before the signature (it names the package).
    let r = f.send(TARGET, None, bintray_signed(&bintray()), garbage, 1);
    assert_eq!(reason(r).status(), Status::BadRequest);
    let wrong = bintray_sign(&secret(), "other").as_str().to_string();
    let r = f.send(TARGET, None, bintray_signed(&wrong), &body(), 1);
    assert_eq!(reason(r).status(), Status::Forbidden);
    assert!(f.deployer.is_empty(), "nothing admitted");
}

#[test]
fn test_webhook_each_refusal() {
    let mut f = Fixture::new(Config::default());
    let stale = lockstep(&body(), T - 301);
    let r = f.send(TARGET, None, signed(&stale), &body(), 1);
    assert_eq!(reason(r), Reason::Signature(SignatureError::Stale));
    let r = f.send(TARGET, None, signed("v1=00"), &body(), 1);
    assert_eq!(reason(r).status(), Status::Unauthorized);
    let meaningless = r#"{"package":"visualizer","version":"v2"}"#;
    let r = f.send(
        TARGET,
        None,
        signed(&lockstep(meaningless, T)),
        meaningless,
        1,
    );
    assert_eq!(reason(r).status(), Status::UnprocessableEntity);
    let big = format!("{{\"package\":\"{}\"}}", "a".repeat(9000));
    let r = f.send(TARGET, None, signed(&lockstep(&big, T)), &big, 1);
    assert_eq!(reason(r).status(), Status::PayloadTooLarge);
    assert!(f.deployer.is_empty());
}

#[test]
fn test_webhook_allow_list() {
    let mut config = Config::default();
    config
        .allowed
        .push(Allowed::parse("typesafe/*/visualizer").unwrap())
        .unwrap();
    let mut f = Fixture::new(config);
    let other = r#"{"package":"other","version":"v2-6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c"}"#;
    let r = f.send(TARGET, None, signed(&lockstep(other, T)), other, 1);
    assert_eq!(reason(r), Reason::NotAllowed);
    assert!(
        f.send(TARGET, None, signed(&lockstep(&body(), T)), &body(), 1)
            .is_ok()
    );
    assert!(Allowed::parse("a/b").is_none());
    assert!(Allowed::parse("a/b/c/d").is_none());
    assert!(Allowed::parse("a/../c").is_none());
}

#[test]
fn test_webhook_full_table_and_full_replay_cache_are_503() {
    let mut f = Fixture::new(Config::default());
    for (n, digest) in [(1u8, 'a'), (2, 'b')] {
        let body = format!(
            r#"{{"package":"v","version":"v1-{}"}}"#,
            digest.to_string().repeat(64)
        );
        f.send(
            TARGET,
            None,
            signed(&lockstep(&body, T + u64::from(n))),
            &body,
            n,
        )
        .unwrap();
    }
    // The replay cache (2 entries) is full of live signatures: busy, and nothing admitted.
    let body = format!(r#"{{"package":"v","version":"v1-{}"}}"#, "c".repeat(64));
    let r = f
        .send(TARGET, None, signed(&lockstep(&body, T)), &body, 3)
        .unwrap_err();
    assert_eq!(r.reason, Reason::Signature(SignatureError::ReplayCacheFull));
    assert_eq!(
        (r.status(), r.retry_after()),
        (Status::ServiceUnavailable, Some(RETRY_AFTER_SECS))
    );
    // The table (2 deployments) is full: busy.
    let r = f
        .send(
            TARGET,
            None,
            bintray_signed(bintray_sign(&secret(), "v").as_str()),
            &body,
            3,
        )
        .unwrap_err();
    assert_eq!(r.reason, Reason::Busy(Busy::TableFull));
    assert_eq!(f.deployer.len(), 2);
}

#[test]
fn test_webhook_shutting_down_is_503_after_the_other_checks() {
    let mut f = Fixture::new(Config::default());
    let body = body();
    let first = f
        .send(TARGET, None, signed(&lockstep(&body, T)), &body, 1)
        .unwrap();
    f.hooks.shut_down();
    assert!(f.hooks.is_shutting_down());
    // A bad signature is still refused for what it is.
    assert_eq!(
        reason(f.send(TARGET, None, signed("t=1"), &body, 2)),
        Reason::Signature(SignatureError::MissingMac)
    );
    // A good one, and a redelivery of the deployment in flight, are refused: shutting down.
    let other = format!(r#"{{"package":"v","version":"v2-{}"}}"#, "d".repeat(64));
    let fresh = lockstep(&other, T + 1);
    let r = f.send(TARGET, None, signed(&fresh), &other, 2).unwrap_err();
    assert_eq!(r.reason, Reason::ShuttingDown);
    assert_eq!(
        (r.status(), r.retry_after()),
        (Status::ServiceUnavailable, Some(RETRY_AFTER_SECS))
    );
    assert_eq!(
        reason(f.send(TARGET, None, bintray_signed(&bintray()), &body, 3)),
        Reason::ShuttingDown
    );
    // Nothing was admitted, nothing entered the replay cache.
    assert_eq!(f.deployer.len(), 1);
    assert_eq!(f.hooks.replay_fill(now()), 1);
    assert!(!first.redelivery);
}

fn failed_before() -> FailedBefore {
    FailedBefore {
        id: id(9),
        tag: Name::new("v2").unwrap(),
        at: UnixTime::from_secs(T - 42),
        failure: Failure {
            cause: Cause::ResolveDeadline,
            rollback: Rollback::NotNeeded,
        },
    }
}

#[test]
fn test_webhook_of_a_failed_version_is_409_unless_a_lockstep_signature_asks_to_retry() {
    let retry = format!(r#"{{"package":"visualizer","version":"v2-{DIGEST}","retry":true}}"#);
    // Without `retry`, under either scheme: 409, saying when and why, and nothing admitted.
    let mut f = Fixture::new(Config::default());
    f.failed = Some(failed_before());
    let sig = lockstep(&body(), T);
    let refused = f.send(TARGET, None, signed(&sig), &body(), 1).unwrap_err();
    assert_eq!(refused.status(), Status::Conflict);
    assert_eq!(f.asked, Some(Asks::default()));
    assert_eq!(
        refused.reason.to_string(),
        format!(
            "version v2 failed 42s ago (deployment {}): resolving the bundle took too long; \
             `lockstep deploy --retry` deploys it again",
            id(9)
        )
    );
    assert_eq!(refused.reason.label(), "failed_version");
    assert_eq!(f.deployer.len(), 0);
    // The refused signature did not enter the replay cache: the same request may come again.
    assert_eq!(f.hooks.replay_fill(now()), 0);
    // The Bintray scheme signs no body: its `retry` is not honoured.
    let refused = f.send(TARGET, None, bintray_signed(&bintray()), &retry, 2);
    assert_eq!(reason(refused).status(), Status::Conflict);
    assert_eq!(f.asked, Some(Asks::default()));
    // Lockstep's signature covers `retry`: admitted.
    let sig = lockstep(&retry, T);
    let admitted = f.send(TARGET, None, signed(&sig), &retry, 3).unwrap();
    assert_eq!(
        f.asked,
        Some(Asks {
            retry: true,
            ..Asks::default()
        })
    );
    assert_eq!(admitted.id, id(3));
    assert_eq!(f.hooks.replay_fill(now()), 1);
}

#[test]
fn test_allow_downgrade_is_asked_only_under_a_lockstep_signature_and_recorded() {
    let allowing =
        format!(r#"{{"package":"visualizer","version":"v2-{DIGEST}","allow_downgrade":true}}"#);
    let asking = Asks {
        allow_downgrade: true,
        ..Asks::default()
    };
    // The Bintray scheme signs no body: not honoured, not recorded.
    let mut f = Fixture::new(Config::default());
    f.send(TARGET, None, bintray_signed(&bintray()), &allowing, 1)
        .unwrap();
    assert_eq!(f.asked, Some(Asks::default()));
    assert!(!f.deployer.record(id(1)).unwrap().request.allow_downgrade);
    // Lockstep's signature covers it: asked, and the request carries it on to the deployer.
    let mut f = Fixture::new(Config::default());
    let sig = lockstep(&allowing, T);
    f.send(TARGET, None, signed(&sig), &allowing, 2).unwrap();
    assert_eq!(f.asked, Some(asking));
    assert!(f.deployer.record(id(2)).unwrap().request.allow_downgrade);
    // A bad value is the body's fault: 400, naming the member.
    let bad = format!(r#"{{"package":"visualizer","version":"v2-{DIGEST}","allow_downgrade":1}}"#);
    let sig = lockstep(&bad, T);
    let refused = f.send(TARGET, None, signed(&sig), &bad, 3).unwrap_err();
    assert_eq!(refused.status(), Status::BadRequest);
    assert_eq!(
        refused.reason.to_string(),
        "field `allow_downgrade` must be true or false"
    );
}

#[test]
fn test_a_refused_downgrade_409_names_what_deploys_it_not_retry() {
    let mut f = Fixture::new(Config::default());
    let old = crate::bundle::BundleId::of(&crate::bundle::Digest::from_bytes([0xA0; 32]), None);
    f.failed = Some(FailedBefore {
        failure: Failure {
            cause: Cause::Downgrade {
                running: Name::new("v3").unwrap(),
                old,
            },
            rollback: Rollback::NotNeeded,
        },
        ..failed_before()
    });
    let sig = lockstep(&body(), T);
    let refused = f.send(TARGET, None, signed(&sig), &body(), 1).unwrap_err();
    assert_eq!(refused.status(), Status::Conflict);
    assert_eq!(
        refused.reason.to_string(),
        format!(
            "version v2 failed 42s ago (deployment {}): refused a downgrade: the repository \
             published this version before the running v3 ({old}); `lockstep deploy \
             --allow-downgrade` deploys it",
            id(9)
        )
    );
}

#[test]
fn test_is_json() {
    assert!(is_json(b"application/json"));
    assert!(is_json(b"Application/JSON ; charset=utf-8"));
    assert!(!is_json(b"application/jsonx"));
    assert!(!is_json(b"text/json"));
    assert!(!is_json(b"\xff"));
}

#[test]
fn test_every_reason_has_one_line_and_its_status() {
    let reasons = [
        (Reason::NotFound, 404),
        (Reason::NoSuchDeployment, 404),
        (Reason::MethodNotAllowed, 405),
        (Reason::Timeout, 408),
        (Reason::LengthRequired, 411),
        (Reason::BodyTooLarge, 413),
        (Reason::HeadTooLarge, 431),
        (Reason::MalformedHead, 400),
        (Reason::MediaType, 415),
        (Reason::NotAllowed, 403),
        (Reason::Busy(Busy::TableFull), 503),
        (Reason::ShuttingDown, 503),
        (Reason::Signature(SignatureError::Missing), 401),
        (Reason::Unsigned(Schemes::BOTH), 401),
        (Reason::Unsigned(Schemes::LOCKSTEP_ONLY), 401),
        (Reason::Unsigned(Schemes::BINTRAY_ONLY), 401),
        (Reason::StreamsFull, 503),
        (Reason::ConnectionsFull, 503),
        (Reason::Signature(SignatureError::Mismatch), 403),
        (Reason::Signature(SignatureError::Stale), 403),
        (Reason::Signature(SignatureError::Replayed), 403),
        (Reason::AbortBody, 400),
        (
            Reason::FailedVersion {
                failed: failed_before(),
                ago: Duration::from_secs(42),
            },
            409,
        ),
    ];
    for (reason, code) in reasons {
        assert_eq!(reason.status().code(), code, "{reason:?}");
        let text = reason.to_string();
        assert!(!text.is_empty() && !text.contains('\n'), "{text}");
    }
    // The three 403 of a signature read alike.
    let bodies: std::collections::BTreeSet<String> = [
        SignatureError::Mismatch,
        SignatureError::Stale,
        SignatureError::Replayed,
    ]
    .into_iter()
    .map(|e| Reason::Signature(e).to_string())
    .collect();
    assert_eq!(bodies.len(), 1);
}

#[test]
fn test_unsigned_names_only_the_accepted_schemes() {
    for (schemes, text) in [
        (
            Schemes::BOTH,
            "a signature is required: X-Lockstep-Signature or X-Bintray-Hook-Hmac",
        ),
        (
            Schemes::LOCKSTEP_ONLY,
            "a signature is required: X-Lockstep-Signature",
        ),
        (
            Schemes::BINTRAY_ONLY,
            "a signature is required: X-Bintray-Hook-Hmac",
        ),
    ] {
        let mut f = Fixture::new(Config {
            schemes,
            ..Config::default()
        });
        let r = reason(f.send(TARGET, None, Headers::default(), &body(), 1));
        assert_eq!(r, Reason::Unsigned(schemes));
        assert_eq!(r.to_string(), text);
        assert_eq!(
            (r.label(), r.signature_refusal()),
            ("missing", Some("missing"))
        );
    }
    assert_eq!(Reason::NotFound.signature_refusal(), None);
    assert_eq!(
        Reason::Signature(SignatureError::Stale).signature_refusal(),
        Some("stale")
    );
}

#[test]
fn test_refusals_of_the_budget_retry_after() {
    for reason in [Reason::StreamsFull, Reason::ConnectionsFull] {
        let refusal = Refusal::new(reason);
        assert_eq!(refusal.retry_after(), Some(RETRY_AFTER_SECS), "{reason:?}");
        assert!(reason.to_string().ends_with("retry later"), "{reason}");
    }
    assert_eq!(Reason::StreamsFull.label(), "streams_full");
    assert_eq!(Reason::ConnectionsFull.label(), "connections_full");
}

// ---- reads -----------------------------------------------------------------------------------

#[test]
fn test_reads_open_without_a_credential_guarded_with_one() {
    let credential = Credential::new(b"reader:pw").unwrap();
    let good: &[u8] = b"Basic cmVhZGVyOnB3";
    let id = DeploymentId::from_bytes([1; 16]).to_string();
    for (target, read) in [
        ("/deployments".to_string(), true),
        (format!("/deployments/{id}"), true),
        ("/v2/deployments/events".to_string(), true),
        ("/deployments/ui".to_string(), true),
        ("/v2/deployments/ui".to_string(), true),
        ("/metrics".to_string(), true),
        ("/healthz".to_string(), false),
    ] {
        let endpoint = route("GET", &target).unwrap();
        assert_eq!(endpoint.is_read(), read, "{target}");
        assert_eq!(authorize(None, &endpoint, None), Ok(()), "{target}");
        assert_eq!(authorize(Some(&credential), &endpoint, Some(good)), Ok(()));
        let refused = authorize(Some(&credential), &endpoint, None);
        if read {
            let r = refused.unwrap_err();
            assert_eq!(r.status(), Status::Unauthorized);
            assert_eq!(r.challenge(), Some(access::CHALLENGE));
            assert_eq!(r.reason.to_string(), "reading needs the read credential");
        } else {
            assert_eq!(refused, Ok(()), "{target}");
        }
    }
    let webhook = route("POST", TARGET).unwrap();
    assert!(!webhook.is_read());
    assert_eq!(authorize(Some(&credential), &webhook, None), Ok(()));
}

// ---- what a store keeps ------------------------------------------------------------------------

#[test]
fn test_webhook_accepted_hands_its_stamp_and_a_restored_one_refuses_the_replay() {
    let mut f = Fixture::new(Config::default());
    let body = body();
    let sig = lockstep(&body, T);
    let Endpoint::Webhook(hook_target) = route("POST", TARGET).unwrap() else {
        panic!("a webhook target")
    };
    let hook = Webhook {
        target: &hook_target,
        content_type: None,
        signatures: signed(&sig),
        body: body.as_bytes(),
    };
    let deployer = &mut f.deployer;
    let accepted = f
        .hooks
        .accept(now(), &hook, id(1), |r, _| {
            Ok(deployer.handle_notification(now(), r)?)
        })
        .unwrap();
    let stamp = accepted.stamp.expect("a lockstep signature has a stamp");
    assert_eq!(stamp.t, T);
    assert_eq!(f.hooks.stamps(now()).collect::<std::vec::Vec<_>>(), [stamp]);
    // A restarted service, its cache restored from the store: the replay is refused.
    let mut restarted = Fixture::new(Config::default());
    restarted.hooks.restore_stamp(now(), stamp).unwrap();
    assert_eq!(
        reason(restarted.send(TARGET, None, signed(&sig), &body, 2)),
        Reason::Signature(SignatureError::Replayed)
    );
    // One past its window is dropped, not restored.
    let mut late = Fixture::new(Config::default());
    let past = Now::new(
        Instant::from_millis(5),
        UnixTime::from_secs(T + Config::default().window.as_secs() + 1),
    );
    late.hooks.restore_stamp(past, stamp).unwrap();
    assert_eq!(late.hooks.replay_fill(past), 0);
    // The Bintray scheme has none.
    let mut b = Fixture::new(Config::default());
    let sig = bintray();
    let hook = Webhook {
        signatures: bintray_signed(&sig),
        ..hook
    };
    let deployer = &mut b.deployer;
    let accepted = b
        .hooks
        .accept(now(), &hook, id(1), |r, _| {
            Ok(deployer.handle_notification(now(), r)?)
        })
        .unwrap();
    assert_eq!(accepted.stamp, None);
}

#[test]
fn test_webhook_unrecorded_is_503_after_the_other_checks_and_admits_nothing() {
    let mut f = Fixture::new(Config::default());
    let body = body();
    f.hooks.set_recording(false);
    assert_eq!(
        reason(f.send(TARGET, None, signed("t=1"), &body, 1)),
        Reason::Signature(SignatureError::MissingMac)
    );
    let r = f
        .send(TARGET, None, signed(&lockstep(&body, T)), &body, 1)
        .unwrap_err();
    assert_eq!(r.reason, Reason::Unrecorded);
    assert_eq!(
        (r.status(), r.retry_after()),
        (Status::ServiceUnavailable, Some(RETRY_AFTER_SECS))
    );
    assert_eq!(f.deployer.len(), 0);
    assert_eq!(f.hooks.replay_fill(now()), 0);
    // Recording again: the same request is taken (it never entered the cache).
    f.hooks.set_recording(true);
    assert!(
        f.send(TARGET, None, signed(&lockstep(&body, T)), &body, 1)
            .is_ok()
    );
}

// ---- aborts ----------------------------------------------------------------------------------

fn abort_body(deployment: DeploymentId) -> String {
    format!(r#"{{"deploymentId":"{deployment}"}}"#)
}

/// Routes `POST {target}` as an abort and runs it through the checks against the fixture's
/// deployer.
fn abort(
    f: &mut Fixture,
    target: &str,
    signatures: Headers<'_>,
    body: &str,
) -> Result<AbortAccepted, Refusal> {
    let Endpoint::Abort { id, .. } = route("POST", target)? else {
        panic!("not an abort: {target}");
    };
    let request = AbortRequest {
        id,
        content_type: Some(b"application/json"),
        signatures,
        body: body.as_bytes(),
    };
    let deployer = &mut f.deployer;
    let result = f
        .hooks
        .abort(now(), &request, |id| deployer.handle_abort(now(), id));
    while deployer.poll().is_some() {}
    result
}

#[test]
fn test_route_abort_under_both_prefixes_post_only() {
    for (prefix, p) in [
        ("/deployments", Prefix::V1),
        ("/v2/deployments", Prefix::V2),
    ] {
        let target = format!("{prefix}/{}/abort", id(7));
        assert_eq!(
            route("POST", &target),
            Ok(Endpoint::Abort {
                prefix: p,
                id: id(7)
            })
        );
        let r = route("GET", &target).unwrap_err();
        assert_eq!(
            (r.status(), r.allow),
            (Status::MethodNotAllowed, Some("POST"))
        );
        assert_eq!(
            route("POST", &format!("{prefix}/not-a-uuid/abort"))
                .unwrap_err()
                .reason,
            Reason::NoSuchDeployment
        );
    }
    assert_eq!(
        route("POST", "/deployments/x/aborts").unwrap_err().status(),
        Status::NotFound
    );
}

#[test]
fn test_abort_signed_for_its_deployment_only_and_once() {
    let mut f = Fixture::new(Config::default());
    f.send(TARGET, None, signed(&lockstep(&body(), T)), &body(), 1)
        .unwrap();
    let target = format!("/deployments/{}/abort", id(1));
    // Another deployment's body, however well signed: 400, nothing aborted.
    let other = abort_body(id(2));
    let r = abort(&mut f, &target, signed(&lockstep(&other, T)), &other).unwrap_err();
    assert_eq!(r.reason, Reason::AbortBody);
    assert!(f.deployer.record(id(1)).is_some_and(|r| !r.has_ended()));
    // Unsigned, Bintray-signed, badly signed: 401, 401, 403.
    let mine = abort_body(id(1));
    let r = abort(&mut f, &target, Headers::default(), &mine).unwrap_err();
    assert_eq!(r.reason, Reason::Unsigned(Schemes::LOCKSTEP_ONLY));
    let r = abort(&mut f, &target, bintray_signed(&bintray()), &mine).unwrap_err();
    assert_eq!(r.status(), Status::Unauthorized);
    let wrong = lockstep(&abort_body(id(3)), T);
    let r = abort(&mut f, &target, signed(&wrong), &mine).unwrap_err();
    assert_eq!(r.status(), Status::Forbidden);
    assert!(f.deployer.record(id(1)).is_some_and(|r| !r.has_ended()));
    // Not an object, or the id not first: 400.
    for bad in [
        format!("[{mine}]"),
        format!(r#"{{"requested":1,"deploymentId":"{}"}}"#, id(1)),
        format!(r#"{{"deploymentId":"{}x"}}"#, id(1)),
    ] {
        let r = abort(&mut f, &target, signed(&lockstep(&bad, T)), &bad).unwrap_err();
        assert_eq!(r.reason, Reason::AbortBody, "{bad}");
    }
    // Right: aborted (it was resolving: nothing changed in the cluster). Other members and
    // whitespace are allowed: a client makes each abort's body its own.
    let own = format!(
        "{{ \"deploymentId\" : \"{}\",\n \"requested\": \"2026-12-02T04:00:00.000Z\" }}",
        id(1)
    );
    let header = lockstep(&own, T);
    let done = abort(&mut f, &target, signed(&header), &own).unwrap();
    assert_eq!(done.aborted, Aborted::Ended);
    // The same signature again: replayed.
    let r = abort(&mut f, &target, signed(&header), &own).unwrap_err();
    assert_eq!(r.reason, Reason::Signature(SignatureError::Replayed));
    // Unknown: 404 (a fixture of its own: this one's replay cache of 2 is full).
    let mut f = Fixture::new(Config::default());
    let target = format!("/deployments/{}/abort", id(9));
    let nine = abort_body(id(9));
    let r = abort(&mut f, &target, signed(&lockstep(&nine, T)), &nine).unwrap_err();
    assert_eq!(r.reason, Reason::NoSuchDeployment);
}

#[test]
fn test_abort_while_shutting_down_is_503() {
    let mut f = Fixture::new(Config::default());
    f.send(TARGET, None, signed(&lockstep(&body(), T)), &body(), 1)
        .unwrap();
    f.hooks.shut_down();
    let mine = abort_body(id(1));
    let target = format!("/deployments/{}/abort", id(1));
    let r = abort(&mut f, &target, signed(&lockstep(&mine, T)), &mine).unwrap_err();
    assert_eq!(r.reason, Reason::ShuttingDown);
}
