//! The one logging shim: lines on stderr, human or JSON, filtered by level.
//!
//! What is logged is chosen here, field by field: a request's method, path (without its query),
//! status and duration — never a header value, never a body; a deployment's steps and the
//! retries of its requests (the error's text, never a URL). The secret and a configuration's
//! contents are never passed to these functions.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use lockstep_core::agent::Retry;
use lockstep_core::deployer::{DeploymentId, Event, EventKind};
use serde_json::{Map, Value, json};

use crate::time::rfc3339;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-11-26T08:00:00.000Z INFO request method=GET path=/healthz status=200 duration_ms=1`.
    Human,
    /// One JSON object per line.
    Json,
}

/// Which log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Also warnings.
    Warn,
    /// Also requests and deployment steps (the default).
    Info,
    /// Everything.
    Debug,
}

#[derive(Clone, Copy, Debug)]
struct Logger {
    format: LogFormat,
    level: LogLevel,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Whether lines go through `eprintln!` ([`capture_for_tests`]).
static CAPTURED: AtomicBool = AtomicBool::new(cfg!(test));

/// From now on, lines go through `eprintln!`, which the test harness captures: they show with
/// a failing test's output, and not at all otherwise. For a test that runs lockstep's parts in
/// its own process. Never in the binary: `eprintln!` panics when stderr fails (a closed pipe,
/// a full disk), where the binary drops the line and keeps serving.
pub fn capture_for_tests() {
    CAPTURED.store(true, Ordering::Relaxed);
}

/// Sets the format and level, once; later calls change nothing. Until then lines are human
/// and `info`.
pub fn init(format: LogFormat, level: LogLevel) {
    let _ = LOGGER.set(Logger { format, level });
}

fn logger() -> Logger {
    LOGGER.get().copied().unwrap_or(Logger {
        format: LogFormat::Human,
        level: LogLevel::Info,
    })
}

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
    }
}

/// Writes one line of `kind` with `fields` at `level`.
pub fn line(level: LogLevel, kind: &str, fields: &[(&str, Value)]) {
    let logger = logger();
    if level > logger.level {
        return;
    }
    let time = rfc3339(SystemTime::now()).unwrap_or_default();
    let text = match logger.format {
        LogFormat::Json => {
            let mut object = Map::new();
            object.insert("time".into(), json!(time));
            object.insert("level".into(), json!(level_name(level)));
            object.insert("kind".into(), json!(kind));
            for (name, value) in fields {
                object.insert((*name).into(), value.clone());
            }
            Value::Object(object).to_string()
        }
        LogFormat::Human => {
            let mut text = format!("{time} {} {kind}", level_name(level).to_ascii_uppercase());
            for (name, value) in fields {
                match value {
                    Value::String(s) if !s.contains(' ') && !s.is_empty() => {
                        text.push_str(&format!(" {name}={s}"));
                    }
                    other => text.push_str(&format!(" {name}={other}")),
                }
            }
            text
        }
    };
    if CAPTURED.load(Ordering::Relaxed) {
        eprintln!("{text}");
    } else {
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }
}

/// A request answered.
pub fn request(method: &str, path: &str, status: u16, took: Duration) {
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    line(
        LogLevel::Info,
        "request",
        &[
            ("method", json!(method)),
            ("path", json!(path)),
            ("status", json!(status)),
            (
                "duration_ms",
                json!(u64::try_from(took.as_millis()).unwrap_or(u64::MAX)),
            ),
        ],
    );
}

/// A step of a deployment (one of its events).
pub fn step(event: &Event) {
    let mut fields = vec![
        ("deployment", json!(event.deployment.to_string())),
        ("event", json!(event.kind.event_type().as_str())),
        ("sequence", json!(event.seq)),
    ];
    match &event.kind {
        EventKind::Deploy { old, new } => {
            fields.push(("old", json!(old)));
            fields.push(("new", json!(new)));
        }
        EventKind::DeploymentStarted {
            bundle_name,
            compatible_version,
        } => {
            fields.push(("bundle", json!(bundle_name.as_str())));
            fields.push(("tag", json!(compatible_version.as_str())));
        }
        EventKind::DeploymentFailure(failure) => {
            fields.push(("failure", json!(failure.to_string())));
        }
        _ => {}
    }
    let level = match event.kind {
        EventKind::DeploymentFailure(_) => LogLevel::Warn,
        _ => LogLevel::Info,
    };
    line(level, "deployment", &fields);
}

/// A request of a deployment's `command` failed and is tried again.
pub fn retry(deployment: DeploymentId, command: &str, retry: &Retry) {
    line(
        LogLevel::Warn,
        "retry",
        &[
            ("deployment", json!(deployment.to_string())),
            ("command", json!(command)),
            ("attempt", json!(retry.attempt)),
            ("attempts", json!(retry.attempts)),
            ("error", json!(retry.error.to_string())),
        ],
    );
}

/// Something worth an operator's attention.
pub fn warn(message: &str) {
    line(LogLevel::Warn, "message", &[("message", json!(message))]);
}

/// Something that went as it should.
pub fn info(message: &str) {
    line(LogLevel::Info, "message", &[("message", json!(message))]);
}
