//! Bundles from an HTTP repository: the docs/PROTOCOL.md §4 layout under a base URL.

use core::fmt;

use embedded_io_async::Write;

use super::{Client, HttpError, Url, get_following};
use crate::agent::{Connector, FetchError, IndexLocation, Location, Repository, Time};
use crate::text::len_u64;
use crate::time::Duration;

/// The most of [`Repository::fetch`]'s `buf` that [`HttpRepository`] gives to the heads: the
/// request head (a path of up to six segments and a digest twice) and a static file server's
/// response head fit well within it.
pub const REPOSITORY_HEAD_LEN: usize = 2048;

/// A repository served over HTTP: a version's zip is at
/// `{base}/{org}/{repo}/{org}/{package}/{tag}-{digest}/{package}-{tag}-{digest}.zip`
/// (docs/PROTOCOL.md §4; the digest in lowercase hex), a package's index at
/// `{base}/{org}/{repo}/{org}/{package}/versions.json`, as `lockstep sandbox`, a static file
/// server over a `lockstep publish` directory, or Bintray's download area serve them.
///
/// Redirects are followed as [`get_following`] does (at most
/// [`MAX_REDIRECTS`](super::MAX_REDIRECTS), never from https to http); the credentials
/// ([`with_authorization`](Self::with_authorization)) go to the base URL's origin only.
///
/// Each [`fetch`](Repository::fetch) (and [`fetch_index`](Repository::fetch_index)) splits
/// its `buf`: the first half, but at most [`REPOSITORY_HEAD_LEN`] bytes, holds the heads; the
/// rest carries a redirect's `Location` (up to half of it), then the body to `out`, one read
/// at a time. A fetch opens its own
/// connection and closes it when done: the buffer is the fetch's, so no client (and so no
/// connection) outlives it, which costs one connect per bundle.
pub struct HttpRepository<'c, C: Connector, T: Time> {
    base: Url<'c>,
    connector: &'c C,
    time: &'c T,
    timeout: Duration,
    authorization: Option<&'c str>,
}

/// The credentials are a secret: Debug says only whether there are some.
impl<C: Connector, T: Time> fmt::Debug for HttpRepository<'_, C, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRepository")
            .field("base", &self.base)
            .field("timeout", &self.timeout)
            .field("authorization", &self.authorization.map(|_| "<redacted>"))
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl<C: Connector, T: Time> defmt::Format for HttpRepository<'_, C, T> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "HttpRepository {{ base: {} }}", self.base);
    }
}

impl<'c, C: Connector, T: Time> HttpRepository<'c, C, T> {
    /// The repository at `base`, reached through `connector`; `timeout` bounds each connect,
    /// read and write of a fetch (not the whole transfer).
    pub const fn new(base: Url<'c>, connector: &'c C, time: &'c T, timeout: Duration) -> Self {
        Self {
            base,
            connector,
            time,
            timeout,
            authorization: None,
        }
    }

    /// Sends `value` as the `Authorization` header (`Basic ...`, `Bearer ...`) to the base
    /// URL's origin (scheme, host and port), and to no other.
    #[must_use]
    pub const fn with_authorization(mut self, value: Option<&'c str>) -> Self {
        self.authorization = value;
        self
    }

    /// The base URL.
    pub const fn base(&self) -> Url<'c> {
        self.base
    }
}

impl<C: Connector, T: Time> HttpRepository<'_, C, T> {
    /// `GET`s `target` (following redirects) and writes the body to `out`, then flushes `out`:
    /// what [`fetch`](Repository::fetch) and [`fetch_index`](Repository::fetch_index) share.
    async fn get<W: Write>(
        &self,
        target: &dyn fmt::Display,
        out: &mut W,
        buf: &mut [u8],
    ) -> Result<u64, FetchError> {
        let head_len = (buf.len() / 2).min(REPOSITORY_HEAD_LEN);
        let (heads, transfer) = buf.split_at_mut(head_len);
        let mut client = Client::new(self.connector, self.time, heads, self.timeout);
        let head = get_following(
            &mut client,
            self.base.origin(),
            target,
            self.authorization,
            transfer,
        )
        .await?;
        match head.status {
            404 => return Err(FetchError::NotFound),
            status if status >= 300 => return Err(FetchError::Status(status)),
            _ => {}
        }
        let mut total = 0u64;
        loop {
            let chunk = client.read_chunk(transfer).await?;
            if chunk.is_empty() {
                break;
            }
            write_all(out, chunk).await?;
            total = total.saturating_add(len_u64(chunk.len()));
        }
        out.flush().await.map_err(|_| FetchError::Write)?;
        Ok(total)
    }
}

impl<C: Connector, T: Time> Repository for HttpRepository<'_, C, T> {
    /// `GET`s the version's zip and writes its body to `out`, then flushes `out`. 404 is
    /// [`FetchError::NotFound`]; any other status from 300 is [`FetchError::Status`]; a
    /// connection that fails, times out or ends early is [`FetchError::Unreachable`]; an answer
    /// that is not HTTP (or a `buf` too small for the heads) is [`FetchError::Protocol`]; an
    /// error of `out` is [`FetchError::Write`].
    async fn fetch<W: Write>(
        &self,
        location: &Location<'_>,
        out: &mut W,
        buf: &mut [u8],
    ) -> Result<u64, FetchError> {
        let target = ZipTarget {
            base: self.base.path(),
            location,
        };
        self.get(&target, out, buf).await
    }

    /// `GET`s `{base path}/{org}/{repo}/{org}/{package}/versions.json`, as
    /// [`fetch`](Repository::fetch) a zip: the same redirects, credentials and statuses (404 is
    /// [`FetchError::NotFound`], an absent index).
    async fn fetch_index<W: Write>(
        &self,
        at: &IndexLocation<'_>,
        out: &mut W,
        buf: &mut [u8],
    ) -> Result<u64, FetchError> {
        let target = IndexTarget {
            base: self.base.path(),
            at,
        };
        self.get(&target, out, buf).await
    }
}

/// `write_all` without its panic on a writer that answers `Ok(0)`.
async fn write_all<W: Write>(out: &mut W, mut bytes: &[u8]) -> Result<(), FetchError> {
    while !bytes.is_empty() {
        match out.write(bytes).await {
            Ok(n) if n > 0 => bytes = bytes.get(n..).ok_or(FetchError::Write)?,
            _ => return Err(FetchError::Write),
        }
    }
    Ok(())
}

/// A transfer that failed can be tried again; an answer that could not be read is refused.
impl From<HttpError> for FetchError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Tls(tls) => Self::Tls(tls),
            HttpError::TooManyRedirects => Self::TooManyRedirects,
            HttpError::InsecureRedirect => Self::InsecureRedirect,
            e if e.retryable() => Self::Unreachable,
            _ => Self::Protocol,
        }
    }
}

/// The request target of a version's zip, under the base path.
struct ZipTarget<'a, 'l> {
    base: &'a str,
    location: &'l Location<'l>,
}

impl fmt::Display for ZipTarget<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Location {
            org,
            repo,
            package,
            tag,
            digest,
        } = self.location;
        write!(
            f,
            "{}/{org}/{repo}/{org}/{package}/{tag}-{digest}/{package}-{tag}-{digest}.zip",
            self.base
        )
    }
}

/// The request target of a package's index, under the base path.
struct IndexTarget<'a, 'l> {
    base: &'a str,
    at: &'l IndexLocation<'l>,
}

impl fmt::Display for IndexTarget<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let IndexLocation { org, repo, package } = self.at;
        write!(
            f,
            "{}/{org}/{repo}/{org}/{package}/versions.json",
            self.base
        )
    }
}

#[cfg(test)]
mod tests {
    use std::format;
    use std::string::String;
    use std::vec::Vec;

    use super::super::testing::{FakeTime, Out, Script, Scripted, block_on};
    use super::*;
    use crate::agent::TlsError;
    use crate::bundle::{BundleId, Digest, Segment};
    use crate::index::IndexScan;

    const HEX: &str = "6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c0f1e2d3c4b5a69788796a5b4c3d2e1f0";

    fn location() -> Location<'static> {
        Location {
            org: Segment::parse("typesafe").unwrap(),
            repo: Segment::parse("bundle").unwrap(),
            package: Segment::parse("visualizer").unwrap(),
            tag: Segment::parse("v2").unwrap(),
            // Read in upper case, written in lower case.
            digest: Digest::parse(&HEX.to_uppercase()).unwrap(),
        }
    }

    /// Fetches from a repository whose one connection answers `response`.
    fn fetch(
        response: Script,
        buf_len: usize,
        out: &mut Out,
    ) -> (Result<u64, FetchError>, Scripted) {
        let connector = Scripted::new([response]);
        let time = FakeTime::default();
        let base = Url::parse("http://127.0.0.1:9005/repository/").unwrap();
        let repository = HttpRepository::new(base, &connector, &time, Duration::from_secs(5));
        let mut buf = std::vec![0u8; buf_len];
        let result = block_on(repository.fetch(&location(), out, &mut buf));
        (result, connector)
    }

    // docs/PROTOCOL.md §4: {base}/{org}/{repo}/{org}/{package}/{version}/{package}-{version}.zip.
    #[test]
    fn test_fetch_streams_zip() {
        let zip: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let mut response =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", zip.len()).into_bytes();
        response.extend_from_slice(&zip);
        let mut out = Out::default();
        let (result, connector) =
            fetch(Script::new().bytes(&response).max_read(700), 1024, &mut out);
        assert_eq!(result, Ok(5000));
        assert_eq!(out.bytes, zip);
        assert_eq!(
            connector.written(0),
            format!(
                "GET /repository/typesafe/bundle/typesafe/visualizer/v2-{HEX}/visualizer-v2-{HEX}.zip \
                 HTTP/1.1\r\nHost: 127.0.0.1:9005\r\nConnection: keep-alive\r\n\r\n"
            )
        );
    }

    #[test]
    fn test_fetch_chunked_in_small_buffer() {
        let response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nPK\x03\r\n2\r\n\x04!\r\n0\r\n\r\n";
        let mut out = Out::default();
        let (result, _) = fetch(Script::new().bytes(response).max_read(3), 600, &mut out);
        assert_eq!(result, Ok(5));
        assert_eq!(out.bytes, b"PK\x03\x04!");
    }

    #[test]
    fn test_fetch_statuses() {
        let mut out = Out::default();
        let not_found =
            Script::new().bytes(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!");
        assert_eq!(
            fetch(not_found, 1024, &mut out).0,
            Err(FetchError::NotFound)
        );
        let error = Script::new().bytes(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(fetch(error, 1024, &mut out).0, Err(FetchError::Status(500)));
        let moved = Script::new().bytes(b"HTTP/1.1 301 Moved\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(fetch(moved, 1024, &mut out).0, Err(FetchError::Status(301)));
        assert!(out.bytes.is_empty());
    }

    #[test]
    fn test_fetch_failures() {
        let mut out = Out::default();
        let broken =
            Script::new().bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nPK\x03\x04");
        assert_eq!(
            fetch(broken, 1024, &mut out).0,
            Err(FetchError::Unreachable)
        );
        assert_eq!(out.bytes, b"PK\x03\x04");

        let reset = Script::new().reset();
        assert_eq!(
            fetch(reset, 1024, &mut Out::default()).0,
            Err(FetchError::Unreachable)
        );

        let garbage = Script::new().bytes(b"SSH-2.0-OpenSSH_9.6\r\n\r\n");
        assert_eq!(
            fetch(garbage, 1024, &mut Out::default()).0,
            Err(FetchError::Protocol)
        );

        // Too small a buffer for the request head.
        let (result, connector) = fetch(Script::new(), 64, &mut Out::default());
        assert_eq!(result, Err(FetchError::Protocol));
        assert_eq!(connector.connects(), 0);

        // Nothing listens.
        let connector = Scripted::new([]);
        let time = FakeTime::default();
        let base = Url::parse("http://127.0.0.1:9005").unwrap();
        let repository = HttpRepository::new(base, &connector, &time, Duration::from_secs(5));
        let result = block_on(repository.fetch(&location(), &mut Out::default(), &mut [0u8; 1024]));
        assert_eq!(result, Err(FetchError::Unreachable));
    }

    #[test]
    fn test_fetch_follows_a_redirect_without_the_credentials() {
        let connector = Scripted::new([
            Script::new().bytes(
                b"HTTP/1.1 307 Temporary Redirect\r\nLocation: https://cdn.example/o?sig=1\r\n\
                  Content-Length: 0\r\n\r\n",
            ),
            Script::new().bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nPK\x03\x04"),
        ]);
        let time = FakeTime::default();
        let base = Url::parse("https://repo.example/r").unwrap();
        let repository = HttpRepository::new(base, &connector, &time, Duration::from_secs(5))
            .with_authorization(Some("Bearer s3cr3t"));
        assert!(!format!("{repository:?}").contains("s3cr3t"));
        let mut out = Out::default();
        let result = block_on(repository.fetch(&location(), &mut out, &mut [0u8; 2048]));
        assert_eq!(result, Ok(4));
        assert_eq!(out.bytes, b"PK\x03\x04");
        assert!(
            connector
                .written(0)
                .contains("\r\nAuthorization: Bearer s3cr3t\r\n")
        );
        assert_eq!(
            connector.written(1),
            "GET /o?sig=1 HTTP/1.1\r\nHost: cdn.example\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn test_fetch_tls_and_redirect_failures_are_their_own() {
        let time = FakeTime::default();
        let base = Url::parse("https://repo.example/r").unwrap();
        let insecure = b"HTTP/1.1 302 Found\r\nLocation: http://repo.example/x\r\n\r\n";
        for (script, error) in [
            (
                Script::new().tls_refused(TlsError::UnknownIssuer),
                FetchError::Tls(TlsError::UnknownIssuer),
            ),
            (Script::new().bytes(insecure), FetchError::InsecureRedirect),
        ] {
            let connector = Scripted::new([script]);
            let repository = HttpRepository::new(base, &connector, &time, Duration::from_secs(5));
            let result =
                block_on(repository.fetch(&location(), &mut Out::default(), &mut [0u8; 1024]));
            assert_eq!(result, Err(error));
        }
        assert_eq!(
            FetchError::from(HttpError::TooManyRedirects),
            FetchError::TooManyRedirects
        );
    }

    #[test]
    fn test_fetch_write_error() {
        let mut out = Out {
            capacity: Some(3),
            ..Out::default()
        };
        let response =
            Script::new().bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nPK\x03\x04!");
        assert_eq!(fetch(response, 1024, &mut out).0, Err(FetchError::Write));
        assert_eq!(out.bytes, b"PK\x03");
    }

    #[test]
    fn test_fetch_empty_base_path() {
        let connector =
            Scripted::new([Script::new().bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")]);
        let time = FakeTime::default();
        let base = Url::parse("http://[::1]").unwrap();
        let repository = HttpRepository::new(base, &connector, &time, Duration::from_secs(5));
        let result = block_on(repository.fetch(&location(), &mut Out::default(), &mut [0u8; 1024]));
        assert_eq!(result, Ok(0));
        assert!(
            connector
                .written(0)
                .starts_with("GET /typesafe/bundle/typesafe/visualizer/v2-")
        );
        assert!(connector.written(0).contains("\r\nHost: [::1]\r\n"));
    }

    // ---- the index ---------------------------------------------------------------------------

    fn index_location() -> IndexLocation<'static> {
        IndexLocation {
            org: Segment::parse("typesafe").unwrap(),
            repo: Segment::parse("bundle").unwrap(),
            package: Segment::parse("visualizer").unwrap(),
        }
    }

    /// Fetches the index from a repository at `base` whose connections answer `responses`.
    fn fetch_index(
        base: &str,
        responses: impl IntoIterator<Item = Script>,
        out: &mut Out,
    ) -> (Result<u64, FetchError>, Scripted) {
        let connector = Scripted::new(responses);
        let time = FakeTime::default();
        let repository = HttpRepository::new(
            Url::parse(base).unwrap(),
            &connector,
            &time,
            Duration::from_secs(5),
        )
        .with_authorization(Some("Bearer s3cr3t"));
        let result = block_on(repository.fetch_index(&index_location(), out, &mut [0u8; 1024]));
        (result, connector)
    }

    // docs/PROTOCOL.md §4: {base}/{org}/{repo}/{org}/{package}/versions.json, the body streamed
    // (chunked, in small reads) to the writer, with the credentials.
    #[test]
    fn test_fetch_index_streams_the_body() {
        let body: String = (0..40)
            .map(|i| format!("{{\"version\": \"{i}-{HEX}\"}},"))
            .collect();
        let body = format!("[{}]", body.trim_end_matches(','));
        let mut response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for chunk in body.as_bytes().chunks(300) {
            response.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            response.extend_from_slice(chunk);
            response.extend_from_slice(b"\r\n");
        }
        response.extend_from_slice(b"0\r\n\r\n");
        let mut out = Out::default();
        let (result, connector) = fetch_index(
            "http://127.0.0.1:9005/repository/",
            [Script::new().bytes(&response).max_read(97)],
            &mut out,
        );
        assert_eq!(result, Ok(len_u64(body.len())));
        assert_eq!(out.bytes, body.as_bytes());
        assert_eq!(
            connector.written(0),
            "GET /repository/typesafe/bundle/typesafe/visualizer/versions.json HTTP/1.1\r\n\
             Host: 127.0.0.1:9005\r\nConnection: keep-alive\r\nAuthorization: Bearer s3cr3t\r\n\r\n"
        );
    }

    // Straight into the scan that reads it, as the worker streams it.
    #[test]
    fn test_fetch_index_into_a_scan() {
        let old = Digest::parse(&"0".repeat(64)).unwrap();
        let body = format!(r#"[{{"version": "a-{HEX}"}}, {{"version": "b-{old}"}}]"#);
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let connector = Scripted::new([Script::new().bytes(response.as_bytes()).max_read(5)]);
        let time = FakeTime::default();
        let base = Url::parse("http://127.0.0.1:9005/repository").unwrap();
        let repository = HttpRepository::new(base, &connector, &time, Duration::from_secs(5));
        let mut element = [0u8; 256];
        let mut scan = IndexScan::new(
            &mut element,
            Digest::parse(HEX).unwrap(),
            BundleId::of(&old, None),
        );
        let result =
            block_on(repository.fetch_index(&index_location(), &mut scan, &mut [0u8; 1024]));
        assert_eq!(result, Ok(len_u64(body.len())));
        assert_eq!(scan.finish().unwrap().unwrap().as_str(), "b");
    }

    #[test]
    fn test_fetch_index_statuses() {
        let mut out = Out::default();
        let not_found =
            Script::new().bytes(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!");
        let (result, _) = fetch_index("http://127.0.0.1:9005/r", [not_found], &mut out);
        assert_eq!(result, Err(FetchError::NotFound));
        let error = Script::new().bytes(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n");
        let (result, _) = fetch_index("http://127.0.0.1:9005/r", [error], &mut out);
        assert_eq!(result, Err(FetchError::Status(503)));
        let denied = Script::new().bytes(b"HTTP/1.1 401 No\r\nContent-Length: 0\r\n\r\n");
        let (result, _) = fetch_index("http://127.0.0.1:9005/r", [denied], &mut out);
        assert_eq!(result, Err(FetchError::Status(401)));
        assert!(out.bytes.is_empty());
    }

    // A redirect is followed as a zip's is: to another origin without the credentials; a 404
    // there is an absent index too.
    #[test]
    fn test_fetch_index_follows_a_redirect() {
        let redirect = Script::new().bytes(
            b"HTTP/1.1 302 Found\r\nLocation: https://cdn.example/i/versions.json\r\n\
              Content-Length: 0\r\n\r\n",
        );
        let index = Script::new().bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]");
        let mut out = Out::default();
        let (result, connector) =
            fetch_index("https://repo.example/r", [redirect, index], &mut out);
        assert_eq!(result, Ok(2));
        assert_eq!(out.bytes, b"[]");
        assert!(
            connector.written(0).starts_with(
                "GET /r/typesafe/bundle/typesafe/visualizer/versions.json HTTP/1.1\r\n"
            )
        );
        assert!(
            connector
                .written(0)
                .contains("\r\nAuthorization: Bearer s3cr3t\r\n")
        );
        assert_eq!(
            connector.written(1),
            "GET /i/versions.json HTTP/1.1\r\nHost: cdn.example\r\nConnection: keep-alive\r\n\r\n"
        );

        let redirect = Script::new()
            .bytes(b"HTTP/1.1 301 Moved\r\nLocation: /elsewhere/versions.json\r\n\r\n");
        let gone = Script::new().bytes(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        let (result, _) = fetch_index("https://repo.example/r", [redirect, gone], &mut out);
        assert_eq!(result, Err(FetchError::NotFound));
    }
}
