//! The HTTP client of lockstep's commands (`lockstep deploy`, `lockstep publish --notify`):
//! core's [`Client`] on the std platform, so that the commands speak HTTP exactly as the
//! agent does (the same framing, limits and time-outs), and the signed webhook both commands
//! send.
//!
//! [`Session`] keeps the connector (and its trust for `https://`), clock and time-out of a
//! command: [`Session::exchange`] is one blocking request with its whole answer, under a
//! time-out per wait and a limit on the body; [`Session::download`] follows redirects;
//! [`Session::client`] serves a command that makes several requests from async code (the
//! deployment follower).

use std::fmt;
use std::time::{Duration as StdDuration, SystemTime, UNIX_EPOCH};

use lockstep_core::agent::http::{Client, HttpError, Method, get_following};
use lockstep_core::bundle::{Segment, Version};
use lockstep_core::service::Asks;
use lockstep_core::signature::{self, Secret};

use crate::platform::{StdTime, TcpConnector, from_std_duration};
use crate::time::rfc3339;
use crate::tls::Trust;
use crate::url::BaseUrl;

/// Bytes of buffer a response head must fit in (and a request head: ours are small).
pub const BUFFER: usize = 16 * 1024;

/// The most bytes of a body an [`Session::exchange`] reads: a deployment's events, a `versions.json`.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("lockstep/", env!("CARGO_PKG_VERSION"));

/// What a server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`, empty when there is none.
    pub content_type: String,
    /// The body, whole.
    pub body: Vec<u8>,
}

impl Answer {
    /// Whether the status is 2xx.
    pub const fn is_success(&self) -> bool {
        self.status >= 200 && self.status < 300
    }

    /// The body's first line, as text, at most 300 characters: what a refusal says.
    pub fn line(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let line = text.lines().next().unwrap_or_default().trim();
        line.chars().take(300).collect()
    }
}

/// A request that got no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// The exchange failed (connect, I/O, time-out, a malformed answer).
    Http {
        /// The URL asked.
        url: String,
        /// Why.
        error: HttpError,
    },
    /// The answer's body is longer than the limit.
    TooLarge {
        /// The URL asked.
        url: String,
        /// The limit, bytes.
        limit: usize,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http { url, error } => write!(f, "{url}: {error}"),
            Self::TooLarge { url, limit } => {
                write!(f, "{url}: the answer is over {limit} bytes")
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// The connector, clock and buffer of a command's requests: one connection at a time, kept
/// alive between requests to the same server.
#[derive(Debug)]
pub struct Session {
    connector: TcpConnector,
    time: StdTime,
    timeout: StdDuration,
}

impl Session {
    /// A session whose every connect, read and write may take `timeout`, trusting the system's
    /// CAs for `https://`.
    pub fn new(timeout: StdDuration) -> Self {
        Self {
            connector: TcpConnector::new(timeout),
            time: StdTime::new(),
            timeout,
        }
    }

    /// This session, trusting `trust` for `https://`.
    #[must_use]
    pub fn with_trust(mut self, trust: Trust) -> Self {
        self.connector = self.connector.with_trust(trust);
        self
    }

    /// One blocking request: [`request`] on a client of its own.
    pub fn exchange(
        &self,
        method: Method,
        base: &BaseUrl,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer, ClientError> {
        let mut buf = vec![0u8; BUFFER];
        let mut client = self.client(&mut buf);
        async_io::block_on(request(
            &mut client,
            method,
            base,
            target,
            headers,
            body,
            MAX_BODY,
        ))
    }

    /// A blocking download of `base` + `target` (at most [`MAX_BODY`] bytes), following
    /// redirects as the agent does ([`get_following`]: at most 5, never from https to http);
    /// `authorization` goes to `base`'s origin only.
    pub fn download(
        &self,
        base: &BaseUrl,
        target: &str,
        authorization: Option<&str>,
    ) -> Result<Answer, ClientError> {
        let (path, url) = target_of(base, target);
        let http = |error| ClientError::Http {
            url: url.clone(),
            error,
        };
        let mut buf = vec![0u8; BUFFER];
        let mut scratch = vec![0u8; BUFFER];
        let mut client = self.client(&mut buf);
        async_io::block_on(async {
            let origin = base.url().origin();
            let head = get_following(&mut client, origin, &path, authorization, &mut scratch)
                .await
                .map_err(http)?;
            read_answer(
                &mut client,
                head.status,
                head.content_type.as_str(),
                &url,
                MAX_BODY,
            )
            .await
        })
    }

    /// A client of this session over `buf`.
    pub fn client<'b>(&'b self, buf: &'b mut [u8]) -> Client<'b, TcpConnector, StdTime> {
        Client::new(
            &self.connector,
            &self.time,
            buf,
            from_std_duration(self.timeout),
        )
    }
}

/// `<url> refused the <what>: <status> <line>`, with a hint at the secret after a 401 or a
/// 403 (what `lockstep deploy` and `lockstep abort` say of a refusal).
pub fn write_refusal(
    f: &mut fmt::Formatter<'_>,
    url: &str,
    what: &str,
    status: u16,
    line: &str,
) -> fmt::Result {
    write!(f, "{url} refused the {what}: {status} {line}")?;
    if status == 401 || status == 403 {
        f.write_str(" (is the secret the one the service has?)")?;
    }
    Ok(())
}

/// `base`'s path joined with `target` (which starts with `/` and may hold a query), and the
/// whole URL, for messages.
pub fn target_of(base: &BaseUrl, target: &str) -> (String, String) {
    let path = format!("{}{target}", base.url().path().trim_end_matches('/'));
    let url = format!("{}{target}", base.as_str().trim_end_matches('/'));
    (path, url)
}

/// One request to `base` + `target` and its whole answer (at most `limit` bytes of body).
pub async fn request(
    client: &mut Client<'_, TcpConnector, StdTime>,
    method: Method,
    base: &BaseUrl,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    limit: usize,
) -> Result<Answer, ClientError> {
    let (path, url) = target_of(base, target);
    let http = |error| ClientError::Http {
        url: url.clone(),
        error,
    };
    let mut all = vec![("User-Agent", USER_AGENT)];
    all.extend_from_slice(headers);
    let length = (method == Method::Post || method == Method::Put || !body.is_empty())
        .then(|| u64::try_from(body.len()).unwrap_or(u64::MAX));
    client
        .begin(method, base.url().origin(), &path, &all, length)
        .await
        .map_err(http)?;
    if !body.is_empty() {
        client.write(body).await.map_err(http)?;
    }
    let head = client.response().await.map_err(http)?;
    read_answer(client, head.status, head.content_type.as_str(), &url, limit).await
}

/// The body of the answer whose head was read: at most `limit` bytes.
async fn read_answer(
    client: &mut Client<'_, TcpConnector, StdTime>,
    status: u16,
    content_type: &str,
    url: &str,
    limit: usize,
) -> Result<Answer, ClientError> {
    let http = |error| ClientError::Http {
        url: url.to_owned(),
        error,
    };
    let mut answer = Answer {
        status,
        content_type: content_type.to_owned(),
        body: Vec::new(),
    };
    let mut chunk = [0u8; 8192];
    loop {
        let n = client.read(&mut chunk).await.map_err(http)?;
        if n == 0 {
            return Ok(answer);
        }
        if answer.body.len().saturating_add(n) > limit {
            client.close();
            return Err(ClientError::TooLarge {
                url: url.to_owned(),
                limit,
            });
        }
        answer
            .body
            .extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

// ---------------------------------------------------------------------------------------------
// The webhook
// ---------------------------------------------------------------------------------------------

/// Which signature a webhook carries (docs/PROTOCOL.md §1, §7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scheme {
    /// `X-Lockstep-Signature`: the body and the time are signed.
    #[default]
    Lockstep,
    /// `X-Bintray-Hook-Hmac`: only the package name is signed (Bintray's scheme).
    Bintray,
}

/// What a webhook notifies: a version of a package, and what it asks beyond it.
#[derive(Clone, Copy, Debug)]
pub struct Notice<'a> {
    /// The bundle name.
    pub package: Segment<'a>,
    /// The version.
    pub version: &'a Version<'a>,
    /// `"retry": true`, `"allow_downgrade": true`, when asked.
    pub asks: Asks,
}

/// The body of a webhook for `version` of `package`: the official client's two fields, and
/// `released`, the time it is sent (RFC 3339, milliseconds), as Bintray's webhook had one;
/// and `"retry": true`, `"allow_downgrade": true` when `asks` them (lockstep's own members,
/// docs/PROTOCOL.md §1).
/// The service does not interpret `released`; it makes each notification's body, and so its
/// `X-Lockstep-Signature`, its own, so that a second notification of a version (a `lockstep
/// deploy` right after `lockstep publish --notify`) is never taken for a replay of the first.
pub fn webhook_body(notice: &Notice<'_>, sent: SystemTime) -> Vec<u8> {
    let mut body = serde_json::json!({
        "package": notice.package.as_str(),
        "version": notice.version.to_string(),
    });
    if let Ok(released) = rfc3339(sent) {
        body["released"] = released.into();
    }
    if notice.asks.retry {
        body["retry"] = true.into();
    }
    if notice.asks.allow_downgrade {
        body["allow_downgrade"] = true.into();
    }
    body.to_string().into_bytes()
}

/// The webhook's signature header, name and value, at Unix time `now`.
pub fn webhook_signature(
    scheme: Scheme,
    secret: &Secret,
    package: Segment<'_>,
    body: &[u8],
    now: u64,
) -> (&'static str, String) {
    match scheme {
        Scheme::Lockstep => (
            signature::LOCKSTEP_HEADER,
            signature::lockstep_sign(secret, now, body)
                .as_str()
                .to_owned(),
        ),
        Scheme::Bintray => (
            signature::BINTRAY_HEADER,
            signature::bintray_sign(secret, package.as_str())
                .as_str()
                .to_owned(),
        ),
    }
}

/// Sends the signed webhook for `version` of `package` to `base` + `target` (the webhook's
/// path and query) and answers what the service said.
pub fn send_webhook(
    session: &Session,
    base: &BaseUrl,
    target: &str,
    notice: &Notice<'_>,
    scheme: Scheme,
    secret: &Secret,
) -> Result<Answer, ClientError> {
    let now = SystemTime::now();
    let body = webhook_body(notice, now);
    let t = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (name, value) = webhook_signature(scheme, secret, notice.package, &body, t);
    session.exchange(
        Method::Post,
        base,
        target,
        &[("Content-Type", "application/json"), (name, &value)],
        &body,
    )
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;

    use lockstep_core::bundle::Digest;

    use super::*;

    fn version() -> Version<'static> {
        Version {
            tag: Segment::parse("1.1.0").unwrap(),
            digest: Digest::parse(&"ab".repeat(32)).unwrap(),
        }
    }

    /// Serves one connection with `answer`; hands back the request it read.
    fn one_answer(answer: &'static [u8]) -> (BaseUrl, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = BaseUrl::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Head, then the declared body.
            loop {
                let n = conn.read(&mut buf).unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |n| n.trim().parse::<usize>().unwrap());
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            conn.write_all(answer).unwrap();
            request
        });
        (base, server)
    }

    #[test]
    fn test_webhook_body_is_the_official_clients_and_when_it_was_sent() {
        let package = Segment::parse("visualizer").unwrap();
        let at = UNIX_EPOCH + StdDuration::from_millis(1_764_633_600_123);
        let version = version();
        let notice = Notice {
            package,
            version: &version,
            asks: Asks::default(),
        };
        let body = webhook_body(&notice, at);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["package"], "visualizer");
        assert_eq!(json["version"], format!("1.1.0-{}", "ab".repeat(32)));
        assert_eq!(json["released"], "2025-12-02T00:00:00.123Z");
        assert_eq!(json.get("retry"), None);
        assert_eq!(json.get("allow_downgrade"), None);
        // A millisecond later, another body: another signature, never a replay.
        let later = webhook_body(&notice, at + StdDuration::from_millis(1));
        assert_ne!(body, later);
        // Asked to retry, it says so; core's parser reads it back.
        let retry = webhook_body(
            &Notice {
                asks: Asks {
                    retry: true,
                    allow_downgrade: false,
                },
                ..notice
            },
            at,
        );
        let json: serde_json::Value = serde_json::from_slice(&retry).unwrap();
        assert_eq!(json["retry"], true);
        assert_eq!(json.get("allow_downgrade"), None);
        let parsed = lockstep_core::webhook::parse_body(&retry, Default::default()).unwrap();
        assert!(parsed.retry && !parsed.allow_downgrade);
        // Asked to allow a downgrade, likewise.
        let downgrade = webhook_body(
            &Notice {
                asks: Asks {
                    retry: false,
                    allow_downgrade: true,
                },
                ..notice
            },
            at,
        );
        let json: serde_json::Value = serde_json::from_slice(&downgrade).unwrap();
        assert_eq!(json["allow_downgrade"], true);
        let parsed = lockstep_core::webhook::parse_body(&downgrade, Default::default()).unwrap();
        assert!(parsed.allow_downgrade && !parsed.retry);
    }

    #[test]
    fn test_send_webhook_signs_the_body_it_sends() {
        let (base, server) = one_answer(b"HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nid-42");
        let secret = Secret::new(b"s3cret").unwrap();
        let package = Segment::parse("visualizer").unwrap();
        let answer = send_webhook(
            &Session::new(StdDuration::from_secs(5)),
            &base,
            "/deployments/typesafe/bundle/typesafe?tag=web",
            &Notice {
                package,
                version: &version(),
                asks: Asks::default(),
            },
            Scheme::Lockstep,
            &secret,
        )
        .unwrap();
        assert_eq!((answer.status, answer.line()), (202, "id-42".to_owned()));
        let request = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(
            request.starts_with("POST /deployments/typesafe/bundle/typesafe?tag=web HTTP/1.1\r\n"),
            "{request}"
        );
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        let header = head
            .lines()
            .find_map(|l| l.strip_prefix("X-Lockstep-Signature: "))
            .expect("the signature header");
        let t: u64 = header
            .strip_prefix("t=")
            .and_then(|h| h.split(',').next())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            header,
            signature::lockstep_sign(&secret, t, body.as_bytes()).as_str()
        );
    }

    #[test]
    fn test_an_answer_over_the_limit_is_an_error() {
        let (base, _server) =
            one_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n01234567890123456789");
        let session = Session::new(StdDuration::from_secs(5));
        let mut buf = vec![0u8; BUFFER];
        let mut client = session.client(&mut buf);
        let got = async_io::block_on(request(&mut client, Method::Get, &base, "/x", &[], &[], 19));
        assert!(
            matches!(got, Err(ClientError::TooLarge { limit: 19, .. })),
            "{got:?}"
        );
    }

    #[test]
    fn test_nobody_listening_is_a_connect_error_naming_the_url() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = BaseUrl::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        drop(listener);
        let got = Session::new(StdDuration::from_secs(5))
            .exchange(Method::Get, &base, "/v", &[], &[])
            .unwrap_err();
        assert!(
            got.to_string()
                .starts_with(&format!("{}/v: ", base.as_str())),
            "{got}"
        );
    }
}
