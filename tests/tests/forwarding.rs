//! `lockstep sandbox --deployments URL` over real processes: the deployments endpoints of the
//! sandbox's control API are forwarded to `lockstep serve`, as ConductR's were to its
//! Continuous Delivery service (docs/PROTOCOL.md §5). A webhook sent to the sandbox deploys,
//! its events and the event stream read through it, refusals come back unchanged, a service
//! that does not answer is a 502, and without `--deployments` the paths are not found.
//!
//! Each process must know the other's address when it starts, and both ports are chosen by
//! the OS: the forwarding sandbox is a second one, beside the sandbox lockstep deploys to
//! (`lockstep demo` wires one sandbox both ways, in one process: tested last).

use std::io::Write;
use std::time::Duration;

use lockstep_tests::raw::{self, read_until_closed};
use lockstep_tests::stack::{
    HOOK, HOOK_V2, SECRET, Sandbox, Serve, WAIT, assert_cluster_replaced_at_scale_3,
    assert_refused, assert_uuid_v4, event_types, event_types_at_scale_3, lockstep_header, now_secs,
    python_hmac, run_to_exit, sandbox, serve, the_running_bundle,
};
use lockstep_tests::{Client, Process, Response, TempDir, eventually};
use serde_json::Value;

/// A sandbox without the demo that forwards the deployments endpoints to `service`.
struct Forwarder {
    client: Client,
    _process: Process,
    _dir: TempDir,
}

fn forwarder(service: &str) -> Forwarder {
    let dir = TempDir::new("lockstep-forwarding");
    let data = dir.path_text();
    let mut process = Process::lockstep(&[
        "sandbox",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data,
        "--deployments",
        service,
    ]);
    let addr = process.listening();
    assert_eq!(
        process.line(WAIT),
        format!("repository http://{addr}/repository")
    );
    assert_eq!(
        process.line(WAIT),
        format!("deployments forwarded to {service}")
    );
    Forwarder {
        client: Client::new(addr),
        _process: process,
        _dir: dir,
    }
}

/// The sandbox lockstep deploys to, `lockstep serve`, and a sandbox forwarding to it.
struct Stack {
    cluster: Sandbox,
    serve: Serve,
    forwarder: Forwarder,
}

fn stack() -> Stack {
    let cluster = sandbox(&[]);
    let serve = serve(&cluster, &[]);
    let forwarder = forwarder(&format!("http://{}", serve.client.addr));
    Stack {
        cluster,
        serve,
        forwarder,
    }
}

/// A port nothing listens on: one the OS just gave and took back.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("an address")
        .port()
}

/// POSTs a webhook body with `Content-Type: application/json` and these headers.
fn post(client: &Client, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    client.request("POST", path, &all, body)
}

/// The events of a deployment read through `client` once it ended.
fn ended_through(client: &Client, prefix: &str, id: &str) -> Vec<Value> {
    eventually(&format!("deployment {id} to end"), WAIT, || {
        let r = client.get(&format!("{prefix}/{id}"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        let events = r.json().as_array()?.clone();
        let last = events.last()?["eventType"].as_str()?.to_owned();
        matches!(last.as_str(), "deploymentSuccess" | "deploymentFailure").then_some(events)
    })
}

/// The answer of the same request through the forwarding sandbox and from the service itself
/// are the same: status, the headers that matter, body.
fn assert_same_answer(through: &Response, direct: &Response, what: &str) {
    assert_eq!(through.status, direct.status, "{what}: {}", through.text());
    for name in [
        "content-type",
        "location",
        "retry-after",
        "allow",
        "cache-control",
        "www-authenticate",
    ] {
        assert_eq!(through.header(name), direct.header(name), "{what}: {name}");
    }
    assert_eq!(through.text(), direct.text(), "{what}");
}

#[test]
fn test_forwarded_webhook_deploys_and_its_events_read_through_the_sandbox() {
    let s = stack();
    let old = the_running_bundle(&s.cluster);
    let new = s.cluster.compatible(0);
    // Signed as Bintray and the official client sign, by an independent HMAC.
    let mac = python_hmac(SECRET, b"visualizer", "base64");
    let r = post(
        &s.forwarder.client,
        HOOK_V2,
        &[("X-Bintray-Hook-Hmac", &mac)],
        new.body().as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        r.headers
    );
    let id = r.text();
    assert_uuid_v4(&id);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/deployments/{id}").as_str())
    );
    // The connection closes after a forwarded answer.
    assert_eq!(r.header("connection"), Some("close"));

    let events = ended_through(&s.forwarder.client, "/v2/deployments", &id);
    assert_eq!(
        event_types(&events),
        event_types_at_scale_3(),
        "{events:#?}"
    );
    assert_cluster_replaced_at_scale_3(&s.cluster, &new, &old);
    // Byte for byte what the service answers, under either prefix; the listing too.
    for target in [
        format!("/v2/deployments/{id}"),
        format!("/deployments/{id}"),
        "/deployments".to_owned(),
        "/v2/deployments".to_owned(),
    ] {
        let through = s.forwarder.client.get(&target);
        let direct = s.serve.client.get(&target);
        assert_eq!(through.status, 200, "{target}");
        assert_same_answer(&through, &direct, &target);
    }
}

#[test]
fn test_forwarded_event_stream_delivers_events_live() {
    let s = stack();
    let new = s.cluster.compatible(0);
    // Its instances never start: the deployment stays in flight while the test reads.
    s.cluster.never_start(&new);

    // The stream's head, by HEAD through the sandbox: the service's, chunked.
    let mut conn = raw::connect(s.forwarder.client.addr);
    conn.write_all(b"HEAD /v2/deployments/events HTTP/1.1\r\nHost: sandbox\r\n\r\n")
        .expect("write");
    let head = raw::read_head(&mut conn).expect("a head");
    assert_eq!(head.status, 200, "{}", head.head);
    assert_eq!(
        head.header("content-type").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(head.header("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(head.header("transfer-encoding").as_deref(), Some("chunked"));
    assert!(
        read_until_closed(&mut conn).is_empty(),
        "a HEAD has no body"
    );

    let metrics = || s.serve.client.get("/metrics").text();
    eventually("the HEAD's stream place to be free", WAIT, || {
        metrics()
            .contains("\nlockstep_event_streams_open 0\n")
            .then_some(())
    });
    let mut stream = s.forwarder.client.stream("/v2/deployments/events");
    eventually("the stream to be open at the service", WAIT, || {
        metrics()
            .contains("\nlockstep_event_streams_open 1\n")
            .then_some(())
    });
    let body = new.body();
    let signature = lockstep_header(body.as_bytes(), now_secs());
    let r = post(
        &s.forwarder.client,
        HOOK,
        &[("X-Lockstep-Signature", &signature)],
        body.as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.text();
    // Event by event, while the deployment is still in flight, heartbeats between them.
    let seen = stream.read_until(WAIT, |text| {
        text.contains(&format!("event:deploy\ndata:{id}\n\n"))
            && (text.starts_with(":\n\n") || text.contains("\n\n:\n\n"))
    });
    for event in ["deploymentStarted", "bundleDownload", "load"] {
        assert!(
            seen.contains(&format!("event:{event}\ndata:{id}\n\n")),
            "{event}: {seen:?}"
        );
    }
    let events = s.forwarder.client.get(&format!("/deployments/{id}")).json();
    let last = events.as_array().and_then(|e| e.last()).expect("events");
    assert_eq!(last["eventType"], "deploy", "still in flight: {events}");

    // The client going away ends the stream at the service too: its place is free.
    drop(stream);
    eventually("the stream's place at the service to be free", WAIT, || {
        metrics()
            .contains("\nlockstep_event_streams_open 0\n")
            .then_some(())
    });
}

/// A request the service refuses: what it is, its method, target and headers, the status.
struct Refused<'a> {
    what: &'a str,
    method: &'a str,
    target: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    status: u16,
}

#[test]
fn test_forwarded_refusals_come_back_unchanged() {
    let s = stack();
    let body = s.cluster.compatible(0).body();
    let wrong = python_hmac("not-the-secret", b"visualizer", "base64");
    let json = ("Content-Type", "application/json");
    let cases = [
        Refused {
            what: "a Bintray signature by another secret",
            method: "POST",
            target: HOOK_V2,
            headers: vec![json, ("X-Bintray-Hook-Hmac", &wrong)],
            status: 403,
        },
        Refused {
            what: "a malformed Bintray signature",
            method: "POST",
            target: HOOK_V2,
            headers: vec![json, ("X-Bintray-Hook-Hmac", "not base64")],
            status: 401,
        },
        Refused {
            what: "no signature",
            method: "POST",
            target: HOOK,
            headers: vec![json],
            status: 401,
        },
        Refused {
            what: "another media type",
            method: "POST",
            target: HOOK_V2,
            headers: vec![("Content-Type", "text/plain")],
            status: 415,
        },
        Refused {
            what: "an unknown deployment",
            method: "GET",
            target: "/v2/deployments/7c1f21a3-91d1-44fa-8875-cf9a316d68ce",
            headers: vec![],
            status: 404,
        },
        Refused {
            what: "a method the webhook has not",
            method: "DELETE",
            target: HOOK_V2,
            headers: vec![],
            status: 405,
        },
    ];
    for case in cases {
        let body = if case.method == "POST" {
            body.as_bytes()
        } else {
            b""
        };
        let send = |client: &Client| client.request(case.method, case.target, &case.headers, body);
        let (through, direct) = (send(&s.forwarder.client), send(&s.serve.client));
        let line = assert_refused(&through, case.status, case.what);
        assert_same_answer(&through, &direct, case.what);
        if case.status == 405 {
            assert_eq!(
                through.header("allow"),
                Some("POST"),
                "{}: {line}",
                case.what
            );
        }
    }
}

#[test]
fn test_a_forwarded_answer_ends_its_kept_alive_connection() {
    let s = stack();
    let mut conn = raw::connect(s.forwarder.client.addr);
    // The control API's own answer keeps the connection; the forwarded one closes it.
    conn.write_all(b"GET /v2/license HTTP/1.1\r\nHost: sandbox\r\n\r\n")
        .expect("write");
    let license = raw::read_response(&mut conn).expect("an answer");
    assert_eq!(license.status, 404);
    assert_eq!(license.header("connection"), None, "{}", license.head);
    conn.write_all(b"GET /v2/deployments HTTP/1.1\r\nHost: sandbox\r\n\r\n")
        .expect("write");
    let listing = raw::read_response(&mut conn).expect("an answer");
    assert_eq!(listing.status, 200, "{}", listing.head);
    assert_eq!(listing.body, b"[]");
    assert_eq!(
        listing.header("connection").as_deref(),
        Some("close"),
        "{}",
        listing.head
    );
    assert!(read_until_closed(&mut conn).is_empty());
}

#[test]
fn test_service_down_is_502_and_the_control_api_unchanged() {
    let port = closed_port();
    let service = format!("http://127.0.0.1:{port}");
    let f = forwarder(&service);
    let expected = format!("the deployments service at {service} does not answer");
    let listing = f.client.get("/v2/deployments");
    assert_eq!(assert_refused(&listing, 502, "listing"), expected);
    let webhook = post(&f.client, HOOK, &[], b"{}");
    assert_eq!(assert_refused(&webhook, 502, "webhook"), expected);
    // What is not forwarded answers as before.
    assert_eq!(f.client.get("/v2/bundles").text(), "[]");
    let other = f.client.get("/v2/deploymentsx");
    assert_eq!(assert_refused(&other, 404, "a path beside"), "not found");
}

#[test]
fn test_without_deployments_the_paths_are_not_found() {
    let s = sandbox(&[]);
    for (method, target) in [
        ("GET", "/deployments"),
        ("GET", "/deployments/events"),
        ("GET", "/v2/deployments"),
        ("GET", "/v2/deployments/events"),
        (
            "GET",
            "/v2/deployments/7c1f21a3-91d1-44fa-8875-cf9a316d68ce",
        ),
        ("POST", HOOK),
        ("POST", HOOK_V2),
    ] {
        let r = s.client.request(method, target, &[], b"{}");
        assert_eq!(assert_refused(&r, 404, target), "not found");
    }
}

#[test]
fn test_deployments_must_be_an_http_url() {
    for (url, says) in [
        // lockstep serves its deployments over plain HTTP.
        ("https://127.0.0.1:9010", "only http:// is supported here"),
        (
            "127.0.0.1:9010",
            "a URL must start with http:// or https://",
        ),
    ] {
        let (code, stderr) = run_to_exit(&["sandbox", "--deployments", url], &[]);
        assert_eq!(code, Some(2), "{stderr}");
        assert_eq!(
            stderr,
            format!("lockstep sandbox: --deployments: `{url}`: {says}\n")
        );
    }
}

#[test]
fn test_demo_forwards_its_sandboxs_deployments_endpoints() {
    let mut demo = Process::lockstep(&["demo"]);
    let mut lines = Vec::new();
    while lines.last().is_none_or(|l| l != "Ctrl-C to stop.") {
        lines.push(demo.line(WAIT));
    }
    let text = lines.join("\n");
    let conduct = lines
        .iter()
        .map(|l| l.trim_start())
        .find(|l| l.starts_with("conduct deploy --webhook bintray "))
        .unwrap_or_else(|| panic!("no conduct deploy line: {text}"));
    let value_of = |flag: &str| {
        conduct
            .split_whitespace()
            .skip_while(|w| *w != flag)
            .nth(1)
            .unwrap_or_else(|| panic!("{flag} in {conduct:?}"))
            .to_owned()
    };
    let sandbox: std::net::SocketAddr = format!("{}:{}", value_of("--ip"), value_of("--port"))
        .parse()
        .expect("an address");
    assert!(
        text.contains(&format!("ConductR sandbox  http://{sandbox}")),
        "the port is the sandbox's: {text}"
    );
    assert!(conduct.ends_with(" visualizer:1.2.0"), "{conduct}");
    // The client's settings file holds the secret, as the official client reads it.
    let settings = std::fs::read_to_string(value_of("--custom-settings-file")).expect("settings");
    let secret = settings
        .trim_end()
        .strip_prefix("conductr.continuous-delivery.bintray-webhook-secret = \"")
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("the secret's line: {settings:?}"))
        .to_owned();
    demo.guard_secret(&secret);
    let body = lines
        .iter()
        .find_map(|l| {
            l.trim_start()
                .strip_prefix("body='")?
                .strip_suffix('\'')
                .filter(|b| b.contains("\"version\":\"1.2.0-"))
        })
        .unwrap_or_else(|| panic!("no body for 1.2.0: {text}"))
        .to_owned();

    // The official client's webhook, sent to the sandbox's port.
    let client = Client::new(sandbox);
    let mac = python_hmac(&secret, b"visualizer", "base64");
    let r = post(
        &client,
        HOOK_V2,
        &[("X-Bintray-Hook-Hmac", &mac)],
        body.as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let events = ended_through(&client, "/v2/deployments", &r.text());
    assert_eq!(
        event_types(&events),
        event_types_at_scale_3(),
        "{events:#?}"
    );
    demo.stop("INT", Duration::from_secs(30));
}
