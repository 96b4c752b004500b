//! The one logging shim: lines on stderr, human or JSON, filtered by level.
//!
//! What is logged is chosen here, field by field: a request's method, path (without its query),
//! status and duration — never a header value, never a body; a deployment's steps and the
//! retries of its requests (the error's text, never a URL); each attempt to deliver an outcome
//! notification (the receiver's origin, never its path or query). The secret and a
//! configuration's contents are never passed to these functions.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use lockstep_core::agent::http::HttpError;
use lockstep_core::agent::{Link, Retry};
use lockstep_core::deployer::{DeploymentId, Event, EventKind};
use serde_json::{Map, Value, json};

use std::fmt::Write as _;

use lockstep_core::text::JsonStr;

use crate::time::{Rfc3339, rfc3339};

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
    emit(&text_of(logger.format, &time, level, kind, fields));
}

/// A line's text, allocated.
fn text_of(
    format: LogFormat,
    time: &str,
    level: LogLevel,
    kind: &str,
    fields: &[(&str, Value)],
) -> String {
    match format {
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
    }
}

/// Writes one line to stderr now, after the request lines held before it (one `write` of
/// them all when they fit in [`HELD_MAX`]).
fn emit(text: &str) {
    if CAPTURED.load(Ordering::Relaxed) {
        eprintln!("{text}");
        return;
    }
    let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
    held.write_through(text.as_bytes(), &mut std::io::stderr().lock());
}

/// The most bytes of request lines held before they are written.
pub const HELD_MAX: usize = 8 * 1024;

/// The longest a request line is held while more lines come.
pub const HELD_FOR: Duration = Duration::from_millis(100);

/// Request lines not yet written to stderr.
///
/// A request's line used to cost a `write` of its own: one of the four system calls of a
/// kept-alive request to `lockstep serve`, of the five to `lockstep-minimal` (`strace -c`). The lines of requests answered together are written together instead: a
/// runtime writes them when it has nothing else to run ([`flush`]: `lockstep-minimal`'s
/// loop before it waits; [`held`] wakes `lockstep serve`'s writer task, which runs after the
/// tasks already woken), and they are written at once when [`HELD_MAX`] bytes are held,
/// when the first is [`HELD_FOR`] old as another comes, and before any other line. A line is
/// held for at most one turn of a busy runtime; a SIGKILL loses what is held then.
static HELD: Mutex<Held<HELD_MAX>> = Mutex::new(Held::new());

/// Lines waiting in a buffer of `N` bytes (allocated with the first line, never again), and
/// the task to wake when one comes. (An inline array would put `N` bytes in the binary: the
/// `None` of an `Instant` is not zeroes, so the static would not be in `.bss`.)
struct Held<const N: usize> {
    bytes: Vec<u8>,
    since: Option<Instant>,
    waker: Option<Waker>,
}

impl<const N: usize> Held<N> {
    const fn new() -> Self {
        Self {
            bytes: Vec::new(),
            since: None,
            waker: None,
        }
    }

    fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Writes what is held (a write error drops it: logging never stops serving).
    fn write_out(&mut self, out: &mut impl Write) {
        if !self.bytes.is_empty() {
            let _ = out.write_all(&self.bytes);
        }
        self.bytes.clear();
        self.since = None;
    }

    /// Appends `line` and its newline if they fit.
    fn append(&mut self, line: &[u8]) -> bool {
        if self.len().saturating_add(line.len()) >= N {
            return false;
        }
        if self.bytes.capacity() < N {
            self.bytes.reserve_exact(N - self.bytes.len());
        }
        self.bytes.extend_from_slice(line);
        self.bytes.push(b'\n');
        true
    }

    /// Holds `line`; returns the waker to wake when it is the first line held.
    fn hold(&mut self, line: &[u8], now: Instant, out: &mut impl Write) -> Option<Waker> {
        if !self.append(line) {
            self.write_out(out);
            if !self.append(line) {
                self.write_through(line, out);
                return None;
            }
        }
        match self.since {
            None => {
                self.since = Some(now);
                self.waker.take()
            }
            Some(since) if now.saturating_duration_since(since) >= HELD_FOR => {
                self.write_out(out);
                None
            }
            Some(_) => None,
        }
    }

    /// Writes what is held, then `line`.
    fn write_through(&mut self, line: &[u8], out: &mut impl Write) {
        if self.append(line) {
            self.write_out(out);
            return;
        }
        self.write_out(out);
        let _ = out.write_all(line);
        let _ = out.write_all(b"\n");
    }
}

/// Writes the request lines held now. A runtime calls it when it has nothing left to run,
/// and before it exits.
pub fn flush() {
    let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
    if held.len() > 0 {
        held.write_out(&mut std::io::stderr().lock());
    }
}

/// Ready when request lines are held; otherwise `cx` is woken when the first one is. A
/// runtime's writer task waits on it, then calls [`flush`].
pub fn held(cx: &mut Context<'_>) -> Poll<()> {
    let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
    if held.len() > 0 {
        return Poll::Ready(());
    }
    held.waker = Some(cx.waker().clone());
    Poll::Pending
}

/// Holds a request's line (see [`HELD`]).
fn hold(text: &str) {
    if CAPTURED.load(Ordering::Relaxed) {
        eprintln!("{text}");
        return;
    }
    let waker = HELD.lock().unwrap_or_else(PoisonError::into_inner).hold(
        text.as_bytes(),
        Instant::now(),
        &mut std::io::stderr().lock(),
    );
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// A request answered. Written without allocating (the request path of a runtime that
/// promises none), unless the line is longer than [`REQUEST_LINE_MAX`].
pub fn request(method: &str, path: &str, status: u16, took: Duration) {
    let logger = logger();
    if LogLevel::Info > logger.level {
        return;
    }
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
    let time = Rfc3339::new(SystemTime::now()).ok();
    match request_text(logger.format, time.as_ref(), method, path, status, ms) {
        Some(line) => hold(line.as_str()),
        None => request_allocating(method, path, status, ms),
    }
}

/// A request's line, on the stack; `None` when longer than [`REQUEST_LINE_MAX`].
fn request_text(
    format: LogFormat,
    time: Option<&Rfc3339>,
    method: &str,
    path: &str,
    status: u16,
    ms: u64,
) -> Option<LineBuf> {
    let mut line = LineBuf::new();
    let time = OrEmpty(time);
    let written = match format {
        // The keys in order, as serde_json's map writes them.
        LogFormat::Json => write!(
            line,
            r#"{{"duration_ms":{ms},"kind":"request","level":"info","method":{},"path":{},"status":{status},"time":"{time}"}}"#,
            JsonStr(method),
            JsonStr(path)
        ),
        LogFormat::Human => write!(
            line,
            "{time} INFO request method={} path={} status={status} duration_ms={ms}",
            HumanValue(method),
            HumanValue(path)
        ),
    };
    written.is_ok().then_some(line)
}

/// The longest request line written without allocating.
pub const REQUEST_LINE_MAX: usize = 1024;

/// A line on the stack.
struct LineBuf {
    bytes: [u8; REQUEST_LINE_MAX],
    len: usize,
}

impl LineBuf {
    const fn new() -> Self {
        Self {
            bytes: [0; REQUEST_LINE_MAX],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // Only whole `str`s are written.
        std::str::from_utf8(self.bytes.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

impl std::fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(std::fmt::Error)?;
        self.bytes
            .get_mut(self.len..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The time, or nothing when it cannot be written.
struct OrEmpty<'a>(Option<&'a Rfc3339>);

impl std::fmt::Display for OrEmpty<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(time) => time.fmt(f),
            None => Ok(()),
        }
    }
}

/// A human line's value: as it is, unless empty or spaced, then as a JSON string.
struct HumanValue<'a>(&'a str);

impl std::fmt::Display for HumanValue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() || self.0.contains(' ') {
            JsonStr(self.0).fmt(f)
        } else {
            f.write_str(self.0)
        }
    }
}

/// [`request`] for a line longer than its buffer.
fn request_allocating(method: &str, path: &str, status: u16, ms: u64) {
    line(
        LogLevel::Info,
        "request",
        &[
            ("method", json!(method)),
            ("path", json!(path)),
            ("status", json!(status)),
            ("duration_ms", json!(ms)),
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

/// What comes after an attempt to deliver a notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// It was delivered (a 2xx).
    Delivered,
    /// It is tried again after this pause.
    Retrying(Duration),
    /// It is given up: an answer not worth another attempt, or the last attempt failed.
    GaveUp,
}

/// An attempt to deliver a deployment's outcome notification.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    /// Whose notification.
    pub deployment: DeploymentId,
    /// The receiver's origin (never its path or query: they may hold a token).
    pub receiver: &'a str,
    /// Which attempt, from 1.
    pub attempt: u32,
    /// The most attempts.
    pub attempts: u32,
    /// The answer's status, or why there was none.
    pub result: Result<u16, HttpError>,
}

/// An attempt to deliver a notification, and what comes next: `info` when delivered, `warn`
/// otherwise.
pub fn notification(tried: &Attempt<'_>, next: Delivery) {
    let mut fields = vec![
        ("deployment", json!(tried.deployment.to_string())),
        ("receiver", json!(tried.receiver)),
        ("attempt", json!(tried.attempt)),
        ("attempts", json!(tried.attempts)),
    ];
    match tried.result {
        Ok(status) => fields.push(("status", json!(status))),
        Err(e) => fields.push(("error", json!(e.to_string()))),
    }
    let (level, outcome) = match next {
        Delivery::Delivered => (LogLevel::Info, "delivered"),
        Delivery::Retrying(pause) => {
            let ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
            fields.push(("retry_in_ms", json!(ms)));
            (LogLevel::Warn, "retrying")
        }
        Delivery::GaveUp => (LogLevel::Warn, "gave_up"),
    };
    fields.push(("outcome", json!(outcome)));
    line(level, "notification", &fields);
}

/// A deployment's notification dropped, undelivered, from a receiver's full queue.
pub fn notification_dropped(deployment: DeploymentId, receiver: &str, waiting: usize) {
    line(
        LogLevel::Warn,
        "notification",
        &[
            ("deployment", json!(deployment.to_string())),
            ("receiver", json!(receiver)),
            ("outcome", json!("dropped")),
            ("waiting", json!(waiting)),
        ],
    );
}

/// Whether the ConductR control API answers changed (the agent's bundle event stream found it).
pub fn link(link: Link) {
    match link {
        Link::Down(fault) => warn(&format!(
            "the ConductR control API does not answer ({fault}); webhooks are still accepted, \
             and their deployments wait for it up to their deadlines"
        )),
        Link::Up => info("the ConductR control API answers"),
        Link::Unknown => {}
    }
}

/// Something that stops lockstep.
pub fn error(message: &str) {
    line(LogLevel::Error, "message", &[("message", json!(message))]);
}

/// Something worth an operator's attention.
pub fn warn(message: &str) {
    line(LogLevel::Warn, "message", &[("message", json!(message))]);
}

/// Something that went as it should.
pub fn info(message: &str) {
    line(LogLevel::Info, "message", &[("message", json!(message))]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_held_lines_are_written_together_and_in_order() {
        let mut held = Held::<64>::new();
        let mut out = Vec::new();
        let t0 = Instant::now();
        let waker = Waker::noop().clone();
        held.waker = Some(waker);
        // The first line held hands out the waker; the next ones do not.
        assert!(held.hold(b"one", t0, &mut out).is_some());
        assert!(held.hold(b"two", t0, &mut out).is_none());
        assert!(out.is_empty());
        // Another line is written at once, after those held.
        held.write_through(b"step", &mut out);
        assert_eq!(out, b"one\ntwo\nstep\n");
        assert_eq!(held.len(), 0);
    }

    #[test]
    fn test_held_lines_are_written_at_their_limits() {
        let mut held = Held::<16>::new();
        let mut out = Vec::new();
        let t0 = Instant::now();
        // 16 bytes exactly fit: still held.
        held.hold(b"1234567", t0, &mut out);
        held.hold(b"abcdefg", t0, &mut out);
        assert_eq!(held.len(), 16);
        assert!(out.is_empty());
        // One more: the held lines go first.
        held.hold(b"x", t0, &mut out);
        assert_eq!(out, b"1234567\nabcdefg\n");
        // Younger than HELD_FOR: held; at HELD_FOR: written.
        held.hold(b"y", t0 + HELD_FOR - Duration::from_millis(1), &mut out);
        assert_eq!(held.len(), 4);
        held.hold(b"z", t0 + HELD_FOR, &mut out);
        assert_eq!(out, b"1234567\nabcdefg\nx\ny\nz\n");
        assert_eq!(held.len(), 0);
        // A line longer than the buffer is written at once, whole.
        let long = [b'L'; 20];
        held.hold(b"w", t0, &mut out);
        held.hold(&long, t0, &mut out);
        assert!(out.ends_with(b"w\nLLLLLLLLLLLLLLLLLLLL\n"));
        assert_eq!(held.len(), 0);
    }

    /// The request line written on the stack is the line the general writer writes.
    #[test]
    fn test_request_line_is_the_general_line() {
        let time = Rfc3339::new(SystemTime::UNIX_EPOCH).unwrap();
        for (method, path) in [
            ("GET", "/healthz"),
            ("POST", "/deployments/typesafe/bundle/typesafe"),
            ("GET", "/a path/with \"quotes\" and \\"),
            ("GET", ""),
        ] {
            for format in [LogFormat::Human, LogFormat::Json] {
                let fields = [
                    ("method", json!(method)),
                    ("path", json!(path)),
                    ("status", json!(202)),
                    ("duration_ms", json!(7)),
                ];
                let general = text_of(
                    format,
                    &time.to_string(),
                    LogLevel::Info,
                    "request",
                    &fields,
                );
                let line = request_text(format, Some(&time), method, path, 202, 7).unwrap();
                assert_eq!(line.as_str(), general, "{format:?} {path:?}");
            }
        }
        // Longer than the buffer: none (the general writer takes it).
        let long = "a".repeat(REQUEST_LINE_MAX);
        assert!(request_text(LogFormat::Human, Some(&time), "GET", &long, 200, 1).is_none());
    }
}
