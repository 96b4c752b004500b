//! What an outcome notification says (docs/PROTOCOL.md §11): a deployment that ended, as
//! JSON (the deployment as `GET /deployments` lists it, and what only an end knows) or as
//! one line of text in Slack's `{"text": ...}`.
//!
//! Everything is read from the deployment's [`Record`]: nothing here is remembered elsewhere,
//! so a deployment resumed after a restart is summed up as well as one that never stopped.

use std::fmt;

use lockstep_core::bundle::BundleId;
use lockstep_core::deployer::{End, Outcome, Record, Rollback};
use lockstep_core::ledger::write_listed;
use lockstep_core::text::{JsonEscaped, JsonStr};

/// A deployment that ended: its record and its end, so that nothing written from it can find
/// it still in flight.
#[derive(Clone, Copy, Debug)]
pub struct Ended<'a> {
    record: &'a Record,
    end: &'a End,
}

impl<'a> Ended<'a> {
    /// `record`, when it has ended.
    pub const fn of(record: &'a Record) -> Option<Self> {
        match record.end() {
            Some(end) => Some(Self { record, end }),
            None => None,
        }
    }

    /// The record.
    pub const fn record(&self) -> &'a Record {
        self.record
    }

    /// From its acceptance to its end, both on the wall clock (`startedAt` to `endedAt`),
    /// in milliseconds; 0 when the clock went back meanwhile.
    pub const fn duration_ms(&self) -> u64 {
        self.end
            .at
            .as_millis()
            .saturating_sub(self.record.request.at.as_millis())
    }

    /// How it ended.
    pub const fn how(&self) -> How {
        match &self.end.outcome {
            Outcome::Succeeded { .. } => How::Succeeded,
            Outcome::Failed(failure) => match failure.rollback {
                Rollback::NotNeeded => How::Failed,
                Rollback::Completed { .. } => How::RolledBack,
                Rollback::Off { .. } => How::FailedNotRolledBack,
                Rollback::Failed { .. } => How::RollbackFailed,
            },
        }
    }

    /// Where it left each bundle: the one it replaced (once chosen) and the new one (once
    /// loaded), each with its started instances.
    pub fn left(&self) -> Left {
        let plan = self.end.plan;
        let old = plan.and_then(|p| p.old);
        let n = plan.map_or(0, |p| p.scale);
        // The scales of the old bundle and of the new one.
        let (at_old, at_new) = match &self.end.outcome {
            // The lock-step saw the new bundle reach N and the old one 0.
            Outcome::Succeeded { .. } => (0, n),
            Outcome::Failed(failure) => match failure.rollback {
                // Nothing was scaled: the old bundle runs as it did, the new one (if loaded)
                // was never started.
                Rollback::NotNeeded => (n, 0),
                Rollback::Completed { old } => (old, 0),
                // As the deployment's latest observation showed them (the failure says so).
                Rollback::Off { old, new } | Rollback::Failed { old, new, .. } => (old, new),
            },
        };
        Left {
            old: old.map(|id| (id, at_old)),
            new: self.end.new.map(|id| (id, at_new)),
        }
    }
}

/// How a deployment ended: the cases of `lockstep_deployments_total`'s `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// The new bundle runs at the old scale; the old one is stopped and still loaded.
    Succeeded,
    /// It failed before anything was scaled: nothing to undo.
    Failed,
    /// It failed in its lock-step, which was run backwards to the end.
    RolledBack,
    /// It failed in its lock-step and rollback is off: the bundles were left where they stood.
    FailedNotRolledBack,
    /// It failed in its lock-step and the rollback failed too.
    RollbackFailed,
}

impl How {
    /// The notification's `outcome`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::RolledBack => "rolledBack",
            Self::FailedNotRolledBack => "failedNotRolledBack",
            Self::RollbackFailed => "rollbackFailed",
        }
    }

    /// What the Slack line says it did, before its duration.
    const fn verb(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded in",
            Self::Failed => "failed after",
            Self::RolledBack => "was rolled back after",
            Self::FailedNotRolledBack => "failed, not rolled back (rollback is off), after",
            Self::RollbackFailed => "failed, and so did its rollback, after",
        }
    }
}

/// Where a deployment left its bundles ([`Ended::left`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Left {
    /// The bundle it replaced and its started instances; `None` when it chose none (it failed
    /// before, or started from nothing).
    pub old: Option<(BundleId, u32)>,
    /// The new bundle and its started instances; `None` when it was not loaded.
    pub new: Option<(BundleId, u32)>,
}

/// Writes the JSON notification: the object of `GET /deployments` (`deploymentId`,
/// `bundleName`, `version`, `compatibilityVersion`, `state`, `startedAt`, `endedAt`,
/// `failure`), then `outcome`, `durationMs`, `org`, `repo`, and `bundleOld` and `bundleNew`
/// (`{"bundleId": <full id>, "scale": <started instances>}`), each of these two absent when
/// there is no such bundle.
pub fn write_json(ended: Ended<'_>, out: &mut impl fmt::Write) -> fmt::Result {
    let mut listed = String::new();
    write_listed(ended.record, &mut listed)?;
    // The listing's object, reopened to add what an end knows.
    let open = listed.strip_suffix('}').ok_or(fmt::Error)?;
    let request = &ended.record.request;
    write!(
        out,
        r#"{open},"outcome":"{}","durationMs":{},"org":{},"repo":{}"#,
        ended.how().as_str(),
        ended.duration_ms(),
        JsonStr(request.org.as_str()),
        JsonStr(request.repo.as_str()),
    )?;
    let left = ended.left();
    for (name, bundle) in [("bundleOld", left.old), ("bundleNew", left.new)] {
        if let Some((id, scale)) = bundle {
            write!(out, r#","{name}":{{"bundleId":"{id}","scale":{scale}}}"#)?;
        }
    }
    out.write_str("}")
}

/// Writes the Slack-compatible notification, `{"text":"<one line>"}`:
///
/// `lockstep: visualizer 1.1.0-31a429b was rolled back after 12.3 s (compatibilityVersion 1):
/// <the failure line>. Old bundle 9f8928a-65df1f2 at 3, new bundle 31a429b-65df1f2 at 0.
/// Deployment <id>.`
///
/// The line is escaped for Slack (`&`, `<`, `>`) and then for JSON.
pub fn write_slack(ended: Ended<'_>, out: &mut impl fmt::Write) -> fmt::Result {
    out.write_str(r#"{"text":""#)?;
    write_line(ended, &mut SlackEscaped(&mut JsonEscaped(out)))?;
    out.write_str(r#""}"#)
}

/// The Slack notification's line, unescaped.
fn write_line(ended: Ended<'_>, out: &mut impl fmt::Write) -> fmt::Result {
    let record = ended.record;
    let request = &record.request;
    let how = ended.how();
    let ms = ended.duration_ms();
    write!(
        out,
        "lockstep: {} {}-{} {} {}.{} s",
        request.package,
        request.tag,
        request.digest.short(),
        how.verb(),
        ms / 1000,
        ms % 1000 / 100
    )?;
    if let Some(compat) = &record.compatibility_version {
        write!(out, " (compatibilityVersion {compat})")?;
    }
    if let Some(failure) = record.failure() {
        write!(out, ": {failure}")?;
    }
    out.write_str(".")?;
    // The bundle that runs now first.
    let left = ended.left();
    let bundles = match how {
        How::Succeeded => [("new", left.new), ("old", left.old)],
        _ => [("old", left.old), ("new", left.new)],
    };
    let parts: Vec<String> = bundles
        .iter()
        .filter_map(|(which, bundle)| {
            bundle.map(|(id, scale)| format!("{which} bundle {} at {scale}", id.short()))
        })
        .collect();
    if !parts.is_empty() {
        write!(out, " {}.", capitalized(&parts.join(", ")))?;
    }
    write!(out, " Deployment {}.", request.id)
}

/// `old bundle` → `Old bundle`.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// A [`fmt::Write`] adapter that escapes what Slack reads as markup in a message's text:
/// `&`, `<` and `>` (Slack's "Formatting text for app surfaces").
struct SlackEscaped<'w, W: fmt::Write>(&'w mut W);

impl<W: fmt::Write> fmt::Write for SlackEscaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(['&', '<', '>']) {
            let (plain, tail) = rest.split_at(at);
            self.0.write_str(plain)?;
            let mut chars = tail.chars();
            self.0.write_str(match chars.next() {
                Some('&') => "&amp;",
                Some('<') => "&lt;",
                _ => "&gt;",
            })?;
            rest = chars.as_str();
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use lockstep_core::bundle::Digest;
    use lockstep_core::deployer::{
        Cause, DeploymentId, Doing, Failure, Fault, Name, Phase, Plan, Request, Side, Tags,
    };
    use lockstep_core::time::UnixTime;

    use super::*;

    // The deployment of docs/PROTOCOL.md §2's example: visualizer 1.1.0 replacing the demo's
    // 1.0.0 (with its configuration) at scale 3.
    const ID: &str = "6bce8947-c7f6-4159-870f-f5be93001013";
    const DIGEST: &str = "31a429beecdb00b6d192a96bf9cf6b129abc96c1f0c763db8c36494d8e878d47";
    const OLD: &str = "9f8928a01e3c4fe0bd04e70cca3b1604-65df1f2c13f738814ec84d209a54873e";
    const NEW: &str = "31a429beecdb00b6d192a96bf9cf6b12-65df1f2c13f738814ec84d209a54873e";

    fn name(text: &str) -> Name {
        Name::new(text).unwrap()
    }

    /// The deployment, ended with `outcome` after 2,345 ms, having got as far as `plan` and
    /// `new`.
    fn ended(outcome: Outcome, plan: Option<Plan>, new: Option<&str>) -> Record {
        let request = Request {
            id: DeploymentId::parse(ID).unwrap(),
            org: name("typesafe"),
            repo: name("bundle"),
            package: name("visualizer"),
            tag: name("1.1.0"),
            digest: Digest::parse(DIGEST).unwrap(),
            tags: Tags::NONE,
            at: UnixTime::from_millis(1_796_137_176_920),
            allow_downgrade: false,
        };
        let mut record = Record::new(request, 1);
        record.compatibility_version = Some(name("1"));
        record.phase = Phase::Ended(End {
            outcome,
            at: UnixTime::from_millis(1_796_137_179_265),
            plan,
            new: new.map(|id| BundleId::parse(id).unwrap()),
        });
        record
    }

    fn plan() -> Option<Plan> {
        Some(Plan {
            old: Some(BundleId::parse(OLD).unwrap()),
            scale: 3,
            config: None,
        })
    }

    fn rolled_back() -> Record {
        let failure = Failure {
            cause: Cause::Step {
                doing: Doing::Scaling {
                    side: Side::New,
                    to: 2,
                },
                fault: Fault::Deadline,
            },
            rollback: Rollback::Completed { old: 3 },
        };
        ended(Outcome::Failed(failure), plan(), Some(NEW))
    }

    fn json(record: &Record) -> String {
        let mut out = String::new();
        write_json(Ended::of(record).unwrap(), &mut out).unwrap();
        // Valid JSON, whatever else is checked.
        serde_json::from_str::<serde_json::Value>(&out).unwrap();
        out
    }

    fn slack(record: &Record) -> String {
        let mut out = String::new();
        write_slack(Ended::of(record).unwrap(), &mut out).unwrap();
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value.as_object().unwrap().len(), 1, "{out}");
        value["text"].as_str().unwrap().to_owned()
    }

    // docs/PROTOCOL.md §11's first example, byte for byte.
    #[test]
    fn test_json_of_a_success() {
        let record = ended(
            Outcome::Succeeded {
                nothing_to_do: false,
            },
            plan(),
            Some(NEW),
        );
        assert_eq!(
            json(&record),
            format!(
                r#"{{"deploymentId":"{ID}","bundleName":"visualizer","version":"1.1.0-{DIGEST}","compatibilityVersion":"1","state":"succeeded","startedAt":1796137176920,"endedAt":1796137179265,"outcome":"succeeded","durationMs":2345,"org":"typesafe","repo":"bundle","bundleOld":{{"bundleId":"{OLD}","scale":0}},"bundleNew":{{"bundleId":"{NEW}","scale":3}}}}"#
            )
        );
    }

    // docs/PROTOCOL.md §11's second example.
    #[test]
    fn test_json_of_a_rollback() {
        assert_eq!(
            json(&rolled_back()),
            format!(
                r#"{{"deploymentId":"{ID}","bundleName":"visualizer","version":"1.1.0-{DIGEST}","compatibilityVersion":"1","state":"failed","startedAt":1796137176920,"endedAt":1796137179265,"failure":"scaling the new bundle to 2: the deadline passed; rolled back: the old bundle runs at 3 again","outcome":"rolledBack","durationMs":2345,"org":"typesafe","repo":"bundle","bundleOld":{{"bundleId":"{OLD}","scale":3}},"bundleNew":{{"bundleId":"{NEW}","scale":0}}}}"#
            )
        );
    }

    #[test]
    fn test_json_of_a_failure_that_touched_nothing_has_no_bundles() {
        let failure = Failure {
            cause: Cause::NoRunning {
                compatibility_version: name("2"),
                running: Some(name("1")),
                narrowed: false,
            },
            rollback: Rollback::NotNeeded,
        };
        let text = json(&ended(Outcome::Failed(failure), None, None));
        assert!(
            text.ends_with(r#","failure":"no running bundle with compatibilityVersion 2 (a bundle with compatibilityVersion 1 runs)","outcome":"failed","durationMs":2345,"org":"typesafe","repo":"bundle"}"#),
            "{text}"
        );
    }

    #[test]
    fn test_where_each_outcome_leaves_the_bundles() {
        let old = BundleId::parse(OLD).unwrap();
        let new = BundleId::parse(NEW).unwrap();
        let failed = |rollback| {
            let failure = Failure {
                cause: Cause::Step {
                    doing: Doing::Observing,
                    fault: Fault::Vanished,
                },
                rollback,
            };
            ended(Outcome::Failed(failure), plan(), Some(NEW))
        };
        for (record, how, left) in [
            (
                failed(Rollback::NotNeeded),
                How::Failed,
                (Some((old, 3)), Some((new, 0))),
            ),
            (
                rolled_back(),
                How::RolledBack,
                (Some((old, 3)), Some((new, 0))),
            ),
            (
                failed(Rollback::Off { old: 2, new: 1 }),
                How::FailedNotRolledBack,
                (Some((old, 2)), Some((new, 1))),
            ),
            (
                failed(Rollback::Failed {
                    doing: Doing::Scaling {
                        side: Side::Old,
                        to: 3,
                    },
                    fault: Fault::Deadline,
                    old: 1,
                    new: 2,
                }),
                How::RollbackFailed,
                (Some((old, 1)), Some((new, 2))),
            ),
        ] {
            let ended = Ended::of(&record).unwrap();
            assert_eq!(ended.how(), how);
            assert_eq!((ended.left().old, ended.left().new), left, "{how:?}");
        }
        // Started from nothing (--nothing-running start-one): no old bundle.
        let record = ended(
            Outcome::Succeeded {
                nothing_to_do: false,
            },
            Some(Plan {
                old: None,
                scale: 1,
                config: None,
            }),
            Some(NEW),
        );
        let left = Ended::of(&record).unwrap().left();
        assert_eq!((left.old, left.new), (None, Some((new, 1))));
    }

    #[test]
    fn test_no_summary_of_a_deployment_in_flight() {
        let mut record = rolled_back();
        record.phase = Phase::Resolving;
        assert!(Ended::of(&record).is_none());
    }

    #[test]
    fn test_duration_is_zero_when_the_clock_went_back() {
        let mut record = rolled_back();
        record.request.at = UnixTime::from_millis(1_796_137_180_000);
        assert_eq!(Ended::of(&record).unwrap().duration_ms(), 0);
    }

    // docs/PROTOCOL.md §11's Slack examples.
    #[test]
    fn test_slack_lines() {
        let success = ended(
            Outcome::Succeeded {
                nothing_to_do: false,
            },
            plan(),
            Some(NEW),
        );
        assert_eq!(
            slack(&success),
            format!(
                "lockstep: visualizer 1.1.0-31a429b succeeded in 2.3 s (compatibilityVersion \
                 1). New bundle 31a429b-65df1f2 at 3, old bundle 9f8928a-65df1f2 at 0. \
                 Deployment {ID}."
            )
        );
        assert_eq!(
            slack(&rolled_back()),
            format!(
                "lockstep: visualizer 1.1.0-31a429b was rolled back after 2.3 s \
                 (compatibilityVersion 1): scaling the new bundle to 2: the deadline passed; \
                 rolled back: the old bundle runs at 3 again. Old bundle 9f8928a-65df1f2 at 3, \
                 new bundle 31a429b-65df1f2 at 0. Deployment {ID}."
            )
        );
        let mut resolving = ended(
            Outcome::Failed(Failure {
                cause: Cause::ResolveDeadline,
                rollback: Rollback::NotNeeded,
            }),
            None,
            None,
        );
        resolving.compatibility_version = None;
        assert_eq!(
            slack(&resolving),
            format!(
                "lockstep: visualizer 1.1.0-31a429b failed after 2.3 s: resolving the bundle \
                 took too long. Deployment {ID}."
            )
        );
    }

    #[test]
    fn test_slack_escapes_its_markup_then_json() {
        let mut out = String::new();
        SlackEscaped(&mut JsonEscaped(&mut out))
            .write_str("a <b> & \"c\"\n")
            .unwrap();
        assert_eq!(out, r#"a &lt;b&gt; &amp; \"c\"\n"#);
    }
}
