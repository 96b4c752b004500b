//! The agent's sink as the app sees it: every event kept in a small ring for the event
//! streams (each follows it with its own cursor), the outcomes counted for `/metrics`, and
//! everything passed on to the platform's own sink (its log lines).

use core::task::{Context, Poll, Waker};

use lockstep_core::agent::{Link, Retry, Sink};
use lockstep_core::deployer::{Command, Event, Outcome, Record};

/// The most event streams served at once (each has a waker slot here).
pub const MAX_STREAMS: usize = 16;

/// How many of the latest events the ring keeps: a stream that falls further behind loses
/// the oldest (as `lockstep serve`'s bounded subscriber channels drop what does not fit).
pub const BACKLOG: usize = 64;

/// The sink the agent tells; `S` is the platform's.
pub struct Hub<S> {
    inner: S,
    ring: [Option<Event>; BACKLOG],
    /// The sequence number the next event gets.
    next: u64,
    wakers: [Option<Waker>; MAX_STREAMS],
    succeeded: u64,
    failed: u64,
}

impl<S> core::fmt::Debug for Hub<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Hub")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl<S> Hub<S> {
    /// A hub passing everything on to `inner`.
    pub const fn new(inner: S) -> Self {
        Self {
            inner,
            ring: [None; BACKLOG],
            next: 0,
            wakers: [const { None }; MAX_STREAMS],
            succeeded: 0,
            failed: 0,
        }
    }

    /// Counts the outcome of a deployment that ended (here, or before a restart).
    fn count(&mut self, record: &Record) {
        match record.outcome() {
            Some(Outcome::Succeeded { .. }) => self.succeeded += 1,
            Some(Outcome::Failed(_)) => self.failed += 1,
            None => {}
        }
    }

    /// The platform's sink.
    pub const fn inner(&self) -> &S {
        &self.inner
    }

    /// The platform's sink, to change.
    pub const fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Where a stream that starts now begins: at the next event.
    pub const fn cursor(&self) -> u64 {
        self.next
    }

    /// How many deployments ended, succeeded and failed, since the start (restored ones too).
    pub const fn outcomes(&self) -> (u64, u64) {
        (self.succeeded, self.failed)
    }

    /// The event at `cursor` (moved past it), or pending until there is one; stream `slot`'s
    /// waker is woken by the next event. A cursor further behind than [`BACKLOG`] skips to
    /// the oldest event kept.
    pub fn poll_next(&mut self, cursor: &mut u64, slot: usize, cx: &Context<'_>) -> Poll<Event> {
        let oldest = self.next.saturating_sub(BACKLOG as u64);
        if *cursor < oldest {
            *cursor = oldest;
        }
        if *cursor < self.next {
            let index = (*cursor % BACKLOG as u64) as usize;
            *cursor += 1;
            if let Some(Some(event)) = self.ring.get(index) {
                return Poll::Ready(*event);
            }
        }
        if let Some(waker) = self.wakers.get_mut(slot) {
            *waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Forgets stream `slot`'s waker (the stream ended).
    pub fn release(&mut self, slot: usize) {
        if let Some(waker) = self.wakers.get_mut(slot) {
            *waker = None;
        }
    }
}

impl<S: Sink> Sink for Hub<S> {
    fn event(&mut self, event: &Event) {
        let index = (self.next % BACKLOG as u64) as usize;
        if let Some(slot) = self.ring.get_mut(index) {
            *slot = Some(*event);
        }
        self.next += 1;
        for waker in self.wakers.iter_mut().filter_map(Option::take) {
            waker.wake();
        }
        self.inner.event(event);
    }

    fn ended(&mut self, record: &Record) {
        self.count(record);
        self.inner.ended(record);
    }

    fn restored(&mut self, record: &Record) {
        self.count(record);
        self.inner.restored(record);
    }

    fn link(&mut self, link: Link) {
        self.inner.link(link);
    }

    fn retrying(&mut self, command: &Command, retry: Retry) {
        self.inner.retrying(command, retry);
    }
}
