//! A small etcd v3 client over its JSON gateway (`/v3/kv/range`, `/v3/kv/txn`,
//! `/v3/lease/grant`, `/v3/lease/keepalive`, `/v3/lease/revoke`), blocking, for cluster mode.
//!
//! Blocking on purpose: the journal's commit is synchronous (the agent commits before it
//! hands out a job, the service before a 202), and the lease is kept alive from a thread of
//! its own, so that a busy or paused executor never lets it lapse. Every call has a deadline
//! (`timeout`, connection included); endpoints are tried in order, starting with the last one
//! that answered. Keys and values are bytes (base64 on the wire); revisions and lease ids are
//! etcd's int64s (strings on the wire).

use std::fmt;
use std::io::{self, Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::url::BaseUrl;

/// The most bytes of an answer read (a range of the whole journal is the largest).
pub const MAX_ANSWER: usize = 256 * 1024 * 1024;

/// A client of an etcd cluster.
#[derive(Debug)]
pub struct Etcd {
    endpoints: Vec<BaseUrl>,
    timeout: Duration,
    /// The endpoint tried first: the last one that answered.
    current: AtomicUsize,
}

/// An etcd call failed.
#[derive(Debug)]
pub enum EtcdError {
    /// No endpoint answered (the last one's error).
    Unreachable(String),
    /// An endpoint answered with an error status.
    Status(u16, String),
    /// The answer was not what the gateway sends.
    Malformed(String),
}

impl fmt::Display for EtcdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable(e) => write!(f, "etcd does not answer ({e})"),
            Self::Status(status, body) => write!(f, "etcd answered {status}: {body}"),
            Self::Malformed(what) => write!(f, "etcd's answer is malformed ({what})"),
        }
    }
}

impl std::error::Error for EtcdError {}

/// A key and its value, as a range answers them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// The lease it is bound to (0: none).
    pub lease: i64,
    /// The revision that created it.
    pub create_revision: i64,
}

/// A condition of a transaction.
#[derive(Clone, Debug)]
pub enum Compare<'a> {
    /// The key does not exist.
    Absent(&'a [u8]),
    /// The key exists and is bound to this lease.
    Lease(&'a [u8], i64),
}

/// An operation of a transaction.
#[derive(Clone, Debug)]
pub enum Op<'a> {
    /// Puts a value (bound to a lease unless 0).
    Put {
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
        /// The lease (0: none).
        lease: i64,
    },
    /// Deletes the keys in `[key, end)`.
    Delete {
        /// The first key.
        key: &'a [u8],
        /// The end of the range (exclusive).
        end: &'a [u8],
    },
    /// Reads one key.
    Get(&'a [u8]),
}

/// What a transaction did.
#[derive(Debug, Default)]
pub struct Txn {
    /// Whether its conditions held (its `success` operations ran; else its `failure` ones).
    pub succeeded: bool,
    /// What each of its `Get`s read, in order.
    pub reads: Vec<Vec<Kv>>,
}

/// The first key after every key that starts with `prefix` (etcd's prefix range end).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff: to the end of the key space.
    vec![0]
}

impl Etcd {
    /// A client of `endpoints` (at least one), each call within `timeout`.
    pub fn new(endpoints: Vec<BaseUrl>, timeout: Duration) -> Self {
        Self {
            endpoints,
            timeout,
            current: AtomicUsize::new(0),
        }
    }

    /// The endpoints, as given.
    pub fn endpoints(&self) -> &[BaseUrl] {
        &self.endpoints
    }

    /// A lease of `ttl` seconds: its id.
    ///
    /// # Errors
    /// When etcd does not grant it.
    pub fn grant(&self, ttl: u64) -> Result<i64, EtcdError> {
        let answer = self.call("/v3/lease/grant", &json!({ "TTL": ttl.to_string() }))?;
        int(&answer["ID"])
            .filter(|id| *id != 0)
            .ok_or_else(|| EtcdError::Malformed(format!("a lease grant without an id: {answer}")))
    }

    /// Renews `lease`: the seconds it has left; 0 when it has expired (or never was).
    ///
    /// # Errors
    /// When etcd does not answer.
    pub fn keepalive(&self, lease: i64) -> Result<i64, EtcdError> {
        let answer = self.call("/v3/lease/keepalive", &json!({ "ID": lease.to_string() }))?;
        Ok(int(&answer["result"]["TTL"]).unwrap_or(0))
    }

    /// Ends `lease` at once: its keys are deleted.
    ///
    /// # Errors
    /// When etcd does not answer.
    pub fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", &json!({ "ID": lease.to_string() }))
            .map(drop)
    }

    /// The keys in `[key, end)` (`end` `None`: `key` alone), in key order.
    ///
    /// # Errors
    /// When etcd does not answer.
    pub fn range(&self, key: &[u8], end: Option<&[u8]>) -> Result<Vec<Kv>, EtcdError> {
        let mut request = json!({ "key": STANDARD.encode(key) });
        if let Some(end) = end {
            request["range_end"] = Value::String(STANDARD.encode(end));
        }
        let answer = self.call("/v3/kv/range", &request)?;
        kvs(&answer)
    }

    /// Runs `success` if every comparison holds, else `failure`, atomically.
    ///
    /// # Errors
    /// When etcd does not answer (the transaction may or may not have run).
    pub fn txn(
        &self,
        compare: &[Compare<'_>],
        success: &[Op<'_>],
        failure: &[Op<'_>],
    ) -> Result<Txn, EtcdError> {
        let compare: Vec<Value> = compare
            .iter()
            .map(|c| match c {
                Compare::Absent(key) => json!({
                    "key": STANDARD.encode(key), "target": "CREATE", "result": "EQUAL",
                    "create_revision": "0"
                }),
                Compare::Lease(key, lease) => json!({
                    "key": STANDARD.encode(key), "target": "LEASE", "result": "EQUAL",
                    "lease": lease.to_string()
                }),
            })
            .collect();
        let ops = |ops: &[Op<'_>]| -> Vec<Value> {
            ops.iter()
                .map(|op| match op {
                    Op::Put { key, value, lease } => json!({ "request_put": {
                        "key": STANDARD.encode(key), "value": STANDARD.encode(value),
                        "lease": lease.to_string()
                    }}),
                    Op::Delete { key, end } => json!({ "request_delete_range": {
                        "key": STANDARD.encode(key), "range_end": STANDARD.encode(end)
                    }}),
                    Op::Get(key) => json!({ "request_range": { "key": STANDARD.encode(key) } }),
                })
                .collect()
        };
        let request = json!({
            "compare": compare, "success": ops(success), "failure": ops(failure)
        });
        let answer = self.call("/v3/kv/txn", &request)?;
        let succeeded = answer["succeeded"].as_bool().unwrap_or(false);
        let mut reads = Vec::new();
        if let Some(responses) = answer["responses"].as_array() {
            for response in responses {
                if let Some(range) = response.get("response_range") {
                    reads.push(kvs(range)?);
                }
            }
        }
        Ok(Txn { succeeded, reads })
    }

    /// POSTs `request` to `path` on the first endpoint that answers.
    fn call(&self, path: &str, request: &Value) -> Result<Value, EtcdError> {
        let body = request.to_string();
        let count = self.endpoints.len().max(1);
        let first = self.current.load(Ordering::Relaxed) % count;
        let deadline = Instant::now() + self.timeout;
        let mut last = String::from("no endpoint");
        for i in 0..count {
            let index = (first + i) % count;
            let Some(endpoint) = self.endpoints.get(index) else {
                continue;
            };
            match post(endpoint, path, body.as_bytes(), deadline) {
                Ok((200, answer)) => {
                    self.current.store(index, Ordering::Relaxed);
                    return serde_json::from_slice(&answer)
                        .map_err(|e| EtcdError::Malformed(e.to_string()));
                }
                Ok((status, answer)) => {
                    let text = String::from_utf8_lossy(&answer);
                    let text: String = text.chars().take(200).collect();
                    return Err(EtcdError::Status(status, text));
                }
                Err(e) => last = format!("{endpoint}: {e}"),
            }
        }
        Err(EtcdError::Unreachable(last))
    }
}

/// An int64 as the gateway writes it (a string), or a number.
fn int(value: &Value) -> Option<i64> {
    match value {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn bytes(value: &Value) -> Result<Vec<u8>, EtcdError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => STANDARD
            .decode(s)
            .map_err(|e| EtcdError::Malformed(format!("base64: {e}"))),
        other => Err(EtcdError::Malformed(format!("not base64: {other}"))),
    }
}

fn kvs(answer: &Value) -> Result<Vec<Kv>, EtcdError> {
    let Some(list) = answer["kvs"].as_array() else {
        return Ok(Vec::new());
    };
    list.iter()
        .map(|kv| {
            Ok(Kv {
                key: bytes(&kv["key"])?,
                value: bytes(&kv["value"])?,
                lease: int(&kv["lease"]).unwrap_or(0),
                create_revision: int(&kv["create_revision"]).unwrap_or(0),
            })
        })
        .collect()
}

/// One POST on a connection of its own (`Connection: close`), by `deadline`: the status and
/// the body (de-chunked).
fn post(
    endpoint: &BaseUrl,
    path: &str,
    body: &[u8],
    deadline: Instant,
) -> io::Result<(u16, Vec<u8>)> {
    let url = endpoint.url();
    let host = crate::platform::unbracketed(url.host());
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "the deadline passed"))
    };
    let mut stream = None;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    for addr in (host, url.port()).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, left()?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut stream = stream.ok_or(last)?;
    let _ = stream.set_nodelay(true);
    stream.set_write_timeout(Some(left()?))?;
    let prefix = url.path().trim_end_matches('/');
    let head = format!(
        "POST {prefix}{path} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        url.host(),
        url.port(),
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        stream.set_read_timeout(Some(left()?))?;
        match stream.read(&mut buf)? {
            0 => break,
            n => answer.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
        if answer.len() > MAX_ANSWER {
            return Err(io::Error::other("the answer is too large"));
        }
    }
    parse_answer(&answer)
}

/// A whole HTTP/1.1 answer (read until the server closed): its status and body.
fn parse_answer(answer: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) = response
        .parse(answer)
        .map_err(|e| bad(&format!("the head: {e}")))?
    else {
        return Err(bad("the head is cut short"));
    };
    let status = response.code.ok_or_else(|| bad("no status"))?;
    let chunked = response.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    let body = answer.get(head_len..).unwrap_or_default();
    let body = if chunked {
        dechunk(body).ok_or_else(|| bad("a malformed chunked body"))?
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

/// A chunked body's data (trailers ignored); `None` when it is malformed or cut short.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(body.get(..line_end)?).ok()?;
        let size = line.split(';').next()?.trim();
        let size = usize::from_str_radix(size, 16).ok()?;
        body = body.get(line_end + 2..)?;
        if size == 0 {
            return Some(data);
        }
        data.extend_from_slice(body.get(..size)?);
        body = body.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_prefix_end() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn test_dechunk() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").as_deref(),
            Some(&b"abcde"[..])
        );
        assert_eq!(dechunk(b"3\r\nab"), None, "cut short");
        assert_eq!(dechunk(b"zz\r\n"), None, "not hex");
        assert_eq!(dechunk(b"3\r\nabcX"), None, "no CRLF after the data");
    }

    #[test]
    fn test_parse_answer_with_length_and_chunked() {
        let (status, body) =
            parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!((status, body.as_slice()), (200, &b"{}"[..]));
        let (status, body) = parse_answer(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((status, body.as_slice()), (200, &b"{}"[..]));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-").is_err());
    }

    #[test]
    fn test_unreachable_endpoint_is_an_error_within_the_timeout() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let etcd = Etcd::new(
            vec![BaseUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap()],
            Duration::from_millis(500),
        );
        assert!(matches!(etcd.grant(10), Err(EtcdError::Unreachable(_))));
    }
}
