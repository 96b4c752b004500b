//! Progress events (docs/PROTOCOL.md §2), the bounded [`EventLog`] of a deployment, and the
//! encoders that write it as the JSON array of `GET /deployments/{id}` and as server-sent events.
//!
//! The official client follows a deployment by the event with the highest
//! `deploymentSequence`, and splits every line of the event stream on `:`: so no SSE line may
//! hold a second `:`, which the encoders guarantee (event types and UUIDs have none).

use core::fmt::{self, Write as _};

use super::record::{DeploymentId, Failure, Name};
use crate::bundle::{BundleId, Digest};
use crate::text::{JsonEscaped, JsonStr};

/// The event types of docs/PROTOCOL.md §2, the only ones lockstep emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EventType {
    /// `deploymentStarted`
    DeploymentStarted,
    /// `bundleDownload`
    BundleDownload,
    /// `configDownload`
    ConfigDownload,
    /// `load`
    Load,
    /// `deploy`
    Deploy,
    /// `deploymentSuccess`
    DeploymentSuccess,
    /// `deploymentFailure`
    DeploymentFailure,
}

impl EventType {
    /// The `eventType` spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::DeploymentStarted => "deploymentStarted",
            Self::BundleDownload => "bundleDownload",
            Self::ConfigDownload => "configDownload",
            Self::Load => "load",
            Self::Deploy => "deploy",
            Self::DeploymentSuccess => "deploymentSuccess",
            Self::DeploymentFailure => "deploymentFailure",
        }
    }
}

/// What happened, with what the event's JSON carries beyond its type and sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EventKind {
    /// The webhook was accepted.
    DeploymentStarted {
        /// `bundleName`: the package.
        bundle_name: Name,
        /// `compatibleVersion`: the notified version's tag.
        compatible_version: Name,
    },
    /// The bundle is being downloaded.
    BundleDownload,
    /// The old bundle's configuration is being fetched.
    ConfigDownload {
        /// `compatibleBundleId`: the bundle it comes from.
        from: BundleId,
    },
    /// The new bundle is being loaded.
    Load {
        /// The configuration it is loaded with (`configFileName` `config-<digest>.zip`).
        config: Option<Digest>,
    },
    /// Instances observed after a step: `bundleOld: {"scale": old}`, `bundleNew: {"scale": new}`.
    Deploy {
        /// Started instances of the old bundle.
        old: u32,
        /// Started instances of the new bundle.
        new: u32,
    },
    /// Done: the new bundle runs at the old scale.
    DeploymentSuccess,
    /// Failed, with the one-line `failure`.
    DeploymentFailure(Failure),
}

impl EventKind {
    /// Its type.
    pub const fn event_type(&self) -> EventType {
        match self {
            Self::DeploymentStarted { .. } => EventType::DeploymentStarted,
            Self::BundleDownload => EventType::BundleDownload,
            Self::ConfigDownload { .. } => EventType::ConfigDownload,
            Self::Load { .. } => EventType::Load,
            Self::Deploy { .. } => EventType::Deploy,
            Self::DeploymentSuccess => EventType::DeploymentSuccess,
            Self::DeploymentFailure(_) => EventType::DeploymentFailure,
        }
    }
}

/// An event of one deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Event {
    /// The deployment.
    pub deployment: DeploymentId,
    /// `deploymentSequence`: 1, 2, 3 ... per deployment.
    pub seq: u32,
    /// What happened.
    pub kind: EventKind,
}

impl Event {
    /// Writes the event as a JSON object (docs/PROTOCOL.md §2).
    pub fn write_json(&self, out: &mut impl fmt::Write) -> fmt::Result {
        let ty = self.kind.event_type().as_str();
        write!(
            out,
            r#"{{"eventType":"{ty}","deploymentSequence":{}"#,
            self.seq
        )?;
        match &self.kind {
            EventKind::DeploymentStarted {
                bundle_name,
                compatible_version,
            } => write!(
                out,
                r#","deploymentId":"{}","bundleName":{},"compatibleVersion":{}"#,
                self.deployment,
                JsonStr(bundle_name.as_str()),
                JsonStr(compatible_version.as_str())
            )?,
            EventKind::ConfigDownload { from } => {
                write!(out, r#","compatibleBundleId":"{from}""#)?;
            }
            EventKind::Load {
                config: Some(digest),
            } => write!(out, r#","configFileName":"config-{digest}.zip""#)?,
            EventKind::Deploy { old, new } => write!(
                out,
                r#","bundleOld":{{"scale":{old}}},"bundleNew":{{"scale":{new}}}"#
            )?,
            EventKind::DeploymentFailure(failure) => {
                out.write_str(r#","failure":""#)?;
                write!(JsonEscaped(out), "{failure}")?;
                out.write_str("\"")?;
            }
            EventKind::BundleDownload
            | EventKind::Load { config: None }
            | EventKind::DeploymentSuccess => {}
        }
        out.write_str("}")
    }

    /// Writes the event as server-sent event lines, `event:<type>\ndata:<id>\n\n`.
    pub fn write_sse(&self, out: &mut impl fmt::Write) -> fmt::Result {
        write_sse(self.kind.event_type(), self.deployment, out)
    }
}

/// Writes `event:<type>\ndata:<deployment id>\n\n` (docs/PROTOCOL.md §2): each line has one `:`.
pub fn write_sse(
    ty: EventType,
    deployment: DeploymentId,
    out: &mut impl fmt::Write,
) -> fmt::Result {
    write!(out, "event:{}\ndata:{deployment}\n\n", ty.as_str())
}

/// The heartbeat of the event stream: a comment line, sent every few seconds.
pub const SSE_HEARTBEAT: &str = ":\n\n";

// ---------------------------------------------------------------------------------------------
// The log
// ---------------------------------------------------------------------------------------------

/// How many events an [`EventLog`] holds. A deployment has at most five events of other types
/// (started, download, config, load, the end), and `deploy` events for the rest: a lock-step of
/// scale N logs 2N + 1 of them, its rollback up to 2N more. Past the capacity, intermediate
/// `deploy` events are compacted (see [`EventLog::push`]).
pub const LOG_CAPACITY: usize = 32;

/// The most bytes [`EventLog::write_json`] writes: every event at its longest. A runtime
/// that must size a buffer up front sizes it so; one that can grow one need not.
pub const LOG_JSON_MAX: usize = 2 + LOG_CAPACITY * (EVENT_JSON_MAX + 1);

/// The most bytes one event's JSON takes: a failure naming three bundles and two
/// compatibilityVersions of 64 characters, every one escaped, is the longest.
pub const EVENT_JSON_MAX: usize = 2048;

/// The events of one deployment, bounded: [`LOG_CAPACITY`] events, compacting intermediate
/// `deploy` events of a long lock-step. Kept by the runtime for as long as it retains the
/// deployment.
///
/// The first and the last event are kept apart from the rest, with their payloads
/// (`deploymentStarted` names the bundle, `deploymentFailure` says why), so that every other
/// entry stays small.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EventLog {
    deployment: DeploymentId,
    /// `deploymentStarted`: its sequence number, bundle name and tag.
    started: Option<(u32, Name, Name)>,
    /// The events between the first and the last.
    steps: heapless::Vec<Step, { LOG_CAPACITY - 1 }>,
    /// `deploymentSuccess` or `deploymentFailure`.
    end: Option<(u32, Ending)>,
}

/// An event between the first and the last, without its deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Step {
    seq: u32,
    kind: Middle,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum Middle {
    BundleDownload,
    ConfigDownload(BundleId),
    Load(Option<Digest>),
    Deploy { old: u32, new: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum Ending {
    Success,
    Failure(Failure),
}

impl EventLog {
    /// An empty log of `deployment`.
    pub const fn new(deployment: DeploymentId) -> Self {
        Self {
            deployment,
            started: None,
            steps: heapless::Vec::new(),
            end: None,
        }
    }

    /// The deployment.
    pub const fn deployment(&self) -> DeploymentId {
        self.deployment
    }

    /// How many events it holds.
    pub fn len(&self) -> usize {
        self.steps
            .len()
            .saturating_add(usize::from(self.started.is_some()))
            .saturating_add(usize::from(self.end.is_some()))
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends an event of this deployment (others are ignored).
    ///
    /// When the log is full, the oldest intermediate `deploy` event goes: the first `deploy`
    /// (where the lock-step started), the latest one and every event of another type are
    /// kept, and sequence numbers are never reused (the client shows the highest). The
    /// deployer emits at most five events of other types, so there is always one to drop.
    pub fn push(&mut self, event: &Event) {
        if event.deployment != self.deployment {
            return;
        }
        let seq = event.seq;
        let middle = match event.kind {
            EventKind::DeploymentStarted {
                bundle_name,
                compatible_version,
            } => {
                self.started = Some((seq, bundle_name, compatible_version));
                return;
            }
            EventKind::DeploymentSuccess => {
                return self.end_with(seq, Ending::Success);
            }
            EventKind::DeploymentFailure(failure) => {
                return self.end_with(seq, Ending::Failure(failure));
            }
            EventKind::BundleDownload => Middle::BundleDownload,
            EventKind::ConfigDownload { from } => Middle::ConfigDownload(from),
            EventKind::Load { config } => Middle::Load(config),
            EventKind::Deploy { old, new } => Middle::Deploy { old, new },
        };
        if self.steps.is_full() {
            self.compact();
        }
        // After compaction there is room unless no `deploy` could go, which needs more events
        // of other types than the deployer ever emits; the event is then dropped, not a panic.
        let _ = self.steps.push(Step { seq, kind: middle });
    }

    fn end_with(&mut self, seq: u32, ending: Ending) {
        if self.end.is_none() && self.len() >= LOG_CAPACITY {
            self.compact();
        }
        self.end = Some((seq, ending));
    }

    /// Drops the oldest `deploy` event that is neither the first nor the last one.
    fn compact(&mut self) {
        let deploys = || {
            self.steps
                .iter()
                .enumerate()
                .filter(|(_, e)| matches!(e.kind, Middle::Deploy { .. }))
                .map(|(i, _)| i)
        };
        let last = deploys().next_back();
        if let Some(victim) = deploys().skip(1).find(|&i| Some(i) != last) {
            self.steps.remove(victim);
        }
    }

    /// The events, oldest first.
    pub fn events(&self) -> impl Iterator<Item = Event> + '_ {
        let event = |seq, kind| Event {
            deployment: self.deployment,
            seq,
            kind,
        };
        let started = self.started.map(|(seq, bundle_name, compatible_version)| {
            event(
                seq,
                EventKind::DeploymentStarted {
                    bundle_name,
                    compatible_version,
                },
            )
        });
        let steps = self.steps.iter().map(move |step| {
            let kind = match step.kind {
                Middle::BundleDownload => EventKind::BundleDownload,
                Middle::ConfigDownload(from) => EventKind::ConfigDownload { from },
                Middle::Load(config) => EventKind::Load { config },
                Middle::Deploy { old, new } => EventKind::Deploy { old, new },
            };
            event(step.seq, kind)
        });
        let end = self.end.map(|(seq, ending)| {
            let kind = match ending {
                Ending::Success => EventKind::DeploymentSuccess,
                Ending::Failure(failure) => EventKind::DeploymentFailure(failure),
            };
            event(seq, kind)
        });
        started.into_iter().chain(steps).chain(end)
    }

    /// The event with the highest sequence number.
    pub fn latest(&self) -> Option<Event> {
        self.events().last()
    }

    /// Writes the JSON array of `GET /deployments/{id}` ([`LOG_JSON_MAX`] bytes at most).
    pub fn write_json(&self, out: &mut impl fmt::Write) -> fmt::Result {
        out.write_str("[")?;
        for (i, event) in self.events().enumerate() {
            if i > 0 {
                out.write_str(",")?;
            }
            event.write_json(out)?;
        }
        out.write_str("]")
    }
}
