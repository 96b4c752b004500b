//! The connection budget: which connections a server keeps when more arrive than it serves at
//! once (docs/PROTOCOL.md §7 "HTTP/1.1, as built", §8). Sans-IO: the runtime says what each
//! connection does, with the time; the budget answers which to close.
//!
//! A server has `capacity` slots (`--max-connections`). The rules:
//!
//! 1. **Every connection holds a slot** from [`Budget::open`] to [`Budget::close`], in one of
//!    three states: *waiting* since an instant — it has not sent a whole request yet (just
//!    connected, or slowly sending a head or a body), or it is kept alive between requests —;
//!    *working* — its request was read whole, and is handled or answered —; *streaming* — it
//!    serves an event stream.
//! 2. **A new connection is never left in the listen backlog.** It takes a free slot; with
//!    none free, the slot of the connection that has waited longest, which the runtime closes
//!    at once (it is *shed*); ties within a millisecond go to the lower slot. Only when every
//!    slot works or streams is the new connection refused ([`Full`]): waiting costs a client
//!    nothing, so waiting connections must not keep out one that has a request to make.
//! 3. **Streams are capped below the capacity** (`--max-event-streams`): beyond the cap
//!    [`Budget::stream`] refuses, so streams can never take every slot, and a new connection
//!    always finds a slot to take unless the others are all working: each of those has sent a
//!    whole request, which the runtime is answering.
//! 4. **An id names one connection, once.** Each slot counts its tenants (a generation, in the
//!    id): once a connection was shed or closed, its id changes nothing, so the shed
//!    connection's own late `close` cannot free its successor's slot.
//!
//! The storage is the runtime's: anything that is a slice of [`Slot`]s (a `Vec` sized by a
//! setting in runtime-std, a fixed array for a runtime without a heap).
//!
//! Driving it: `open` when a connection is accepted (close the one shed, if any, or refuse the
//! new one on `Full`); `request_read` when a whole request has been read; `stream` when the
//! request becomes a stream; `answered` after each answer on a connection kept alive; `close`
//! when it ends, whatever the reason.

use core::fmt;

use crate::time::Instant;

/// What a slot's connection is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum State {
    /// No connection.
    Free,
    /// No whole request yet, or idle between requests, since that instant: may be shed.
    Waiting(Instant),
    /// A request read whole, being handled or answered.
    Working,
    /// An event stream.
    Streaming,
}

/// One slot of a [`Budget`]: a connection's state and how many connections it has held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Slot {
    generation: u32,
    state: State,
}

impl Slot {
    /// An empty slot, to fill the storage with.
    pub const FREE: Self = Self {
        generation: 0,
        state: State::Free,
    };

    /// What its connection is doing.
    pub const fn state(&self) -> State {
        self.state
    }
}

impl Default for Slot {
    fn default() -> Self {
        Self::FREE
    }
}

/// One connection: its slot, and which of the slot's tenants it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnId {
    slot: usize,
    generation: u32,
}

impl ConnId {
    /// The index of its slot, for a runtime that keeps something per slot (the task that
    /// serves it). A shed connection's slot is its successor's.
    pub const fn slot(self) -> usize {
        self.slot
    }
}

/// A connection let in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use = "a shed connection must be closed"]
pub struct Opened {
    /// The new connection's id.
    pub id: ConnId,
    /// The connection shed to make room: close it now. It held the same slot.
    pub shed: Option<ConnId>,
}

/// Every slot works or streams: refuse the new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Full;

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("every connection slot is working or streaming")
    }
}

impl core::error::Error for Full {}

/// The id names a connection that was shed or closed: nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stale;

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the connection was shed or closed")
    }
}

impl core::error::Error for Stale {}

/// Why a connection may not stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum StreamError {
    /// The streams are at their cap (503).
    StreamsFull,
    /// The connection was shed or closed.
    Stale,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::StreamsFull => "the event streams are at their cap",
            Self::Stale => "the connection was shed or closed",
        })
    }
}

impl core::error::Error for StreamError {}

/// Why a [`Budget`] cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BudgetError {
    /// No slot at all: nothing could ever be served.
    NoSlots,
    /// The stream cap is not below the number of slots: streams could take every one.
    StreamsNotBelowCapacity,
}

impl fmt::Display for BudgetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoSlots => "at least one connection slot is needed",
            Self::StreamsNotBelowCapacity => "the event streams must be fewer than the connections",
        })
    }
}

impl core::error::Error for BudgetError {}

/// The connection budget over the slots `S` (module doc: the rules, and how to drive it).
#[derive(Clone, Debug)]
pub struct Budget<S> {
    slots: S,
    max_streams: usize,
    streams: usize,
}

impl<S: AsRef<[Slot]> + AsMut<[Slot]>> Budget<S> {
    /// A budget of `slots.len()` connections, at most `max_streams` of them streaming; every
    /// slot is emptied.
    pub fn new(mut slots: S, max_streams: usize) -> Result<Self, BudgetError> {
        let capacity = slots.as_ref().len();
        if capacity == 0 {
            return Err(BudgetError::NoSlots);
        }
        if max_streams >= capacity {
            return Err(BudgetError::StreamsNotBelowCapacity);
        }
        slots.as_mut().fill(Slot::FREE);
        Ok(Self {
            slots,
            max_streams,
            streams: 0,
        })
    }

    /// How many connections it holds at most.
    pub fn capacity(&self) -> usize {
        self.slots.as_ref().len()
    }

    /// How many connections hold a slot now.
    pub fn in_use(&self) -> usize {
        self.slots
            .as_ref()
            .iter()
            .filter(|s| s.state != State::Free)
            .count()
    }

    /// How many connections stream now.
    pub const fn streams(&self) -> usize {
        self.streams
    }

    /// The state of a connection; `None` once it was shed or closed.
    pub fn state(&self, id: ConnId) -> Option<State> {
        self.slots
            .as_ref()
            .get(id.slot)
            .filter(|s| s.generation == id.generation && s.state != State::Free)
            .map(|s| s.state)
    }

    /// A connection arrived at `now`: rule 2. It starts waiting.
    pub fn open(&mut self, now: Instant) -> Result<Opened, Full> {
        // One pass: a free slot (the lowest) before any waiting one (the oldest, then the
        // lowest); never a working or streaming one.
        let (index, slot) = self
            .slots
            .as_mut()
            .iter_mut()
            .enumerate()
            .filter_map(|(i, slot)| match slot.state {
                State::Free => Some(((false, Instant::ZERO), i, slot)),
                State::Waiting(since) => Some(((true, since), i, slot)),
                State::Working | State::Streaming => None,
            })
            .min_by_key(|(key, i, _)| (*key, *i))
            .map(|(_, i, slot)| (i, slot))
            .ok_or(Full)?;
        let shed = (slot.state != State::Free).then_some(ConnId {
            slot: index,
            generation: slot.generation,
        });
        slot.generation = slot.generation.wrapping_add(1);
        slot.state = State::Waiting(now);
        Ok(Opened {
            id: ConnId {
                slot: index,
                generation: slot.generation,
            },
            shed,
        })
    }

    /// The connection's request has been read whole, head and body: it works, and is no
    /// longer shed. (Until then, a client sending slowly costs itself nothing: a slow body
    /// waits like a slow head.)
    pub fn request_read(&mut self, id: ConnId) -> Result<(), Stale> {
        let slot = self.live(id)?;
        if let State::Waiting(_) = slot.state {
            slot.state = State::Working;
        }
        Ok(())
    }

    /// The connection answered at `now` and is kept alive: it waits for its next request (a
    /// stream it served ends).
    pub fn answered(&mut self, id: ConnId, now: Instant) -> Result<(), Stale> {
        let slot = self.live(id)?;
        let was = core::mem::replace(&mut slot.state, State::Waiting(now));
        self.stream_ended(was);
        Ok(())
    }

    /// The connection's request becomes an event stream: rule 3. Asking again while it
    /// streams changes nothing.
    pub fn stream(&mut self, id: ConnId) -> Result<(), StreamError> {
        let below_cap = self.streams < self.max_streams;
        let slot = self.live(id).map_err(|Stale| StreamError::Stale)?;
        match slot.state {
            State::Streaming => Ok(()),
            _ if !below_cap => Err(StreamError::StreamsFull),
            _ => {
                slot.state = State::Streaming;
                self.streams = self.streams.saturating_add(1);
                Ok(())
            }
        }
    }

    /// The connection ended: its slot is free (its stream, if any, too).
    pub fn close(&mut self, id: ConnId) -> Result<(), Stale> {
        let slot = self.live(id)?;
        let was = core::mem::replace(&mut slot.state, State::Free);
        self.stream_ended(was);
        Ok(())
    }

    /// The slot of a connection that still holds it.
    fn live(&mut self, id: ConnId) -> Result<&mut Slot, Stale> {
        self.slots
            .as_mut()
            .get_mut(id.slot)
            .filter(|s| s.generation == id.generation && s.state != State::Free)
            .ok_or(Stale)
    }

    fn stream_ended(&mut self, was: State) {
        if was == State::Streaming {
            self.streams = self.streams.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::vec;
    use std::vec::Vec;

    use super::*;

    fn at(millis: u64) -> Instant {
        Instant::from_millis(millis)
    }

    /// A budget of `n` slots in a `Vec`, `streams` of them may stream.
    fn budget(n: usize, streams: usize) -> Budget<Vec<Slot>> {
        Budget::new(vec![Slot::FREE; n], streams).unwrap()
    }

    /// Opens `n` connections at 0, 1, 2 ... ms; none sheds.
    fn fill(b: &mut Budget<Vec<Slot>>, n: usize) -> Vec<ConnId> {
        (0..n)
            .map(|i| {
                let opened = b.open(at(i as u64)).unwrap();
                assert_eq!(opened.shed, None);
                opened.id
            })
            .collect()
    }

    // ---- building ---------------------------------------------------------------------------

    #[test]
    fn test_new_refuses_no_slots_and_a_stream_cap_not_below_capacity() {
        assert_eq!(
            Budget::new(Vec::<Slot>::new(), 0).unwrap_err(),
            BudgetError::NoSlots
        );
        assert_eq!(
            Budget::new(vec![Slot::FREE; 4], 4).unwrap_err(),
            BudgetError::StreamsNotBelowCapacity
        );
        let b = Budget::new(vec![Slot::FREE; 4], 3).unwrap();
        assert_eq!((b.capacity(), b.in_use(), b.streams()), (4, 0, 0));
        // One slot and no stream is a budget.
        assert!(Budget::new([Slot::FREE; 1], 0).is_ok());
    }

    #[test]
    fn test_new_empties_the_storage() {
        let mut used = budget(2, 1);
        let id = used.open(at(0)).unwrap().id;
        used.stream(id).unwrap();
        let Budget { slots, .. } = used;
        let b = Budget::new(slots, 1).unwrap();
        assert_eq!((b.in_use(), b.streams(), b.state(id)), (0, 0, None));
    }

    #[test]
    fn test_fixed_array_storage() {
        let mut b = Budget::new([Slot::FREE; 2], 1).unwrap();
        let first = b.open(at(0)).unwrap().id;
        let second = b.open(at(1)).unwrap().id;
        let third = b.open(at(2)).unwrap();
        assert_eq!(third.shed, Some(first));
        assert_eq!(
            (b.state(first), b.state(second)),
            (None, Some(State::Waiting(at(1))))
        );
    }

    // ---- free slots -------------------------------------------------------------------------

    #[test]
    fn test_free_open_takes_a_free_slot_and_waits() {
        let mut b = budget(3, 1);
        let ids = fill(&mut b, 3);
        assert_eq!(b.in_use(), 3);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(id.slot(), i);
            assert_eq!(b.state(*id), Some(State::Waiting(at(i as u64))));
        }
    }

    #[test]
    fn test_free_open_reuses_a_closed_slot_under_a_new_generation() {
        let mut b = budget(2, 1);
        let ids = fill(&mut b, 2);
        b.close(ids[0]).unwrap();
        let again = b.open(at(9)).unwrap();
        assert_eq!(again.shed, None);
        assert_eq!(again.id.slot(), ids[0].slot());
        assert_ne!(again.id, ids[0]);
        assert_eq!(b.state(ids[0]), None);
        assert_eq!(b.state(again.id), Some(State::Waiting(at(9))));
    }

    // ---- full of waiting ---------------------------------------------------------------------

    #[test]
    fn test_full_of_waiting_open_sheds_the_oldest() {
        let mut b = budget(3, 1);
        let ids = fill(&mut b, 3);
        let opened = b.open(at(10)).unwrap();
        assert_eq!(opened.shed, Some(ids[0]));
        assert_eq!(opened.id.slot(), ids[0].slot());
        assert_eq!(b.state(ids[0]), None);
        assert_eq!(b.in_use(), 3);
        // The next oldest goes next; the newcomer, waiting since 10, last.
        assert_eq!(b.open(at(11)).unwrap().shed, Some(ids[1]));
        assert_eq!(b.open(at(12)).unwrap().shed, Some(ids[2]));
        assert_eq!(b.open(at(13)).unwrap().shed, Some(opened.id));
    }

    #[test]
    fn test_full_of_waiting_an_answer_restarts_the_wait() {
        let mut b = budget(2, 1);
        let ids = fill(&mut b, 2);
        b.request_read(ids[0]).unwrap();
        b.answered(ids[0], at(5)).unwrap();
        // ids[0] waits since 5 now, ids[1] since 1: ids[1] has waited longer.
        assert_eq!(b.open(at(6)).unwrap().shed, Some(ids[1]));
    }

    #[test]
    fn test_full_of_waiting_ties_go_to_the_lower_slot() {
        let mut b = budget(2, 1);
        let first = b.open(at(7)).unwrap().id;
        let _second = b.open(at(7)).unwrap().id;
        assert_eq!(b.open(at(7)).unwrap().shed, Some(first));
    }

    #[test]
    fn test_full_of_waiting_a_shed_id_is_stale() {
        let mut b = budget(1, 0);
        let old = b.open(at(0)).unwrap().id;
        let new = b.open(at(1)).unwrap().id;
        assert_eq!(b.request_read(old), Err(Stale));
        assert_eq!(b.answered(old, at(2)), Err(Stale));
        assert_eq!(b.stream(old), Err(StreamError::Stale));
        // The shed connection's own close does not free its successor's slot.
        assert_eq!(b.close(old), Err(Stale));
        assert_eq!(b.state(new), Some(State::Waiting(at(1))));
        assert_eq!(b.in_use(), 1);
    }

    // ---- full of working and streaming -------------------------------------------------------

    #[test]
    fn test_full_of_working_open_is_full() {
        let mut b = budget(3, 1);
        let ids = fill(&mut b, 3);
        for id in &ids {
            b.request_read(*id).unwrap();
        }
        assert_eq!(b.open(at(10)), Err(Full));
        // Refused, nothing changed.
        for id in &ids {
            assert_eq!(b.state(*id), Some(State::Working));
        }
        // One answers and waits: it is shed for the next.
        b.answered(ids[2], at(11)).unwrap();
        assert_eq!(b.open(at(12)).unwrap().shed, Some(ids[2]));
    }

    #[test]
    fn test_full_of_working_and_streaming_open_is_full() {
        let mut b = budget(3, 2);
        let ids = fill(&mut b, 3);
        b.stream(ids[0]).unwrap();
        b.stream(ids[1]).unwrap();
        b.request_read(ids[2]).unwrap();
        assert_eq!(b.open(at(10)), Err(Full));
        // A stream ends: a free slot.
        b.close(ids[0]).unwrap();
        assert_eq!(b.open(at(11)).unwrap().shed, None);
    }

    #[test]
    fn test_full_one_waiting_among_working_is_the_one_shed() {
        let mut b = budget(3, 1);
        let ids = fill(&mut b, 3);
        b.request_read(ids[0]).unwrap();
        b.stream(ids[2]).unwrap();
        assert_eq!(b.open(at(10)).unwrap().shed, Some(ids[1]));
    }

    // ---- streaming --------------------------------------------------------------------------

    #[test]
    fn test_streaming_cap_refuses_the_next_stream() {
        let mut b = budget(4, 2);
        let ids = fill(&mut b, 4);
        for id in &ids {
            b.request_read(*id).unwrap();
        }
        b.stream(ids[0]).unwrap();
        b.stream(ids[1]).unwrap();
        assert_eq!(b.stream(ids[2]), Err(StreamError::StreamsFull));
        assert_eq!(b.state(ids[2]), Some(State::Working));
        assert_eq!(b.streams(), 2);
        // Asking again while streaming is no second stream.
        b.stream(ids[0]).unwrap();
        assert_eq!(b.streams(), 2);
    }

    #[test]
    fn test_streaming_close_frees_the_stream() {
        let mut b = budget(3, 1);
        let ids = fill(&mut b, 3);
        b.stream(ids[0]).unwrap();
        assert_eq!(b.stream(ids[1]), Err(StreamError::StreamsFull));
        b.close(ids[0]).unwrap();
        assert_eq!(b.streams(), 0);
        b.stream(ids[1]).unwrap();
        assert_eq!(b.streams(), 1);
    }

    #[test]
    fn test_streaming_answered_ends_the_stream() {
        let mut b = budget(2, 1);
        let id = b.open(at(0)).unwrap().id;
        b.stream(id).unwrap();
        b.answered(id, at(3)).unwrap();
        assert_eq!((b.streams(), b.state(id)), (0, Some(State::Waiting(at(3)))));
    }

    #[test]
    fn test_streaming_is_never_shed() {
        let mut b = budget(2, 1);
        let ids = fill(&mut b, 2);
        b.stream(ids[0]).unwrap();
        // ids[0] opened first, but streams: ids[1] is the one waiting.
        assert_eq!(b.open(at(5)).unwrap().shed, Some(ids[1]));
        assert_eq!(b.state(ids[0]), Some(State::Streaming));
    }

    #[test]
    fn test_streaming_with_no_stream_allowed() {
        let mut b = budget(1, 0);
        let id = b.open(at(0)).unwrap().id;
        assert_eq!(b.stream(id), Err(StreamError::StreamsFull));
    }

    // ---- working ----------------------------------------------------------------------------

    #[test]
    fn test_working_request_read_is_idempotent_and_keeps_a_stream() {
        let mut b = budget(2, 1);
        let id = b.open(at(0)).unwrap().id;
        b.request_read(id).unwrap();
        b.request_read(id).unwrap();
        assert_eq!(b.state(id), Some(State::Working));
        b.stream(id).unwrap();
        b.request_read(id).unwrap();
        assert_eq!((b.state(id), b.streams()), (Some(State::Streaming), 1));
    }

    // ---- stale ids and generations ----------------------------------------------------------

    #[test]
    fn test_closed_id_is_stale() {
        let mut b = budget(2, 1);
        let id = b.open(at(0)).unwrap().id;
        b.close(id).unwrap();
        assert_eq!(b.close(id), Err(Stale));
        assert_eq!(b.request_read(id), Err(Stale));
        assert_eq!(b.state(id), None);
        assert_eq!(b.in_use(), 0);
    }

    #[test]
    fn test_id_of_a_slot_out_of_range_is_stale() {
        let mut big = budget(4, 1);
        let far = fill(&mut big, 4)[3];
        let mut small = budget(2, 1);
        assert_eq!(small.close(far), Err(Stale));
        assert_eq!(small.stream(far), Err(StreamError::Stale));
        assert_eq!(small.state(far), None);
    }

    #[test]
    fn test_generations_wrap_and_still_tell_tenants_apart() {
        let mut b = Budget::new(
            [Slot {
                generation: u32::MAX,
                state: State::Free,
            }],
            0,
        )
        .unwrap();
        // `new` empties the storage: generations start again at 0.
        let first = b.open(at(0)).unwrap().id;
        assert_eq!(first.generation, 1);
        b.slots[0].generation = u32::MAX;
        let last = ConnId {
            slot: 0,
            generation: u32::MAX,
        };
        let wrapped = b.open(at(1)).unwrap();
        assert_eq!(wrapped.shed, Some(last));
        assert_eq!(wrapped.id.generation, 0);
        assert_eq!(b.close(last), Err(Stale));
        assert_eq!(b.state(wrapped.id), Some(State::Waiting(at(1))));
    }
}
