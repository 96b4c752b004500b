//! What the agent needs of its platform: a clock with timers, and connections.

use core::fmt;
use core::future::{Future, poll_fn};
use core::pin::pin;
use core::task::Poll;

use super::http::Origin;
use crate::time::{Instant, Now};

/// The platform's clocks and timers, shared by every task of the agent (`&self`).
#[allow(
    async_fn_in_trait,
    reason = "single-threaded executors: no Send bound is wanted"
)]
pub trait Time {
    /// Both clocks now.
    fn now(&self) -> Now;

    /// Completes at `deadline` (at once if it has passed).
    async fn at(&self, deadline: Instant);
}

/// Opens connections: TCP on a std host, embassy-net on a microcontroller; TLS over them for
/// [`Scheme::Https`](super::http::Scheme::Https), where the platform has it.
#[allow(
    async_fn_in_trait,
    reason = "single-threaded executors: no Send bound is wanted"
)]
pub trait Connector {
    /// A connection.
    type Connection: embedded_io_async::Read + embedded_io_async::Write;

    /// Connects to `origin` (its host a name or an address). For [`Scheme::Https`](super::http::Scheme::Https) the
    /// connection is TLS, the server's certificate verified for the host before this answers;
    /// a platform without TLS answers [`TlsError::Unsupported`].
    async fn connect(&self, origin: Origin<'_>) -> Result<Self::Connection, ConnectError>;
}

/// A connection could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConnectError {
    /// The host could not be resolved or reached, or refused the connection: trying again
    /// later may succeed.
    Failed,
    /// The TLS handshake failed: trying again will not help.
    Tls(TlsError),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed => f.write_str("could not connect"),
            Self::Tls(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for ConnectError {}

/// Why a TLS connection was refused. There is no way to turn verification off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate is not signed by a trusted CA.
    UnknownIssuer,
    /// The certificate is not valid for the host connected to.
    NameMismatch,
    /// The certificate has expired.
    Expired,
    /// The certificate is not valid yet.
    NotYetValid,
    /// The certificate was refused for another reason (revoked, bad signature, wrong usage).
    BadCertificate,
    /// The handshake failed (no common version or cipher suite, a TLS alert, a broken
    /// connection during it).
    Handshake,
    /// This platform speaks plain `http://` only.
    Unsupported,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownIssuer => {
                "TLS: the certificate is not signed by a trusted CA (unknown CA)"
            }
            Self::NameMismatch => "TLS: the certificate is not valid for the host name",
            Self::Expired => "TLS: the certificate has expired",
            Self::NotYetValid => "TLS: the certificate is not valid yet",
            Self::BadCertificate => "TLS: the certificate was refused",
            Self::Handshake => "TLS: the handshake failed",
            Self::Unsupported => "TLS: this runtime speaks plain http:// only",
        })
    }
}

impl core::error::Error for TlsError {}

/// The deadline passed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TimedOut;

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the deadline passed")
    }
}

impl core::error::Error for TimedOut {}

/// Runs `fut` until it completes or `deadline` passes, whichever is first.
pub async fn with_deadline<T: Time, F: Future>(
    time: &T,
    deadline: Instant,
    fut: F,
) -> Result<F::Output, TimedOut> {
    let mut fut = pin!(fut);
    let mut timer = pin!(time.at(deadline));
    poll_fn(|cx| {
        if let Poll::Ready(output) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(TimedOut)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
