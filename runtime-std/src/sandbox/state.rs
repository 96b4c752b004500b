//! The sandbox's cluster: loaded bundles, their simulated executions, the event subscribers and
//! the history of started instances.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lockstep_core::bundle::{BundleId, Digest, IdPrefix};
use lockstep_core::hocon::Document;
use serde_json::{Value, json};

use super::faults::{BundleFault, Faults};

/// The attributes ConductR keeps of a bundle (from its bundle.conf).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Attributes {
    pub(super) name: String,
    pub(super) compatibility_version: String,
    pub(super) system: String,
    pub(super) system_version: String,
    pub(super) nr_of_cpus: f64,
    pub(super) memory: u64,
    pub(super) disk_space: u64,
    pub(super) roles: Vec<String>,
    pub(super) tags: Vec<String>,
}

impl Attributes {
    /// The attributes ConductR keeps, from a bundle.conf.
    pub(super) fn from_bundle_conf(bundle_conf: &str) -> Result<Self, String> {
        let doc = Document::parse(bundle_conf).map_err(|e| format!("bundle.conf: {e}"))?;
        let text = |key: &str| -> Result<String, String> {
            match doc.get_str::<256>(key) {
                Some(Ok(value)) => Ok(value.to_string()),
                Some(Err(_)) => Err(format!("bundle.conf: {key} is too long")),
                None => Err(format!("bundle.conf: {key} is missing")),
            }
        };
        let list = |key: &str| -> Vec<String> {
            match doc.get(key) {
                Some(lockstep_core::hocon::Value::Array(array)) => array
                    .iter()
                    .filter_map(|v| v.as_text().and_then(|t| t.to_heapless::<256>().ok()))
                    .map(|s| s.to_string())
                    .collect(),
                _ => Vec::new(),
            }
        };
        Ok(Self {
            name: text("name")?,
            compatibility_version: text("compatibilityVersion")?,
            system: text("system")?,
            system_version: text("systemVersion")?,
            nr_of_cpus: text("nrOfCpus")?
                .parse()
                .map_err(|_| "bundle.conf: nrOfCpus is not a number".to_owned())?,
            memory: doc
                .get_u64("memory")
                .ok_or("bundle.conf: memory is missing or not a whole number")?,
            disk_space: doc
                .get_u64("diskSpace")
                .ok_or("bundle.conf: diskSpace is missing or not a whole number")?,
            roles: list("roles"),
            tags: list("tags"),
        })
    }
}

/// One simulated instance.
#[derive(Clone, Debug)]
pub(super) struct Execution {
    pub(super) pid: u32,
    /// When it was asked to start (Unix milliseconds, as ConductR's `startTime`).
    pub(super) start_time: u64,
    /// When it will be started; `None` once started (or never, if it never starts).
    pub(super) ready_at: Option<Instant>,
    /// Started.
    pub(super) started: bool,
    /// When it will crash, if a fault says so.
    pub(super) crash_at: Option<Instant>,
    /// When it will be gone, once asked to stop.
    pub(super) stop_at: Option<Instant>,
}

/// A loaded bundle.
#[derive(Clone, Debug)]
pub(super) struct Bundle {
    pub(super) id: BundleId,
    pub(super) digest: Digest,
    pub(super) config: Option<Digest>,
    pub(super) bundle_conf: String,
    pub(super) overlay: Option<String>,
    pub(super) attributes: Attributes,
    pub(super) bundle_file: PathBuf,
    pub(super) bundle_file_name: String,
    pub(super) config_file: Option<PathBuf>,
    pub(super) config_file_name: Option<String>,
    pub(super) scale: Option<u32>,
    pub(super) executions: Vec<Execution>,
    pub(super) reschedules: u32,
}

impl Bundle {
    pub(super) fn started(&self) -> u32 {
        count(self.executions.iter().filter(|e| e.started))
    }

    pub(super) fn starting(&self) -> u32 {
        count(self.executions.iter().filter(|e| !e.started))
    }
}

fn count<T>(items: impl Iterator<Item = T>) -> u32 {
    u32::try_from(items.count()).unwrap_or(u32::MAX)
}

/// A change of a bundle's instances, for `GET /sandbox/history`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct HistoryEntry {
    /// Milliseconds since the sandbox started.
    pub(super) time: u64,
    pub(super) bundle_id: BundleId,
    pub(super) bundle_name: String,
    pub(super) scale: u32,
    pub(super) started: u32,
    pub(super) starting: u32,
}

/// How a `idOrName` resolved.
#[derive(Debug)]
pub(super) enum Lookup {
    One(usize),
    None,
    Ambiguous(Vec<BundleId>),
}

/// The cluster.
#[derive(Debug)]
pub(super) struct Cluster {
    pub(super) origin: Instant,
    pub(super) bundles: Vec<Bundle>,
    pub(super) faults: Faults,
    pub(super) history: Vec<HistoryEntry>,
    pub(super) subscribers: Vec<async_channel::Sender<Vec<u8>>>,
    pub(super) start_delay: Duration,
    pub(super) stop_delay: Duration,
    pub(super) requests: u64,
    next_pid: u32,
}

impl Cluster {
    pub(super) fn new(start_delay: Duration, stop_delay: Duration, faults: Faults) -> Self {
        Self {
            origin: Instant::now(),
            bundles: Vec::new(),
            faults,
            history: Vec::new(),
            subscribers: Vec::new(),
            start_delay,
            stop_delay,
            requests: 0,
            next_pid: 4711,
        }
    }

    /// Milliseconds since the sandbox started.
    pub(super) fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    /// Resolves an `idOrName` (docs/PROTOCOL.md §5): a full or short id, or a name.
    pub(super) fn lookup(&self, id_or_name: &str) -> Lookup {
        let pick = |found: Vec<usize>| match found.as_slice() {
            [] => Lookup::None,
            [one] => Lookup::One(*one),
            many => Lookup::Ambiguous(
                many.iter()
                    .filter_map(|i| self.bundles.get(*i).map(|b| b.id))
                    .collect(),
            ),
        };
        if let Ok(prefix) = IdPrefix::parse(id_or_name) {
            let by_id: Vec<usize> = (0..self.bundles.len())
                .filter(|i| self.bundles.get(*i).is_some_and(|b| b.id.matches(&prefix)))
                .collect();
            if !by_id.is_empty() {
                return pick(by_id);
            }
        }
        pick(
            (0..self.bundles.len())
                .filter(|i| {
                    self.bundles
                        .get(*i)
                        .is_some_and(|b| b.attributes.name == id_or_name)
                })
                .collect(),
        )
    }

    fn faults_for<'f>(&'f self, bundle: &'f Bundle) -> impl Iterator<Item = &'f BundleFault> {
        self.faults
            .bundles
            .iter()
            .filter(|f| matches_bundle(&f.matcher, bundle))
    }

    pub(super) fn has_error(&self, bundle: &Bundle) -> bool {
        self.faults_for(bundle).any(|f| f.has_error)
    }

    /// Sets a bundle's scale: instances are added (starting) or asked to stop.
    pub(super) fn set_scale(&mut self, index: usize, scale: u32, now: Instant) {
        self.rescale(index, scale, now);
        self.advance(now);
    }

    fn rescale(&mut self, index: usize, scale: u32, now: Instant) {
        let Some(bundle) = self.bundles.get(index) else {
            return;
        };
        let never = self.faults_for(bundle).any(|f| f.never_start);
        let start_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let (start_delay, stop_delay) = (self.start_delay, self.stop_delay);
        let Some(bundle) = self.bundles.get_mut(index) else {
            return;
        };
        bundle.scale = Some(scale);
        let running = bundle
            .executions
            .iter()
            .filter(|e| e.stop_at.is_none())
            .count();
        let wanted = usize::try_from(scale).unwrap_or(usize::MAX);
        let added = wanted.saturating_sub(running);
        for _ in 0..added {
            self.next_pid = self.next_pid.wrapping_add(1);
            bundle.executions.push(Execution {
                pid: self.next_pid,
                start_time,
                ready_at: (!never).then(|| now + start_delay),
                started: false,
                crash_at: None,
                stop_at: None,
            });
        }
        // Stop the starting ones first, then the newest started.
        let mut excess = running.saturating_sub(wanted);
        for started in [false, true] {
            for e in bundle.executions.iter_mut().rev() {
                if excess == 0 {
                    break;
                }
                if e.started == started && e.stop_at.is_none() {
                    e.stop_at = Some(if started { now + stop_delay } else { now });
                    excess -= 1;
                }
            }
        }
        let id = bundle.id;
        if added > 0 {
            self.publish("bundleExecutionAdded", id);
        }
    }

    /// Moves the executions to `now`: starts, crashes and stops what is due; records history
    /// and publishes events for every change.
    pub(super) fn advance(&mut self, now: Instant) {
        for index in 0..self.bundles.len() {
            let Some(bundle) = self.bundles.get(index) else {
                continue;
            };
            let before = (bundle.started(), bundle.starting());
            let crash_rule = self
                .faults
                .bundles
                .iter()
                .position(|f| f.crash_after.is_some() && matches_bundle(&f.matcher, bundle));
            let mut events = Vec::new();
            let mut crashed = 0u32;
            let Some(bundle) = self.bundles.get_mut(index) else {
                continue;
            };
            let mut kept = Vec::with_capacity(bundle.executions.len());
            for mut e in bundle.executions.drain(..) {
                if e.stop_at.is_some_and(|at| at <= now) {
                    events.push("bundleExecutionRemoved");
                    continue;
                }
                if e.crash_at.is_some_and(|at| at <= now) {
                    events.push("bundleExecutionRemoved");
                    crashed += 1;
                    continue;
                }
                if !e.started && e.stop_at.is_none() && e.ready_at.is_some_and(|at| at <= now) {
                    e.started = true;
                    e.ready_at = None;
                    // A crash rule with crashes left reserves one for this instance.
                    if let Some(rule) = crash_rule.and_then(|r| self.faults.bundles.get_mut(r))
                        && rule.crashes > 0
                    {
                        rule.crashes -= 1;
                        e.crash_at = rule.crash_after.map(|d| now + d);
                    }
                    events.push("bundleExecutionAdded");
                }
                kept.push(e);
            }
            bundle.executions = kept;
            bundle.reschedules = bundle.reschedules.saturating_add(crashed);
            let (id, name, scale) = (bundle.id, bundle.attributes.name.clone(), bundle.scale);
            for event in events {
                self.publish(event, id);
            }
            if crashed > 0 {
                // ConductR replaces lost instances.
                self.rescale(index, scale.unwrap_or(0), now);
            }
            let Some(bundle) = self.bundles.get(index) else {
                continue;
            };
            let after = (bundle.started(), bundle.starting());
            if before != after {
                let time = self.millis(now);
                self.history.push(HistoryEntry {
                    time,
                    bundle_id: id,
                    bundle_name: name,
                    scale: scale.unwrap_or(0),
                    started: after.0,
                    starting: after.1,
                });
            }
        }
    }

    /// When the next execution is due to change, if any.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.bundles
            .iter()
            .flat_map(|b| b.executions.iter())
            .flat_map(|e| [e.ready_at.filter(|_| !e.started), e.crash_at, e.stop_at])
            .flatten()
            .min()
    }

    /// Sends a bundle event to every subscriber of `/v2/bundles/events`.
    pub(super) fn publish(&mut self, event: &str, id: BundleId) {
        let frame = format!("event:{event}\ndata:{id}\n\n").into_bytes();
        // A subscriber that is gone is dropped; one that is only slow misses the event.
        self.subscribers.retain(|s| !s.is_closed());
        for s in &self.subscribers {
            let _ = s.try_send(frame.clone());
        }
    }

    /// The JSON of `GET /v2/bundles` for one bundle, in ConductR's shape.
    pub(super) fn bundle_json(&self, bundle: &Bundle) -> Value {
        let a = &bundle.attributes;
        let mut value = json!({
            "bundleId": bundle.id.to_string(),
            "bundleDigest": bundle.digest.to_string(),
            "attributes": {
                "system": a.system,
                "nrOfCpus": a.nr_of_cpus,
                "memory": a.memory,
                "diskSpace": a.disk_space,
                "roles": a.roles,
                "bundleName": a.name,
                "systemVersion": a.system_version,
                "compatibilityVersion": a.compatibility_version,
                "tags": a.tags,
                "annotations": {},
            },
            "bundleConfig": {"endpoints": {
                a.name.clone(): {"bindProtocol": "http", "serviceName": a.name},
            }},
            "bundleExecutions": bundle.executions.iter().map(|e| json!({
                "host": "127.0.0.1",
                "pid": e.pid,
                "startTime": e.start_time,
                "endpoints": {},
                "isStarted": e.started,
                "isActive": e.started,
            })).collect::<Vec<_>>(),
            "bundleInstallations": [{
                "uniqueAddress": {"address": "akka.tcp://conductr@127.0.0.1:9004", "uid": 1},
                "bundleFile": format!("file://{}", bundle.bundle_file.display()),
                "configurationFile": bundle.config_file.as_ref()
                    .map(|f| format!("file://{}", f.display())),
            }],
            "hasError": self.has_error(bundle),
        });
        if let (Some(config), Some(map)) = (bundle.config, value.as_object_mut()) {
            map.insert("configurationDigest".into(), json!(config.to_string()));
        }
        if let (Some(scale), Some(map)) = (bundle.scale, value.as_object_mut()) {
            map.insert(
                "bundleScale".into(),
                json!({"scale": scale, "nrOfReschedules": bundle.reschedules}),
            );
        }
        value
    }
}

/// Whether a fault's `match` names this bundle: its name, an id prefix, or a digest prefix.
fn matches_bundle(matcher: &str, bundle: &Bundle) -> bool {
    matcher == bundle.attributes.name
        || IdPrefix::parse(matcher).is_ok_and(|p| bundle.id.matches(&p))
        || (matcher.len() >= 7
            && bundle
                .digest
                .to_hex()
                .as_str()
                .starts_with(&matcher.to_ascii_lowercase()))
}
