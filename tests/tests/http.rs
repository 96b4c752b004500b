//! HTTP/1.1 as both runtimes speak it (docs/PROTOCOL.md §7, "HTTP/1.1, as built"), on raw
//! connections: an absolute-form target is served by its path (RFC 9112 §3.2.2), `HEAD` is
//! answered as `GET` without the body (RFC 9110 §9.3.2), and an answer after which the
//! connection closes says `Connection: close` (RFC 9112 §9.6).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};

use lockstep_tests::raw::*;
use lockstep_tests::stack::*;

/// Sends `request` on `stream` and reads the answer's head and body.
fn exchange(stream: &mut TcpStream, request: &str) -> Raw {
    stream.write_all(request.as_bytes()).expect("write");
    read_response(stream).expect("an answer")
}

/// `HEAD path` on a kept-alive connection: its head, and proof that no body followed (the
/// next answer on the connection starts right after it).
fn head(addr: SocketAddr, path: &str) -> Raw {
    let mut stream = connect(addr);
    stream
        .write_all(format!("HEAD {path} HTTP/1.1\r\nHost: lockstep\r\n\r\n").as_bytes())
        .expect("write");
    let raw = read_head(&mut stream).expect("a head");
    if raw.header("connection").as_deref() != Some("close") {
        assert_eq!(
            ask_healthz(&mut stream),
            200,
            "HEAD {path}: a body followed"
        );
    }
    raw
}

#[test]
fn test_absolute_form_target_is_served_by_its_path() {
    let s = sandbox(&[]);
    let v = serve(&s, &[]);
    let old = the_running_bundle(&s);
    let addr = v.client.addr;
    // The authority is ignored, whatever it names, as Host is.
    for target in [
        format!("http://{addr}/healthz"),
        "HTTP://elsewhere.example:8080/healthz".to_owned(),
    ] {
        let r = v.client.get(&target);
        assert_eq!((r.status, r.text().as_str()), (200, "ok\n"), "{target}");
    }
    let new = s.compatible(0);
    let target = format!("http://{addr}{HOOK}");
    let r = post_signed(&v, &target, new.body().as_bytes(), now_secs());
    let id = accepted(&v, &r, "/deployments");
    assert_replaced_at_scale_3(&s, &v, &id, &new, &old);
}

lockstep_tests::on_both_runtimes! {
fn test_head_answers_as_get_without_the_body(runtime: Runtime) {
    let s = sandbox(&[]);
    let v = serve_runtime(runtime, &s, &[]);
    let addr = v.client.addr;
    let id = accepted(&v, &notify(&v, &s.incompatible()), "/deployments");
    failure(&ended(&v, &id));
    for path in [
        "/healthz".to_owned(),
        "/deployments".to_owned(),
        "/v2/deployments".to_owned(),
        format!("/deployments/{id}"),
        format!("/v2/deployments/{id}"),
        "/deployments/ui".to_owned(),
        "/v2/deployments/ui".to_owned(),
    ] {
        let get = exchange(
            &mut connect(addr),
            &format!("GET {path} HTTP/1.1\r\nHost: lockstep\r\n\r\n"),
        );
        // lockstep-minimal has no page: its 404, as HEAD too.
        let page = path.ends_with("/ui") && runtime == Runtime::Minimal;
        assert_eq!(get.status, if page { 404 } else { 200 }, "GET {path}");
        let head = head(addr, &path);
        assert_eq!(head.head, get.head, "HEAD {path}");
    }
    // /metrics counts the requests it answers: the same head but for its length.
    let get = exchange(
        &mut connect(addr),
        "GET /metrics HTTP/1.1\r\nHost: lockstep\r\n\r\n",
    );
    let head_answer = head(addr, "/metrics");
    let without_length = |raw: &Raw| -> Vec<String> {
        raw.header_lines()
            .into_iter()
            .filter(|l| !l.to_ascii_lowercase().starts_with("content-length:"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(head_answer.status, 200);
    assert_eq!(without_length(&head_answer), without_length(&get));
    let length: usize = head_answer
        .header("content-length")
        .and_then(|l| l.parse().ok())
        .expect("a Content-Length");
    assert!(length > 0);
    // An unknown deployment: GET's 404 head.
    let unknown = head(addr, "/deployments/7c1f21a3-91d1-44fa-8875-cf9a316d68ce");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.header("content-length").as_deref(), Some("19"));
}
}

lockstep_tests::on_both_runtimes! {
fn test_head_on_the_webhook_and_the_event_stream(runtime: Runtime) {
    let s = sandbox(&[]);
    let v = serve_runtime(runtime, &s, &[]);
    let addr = v.client.addr;
    // The webhook takes only POST.
    for hook in [HOOK, HOOK_V2] {
        let mut stream = connect(addr);
        stream
            .write_all(format!("HEAD {hook} HTTP/1.1\r\nHost: lockstep\r\n\r\n").as_bytes())
            .expect("write");
        let raw = read_head(&mut stream).expect("a head");
        assert_eq!(raw.status, 405, "{}", raw.head);
        assert_eq!(raw.header("allow").as_deref(), Some("POST"));
        assert_eq!(raw.header("connection").as_deref(), Some("close"));
        assert_eq!(read_until_closed(&mut stream), b"", "HEAD {hook}: a body");
    }
    // The event stream: its head, then the end.
    let mut stream = connect(addr);
    stream
        .write_all(b"HEAD /deployments/events HTTP/1.1\r\nHost: lockstep\r\n\r\n")
        .expect("write");
    let raw = read_head(&mut stream).expect("a head");
    assert_eq!(raw.status, 200, "{}", raw.head);
    // The same headers (picoserve writes `Connection` first: their order means nothing).
    let mut lines = raw.header_lines();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "Cache-Control: no-cache",
            "Connection: close",
            "Content-Type: text/event-stream",
            "Transfer-Encoding: chunked",
        ]
    );
    assert_eq!(read_until_closed(&mut stream), b"", "HEAD events: a body");
}
}

#[test]
fn test_connection_close_is_said_when_the_connection_closes() {
    let s = sandbox(&[]);
    let v = serve(&s, &[]);
    let addr = v.client.addr;
    for (request, what) in [
        (
            "GET /healthz HTTP/1.1\r\nHost: lockstep\r\nConnection: close\r\n\r\n",
            "asked",
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: lockstep\r\nConnection: Keep-Alive, Close\r\n\r\n",
            "asked among other tokens",
        ),
        ("GET /healthz HTTP/1.0\r\n\r\n", "HTTP/1.0"),
        ("GET /nope HTTP/1.1\r\nHost: lockstep\r\n\r\n", "a refusal"),
    ] {
        let mut stream = connect(addr);
        let raw = exchange(&mut stream, request);
        assert_eq!(
            raw.header("connection").as_deref(),
            Some("close"),
            "{what}: {}",
            raw.head
        );
        assert_eq!(read_until_closed(&mut stream), b"", "{what}");
    }
    // HTTP/1.0 asking to keep the connection: said back, and kept.
    let mut stream = connect(addr);
    let request = "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    for _ in 0..2 {
        let raw = exchange(&mut stream, request);
        assert_eq!(raw.status, 200);
        assert_eq!(raw.header("connection").as_deref(), Some("keep-alive"));
    }
    // HTTP/1.1 keeps it without saying so.
    let mut stream = connect(addr);
    let raw = exchange(
        &mut stream,
        "GET /healthz HTTP/1.1\r\nHost: lockstep\r\n\r\n",
    );
    assert_eq!(raw.header("connection"), None, "{}", raw.head);
    assert_eq!(ask_healthz(&mut stream), 200);
}
