//! The agent's HTTP/1.1 client, and the HTTP bundle repository built on it.
//!
//! - [`Url`]: an `http[s]://host[:port][/path]` base URL, parsed once (the ConductR control
//!   API, `http://127.0.0.1:9005`; a repository, `https://repo.example/bundles`).
//! - [`Client`]: requests streamed out and responses streamed in through one caller buffer,
//!   over at most one kept-alive connection; every connect, read and write under a time-out.
//! - [`HttpRepository`]: the agent's [`Repository`](super::Repository) over HTTP (docs/PROTOCOL.md
//!   §4 layout).
//!
//! TLS is the [`Connector`](super::Connector)'s business: the client asks it for an
//! [`Origin`] with [`Scheme::Https`], and gets a verified connection or a [`TlsError`].
//!
//! Bounds, so that no server can make the client hold more or loop longer than it says:
//! a response head fits the caller's buffer and has at most [`MAX_HEADERS`] header lines; at
//! most [`MAX_INTERIM_RESPONSES`] `1xx` heads are skipped before the real one; a chunk-size
//! line (extensions included) is at most [`MAX_CHUNK_LINE_LEN`] bytes and the trailer section
//! at most [`MAX_TRAILERS_LEN`]; a `Content-Type` longer than [`MAX_CONTENT_TYPE_LEN`] is an
//! error ([`HttpError::ContentTypeTooLong`]), never cut; [`Client::discard`] reads at most
//! [`DISCARD_LIMIT`] body bytes before it closes the connection instead.

use core::fmt;

use super::{ConnectError, TimedOut, TlsError};
use crate::time::Duration;

mod chunked;
mod client;
mod follow;
mod repository;
#[cfg(test)]
pub(super) mod testing;
mod url;

pub use client::{Client, ResponseHead};
pub use follow::{MAX_REDIRECTS, get_following};
pub use repository::{HttpRepository, REPOSITORY_HEAD_LEN};
pub use url::{MAX_PATH_LEN, Origin, Scheme, Url, UrlBuf, UrlError, redirect_target};

/// The longest host name or address (DNS's limit), without the brackets of an IPv6 literal.
pub const MAX_HOST_LEN: usize = 253;

/// The longest `Content-Type` a [`ResponseHead`] holds. A multipart type with the longest
/// boundary RFC 2046 allows, quoted, is 102 bytes.
pub const MAX_CONTENT_TYPE_LEN: usize = 128;

/// The most header lines a response head may have ([`HttpError::HeadTooLarge`] beyond).
pub const MAX_HEADERS: usize = 32;

/// The most `1xx` (interim) responses skipped before the final one ([`HttpError::Malformed`]
/// beyond).
pub const MAX_INTERIM_RESPONSES: u8 = 8;

/// The longest chunk-size line of a chunked body, extensions and CRLF included.
pub const MAX_CHUNK_LINE_LEN: usize = 1024;

/// The longest trailer section of a chunked body, its final CRLF included.
pub const MAX_TRAILERS_LEN: usize = 4096;

/// The most body bytes [`Client::discard`] reads to keep a connection; a longer body closes it.
pub const DISCARD_LIMIT: u64 = 64 * 1024;

/// How long an idle kept-alive connection is reused by default: shorter than the idle
/// time-outs of common servers (akka-http 60 s, nginx 75 s, Apache 5 s), so that a request
/// rarely races the server closing it.
pub const DEFAULT_IDLE_LIMIT: Duration = Duration::from_secs(4);

/// A request method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: the response has no body, whatever its head says.
    Head,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `DELETE`.
    Delete,
}

impl Method {
    /// The method's token, as written on the request line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an exchange failed. After any error but [`HttpError::Sequence`],
/// [`HttpError::InvalidRequest`] and a request head too large for the buffer (both found before
/// anything is sent) the connection is closed: a connection that failed is never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum HttpError {
    /// The request cannot be written: a host that is not a name or an address, a target or a
    /// header with a character HTTP forbids there, or a framing header (`Host`, `Connection`,
    /// `Content-Length`, `Transfer-Encoding`) among the caller's, which the client writes.
    InvalidRequest,
    /// The connection could not be made.
    Connect,
    /// The TLS handshake refused the server (or this platform has no TLS).
    Tls(TlsError),
    /// The connection failed: reset, broken, or closed before the response ended.
    Io,
    /// A connect, read or write did not complete within the time-out.
    TimedOut,
    /// The response is not HTTP/1.1 as the client reads it: a bad status line or header, a bad
    /// or conflicting `Content-Length`, both `Content-Length` and `Transfer-Encoding`, a
    /// transfer coding other than `chunked`, a bad chunk size or chunk framing, too many
    /// interim responses.
    Malformed,
    /// A request or response head does not fit the client's buffer, or a response head has
    /// more than [`MAX_HEADERS`] header lines.
    HeadTooLarge,
    /// The response's `Content-Type` is longer than [`MAX_CONTENT_TYPE_LEN`].
    ContentTypeTooLong,
    /// More request body bytes than the declared `Content-Length`.
    BodyTooLong,
    /// The response was asked for before the declared request body was all written.
    BodyTooShort,
    /// The call does not fit the exchange's state: `write` or `response` without `begin`,
    /// `read` after an error (each exchange starts with `begin`).
    Sequence,
    /// More redirects than [`MAX_REDIRECTS`] ([`get_following`]).
    TooManyRedirects,
    /// A redirect from `https://` to `http://` ([`get_following`]), refused.
    InsecureRedirect,
}

impl HttpError {
    /// Whether repeating an idempotent request may succeed: the transport failed
    /// ([`Connect`](Self::Connect), [`Io`](Self::Io), [`TimedOut`](Self::TimedOut)), not the
    /// request or the answer.
    pub const fn retryable(self) -> bool {
        matches!(self, Self::Connect | Self::Io | Self::TimedOut)
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRequest => f.write_str("the request cannot be written as HTTP"),
            Self::Connect => f.write_str("could not connect"),
            Self::Tls(e) => e.fmt(f),
            Self::Io => f.write_str("the connection failed"),
            Self::TimedOut => f.write_str("timed out"),
            Self::Malformed => f.write_str("the response is not valid HTTP/1.1"),
            Self::HeadTooLarge => f.write_str("an HTTP head is larger than the buffer"),
            Self::ContentTypeTooLong => write!(
                f,
                "the response's Content-Type is longer than {MAX_CONTENT_TYPE_LEN} bytes"
            ),
            Self::BodyTooLong => f.write_str("more request body than its Content-Length"),
            Self::BodyTooShort => f.write_str("less request body than its Content-Length"),
            Self::Sequence => f.write_str("HTTP client calls out of order"),
            Self::TooManyRedirects => write!(f, "more than {MAX_REDIRECTS} redirects"),
            Self::InsecureRedirect => f.write_str("a redirect from https to http (refused)"),
        }
    }
}

impl core::error::Error for HttpError {}

impl From<ConnectError> for HttpError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Failed => Self::Connect,
            ConnectError::Tls(tls) => Self::Tls(tls),
        }
    }
}

impl From<TimedOut> for HttpError {
    fn from(_: TimedOut) -> Self {
        Self::TimedOut
    }
}

/// Whether `host` (without brackets) is a name, an IPv4 address or an IPv6 address: the
/// characters they are written with, and a length DNS allows. What it names is the
/// connector's business.
fn is_host(host: &str) -> bool {
    let ok = if host.contains(':') {
        host.bytes()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
    } else {
        host.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    };
    ok && !host.is_empty() && host.len() <= MAX_HOST_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_retryable_errors() {
        assert!(HttpError::Connect.retryable());
        assert!(HttpError::Io.retryable());
        assert!(HttpError::TimedOut.retryable());
        assert!(!HttpError::Malformed.retryable());
        assert!(!HttpError::HeadTooLarge.retryable());
        assert!(!HttpError::BodyTooLong.retryable());
        assert!(!HttpError::InvalidRequest.retryable());
        assert!(!HttpError::Tls(TlsError::UnknownIssuer).retryable());
    }

    // Errors compose: each is a core::error::Error with a one-line message, and the agent's
    // errors convert into the client's and the client's into the repository's.
    #[test]
    fn test_errors_compose() {
        use std::string::ToString;

        use crate::agent::{FetchError, StoreError};

        fn message(e: &dyn core::error::Error) -> std::string::String {
            e.to_string()
        }
        for text in [
            message(&ConnectError::Failed),
            message(&ConnectError::Tls(TlsError::Expired)),
            message(&TimedOut),
            message(&StoreError),
            message(&FetchError::Status(503)),
            message(&HttpError::Io),
        ] {
            assert!(!text.is_empty() && !text.contains('\n'), "{text:?}");
        }
        assert_eq!(HttpError::from(ConnectError::Failed), HttpError::Connect);
        assert_eq!(
            HttpError::from(ConnectError::Tls(TlsError::NameMismatch)),
            HttpError::Tls(TlsError::NameMismatch)
        );
        assert_eq!(
            FetchError::from(HttpError::Tls(TlsError::Expired)),
            FetchError::Tls(TlsError::Expired)
        );
        assert_eq!(HttpError::from(TimedOut), HttpError::TimedOut);
        assert_eq!(FetchError::from(HttpError::Io), FetchError::Unreachable);
        assert_eq!(FetchError::from(HttpError::Malformed), FetchError::Protocol);
    }

    #[test]
    fn test_is_host() {
        assert!(is_host("127.0.0.1"));
        assert!(is_host("conductr.service_1"));
        assert!(is_host("::1"));
        assert!(is_host("fe80::1:2"));
        assert!(!is_host(""));
        assert!(!is_host("a b"));
        assert!(!is_host("a/b"));
        assert!(!is_host("user@host"));
        assert!(!is_host("[::1]"));
        assert!(!is_host(&"a".repeat(MAX_HOST_LEN + 1)));
    }
}
