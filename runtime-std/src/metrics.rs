//! `GET /metrics`: counters and a histogram in the Prometheus text exposition format (0.0.4),
//! every name prefixed `lockstep_`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use lockstep_core::deployer::{CommandKind, Outcome, Rollback};

use crate::http::Load;

/// The bounds of the step duration histogram, in seconds.
pub const STEP_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// What the service counts.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: BTreeMap<(&'static str, u16), u64>,
    signature_refusals: BTreeMap<&'static str, u64>,
    turned_away: BTreeMap<&'static str, u64>,
    deployments: BTreeMap<&'static str, u64>,
    retries: BTreeMap<&'static str, u64>,
    notifications: BTreeMap<&'static str, u64>,
    /// Outcome notifications not delivered yet; `None` without `--notify`.
    notifications_queued: Option<usize>,
    step_buckets: [u64; STEP_BUCKETS.len()],
    step_count: u64,
    step_sum: f64,
    journal: Option<JournalStats>,
}

/// The journal's figures, as last read ([`Metrics::journal`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Its size in bytes.
    pub bytes: u64,
    /// Commits written, each with one `fdatasync`.
    pub syncs: u64,
    /// Rewrites (compactions and repairs).
    pub rewrites: u64,
    /// Whether it can be written.
    pub writable: bool,
    /// Cluster mode: whether etcd answered the lease's last renewal (`None`: not a cluster).
    pub etcd_answers: Option<bool>,
}

/// How a deployment ended, as a label.
pub const fn outcome(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded { .. } => "succeeded",
        Outcome::Failed(f) => match f.rollback {
            Rollback::NotNeeded => "failed",
            Rollback::Completed { .. } => "rolled_back",
            Rollback::Off { .. } => "failed_not_rolled_back",
            Rollback::Failed { .. } => "rollback_failed",
        },
    }
}

/// A command of the agent, as a label.
pub const fn command(kind: &CommandKind) -> &'static str {
    match kind {
        CommandKind::Resolve { .. } => "resolve",
        CommandKind::Observe { .. } => "observe",
        CommandKind::Order { .. } => "order",
        CommandKind::Screen { .. } => "screen",
        CommandKind::FetchConfig { .. } => "fetch_config",
        CommandKind::Load { .. } => "load",
        CommandKind::Scale { .. } => "scale",
    }
}

impl Metrics {
    /// A request answered, by endpoint (`unknown` when it matched none).
    pub fn request(&mut self, endpoint: &'static str, status: u16) {
        *self.requests.entry((endpoint, status)).or_default() += 1;
    }

    /// A webhook refused for its signature, by reason.
    pub fn signature_refusal(&mut self, reason: &'static str) {
        *self.signature_refusals.entry(reason).or_default() += 1;
    }

    /// A connection turned away by the connection budget: `shed` or `refused`.
    pub fn turned_away(&mut self, how: &'static str) {
        *self.turned_away.entry(how).or_default() += 1;
    }

    /// A deployment ended.
    pub fn ended(&mut self, how: &Outcome) {
        *self.deployments.entry(outcome(how)).or_default() += 1;
    }

    /// A request of a `command` (a [`command`] label) is tried again.
    pub fn retry(&mut self, command: &'static str) {
        *self.retries.entry(command).or_default() += 1;
    }

    /// An outcome notification was `delivered`, given up (`failed`) or `dropped` from a full
    /// queue.
    pub fn notification(&mut self, outcome: &'static str) {
        *self.notifications.entry(outcome).or_default() += 1;
    }

    /// How many outcome notifications are not delivered yet (shown from the first call on).
    pub const fn notifications_queued(&mut self, pending: usize) {
        self.notifications_queued = Some(pending);
    }

    /// The journal's figures, shown from now on.
    pub const fn journal(&mut self, stats: JournalStats) {
        self.journal = Some(stats);
    }

    /// A step took this long.
    pub fn step(&mut self, took: Duration) {
        let secs = took.as_secs_f64();
        for (bucket, bound) in self.step_buckets.iter_mut().zip(STEP_BUCKETS) {
            if secs <= bound {
                *bucket += 1;
            }
        }
        self.step_count += 1;
        self.step_sum += secs;
    }

    /// The exposition, with the gauges read now.
    pub fn render(
        &self,
        in_flight: usize,
        replay_entries: usize,
        replay_capacity: usize,
        load: Load,
    ) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "lockstep_requests_total",
            "counter",
            "HTTP requests answered, by endpoint and status.",
        );
        for ((endpoint, status), n) in &self.requests {
            let _ = writeln!(
                out,
                "lockstep_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        header(
            &mut out,
            "lockstep_signature_refusals_total",
            "counter",
            "Webhooks refused for their signature, by reason.",
        );
        for (reason, n) in &self.signature_refusals {
            let _ = writeln!(
                out,
                "lockstep_signature_refusals_total{{reason=\"{reason}\"}} {n}"
            );
        }
        header(
            &mut out,
            "lockstep_deployments_total",
            "counter",
            "Deployments ended, by outcome.",
        );
        for (outcome, n) in &self.deployments {
            let _ = writeln!(
                out,
                "lockstep_deployments_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        header(
            &mut out,
            "lockstep_retries_total",
            "counter",
            "Requests of the deployments tried again, by command.",
        );
        for (command, n) in &self.retries {
            let _ = writeln!(out, "lockstep_retries_total{{command=\"{command}\"}} {n}");
        }
        if let Some(queued) = self.notifications_queued {
            header(
                &mut out,
                "lockstep_notifications_total",
                "counter",
                "Outcome notifications, by what became of each: delivered, failed (given up), \
                 dropped (from a full queue).",
            );
            for (outcome, n) in &self.notifications {
                let _ = writeln!(
                    out,
                    "lockstep_notifications_total{{outcome=\"{outcome}\"}} {n}"
                );
            }
            header(
                &mut out,
                "lockstep_notifications_queued",
                "gauge",
                "Outcome notifications not delivered yet: waiting, or being delivered.",
            );
            let _ = writeln!(out, "lockstep_notifications_queued {queued}");
        }
        header(
            &mut out,
            "lockstep_deployments_in_flight",
            "gauge",
            "Deployments that have not ended.",
        );
        let _ = writeln!(out, "lockstep_deployments_in_flight {in_flight}");
        header(
            &mut out,
            "lockstep_step_duration_seconds",
            "histogram",
            "Time from one event of a deployment to its next.",
        );
        for (bound, n) in STEP_BUCKETS.iter().zip(self.step_buckets) {
            let _ = writeln!(
                out,
                "lockstep_step_duration_seconds_bucket{{le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "lockstep_step_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            self.step_count
        );
        let _ = writeln!(out, "lockstep_step_duration_seconds_sum {}", self.step_sum);
        let _ = writeln!(
            out,
            "lockstep_step_duration_seconds_count {}",
            self.step_count
        );
        if let Some(journal) = self.journal {
            header(
                &mut out,
                "lockstep_journal_bytes",
                "gauge",
                "The size of the journal in the data directory.",
            );
            let _ = writeln!(out, "lockstep_journal_bytes {}", journal.bytes);
            header(
                &mut out,
                "lockstep_journal_syncs_total",
                "counter",
                "Commits of the journal, each written with one fdatasync (cluster mode: one etcd \
                 transaction).",
            );
            let _ = writeln!(out, "lockstep_journal_syncs_total {}", journal.syncs);
            header(
                &mut out,
                "lockstep_journal_rewrites_total",
                "counter",
                "Rewrites of the journal: compactions, and repairs after a failed write.",
            );
            let _ = writeln!(out, "lockstep_journal_rewrites_total {}", journal.rewrites);
            header(
                &mut out,
                "lockstep_journal_writable",
                "gauge",
                "1 while the journal can be written; 0 while webhooks are refused for it.",
            );
            let _ = writeln!(
                out,
                "lockstep_journal_writable {}",
                u8::from(journal.writable)
            );
            if let Some(answers) = journal.etcd_answers {
                header(
                    &mut out,
                    "lockstep_cluster_active",
                    "gauge",
                    "1: this instance holds /lockstep/leader and runs the deployments (a \
                     standby serves nothing).",
                );
                let _ = writeln!(out, "lockstep_cluster_active 1");
                header(
                    &mut out,
                    "lockstep_cluster_etcd_answers",
                    "gauge",
                    "1 while etcd answers the lease's renewals; 0 while it does not (the lease \
                     lapses after its TTL).",
                );
                let _ = writeln!(out, "lockstep_cluster_etcd_answers {}", u8::from(answers));
            }
        }
        header(
            &mut out,
            "lockstep_replay_cache_entries",
            "gauge",
            "Lockstep signatures remembered, still within their window.",
        );
        let _ = writeln!(out, "lockstep_replay_cache_entries {replay_entries}");
        header(
            &mut out,
            "lockstep_replay_cache_capacity",
            "gauge",
            "How many the replay cache can remember.",
        );
        let _ = writeln!(out, "lockstep_replay_cache_capacity {replay_capacity}");
        header(
            &mut out,
            "lockstep_connections_open",
            "gauge",
            "Connections held (at most --max-connections).",
        );
        let _ = writeln!(out, "lockstep_connections_open {}", load.connections);
        header(
            &mut out,
            "lockstep_event_streams_open",
            "gauge",
            "Event streams served (at most --max-event-streams).",
        );
        let _ = writeln!(out, "lockstep_event_streams_open {}", load.streams);
        header(
            &mut out,
            "lockstep_connections_turned_away_total",
            "counter",
            "Connections turned away at the connection limit: shed (waiting, closed for a new \
             one) or refused (every slot busy).",
        );
        for (how, n) in &self.turned_away {
            let _ = writeln!(
                out,
                "lockstep_connections_turned_away_total{{how=\"{how}\"}} {n}"
            );
        }
        out
    }
}

/// A family's `# HELP` and `# TYPE` lines.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_histogram_is_cumulative() {
        let mut m = Metrics::default();
        m.step(Duration::from_millis(40));
        m.step(Duration::from_millis(700));
        m.step(Duration::from_secs(1000));
        let load = Load {
            connections: 1,
            streams: 0,
        };
        let text = m.render(0, 0, 1, load);
        assert!(text.contains("lockstep_step_duration_seconds_bucket{le=\"0.05\"} 1"));
        assert!(text.contains("lockstep_step_duration_seconds_bucket{le=\"1\"} 2"));
        assert!(text.contains("lockstep_step_duration_seconds_bucket{le=\"300\"} 2"));
        assert!(text.contains("lockstep_step_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("lockstep_step_duration_seconds_count 3"));
    }

    #[test]
    fn test_notifications_show_once_configured() {
        let mut m = Metrics::default();
        assert!(!m.render(0, 0, 1, Load::default()).contains("notifications"));
        m.notifications_queued(2);
        m.notification("delivered");
        m.notification("dropped");
        m.notification("delivered");
        let text = m.render(0, 0, 1, Load::default());
        assert!(text.contains("# TYPE lockstep_notifications_total counter\n"));
        assert!(text.contains("lockstep_notifications_total{outcome=\"delivered\"} 2\n"));
        assert!(text.contains("lockstep_notifications_total{outcome=\"dropped\"} 1\n"));
        assert!(text.contains("# TYPE lockstep_notifications_queued gauge\n"));
        assert!(text.contains("lockstep_notifications_queued 2\n"));
    }

    #[test]
    fn test_retries_by_command() {
        let mut m = Metrics::default();
        m.retry("resolve");
        m.retry("scale");
        m.retry("resolve");
        let text = m.render(0, 0, 1, Load::default());
        assert!(text.contains("# TYPE lockstep_retries_total counter\n"));
        assert!(text.contains("lockstep_retries_total{command=\"resolve\"} 2\n"));
        assert!(text.contains("lockstep_retries_total{command=\"scale\"} 1\n"));
    }
}
