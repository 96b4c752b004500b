//! What a service keeps of its deployments for reading (docs/PROTOCOL.md §7, "Reading"): the event
//! log of every deployment in flight, and the ended deployments it retains — record and
//! events — up to its retention, the oldest evicted first; and the listing of
//! `GET /deployments`, newest first.
//!
//! These are deployment rules like admission, so they are decided here, once, for every
//! runtime and for what persists them: the [`Ledger`] is fed the deployer's outputs
//! ([`Ledger::record_event`], [`Ledger::retire`]) and answers the reads. Where the retained
//! deployments are kept is the runtime's choice, behind [`Shelf`]: a `heapless::Vec` of fixed
//! capacity in a static, or a growable queue on the heap.

use core::fmt::{self, Write as _};

use crate::bundle::Digest;
use crate::deployer::{DeploymentId, Event, EventLog, Failure, Name, Outcome, Record};
use crate::text::{JsonEscaped, JsonStr};
use crate::time::UnixTime;

/// A version whose newest retained deployment failed, and failed for itself
/// ([`Failure::holds_version`]): a webhook does not deploy it again without `retry`
/// (docs/DESIGN.md rule 11; [`Ledger::failed_version`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FailedBefore {
    /// The deployment that failed.
    pub id: DeploymentId,
    /// The version's tag.
    pub tag: Name,
    /// When it ended (wall clock).
    pub at: UnixTime,
    /// Why.
    pub failure: Failure,
}

/// An ended deployment, retained for reading.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Retained {
    /// Its final record.
    pub record: Record,
    /// Its events.
    pub log: EventLog,
}

/// Where a [`Ledger`] keeps the ended deployments it retains, in the order the ledger gives
/// them (oldest notified first). Indexes are positions in that order.
pub trait Shelf {
    /// How many it holds.
    fn len(&self) -> usize;
    /// Whether it holds none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The one at `index`.
    fn get(&self, index: usize) -> Option<&Retained>;
    /// Puts `retained` at `index` (at most `len`), moving the later ones up; hands it back
    /// when there is no room.
    #[allow(
        clippy::result_large_err,
        reason = "a capacity error hands the value back, as heapless does; nothing to box into"
    )]
    fn insert(&mut self, index: usize, retained: Retained) -> Result<(), Retained>;
    /// Takes the one at `index` out, moving the later ones down.
    fn remove(&mut self, index: usize) -> Option<Retained>;
}

#[allow(
    clippy::result_large_err,
    reason = "a capacity error hands the value back, as heapless does; nothing to box into"
)]
impl<const R: usize> Shelf for heapless::Vec<Retained, R> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn get(&self, index: usize) -> Option<&Retained> {
        self.as_slice().get(index)
    }

    fn insert(&mut self, index: usize, retained: Retained) -> Result<(), Retained> {
        if index > self.as_slice().len() {
            return Err(retained);
        }
        heapless::Vec::insert(self, index, retained)
    }

    fn remove(&mut self, index: usize) -> Option<Retained> {
        (index < self.as_slice().len()).then(|| heapless::Vec::remove(self, index))
    }
}

/// The event logs of the deployments in flight (at most `N`, the deployer's table) and the
/// ended deployments retained on the shelf `S`.
#[derive(Clone, Debug)]
pub struct Ledger<const N: usize, S> {
    live: heapless::Vec<EventLog, N>,
    ended: S,
    retention: usize,
}

impl<const N: usize, S: Shelf> Ledger<N, S> {
    /// A ledger that retains up to `retention` ended deployments (at least one) on `shelf`
    /// (which should be empty).
    pub fn new(shelf: S, retention: usize) -> Self {
        Self {
            live: heapless::Vec::new(),
            ended: shelf,
            retention: retention.max(1),
        }
    }

    /// How many ended deployments it retains at most.
    pub const fn retention(&self) -> usize {
        self.retention
    }

    /// How many ended deployments it retains now.
    pub fn retained(&self) -> usize {
        self.ended.len()
    }

    /// Appends an event to its deployment's log, which the first event of a deployment opens.
    /// With `N` logs open already (a deployer larger than the ledger), the event is dropped.
    pub fn record_event(&mut self, event: &Event) {
        if let Some(log) = self
            .live
            .iter_mut()
            .find(|log| log.deployment() == event.deployment)
        {
            return log.push(event);
        }
        let mut log = EventLog::new(event.deployment);
        log.push(event);
        let _ = self.live.push(log);
    }

    /// A deployment ended: its record and log are retained; past the retention the oldest
    /// ended deployment goes, and is handed back (for what persists them to forget it too).
    pub fn retire(&mut self, record: Record) -> Option<Retained> {
        let log = match self
            .live
            .iter()
            .position(|log| log.deployment() == record.id())
        {
            Some(at) => self.live.swap_remove(at),
            None => EventLog::new(record.id()),
        };
        // Oldest notified first: the new one usually goes at the end.
        let at = (0..self.ended.len())
            .rev()
            .find(|&i| {
                self.ended
                    .get(i)
                    .is_some_and(|r| r.record.order < record.order)
            })
            .map_or(0, |i| i.saturating_add(1));
        let mut evicted = None;
        let mut retained = Retained { record, log };
        let mut at = at;
        // A shelf smaller than the retention makes room by evicting too.
        while let Err(back) = self.ended.insert(at, retained) {
            retained = back;
            match self.ended.remove(0) {
                Some(oldest) => evicted = Some(oldest),
                // An empty shelf with no room: this one cannot be kept.
                None => return Some(retained),
            }
            at = at.saturating_sub(1);
        }
        while self.ended.len() > self.retention {
            evicted = self.ended.remove(0).or(evicted);
        }
        evicted
    }

    /// The events of a deployment in flight or retained.
    pub fn events(&self, id: DeploymentId) -> Option<&EventLog> {
        self.live
            .iter()
            .find(|log| log.deployment() == id)
            .or_else(|| self.find(id).map(|r| &r.log))
    }

    /// Whether the version of `digest` failed the last time it was deployed: the newest
    /// notified retained deployment of that digest failed, for a reason that
    /// [holds the version](Failure::holds_version). A version is remembered as long as its
    /// deployment is retained.
    pub fn failed_version(&self, digest: &Digest) -> Option<FailedBefore> {
        let newest = self
            .shelved()
            .rev()
            .map(|r| &r.record)
            .find(|r| r.request.digest == *digest)?;
        let end = newest.end()?;
        match end.outcome {
            Outcome::Failed(failure) if failure.holds_version() => Some(FailedBefore {
                id: newest.id(),
                tag: newest.request.tag,
                at: end.at,
                failure,
            }),
            _ => None,
        }
    }

    /// The record of a retained deployment.
    pub fn ended(&self, id: DeploymentId) -> Option<&Record> {
        self.find(id).map(|r| &r.record)
    }

    fn find(&self, id: DeploymentId) -> Option<&Retained> {
        self.shelved().find(|r| r.record.id() == id)
    }

    /// The retained deployments, oldest notified first.
    pub fn shelved(&self) -> impl DoubleEndedIterator<Item = &Retained> {
        (0..self.ended.len()).filter_map(|i| self.ended.get(i))
    }

    /// The deployments of `GET /deployments`, newest notified first: those in flight (the
    /// deployer's records, at most `N`) and the retained ones.
    pub fn listing<'a>(
        &'a self,
        in_flight: impl IntoIterator<Item = &'a Record>,
    ) -> impl Iterator<Item = &'a Record> {
        let mut live: heapless::Vec<&Record, N> = heapless::Vec::new();
        for record in in_flight {
            // The deployer's table holds at most `N`.
            let _ = live.push(record);
        }
        live.sort_unstable_by_key(|r| core::cmp::Reverse(r.order));
        Merge {
            live: live.into_iter().peekable(),
            ended: self.shelved().rev().map(|r| &r.record).peekable(),
        }
    }

    /// Writes the JSON array of `GET /deployments` ([`listing`](Self::listing)).
    pub fn write_listing<'a>(
        &'a self,
        in_flight: impl IntoIterator<Item = &'a Record>,
        out: &mut impl fmt::Write,
    ) -> fmt::Result {
        out.write_str("[")?;
        for (i, record) in self.listing(in_flight).enumerate() {
            if i > 0 {
                out.write_str(",")?;
            }
            write_listed(record, out)?;
        }
        out.write_str("]")
    }
}

/// Two sequences, each newest first, merged newest first.
struct Merge<A: Iterator, B: Iterator> {
    live: core::iter::Peekable<A>,
    ended: core::iter::Peekable<B>,
}

impl<'a, A, B> Iterator for Merge<A, B>
where
    A: Iterator<Item = &'a Record>,
    B: Iterator<Item = &'a Record>,
{
    type Item = &'a Record;

    fn next(&mut self) -> Option<&'a Record> {
        match (self.live.peek(), self.ended.peek()) {
            (Some(l), Some(e)) if e.order > l.order => self.ended.next(),
            (Some(_), _) => self.live.next(),
            (None, _) => self.ended.next(),
        }
    }
}

/// Writes one deployment of `GET /deployments` (docs/PROTOCOL.md §7): `deploymentId`,
/// `bundleName`, `version`, `compatibilityVersion`, `state`, `startedAt`, `endedAt`,
/// `failure`, the fields absent while unknown.
pub fn write_listed(record: &Record, out: &mut impl fmt::Write) -> fmt::Result {
    let r = &record.request;
    write!(
        out,
        r#"{{"deploymentId":"{}","bundleName":{},"version":"{}-{}""#,
        r.id,
        JsonStr(r.package.as_str()),
        r.tag,
        r.digest
    )?;
    if let Some(compat) = &record.compatibility_version {
        write!(
            out,
            r#","compatibilityVersion":{}"#,
            JsonStr(compat.as_str())
        )?;
    }
    write!(
        out,
        r#","state":"{}","startedAt":{}"#,
        record.state().as_str(),
        r.at.as_millis()
    )?;
    if let Some(end) = record.end() {
        write!(out, r#","endedAt":{}"#, end.at.as_millis())?;
        if let Outcome::Failed(failure) = &end.outcome {
            out.write_str(r#","failure":""#)?;
            write!(JsonEscaped(out), "{failure}")?;
            out.write_str("\"")?;
        }
    }
    out.write_str("}")
}

#[cfg(test)]
mod tests;
