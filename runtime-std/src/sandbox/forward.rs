//! The sandbox's forwarding of the deployments endpoints to a lockstep service (`--deployments
//! URL`), as ConductR's control API forwarded them to its Continuous Delivery service: the
//! official `conduct deploy --webhook bintray --port <sandbox port>` sends its webhook and
//! follows the deployment there (docs/PROTOCOL.md §5).
//!
//! Each request is forwarded whole, once the sandbox's server has read it within its limits:
//! a connection to the service (within [`CONNECT_TIMEOUT`]), the same method, path and query
//! under the URL's path, the end-to-end headers, the body, and `Connection: close`. The
//! service's answer is relayed byte for byte, head included ([`crate::http::Body::Relay`]),
//! until the service closes the connection: the event stream goes through event by event,
//! and the client's connection closes with it. A service that does not answer is a 502.

use std::time::{Duration, Instant};

use async_io::Timer;
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use lockstep_core::agent::Connector;
use lockstep_core::agent::http::Url;

use crate::http::{Request, Response};
use crate::platform::{TcpConnection, TcpConnector};
use crate::url::BaseUrl;

/// How long the service may take to accept the connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the service may take to take the request and begin its answer (its head): past
/// it, 502. After that the answer is relayed for as long as it lasts.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest answer head read before it is relayed.
const MAX_ANSWER_HEAD: usize = 16 * 1024;

/// The request headers that concern one connection only (RFC 9110 §7.6.1), and those the
/// forwarding writes itself (`Host`, `Content-Length`); `Expect` is dropped since the body is
/// read already. Every other header goes through.
const NOT_FORWARDED: [&str; 12] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "expect",
];

/// Whether `path` is one the sandbox forwards: `/deployments` and `/v2/deployments`, and
/// what lies under them.
pub(super) fn is_forwarded(path: &str) -> bool {
    ["/deployments", "/v2/deployments"].iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// The 502 of a service that does not answer.
pub(super) fn unanswered(service: &BaseUrl) -> Response {
    Response::text(
        502,
        &format!("the deployments service at {service} does not answer"),
    )
}

/// Forwards `request` to the service at `service` and returns its answer, to be relayed, or
/// a 502.
pub(super) async fn forward(service: &BaseUrl, request: &Request) -> Response {
    let url = service.url();
    let connector = TcpConnector::new(CONNECT_TIMEOUT);
    // lockstep serves its deployments over plain HTTP: an https:// service is not answered.
    let Ok(TcpConnection::Plain(mut upstream)) = connector.connect(url.origin()).await else {
        return unanswered(service);
    };
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    let mut bytes = request_head(url, request);
    bytes.extend_from_slice(&request.body);
    // A write cut short may still have an answer to read: a refusal sent before the whole
    // body was taken (413).
    let _ = within(deadline, upstream.write_all(&bytes)).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let status = loop {
        match answer_status(&answer) {
            AnswerHead::Status(status) => break status,
            AnswerHead::NotHttp => return unanswered(service),
            AnswerHead::Partial if answer.len() > MAX_ANSWER_HEAD => {
                return unanswered(service);
            }
            AnswerHead::Partial => {}
        }
        match within(deadline, upstream.read(&mut buf)).await {
            Some(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            _ => return unanswered(service),
        }
    };
    Response::relayed(status, answer, upstream)
}

/// `io` until `deadline`; `None` after.
async fn within<T>(deadline: Instant, io: impl Future<Output = T>) -> Option<T> {
    async { Some(io.await) }
        .or(async {
            Timer::at(deadline).await;
            None
        })
        .await
}

/// The head of the forwarded request: `request`'s method and target under the service's
/// path, `Host` the service's, the end-to-end headers as sent, `Content-Length` when the
/// request has a body or said one, and `Connection: close` (the answer is relayed until the
/// service closes).
fn request_head(service: Url<'_>, request: &Request) -> Vec<u8> {
    // Headers a `Connection` header names concern that connection only, as well.
    let named: Vec<String> = request
        .headers
        .iter()
        .filter(|(name, _)| name == "connection")
        .flat_map(|(_, value)| value.split(|&b| b == b','))
        .map(|token| String::from_utf8_lossy(token.trim_ascii()).to_ascii_lowercase())
        .collect();
    let host = if service.host().contains(':') {
        format!("[{}]", service.host())
    } else {
        service.host().to_owned()
    };
    let authority = if service.port() == service.scheme().default_port() {
        host
    } else {
        format!("{host}:{}", service.port())
    };
    let mut head = format!(
        "{} {}{} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n",
        request.method,
        service.path(),
        request.target
    )
    .into_bytes();
    for (name, value) in &request.headers {
        if NOT_FORWARDED.contains(&name.as_str()) || named.contains(name) {
            continue;
        }
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    if !request.body.is_empty() || request.header("content-length").is_some() {
        head.extend_from_slice(format!("Content-Length: {}\r\n", request.body.len()).as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// What the first bytes of an answer say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AnswerHead {
    /// A whole head, with this status.
    Status(u16),
    /// Not a whole head yet.
    Partial,
    /// Not an HTTP/1.x answer.
    NotHttp,
}

/// Reads the head at the start of `bytes` (httparse; at most 64 headers).
fn answer_status(bytes: &[u8]) -> AnswerHead {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {
            parsed.code.map_or(AnswerHead::NotHttp, AnswerHead::Status)
        }
        Ok(httparse::Status::Partial) => AnswerHead::Partial,
        Err(_) => AnswerHead::NotHttp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Request {
        Request {
            method: method.to_owned(),
            target: target.to_owned(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
                .collect(),
            body: body.to_vec(),
            peer: ([127, 0, 0, 1], 40000).into(),
        }
    }

    fn head(service: &str, request: &Request) -> String {
        let service = BaseUrl::parse(service).unwrap();
        String::from_utf8(request_head(service.url(), request)).unwrap()
    }

    #[test]
    fn test_is_forwarded() {
        for path in [
            "/deployments",
            "/deployments/",
            "/deployments/events",
            "/deployments/typesafe/bundle/typesafe",
            "/v2/deployments",
            "/v2/deployments/7c1f21a3-91d1-44fa-8875-cf9a316d68ce",
        ] {
            assert!(is_forwarded(path), "{path}");
        }
        for path in [
            "/",
            "/deploymentsx",
            "/v2/deploymentsx/events",
            "/v2/bundles",
            "/v1/deployments",
            "/sandbox/deployments",
            "//deployments",
            "deployments",
            "/healthz",
        ] {
            assert!(!is_forwarded(path), "{path}");
        }
    }

    #[test]
    fn test_request_head_keeps_method_target_and_end_to_end_headers() {
        let body = br#"{"package":"visualizer","version":"1.1.0-abc"}"#;
        let r = request(
            "POST",
            "/v2/deployments/typesafe/bundle/typesafe?tag=a&tag=b",
            &[
                ("host", "127.0.0.1:9005"),
                ("user-agent", "python-requests/2.31.0"),
                ("accept", "*/*"),
                ("connection", "keep-alive, x-hop"),
                ("x-hop", "only this connection"),
                ("keep-alive", "timeout=5"),
                ("content-type", "application/json"),
                (
                    "x-bintray-hook-hmac",
                    "2un791uBDf59/fHrIOWMqt0mhwEoH0yqkZXmz//4alQ=",
                ),
                ("content-length", "46"),
                ("expect", "100-continue"),
            ],
            body,
        );
        assert_eq!(
            head("http://127.0.0.1:9010", &r),
            "POST /v2/deployments/typesafe/bundle/typesafe?tag=a&tag=b HTTP/1.1\r\n\
             Host: 127.0.0.1:9010\r\n\
             Connection: close\r\n\
             user-agent: python-requests/2.31.0\r\n\
             accept: */*\r\n\
             content-type: application/json\r\n\
             x-bintray-hook-hmac: 2un791uBDf59/fHrIOWMqt0mhwEoH0yqkZXmz//4alQ=\r\n\
             Content-Length: 46\r\n\r\n"
        );
    }

    #[test]
    fn test_request_head_under_the_service_path_and_host() {
        let r = request(
            "GET",
            "/deployments/events",
            &[("accept", "text/event-stream")],
            b"",
        );
        // No body, none said: no Content-Length. The base path is a prefix; port 80 unsaid.
        assert_eq!(
            head("http://lockstep.example/cd/", &r),
            "GET /cd/deployments/events HTTP/1.1\r\nHost: lockstep.example\r\n\
             Connection: close\r\naccept: text/event-stream\r\n\r\n"
        );
        assert_eq!(
            head("http://[::1]:9010", &r),
            "GET /deployments/events HTTP/1.1\r\nHost: [::1]:9010\r\n\
             Connection: close\r\naccept: text/event-stream\r\n\r\n"
        );
        // An empty body that was said is said again (a POST must have one).
        let r = request("POST", "/deployments", &[("content-length", "0")], b"");
        assert!(head("http://127.0.0.1:9010", &r).ends_with("\r\nContent-Length: 0\r\n\r\n"));
    }

    #[test]
    fn test_forward_to_nothing_is_502() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let service = BaseUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let r = request("GET", "/v2/deployments", &[], b"");
        let answer = futures_lite::future::block_on(forward(&service, &r));
        assert_eq!(answer.status, 502);
        let crate::http::Body::Bytes(body) = answer.body else {
            panic!("a whole body");
        };
        assert_eq!(
            String::from_utf8(body).unwrap(),
            format!("the deployments service at http://127.0.0.1:{port} does not answer\n")
        );
    }

    #[test]
    fn test_forward_sends_the_request_and_relays_from_the_head_on() {
        futures_lite::future::block_on(async {
            let listener = async_net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let service =
                BaseUrl::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
            let body = br#"{"package":"visualizer","version":"1.1.0-abc"}"#;
            let r = request(
                "POST",
                "/deployments/typesafe/bundle/typesafe",
                &[
                    ("content-type", "application/json"),
                    ("content-length", "46"),
                ],
                body,
            );
            let service_side = async {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                while !got.ends_with(body) {
                    let n = conn.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                }
                // The head in two writes: it is read whole, however it arrives.
                conn.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Le")
                    .await
                    .unwrap();
                conn.flush().await.unwrap();
                conn.write_all(b"ngth: 2\r\n\r\nid").await.unwrap();
                (got, conn)
            };
            let ((got, _conn), answer) =
                futures_lite::future::zip(service_side, forward(&service, &r)).await;
            let mut expected = request_head(service.url(), &r);
            expected.extend_from_slice(body);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&expected)
            );
            assert_eq!((answer.status, answer.close), (202, true));
            let crate::http::Body::Relay { answer, .. } = answer.body else {
                panic!("a relayed body");
            };
            assert!(answer.starts_with(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n"));
        });
    }

    #[test]
    fn test_answer_status() {
        assert_eq!(
            answer_status(b"HTTP/1.1 202 Accepted\r\nContent-Length: 36\r\n\r\n7c1f"),
            AnswerHead::Status(202)
        );
        assert_eq!(
            answer_status(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"),
            AnswerHead::Status(200)
        );
        for partial in [
            &b""[..],
            b"HTTP/1.1 20",
            b"HTTP/1.1 200 OK\r\nContent-Type: te",
        ] {
            assert_eq!(answer_status(partial), AnswerHead::Partial, "{partial:?}");
        }
        for garbage in [&b"SSH-2.0-OpenSSH_9.2\r\n"[..], b"HTTP/1.1 2x0 OK\r\n\r\n"] {
            assert_eq!(answer_status(garbage), AnswerHead::NotHttp, "{garbage:?}");
        }
    }
}
