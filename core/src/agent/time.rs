//! What the agent needs of its platform: a clock with timers, and connections.

use core::fmt;
use core::future::{Future, poll_fn};
use core::pin::pin;
use core::task::Poll;

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

/// Opens connections: TCP on a std host, embassy-net on a microcontroller.
#[allow(
    async_fn_in_trait,
    reason = "single-threaded executors: no Send bound is wanted"
)]
pub trait Connector {
    /// A connection.
    type Connection: embedded_io_async::Read + embedded_io_async::Write;

    /// Connects to `host:port` (a name or an address).
    async fn connect(&self, host: &str, port: u16) -> Result<Self::Connection, ConnectError>;
}

/// A connection could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnectError;

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("could not connect")
    }
}

impl core::error::Error for ConnectError {}

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
