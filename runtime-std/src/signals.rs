//! SIGTERM and SIGINT: how `lockstep serve`, `sandbox` and `demo` are told to stop.
//!
//! Each catches them with [`Stop::catch`] before it says it is ready (a signal sent as soon as
//! the `listening` line is read must not meet the default action), and returns from its `run`
//! when [`Stop::signalled`] resolves: what it owns is dropped on the way out (its
//! [`TempDir`](crate::tempdir::TempDir) removed) before `main` exits the process.

use async_signal::{Signal, Signals};
use futures_lite::StreamExt;

use crate::log;

/// SIGTERM and SIGINT, caught from the moment it is made until it is dropped.
#[derive(Debug)]
pub struct Stop {
    /// `None` when they could not be caught: their default action ends the process.
    signals: Option<Signals>,
}

impl Stop {
    /// Catches SIGTERM and SIGINT from now on. When that fails (logged), they keep their
    /// default action: the process ends at once, without its clean-up.
    pub fn catch() -> Self {
        match Signals::new([Signal::Term, Signal::Int]) {
            Ok(signals) => Self {
                signals: Some(signals),
            },
            Err(e) => {
                log::warn(&format!(
                    "signals cannot be handled ({e}): SIGTERM and SIGINT will end the process \
                     without its clean-up"
                ));
                Self { signals: None }
            }
        }
    }

    /// The next SIGTERM or SIGINT; never, when they are not caught (or reading them fails).
    pub async fn signalled(&mut self) -> Signal {
        if let Some(signals) = &mut self.signals
            && let Some(Ok(signal)) = signals.next().await
        {
            return signal;
        }
        futures_lite::future::pending().await
    }
}
