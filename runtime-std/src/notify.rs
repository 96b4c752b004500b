//! Outcome notifications (`lockstep serve --notify URL`, docs/PROTOCOL.md §11): when a
//! deployment ends, a summary of it is POSTed to every receiver, signed with
//! `X-Lockstep-Signature`.
//!
//! The rules:
//!
//! 1. **Once per end, where it ends.** A notification is queued when a deployment ends in this
//!    process ([`Sink::ended`](lockstep_core::agent::Sink::ended)); never for one read back
//!    from the journal at start-up or at a take-over, which was notified by the process that
//!    ended it.
//! 2. **Never in the way.** The sink renders the body and queues it, nothing more: each
//!    receiver has a task of its own on `serve`'s executor, so a slow or dead receiver delays
//!    no deployment and no answer.
//! 3. **Written ahead.** A notification leaves only once its deployment's end is durable in
//!    the journal (a commit), so a crash can never make a deployment that is resumed after a
//!    restart end, and be notified, twice.
//! 4. **Bounded.** At most [`QUEUE`] notifications wait per receiver, beside the one being
//!    delivered; when one more comes, the oldest waiting is dropped (a warning, and
//!    `lockstep_notifications_total{outcome="dropped"}`).
//! 5. **Retried.** A 2xx answer delivers it. A 408, a 429, a 5xx, or a transport failure
//!    (no connection, a broken one, no answer within `--notify-timeout`) is tried again after a
//!    pause of `--notify-retry` doubling up to [`MAX_PAUSE`], [`ATTEMPTS`] attempts in all
//!    ([`pause`]); any other answer (a 3xx is not followed, a 4xx), a refused certificate or an
//!    answer that is not HTTP gives up at once ([`verdict`]). Each attempt is signed afresh, at
//!    its own time, over the same body.
//! 6. **In memory.** Nothing about a notification is journaled: those still queued when the
//!    process exits are lost (the drain logs how many), and none is sent again after a
//!    restart. A receiver may still get one twice when an attempt reached it and its answer
//!    did not come back in time: `deploymentId` identifies the repeat.
//! 7. **Receivers stay private.** Logs, errors and `Debug` name a receiver by its origin
//!    (scheme, host, port), never by its path or query, which may hold a token (a Slack
//!    webhook's path does).

pub mod summary;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_executor::LocalExecutor;
use async_io::Timer;
use futures_lite::FutureExt as _;
use lockstep_core::agent::http::{Client, HttpError, Method, UrlError};
use lockstep_core::deployer::{DeploymentId, Record};
use lockstep_core::signature::{self, Secret};

use crate::client::{BUFFER, USER_AGENT};
use crate::log;
use crate::metrics::Metrics;
use crate::platform::{StdTime, TcpConnector, from_std_duration};
use crate::tls::Trust;
use crate::url::BaseUrl;

use self::summary::Ended;

/// How many notifications wait per receiver, beside the one being delivered.
pub const QUEUE: usize = 64;

/// How many times a notification is tried before it is given up.
pub const ATTEMPTS: u32 = 8;

/// The longest pause between two attempts.
pub const MAX_PAUSE: Duration = Duration::from_secs(60);

/// The most receivers (`--notify` URLs).
pub const MAX_RECEIVERS: usize = 8;

/// The longest path and query of a receiver's URL, in bytes.
pub const MAX_TARGET_LEN: usize = 2048;

/// How often a notification whose deployment's end is not durable yet (the journal cannot be
/// written) looks again.
const DURABLE_RETRY: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

/// The shape of the body (`--notify-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// The summary as JSON ([`summary::write_json`]).
    #[default]
    Json,
    /// `{"text": "<one line>"}`, what Slack's incoming webhooks (and Mattermost's, and
    /// others') take ([`summary::write_slack`]).
    Slack,
}

/// A receiver's URL, `http[s]://host[:port][/path][?query]`: its origin, parsed as the other
/// base URLs are, and its path and query as written (`/` when there is none).
#[derive(Clone, PartialEq, Eq)]
pub struct NotifyUrl {
    base: BaseUrl,
    target: String,
}

/// Why a text is not a receiver's URL. Never quotes the text: its path may hold a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotifyUrlError {
    /// The scheme, host or port.
    Url(UrlError),
    /// The path or query holds a space, a control or non-ASCII character, or a fragment.
    Target,
    /// The path and query are longer than [`MAX_TARGET_LEN`].
    TargetTooLong,
}

impl fmt::Display for NotifyUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(e) => e.fmt(f),
            Self::Target => f.write_str(
                "a URL's path and query may hold only visible ASCII characters (percent-encode \
                 the others), and no fragment",
            ),
            Self::TargetTooLong => write!(
                f,
                "a URL's path and query may be at most {MAX_TARGET_LEN} bytes long"
            ),
        }
    }
}

impl std::error::Error for NotifyUrlError {}

impl NotifyUrl {
    /// Parses `text`: `http://` or `https://` (in any case), a host and an optional port as
    /// `--conductr` takes them, then any path and query of visible ASCII.
    pub fn parse(text: &str) -> Result<Self, NotifyUrlError> {
        let authority_at = text.find("://").map_or(0, |i| i.saturating_add(3));
        let path_at = text
            .get(authority_at..)
            .and_then(|rest| rest.find(['/', '?']))
            .map(|i| i.saturating_add(authority_at));
        let (origin, target) = match path_at {
            Some(at) => text.split_at(at),
            None => (text, ""),
        };
        let base = BaseUrl::parse(origin).map_err(|bad| NotifyUrlError::Url(bad.error))?;
        if !target.bytes().all(|b| b.is_ascii_graphic() && b != b'#') {
            return Err(NotifyUrlError::Target);
        }
        if target.len() > MAX_TARGET_LEN {
            return Err(NotifyUrlError::TargetTooLong);
        }
        let target = match target {
            "" => "/".to_owned(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_owned(),
        };
        Ok(Self { base, target })
    }

    /// The origin, `scheme://host[:port]`: what logs and errors name the receiver by.
    pub fn origin(&self) -> String {
        self.base.url().origin().to_string()
    }
}

impl fmt::Debug for NotifyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NotifyUrl({}/..)", self.origin())
    }
}

/// How notifications are sent.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where (`--notify`, repeatable): the configuration refuses more than
    /// [`MAX_RECEIVERS`].
    pub receivers: Vec<NotifyUrl>,
    /// The body's shape (`--notify-format`).
    pub format: Format,
    /// The pause after the first failed attempt, doubled after each (`--notify-retry`).
    pub retry: Duration,
    /// How long one attempt may take, from connecting to the answer's head
    /// (`--notify-timeout`).
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            receivers: Vec::new(),
            format: Format::Json,
            retry: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The schedule
// ---------------------------------------------------------------------------------------------

/// The pause after failed attempt `attempt` (1 for the first) before the next:
/// `first` × 2^(attempt − 1), at most [`MAX_PAUSE`]. With `first` = 1 s: 1, 2, 4, 8, 16, 32,
/// 60 s.
pub fn pause(first: Duration, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    first
        .checked_mul(1 << doublings)
        .map_or(MAX_PAUSE, |p| p.min(MAX_PAUSE))
}

/// What an attempt's result means for the notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered: a 2xx.
    Delivered,
    /// Worth trying again: a 408, a 429, a 5xx, or the transport failed.
    Retry,
    /// Given up at once: any other status, a refused certificate, a malformed answer.
    GiveUp,
}

/// The verdict on an attempt that got `status`, or failed with an error.
pub const fn verdict(result: Result<u16, HttpError>) -> Verdict {
    match result {
        Ok(200..=299) => Verdict::Delivered,
        Ok(408 | 429 | 500..=599) => Verdict::Retry,
        Ok(_) => Verdict::GiveUp,
        Err(e) if e.retryable() => Verdict::Retry,
        Err(_) => Verdict::GiveUp,
    }
}

// ---------------------------------------------------------------------------------------------
// The notifier
// ---------------------------------------------------------------------------------------------

/// One notification: whose, and the body, shared by every receiver.
#[derive(Clone, Debug)]
struct Notice {
    deployment: DeploymentId,
    body: Rc<str>,
}

/// A receiver's queue.
#[derive(Debug)]
struct Queue {
    url: NotifyUrl,
    /// The origin, as logged.
    origin: String,
    waiting: RefCell<VecDeque<Notice>>,
    /// Whether its task is delivering one (taken out of `waiting`).
    delivering: Cell<bool>,
    /// Rung when a notice is queued; its task waits on it when the queue is empty.
    bell: (async_channel::Sender<()>, async_channel::Receiver<()>),
}

/// What the receivers' tasks share.
struct Shared {
    queues: Vec<Queue>,
    format: Format,
    retry: Duration,
    timeout: Duration,
    secret: Secret,
    connector: TcpConnector,
    time: StdTime,
    metrics: Rc<RefCell<Metrics>>,
}

/// The notifications of a process: a queue per receiver, and a task per receiver that
/// delivers them ([`Notifier::spawn`]).
#[derive(Clone)]
pub struct Notifier {
    shared: Rc<Shared>,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<&NotifyUrl> = self.shared.queues.iter().map(|q| &q.url).collect();
        f.debug_struct("Notifier")
            .field("receivers", &urls)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// The notifier of `options`, signing with `secret`, trusting `trust` for `https://`,
    /// counting in `metrics`; `None` without receivers. Nothing is sent until
    /// [`spawn`](Self::spawn).
    pub fn new(
        options: &Options,
        secret: Secret,
        trust: Trust,
        metrics: Rc<RefCell<Metrics>>,
    ) -> Option<Self> {
        if options.receivers.is_empty() {
            return None;
        }
        let queues = options
            .receivers
            .iter()
            .map(|url| Queue {
                url: url.clone(),
                origin: url.origin(),
                waiting: RefCell::new(VecDeque::with_capacity(QUEUE)),
                delivering: Cell::new(false),
                bell: async_channel::bounded(1),
            })
            .collect();
        metrics.borrow_mut().notifications_queued(0);
        Some(Self {
            shared: Rc::new(Shared {
                queues,
                format: options.format,
                retry: options.retry,
                timeout: options.timeout,
                secret,
                connector: TcpConnector::new(options.timeout).with_trust(trust.logging_refusals()),
                time: StdTime::new(),
                metrics,
            }),
        })
    }

    /// Starts a task per receiver on `executor`. `durable` commits the journal and answers
    /// whether everything appended to it is durable: a notification waits for it (rule 3).
    pub fn spawn(&self, executor: &LocalExecutor<'static>, durable: impl Fn() -> bool + 'static) {
        let durable: Rc<dyn Fn() -> bool> = Rc::new(durable);
        for index in 0..self.shared.queues.len() {
            let (shared, durable) = (self.shared.clone(), durable.clone());
            executor
                .spawn(async move { shared.run(index, &*durable).await })
                .detach();
        }
    }

    /// A deployment ended in this process: its summary is queued for every receiver (the
    /// oldest waiting one dropped from a full queue). Takes no time worth the name, and
    /// never waits.
    pub fn ended(&self, record: &Record) {
        let Some(ended) = Ended::of(record) else {
            return;
        };
        let mut body = String::new();
        let written = match self.shared.format {
            Format::Json => summary::write_json(ended, &mut body),
            Format::Slack => summary::write_slack(ended, &mut body),
        };
        if written.is_err() {
            log::warn(&format!(
                "deployment {}: its notification could not be written",
                record.id()
            ));
            return;
        }
        let notice = Notice {
            deployment: record.id(),
            body: body.into(),
        };
        for queue in &self.shared.queues {
            let dropped = {
                let mut waiting = queue.waiting.borrow_mut();
                let dropped = if waiting.len() >= QUEUE {
                    waiting.pop_front()
                } else {
                    None
                };
                waiting.push_back(notice.clone());
                dropped
            };
            if let Some(dropped) = dropped {
                log::notification_dropped(dropped.deployment, &queue.origin, QUEUE);
                self.shared.metrics.borrow_mut().notification("dropped");
            }
            // Full: it has been rung and not heard yet, which is as good.
            let _ = queue.bell.0.try_send(());
        }
        self.shared.publish_queued();
    }

    /// How many notifications are not delivered yet: waiting, or being delivered.
    pub fn pending(&self) -> usize {
        self.shared.pending()
    }
}

impl Shared {
    fn pending(&self) -> usize {
        self.queues
            .iter()
            .map(|q| q.waiting.borrow().len() + usize::from(q.delivering.get()))
            .sum()
    }

    /// `lockstep_notifications_queued`, as it is now.
    fn publish_queued(&self) {
        let pending = self.pending();
        self.metrics.borrow_mut().notifications_queued(pending);
    }

    /// The task of receiver `index`: delivers its notifications in turn, oldest first.
    async fn run(&self, index: usize, durable: &dyn Fn() -> bool) {
        let Some(queue) = self.queues.get(index) else {
            return;
        };
        let mut buf = vec![0u8; BUFFER];
        loop {
            let next = queue.waiting.borrow_mut().pop_front();
            let Some(notice) = next else {
                if queue.bell.1.recv().await.is_err() {
                    return;
                }
                continue;
            };
            queue.delivering.set(true);
            while !durable() {
                Timer::after(DURABLE_RETRY).await;
            }
            self.deliver(queue, &notice, &mut buf).await;
            queue.delivering.set(false);
            self.publish_queued();
        }
    }

    /// Tries `notice` on `queue`'s receiver until it is delivered or given up (rule 5); one
    /// log line per attempt.
    async fn deliver(&self, queue: &Queue, notice: &Notice, buf: &mut [u8]) {
        for attempt in 1..=ATTEMPTS {
            let result = self.attempt(&queue.url, notice.body.as_bytes(), buf).await;
            let next = match verdict(result) {
                Verdict::Delivered => log::Delivery::Delivered,
                Verdict::Retry if attempt < ATTEMPTS => {
                    log::Delivery::Retrying(pause(self.retry, attempt))
                }
                Verdict::Retry | Verdict::GiveUp => log::Delivery::GaveUp,
            };
            let tried = log::Attempt {
                deployment: notice.deployment,
                receiver: &queue.origin,
                attempt,
                attempts: ATTEMPTS,
                result,
            };
            log::notification(&tried, next);
            match next {
                log::Delivery::Retrying(pause) => {
                    Timer::after(pause).await;
                }
                log::Delivery::Delivered => {
                    self.metrics.borrow_mut().notification("delivered");
                    return;
                }
                log::Delivery::GaveUp => {
                    self.metrics.borrow_mut().notification("failed");
                    return;
                }
            }
        }
    }

    /// One attempt: the body POSTed, signed now; the answer's status, or why there is none.
    /// The answer's body is not read, and the connection is closed.
    async fn attempt(
        &self,
        url: &NotifyUrl,
        body: &[u8],
        buf: &mut [u8],
    ) -> Result<u16, HttpError> {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let signed = signature::lockstep_sign(&self.secret, t, body);
        let headers = [
            ("User-Agent", USER_AGENT),
            ("Content-Type", "application/json"),
            (signature::LOCKSTEP_HEADER, signed.as_str()),
        ];
        let length = u64::try_from(body.len()).unwrap_or(u64::MAX);
        let mut client = Client::new(
            &self.connector,
            &self.time,
            buf,
            from_std_duration(self.timeout),
        );
        let result = async {
            let origin = url.base.url().origin();
            client
                .begin(Method::Post, origin, &url.target, &headers, Some(length))
                .await?;
            client.write(body).await?;
            Ok(client.response().await?.status)
        }
        .or(async {
            Timer::after(self.timeout).await;
            Err(HttpError::TimedOut)
        })
        .await;
        client.close();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_pause_doubles_from_the_first_up_to_a_minute() {
        let second = Duration::from_secs(1);
        let pauses: Vec<u64> = (1..ATTEMPTS).map(|a| pause(second, a).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 60]);
        let quick = Duration::from_millis(50);
        let pauses: Vec<u128> = (1..ATTEMPTS).map(|a| pause(quick, a).as_millis()).collect();
        assert_eq!(pauses, [50, 100, 200, 400, 800, 1600, 3200]);
        // Never more than the cap, however long the first or late the attempt.
        assert_eq!(pause(Duration::from_secs(3600), 1), MAX_PAUSE);
        assert_eq!(pause(second, u32::MAX), MAX_PAUSE);
        assert_eq!(pause(Duration::MAX, 40), MAX_PAUSE);
    }

    #[test]
    fn test_verdict_on_statuses_and_errors() {
        for status in [200, 201, 202, 204, 299] {
            assert_eq!(verdict(Ok(status)), Verdict::Delivered, "{status}");
        }
        for status in [408, 429, 500, 502, 503, 599] {
            assert_eq!(verdict(Ok(status)), Verdict::Retry, "{status}");
        }
        for status in [100, 301, 302, 400, 401, 403, 404, 410, 413, 600] {
            assert_eq!(verdict(Ok(status)), Verdict::GiveUp, "{status}");
        }
        for e in [HttpError::Connect, HttpError::Io, HttpError::TimedOut] {
            assert_eq!(verdict(Err(e)), Verdict::Retry, "{e:?}");
        }
        for e in [HttpError::Malformed, HttpError::InvalidRequest] {
            assert_eq!(verdict(Err(e)), Verdict::GiveUp, "{e:?}");
        }
    }

    #[test]
    fn test_parse_notify_urls() {
        for (text, origin, target) in [
            ("http://127.0.0.1:9999", "http://127.0.0.1:9999", "/"),
            (
                "https://hooks.slack.com/services/T0/B0/XYZ",
                "https://hooks.slack.com",
                "/services/T0/B0/XYZ",
            ),
            ("HTTP://example.com/", "http://example.com", "/"),
            (
                "http://example.com?token=a",
                "http://example.com",
                "/?token=a",
            ),
            (
                "http://[::1]:8080/hook?a=1&b=%2C",
                "http://[::1]:8080",
                "/hook?a=1&b=%2C",
            ),
        ] {
            let url = NotifyUrl::parse(text).unwrap();
            assert_eq!(
                (url.origin().as_str(), url.target.as_str()),
                (origin, target)
            );
        }
    }

    #[test]
    fn test_reject_notify_urls_without_quoting_them() {
        let long = format!("http://example.com/{}", "a".repeat(MAX_TARGET_LEN));
        for (text, error) in [
            ("ftp://example.com/x", NotifyUrlError::Url(UrlError::Scheme)),
            ("example.com/hook", NotifyUrlError::Url(UrlError::Scheme)),
            ("http://", NotifyUrlError::Url(UrlError::Host)),
            ("http://example.com:0/", NotifyUrlError::Url(UrlError::Port)),
            ("http://example.com/a b", NotifyUrlError::Target),
            ("http://example.com/a#b", NotifyUrlError::Target),
            ("http://example.com/é", NotifyUrlError::Target),
            (long.as_str(), NotifyUrlError::TargetTooLong),
        ] {
            assert_eq!(NotifyUrl::parse(text), Err(error), "{text}");
            assert!(!error.to_string().contains("example.com"));
        }
    }

    #[test]
    fn test_debug_names_the_origin_only() {
        let url = NotifyUrl::parse("https://hooks.slack.com/services/T0/B0/secret-token").unwrap();
        assert_eq!(format!("{url:?}"), "NotifyUrl(https://hooks.slack.com/..)");
    }
}
