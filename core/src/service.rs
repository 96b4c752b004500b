//! What both HTTP fronts share (docs/PROTOCOL.md §2, §7): which endpoint a request is, the order of
//! checks of a webhook, the status and one-line body of every refusal. No I/O: the runtime
//! parses the request head and enforces the transport limits (408, 411, 413, 431, reported
//! with [`Reason`]s from here), and writes what it is told; the deployments' events and the
//! listing are the [`ledger`](crate::ledger)'s to write.

// A 409 names why the version failed (`Reason::FailedVersion` holds its `Failure`, about 250
// bytes): a `Refusal` is a plain value returned by value, as core has no `Box`. It lives on
// the stack of one request, never in a table (clippy.toml's `large-error-threshold`).
#![allow(
    clippy::large_enum_variant,
    reason = "a refusal carries a 409's failure; no Box without alloc, and it is never stored"
)]

use core::fmt::{self, Write as _};

use crate::access::{self, Credential};
use crate::bundle::Segment;
use crate::deployer::{Aborted, Admitted, Busy, DeploymentId, Name, NotHere, Request, Tags};
use crate::ledger::FailedBefore;
use crate::signature::{
    self, Headers, Presented, ReplayCache, Schemes, Secret, SignatureError, Stamp,
};
use crate::status::Status;
use crate::time::{Duration, Now};
use crate::webhook::{self, BodyError, BodyLimit, Prefix, Target, TargetError};

/// The `Retry-After` of every 503, in seconds.
pub const RETRY_AFTER_SECS: u32 = 5;

/// The most entries of the allow-list.
pub const MAX_ALLOWED: usize = 16;

/// Where a webhook was sent, from its request target: owned, so that a request is routed
/// once, before its body is read, and the route kept until it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Destination {
    /// The prefix used.
    pub prefix: Prefix,
    /// The repository's organisation.
    pub org: Name,
    /// The repository.
    pub repo: Name,
    /// The `?tag=` values: only running bundles carrying one of them are replaced.
    pub tags: Tags,
}

impl Destination {
    /// The destination of a parsed webhook target.
    pub fn of(target: &Target<'_>) -> Result<Self, TargetError> {
        Ok(Self {
            prefix: target.prefix,
            org: Name::from(target.org),
            repo: Name::from(target.repo),
            tags: Tags::new(target.tags.iter().copied()).map_err(|_| TargetError::TooManyTags)?,
        })
    }
}

/// The endpoints (docs/PROTOCOL.md §2, §7), each under `/deployments` and `/v2/deployments`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(
    clippy::large_enum_variant,
    reason = "routed once per request and moved, never stored in bulk"
)]
pub enum Endpoint {
    /// `POST {prefix}/{org}/{repo}/{org}[?tag=..]`: a registry's notification.
    Webhook(Destination),
    /// `GET {prefix}/{id}`: a deployment's events.
    Deployment {
        /// The prefix used.
        prefix: Prefix,
        /// The deployment.
        id: DeploymentId,
    },
    /// `GET {prefix}`: the deployments, newest first.
    Deployments {
        /// The prefix used.
        prefix: Prefix,
    },
    /// `GET {prefix}/events`: the event stream.
    Events {
        /// The prefix used.
        prefix: Prefix,
    },
    /// `GET {prefix}/ui`: the page that shows the deployments (a runtime may lack it, and
    /// answer 404).
    Ui {
        /// The prefix used.
        prefix: Prefix,
    },
    /// `POST {prefix}/{id}/abort`: an operator aborts a deployment.
    Abort {
        /// The prefix used.
        prefix: Prefix,
        /// The deployment.
        id: DeploymentId,
    },
    /// `GET /healthz`.
    Health,
    /// `GET /metrics`.
    Metrics,
}

impl Endpoint {
    /// A short stable label, for request logs and metrics.
    pub const fn label(&self) -> &'static str {
        match self {
            Self::Webhook(_) => "webhook",
            Self::Deployment { .. } => "deployment",
            Self::Deployments { .. } => "deployments",
            Self::Events { .. } => "events",
            Self::Ui { .. } => "ui",
            Self::Abort { .. } => "abort",
            Self::Health => "healthz",
            Self::Metrics => "metrics",
        }
    }

    /// Whether it reads what lockstep knows of its deployments (their list, events, stream,
    /// the page showing them) or counts (metrics): what a read credential guards. A webhook carries its own
    /// credential, its signature; `/healthz` stays open for load balancers.
    pub const fn is_read(&self) -> bool {
        matches!(
            self,
            Self::Deployment { .. }
                | Self::Deployments { .. }
                | Self::Events { .. }
                | Self::Ui { .. }
                | Self::Metrics
        )
    }
}

/// Whether a request to `endpoint` may be answered: always, without a read credential
/// configured; else a read must present it (`Authorization: Basic ...`), or it is refused
/// with 401 and a challenge ([`Refusal::challenge`]).
pub fn authorize(
    credential: Option<&Credential>,
    endpoint: &Endpoint,
    authorization: Option<&[u8]>,
) -> Result<(), Refusal> {
    match credential {
        Some(credential) if endpoint.is_read() => {
            if authorization.is_some_and(|presented| credential.admits(presented)) {
                Ok(())
            } else {
                Err(Refusal::new(Reason::Unauthorized))
            }
        }
        _ => Ok(()),
    }
}

/// Which endpoint a request is, from its method and origin-form target (path and query); or
/// the 404 or 405 (with `Allow`) refusal, or 400 for a webhook target that is malformed.
/// Checked before anything of the request's body is read.
///
/// `HEAD` is routed wherever `GET` is, to the same endpoint (RFC 9110 §9.3.2): the runtime
/// answers it as `GET` with the same head and no body.
pub fn route(method: &str, target: &str) -> Result<Endpoint, Refusal> {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let get = || {
        if matches!(method, "GET" | "HEAD") {
            Ok(())
        } else {
            Err(Refusal::with_allow(Reason::MethodNotAllowed, "GET, HEAD"))
        }
    };
    match path {
        "/healthz" => return get().map(|()| Endpoint::Health),
        "/metrics" => return get().map(|()| Endpoint::Metrics),
        _ => {}
    }
    let (prefix, rest) = Prefix::strip(path).ok_or(Refusal::new(Reason::NotFound))?;
    match rest.split('/').count() {
        _ if rest.is_empty() => get().map(|()| Endpoint::Deployments { prefix }),
        1 if rest == "events" => get().map(|()| Endpoint::Events { prefix }),
        // Not a UUID, so never a deployment's id.
        1 if rest == "ui" => get().map(|()| Endpoint::Ui { prefix }),
        1 => {
            get()?;
            let id =
                DeploymentId::parse(rest).map_err(|_| Refusal::new(Reason::NoSuchDeployment))?;
            Ok(Endpoint::Deployment { prefix, id })
        }
        2 if rest.ends_with("/abort") => {
            if method != "POST" {
                return Err(Refusal::with_allow(Reason::MethodNotAllowed, "POST"));
            }
            let id = rest
                .strip_suffix("/abort")
                .and_then(|id| DeploymentId::parse(id).ok());
            let id = id.ok_or(Refusal::new(Reason::NoSuchDeployment))?;
            Ok(Endpoint::Abort { prefix, id })
        }
        3 => {
            if method != "POST" {
                return Err(Refusal::with_allow(Reason::MethodNotAllowed, "POST"));
            }
            let target = Target::parse(target)?;
            Ok(Endpoint::Webhook(Destination::of(&target)?))
        }
        _ => Err(Refusal::new(Reason::NotFound)),
    }
}

/// Why a request is refused. Each has its status (docs/PROTOCOL.md §7's table) and one line of
/// text for the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Reason {
    /// An unknown path (404).
    NotFound,
    /// An unknown deployment, or one no longer retained (404).
    NoSuchDeployment,
    /// A known path, another method (405).
    MethodNotAllowed,
    /// The request was not read in time (408).
    Timeout,
    /// No `Content-Length`, or a chunked body (411).
    LengthRequired,
    /// The body is over the limit (413).
    BodyTooLarge,
    /// The request head is over the limit (431).
    HeadTooLarge,
    /// A malformed request head (400).
    MalformedHead,
    /// A media type other than `application/json` (415).
    MediaType,
    /// A malformed webhook target (400).
    Target(TargetError),
    /// A webhook body that is malformed (400) or meaningless (422).
    Body(BodyError),
    /// No signature header of an accepted scheme (401); the body names the accepted ones.
    Unsigned(Schemes),
    /// A malformed signature (401); one that does not verify, is stale or replayed (403, the
    /// same body for all three); the replay cache is full (503).
    Signature(SignatureError),
    /// A package outside the allow-list (403).
    NotAllowed,
    /// A read without the read credential, when one is configured (401, with a challenge).
    Unauthorized,
    /// The deployment table is full, or the in-flight limit reached (503).
    Busy(Busy),
    /// Shutting down (503).
    ShuttingDown,
    /// The event streams are at `--max-event-streams` (503).
    StreamsFull,
    /// What would record the webhook's deployment cannot be written (503): nothing is accepted
    /// that is not recorded ([`Webhooks::set_recording`]).
    Unrecorded,
    /// Every connection slot works or streams: the connection is refused before its request
    /// is read (503; [`crate::budget`]).
    ConnectionsFull,
    /// An abort whose body is not a JSON object whose first member is
    /// `"deploymentId":"<the id in the path>"` (400).
    AbortBody,
    /// The version's last deployment failed, and the webhook did not ask to retry it under
    /// lockstep's signature (409; docs/DESIGN.md rule 11).
    FailedVersion {
        /// That deployment.
        failed: FailedBefore,
        /// How long ago it ended.
        ago: Duration,
    },
}

impl Reason {
    /// The status it answers.
    pub const fn status(self) -> Status {
        match self {
            Self::NotFound | Self::NoSuchDeployment => Status::NotFound,
            Self::MethodNotAllowed => Status::MethodNotAllowed,
            Self::Timeout => Status::RequestTimeout,
            Self::FailedVersion { .. } => Status::Conflict,
            Self::LengthRequired => Status::LengthRequired,
            Self::BodyTooLarge => Status::PayloadTooLarge,
            Self::HeadTooLarge => Status::RequestHeaderFieldsTooLarge,
            Self::MalformedHead | Self::AbortBody => Status::BadRequest,
            Self::MediaType => Status::UnsupportedMediaType,
            Self::Target(e) => e.status(),
            Self::Body(e) => e.status(),
            Self::Unsigned(_) | Self::Unauthorized => Status::Unauthorized,
            Self::Signature(e) => e.status(),
            Self::NotAllowed => Status::Forbidden,
            Self::Busy(_)
            | Self::ShuttingDown
            | Self::StreamsFull
            | Self::ConnectionsFull
            | Self::Unrecorded => Status::ServiceUnavailable,
        }
    }

    /// A short stable label, for logs and metrics.
    pub const fn label(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::NoSuchDeployment => "no_such_deployment",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Timeout => "timeout",
            Self::LengthRequired => "length_required",
            Self::BodyTooLarge => "body_too_large",
            Self::HeadTooLarge => "head_too_large",
            Self::MalformedHead => "malformed_head",
            Self::MediaType => "media_type",
            Self::Target(_) => "bad_target",
            Self::Body(e) if matches!(e.status(), Status::UnprocessableEntity) => "unprocessable",
            Self::Body(_) => "bad_body",
            Self::Unsigned(_) => SignatureError::Missing.reason(),
            Self::Signature(e) => e.reason(),
            Self::NotAllowed => "not_allowed",
            Self::Unauthorized => "unauthorized",
            Self::Busy(_) => "busy",
            Self::ShuttingDown => "shutting_down",
            Self::StreamsFull => "streams_full",
            Self::ConnectionsFull => "connections_full",
            Self::Unrecorded => "unrecorded",
            Self::AbortBody => "bad_abort_body",
            Self::FailedVersion { .. } => "failed_version",
        }
    }

    /// The label of a refusal for its signature (`missing`, `malformed`, `mismatch`, `stale`,
    /// `replayed`, `busy`), for the signature refusals' metric; `None` for any other reason.
    pub const fn signature_refusal(self) -> Option<&'static str> {
        match self {
            Self::Unsigned(_) => Some(SignatureError::Missing.reason()),
            Self::Signature(e) => Some(e.reason()),
            _ => None,
        }
    }
}

impl fmt::Display for Reason {
    /// The body's line (without the newline). A signature that fails verification says only
    /// that it was rejected, whatever the reason: nothing to learn for a forger.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("not found"),
            Self::NoSuchDeployment => f.write_str("no such deployment"),
            Self::MethodNotAllowed => f.write_str("method not allowed"),
            Self::Timeout => f.write_str("the request was not read in time"),
            Self::LengthRequired => {
                f.write_str("a body needs Content-Length; chunked request bodies are not accepted")
            }
            Self::BodyTooLarge => f.write_str("the body is over the size limit"),
            Self::HeadTooLarge => f.write_str("the request head is over the size limit"),
            Self::MalformedHead => f.write_str("malformed request"),
            Self::MediaType => f.write_str("the body must be application/json"),
            Self::Target(e) => e.fmt(f),
            Self::Body(e) => e.fmt(f),
            Self::Unsigned(schemes) => {
                f.write_str("a signature is required: ")?;
                match (schemes.lockstep(), schemes.bintray()) {
                    (true, true) => f.write_str("X-Lockstep-Signature or X-Bintray-Hook-Hmac"),
                    (true, false) => f.write_str("X-Lockstep-Signature"),
                    // `Schemes` enables at least one.
                    (false, _) => f.write_str("X-Bintray-Hook-Hmac"),
                }
            }
            // Without the schemes this cannot name the headers; `accept` says `Unsigned`.
            Self::Signature(SignatureError::Missing) => f.write_str("a signature is required"),
            Self::Signature(e) if e.status() == Status::Unauthorized => {
                write!(f, "malformed signature: {e}")
            }
            Self::Signature(SignatureError::ReplayCacheFull) => {
                f.write_str("too many recent signatures; retry later")
            }
            Self::Signature(_) => f.write_str("signature rejected"),
            Self::NotAllowed => f.write_str("this package may not be deployed here"),
            Self::Unauthorized => f.write_str("reading needs the read credential"),
            Self::Busy(_) => f.write_str("too many deployments in flight; retry later"),
            Self::ShuttingDown => f.write_str("shutting down"),
            Self::StreamsFull => f.write_str("too many event streams; retry later"),
            Self::ConnectionsFull => f.write_str("too many connections; retry later"),
            Self::Unrecorded => {
                f.write_str("the deployment cannot be recorded (the data directory); retry later")
            }
            Self::AbortBody => f.write_str(
                "the body of an abort must be {\"deploymentId\":\"<the id in the path>\", ...}",
            ),
            Self::FailedVersion { failed, ago } => {
                write!(
                    f,
                    "version {} failed {}s ago (deployment {}): {}",
                    failed.tag,
                    ago.as_secs(),
                    failed.id,
                    failed.failure
                )?;
                // A refused downgrade says itself what deploys it: a retry alone would be
                // refused again.
                if failed.failure.is_downgrade() {
                    Ok(())
                } else {
                    f.write_str("; `lockstep deploy --retry` deploys it again")
                }
            }
        }
    }
}

impl core::error::Error for Reason {}

impl From<TargetError> for Reason {
    fn from(e: TargetError) -> Self {
        Self::Target(e)
    }
}

impl From<BodyError> for Reason {
    fn from(e: BodyError) -> Self {
        Self::Body(e)
    }
}

impl From<SignatureError> for Reason {
    fn from(e: SignatureError) -> Self {
        Self::Signature(e)
    }
}

impl From<Busy> for Reason {
    fn from(e: Busy) -> Self {
        Self::Busy(e)
    }
}

/// What a webhook asks beyond its version, honoured only under lockstep's signature (which
/// covers the body; the Bintray one covers only the package).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Asks {
    /// `"retry": true`: deploy the version even though its last deployment failed.
    pub retry: bool,
    /// `"allow_downgrade": true`: deploy the version even though the repository published it
    /// before the running one (the admitted [`Request::allow_downgrade`] carries it on).
    pub allow_downgrade: bool,
}

/// Why [`Webhooks::accept`]'s `admit` did not admit a notification; nothing was created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum NotAdmitted {
    /// The deployer is full (503).
    Busy(Busy),
    /// The version's last deployment failed, and the webhook did not ask to retry it (409).
    Failed(FailedBefore),
}

impl From<Busy> for NotAdmitted {
    fn from(e: Busy) -> Self {
        Self::Busy(e)
    }
}

/// A refusal: the reason, with the headers it brings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Refusal {
    /// Why.
    pub reason: Reason,
    /// The `Allow` header of a 405.
    pub allow: Option<&'static str>,
}

impl Reason {
    /// [`Reason::FailedVersion`] for `failed`, its age taken at `now` (wall clock): what a
    /// webhook of a held version gets, at admission or once its screening refused it.
    pub const fn failed_version(now: Now, failed: FailedBefore) -> Self {
        Self::FailedVersion {
            failed,
            ago: Duration::from_millis(now.unix.as_millis().saturating_sub(failed.at.as_millis())),
        }
    }
}

impl Refusal {
    /// A refusal for `reason`.
    pub const fn new(reason: Reason) -> Self {
        Self {
            reason,
            allow: None,
        }
    }

    const fn with_allow(reason: Reason, allow: &'static str) -> Self {
        Self {
            reason,
            allow: Some(allow),
        }
    }

    /// Its status.
    pub const fn status(&self) -> Status {
        self.reason.status()
    }

    /// The `Retry-After` seconds of a 503.
    pub const fn retry_after(&self) -> Option<u32> {
        match self.status() {
            Status::ServiceUnavailable => Some(RETRY_AFTER_SECS),
            _ => None,
        }
    }

    /// The `WWW-Authenticate` challenge of a read refused for its credential.
    pub const fn challenge(&self) -> Option<&'static str> {
        match self.reason {
            Reason::Unauthorized => Some(access::CHALLENGE),
            _ => None,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.reason.fmt(f)
    }
}

impl core::error::Error for Refusal {}

impl<E: Into<Reason>> From<E> for Refusal {
    fn from(e: E) -> Self {
        Self::new(e.into())
    }
}

/// Whether a `Content-Type` is JSON: `application/json`, parameters (such as `charset`)
/// ignored, any case.
pub fn is_json(content_type: &[u8]) -> bool {
    let Ok(text) = core::str::from_utf8(content_type) else {
        return false;
    };
    let media = text.split_once(';').map_or(text, |(media, _)| media).trim();
    media.eq_ignore_ascii_case("application/json")
}

// ---------------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------------

/// An `org/repo/package` the allow-list names; each part may be `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Allowed {
    org: Option<Name>,
    repo: Option<Name>,
    package: Option<Name>,
}

impl Allowed {
    /// Parses `org/repo/package`, where each part is a segment or `*`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('/');
        let mut part = || -> Option<Option<Name>> {
            let part = parts.next()?;
            if part == "*" {
                return Some(None);
            }
            Segment::parse(part).ok().map(|s| Some(Name::from(s)))
        };
        let (org, repo, package) = (part()?, part()?, part()?);
        if parts.next().is_some() {
            return None;
        }
        Some(Self { org, repo, package })
    }

    fn permits(&self, org: &str, repo: &str, package: &str) -> bool {
        let matches =
            |want: &Option<Name>, have: &str| want.as_ref().is_none_or(|w| w.as_str() == have);
        matches(&self.org, org) && matches(&self.repo, repo) && matches(&self.package, package)
    }
}

/// How webhooks are checked.
#[derive(Clone, Debug)]
pub struct Config {
    /// Which signature schemes are accepted.
    pub schemes: Schemes,
    /// How far from now a lockstep signature's time may be.
    pub window: Duration,
    /// The body limit.
    pub body_limit: BodyLimit,
    /// The packages that may be deployed; empty: all.
    pub allowed: heapless::Vec<Allowed, MAX_ALLOWED>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            schemes: Schemes::default(),
            window: Duration::from_secs(300),
            body_limit: BodyLimit::default(),
            allowed: heapless::Vec::new(),
        }
    }
}

/// A webhook as the runtime read it: target, the headers that matter, raw body.
#[derive(Clone, Copy, Debug)]
pub struct Webhook<'a> {
    /// Where it was sent.
    pub target: &'a Destination,
    /// `Content-Type`, if given.
    pub content_type: Option<&'a [u8]>,
    /// The signature headers.
    pub signatures: Headers<'a>,
    /// The raw body.
    pub body: &'a [u8],
}

/// An abort as the runtime read it: the headers that matter and the raw body.
#[derive(Clone, Copy, Debug)]
pub struct AbortRequest<'a> {
    /// The deployment the path names.
    pub id: DeploymentId,
    /// `Content-Type`, if given.
    pub content_type: Option<&'a [u8]>,
    /// The signature headers (only `X-Lockstep-Signature` is read).
    pub signatures: Headers<'a>,
    /// The raw body.
    pub body: &'a [u8],
}

/// An abort that passed the checks and was carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AbortAccepted {
    /// What it did.
    pub aborted: Aborted,
    /// The replay-cache entry of its signature: a runtime that persists the cache records it
    /// before it answers.
    pub stamp: Stamp,
}

/// A webhook that passed the checks and was admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Accepted {
    /// The deployment, new or redelivered.
    pub admitted: Admitted,
    /// The replay-cache entry of its lockstep signature (none for the Bintray scheme): a
    /// runtime that persists the cache records it before it answers 202.
    pub stamp: Option<Stamp>,
}

/// The webhook checks (docs/PROTOCOL.md §7), with the secret and the replay cache of `R` entries.
pub struct Webhooks<const R: usize> {
    secret: Secret,
    config: Config,
    replay: ReplayCache<R>,
    /// Once set, every webhook that passed the other checks is refused with 503.
    shutting_down: bool,
    /// Cleared while the store of deployments cannot be written: webhooks are refused with 503.
    recording: bool,
}

impl<const R: usize> fmt::Debug for Webhooks<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhooks")
            .field("secret", &self.secret)
            .field("config", &self.config)
            .field("shutting_down", &self.shutting_down)
            .finish_non_exhaustive()
    }
}

impl<const R: usize> Webhooks<R> {
    /// The checks with this secret and configuration; the replay cache holds `R` signatures.
    pub const fn new(secret: Secret, config: Config) -> Self {
        Self::with_replay_capacity(secret, config, R)
    }

    /// The same, with a replay cache of `capacity` signatures (at most `R`).
    pub const fn with_replay_capacity(secret: Secret, config: Config, capacity: usize) -> Self {
        Self {
            secret,
            config,
            replay: ReplayCache::with_capacity(capacity),
            shutting_down: false,
            recording: true,
        }
    }

    /// The service is shutting down: from now on every webhook is refused at admission with
    /// 503 `shutting down` (a redelivery too: nothing would move it on), and nothing enters
    /// the replay cache.
    pub const fn shut_down(&mut self) {
        self.shutting_down = true;
    }

    /// Whether the store of deployments can be written (a runtime that persists them says
    /// so): while it cannot, every webhook that passed the other checks is refused with 503
    /// `unrecorded`, a redelivery too, and nothing enters the replay cache.
    pub const fn set_recording(&mut self, recording: bool) {
        self.recording = recording;
    }

    /// Whether [`Webhooks::shut_down`] was called.
    pub const fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// The configuration.
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// Puts back a replay-cache entry read from a store after a restart (an expired one is
    /// dropped); refused when the cache is full of live entries.
    pub fn restore_stamp(&mut self, now: Now, stamp: Stamp) -> Result<(), SignatureError> {
        self.replay.restore(stamp, now.unix, self.config.window)
    }

    /// The live replay-cache entries, for a store to rewrite.
    pub fn stamps(&self, now: Now) -> impl Iterator<Item = Stamp> + '_ {
        self.replay.stamps(now.unix, self.config.window)
    }

    /// How many lockstep signatures the replay cache holds live now (for metrics).
    pub fn replay_fill(&self, now: Now) -> usize {
        self.replay.live(now.unix, self.config.window)
    }

    /// Checks an abort (docs/PROTOCOL.md §7) and, when it passes, carries it out through
    /// `abort` (the agent's [`abort`](crate::agent::Agent::abort)). The answer is 200 with what
    /// it did, one line.
    ///
    /// Media type (415); `X-Lockstep-Signature` over the raw body, whatever `schemes` says (the
    /// Bintray scheme signs no body, so it cannot authenticate one): missing 401, malformed
    /// 401, rejected, stale or replayed 403; the body must be a JSON object whose first member
    /// is `"deploymentId":"<id>"`, the path's id (400), so that a signature for one deployment
    /// aborts no other; 503 when shutting down or not recording; 404 when no such deployment is known.
    /// The signature enters the replay cache once the abort is carried out.
    pub fn abort(
        &mut self,
        now: Now,
        request: &AbortRequest<'_>,
        abort: impl FnOnce(DeploymentId) -> Result<Aborted, NotHere>,
    ) -> Result<AbortAccepted, Refusal> {
        if request.content_type.is_some_and(|t| !is_json(t)) {
            return Err(Reason::MediaType.into());
        }
        let presented =
            signature::select(Schemes::LOCKSTEP_ONLY, request.signatures).map_err(|e| match e {
                SignatureError::Missing => Reason::Unsigned(Schemes::LOCKSTEP_ONLY),
                e => Reason::Signature(e),
            })?;
        let Presented::Lockstep(sig) = presented else {
            return Err(Reason::Unsigned(Schemes::LOCKSTEP_ONLY).into());
        };
        let fresh = sig.verify(
            &self.secret,
            request.body,
            now.unix,
            self.config.window,
            &self.replay,
        )?;
        if !names_deployment(request.body, request.id) {
            return Err(Reason::AbortBody.into());
        }
        if self.shutting_down {
            return Err(Reason::ShuttingDown.into());
        }
        if !self.recording {
            return Err(Reason::Unrecorded.into());
        }
        if !self.replay.has_room(now.unix, self.config.window) {
            return Err(SignatureError::ReplayCacheFull.into());
        }
        let aborted = abort(request.id).map_err(|NotHere| Reason::NoSuchDeployment)?;
        let stamp = fresh.stamp();
        // Room was checked above, and nothing ran in between.
        let _ = self.replay.insert(fresh, now.unix, self.config.window);
        Ok(AbortAccepted { aborted, stamp })
    }

    /// Checks a webhook in docs/PROTOCOL.md §7's order and, when it passes, admits it through
    /// `admit` (the agent's [`notify`](crate::agent::Agent::notify): the deployer's
    /// [`handle_notification`](crate::deployer::Deployer::handle_notification) after the
    /// failed-version check), giving a new deployment the id `id`, with what the webhook
    /// [`Asks`]. The answer is 202 with the id, `Location: {prefix}/{id}`.
    ///
    /// Media type (415); with `X-Lockstep-Signature`: the signature over the raw body (401,
    /// 403), then the body (400, 422); with the Bintray scheme: the body first, then the
    /// signature over its package; then the allow-list (403); then admission (503 when the
    /// service is shutting down, or the table or the replay cache is full, or the in-flight
    /// limit reached; 409 when the version's last deployment failed and the webhook did not
    /// ask to retry it). A lockstep signature enters the replay cache only when its request is
    /// admitted.
    pub fn accept(
        &mut self,
        now: Now,
        hook: &Webhook<'_>,
        id: DeploymentId,
        admit: impl FnOnce(Request, Asks) -> Result<Admitted, NotAdmitted>,
    ) -> Result<Accepted, Refusal> {
        if hook.content_type.is_some_and(|t| !is_json(t)) {
            return Err(Reason::MediaType.into());
        }
        let schemes = self.config.schemes;
        let presented = signature::select(schemes, hook.signatures).map_err(|e| match e {
            SignatureError::Missing => Reason::Unsigned(schemes),
            e => Reason::Signature(e),
        })?;
        let fresh = match &presented {
            Presented::Lockstep(sig) => Some(sig.verify(
                &self.secret,
                hook.body,
                now.unix,
                self.config.window,
                &self.replay,
            )?),
            Presented::Bintray(_) => None,
        };
        let notification = webhook::parse_body(hook.body, self.config.body_limit)?;
        if let Presented::Bintray(mac) = &presented {
            mac.verify(&self.secret, notification.package.as_str())?;
        }
        let target = hook.target;
        let allowed = self.config.allowed.is_empty()
            || self.config.allowed.iter().any(|a| {
                a.permits(
                    target.org.as_str(),
                    target.repo.as_str(),
                    notification.package.as_str(),
                )
            });
        if !allowed {
            return Err(Reason::NotAllowed.into());
        }
        if self.shutting_down {
            return Err(Reason::ShuttingDown.into());
        }
        if !self.recording {
            return Err(Reason::Unrecorded.into());
        }
        if fresh.is_some() && !self.replay.has_room(now.unix, self.config.window) {
            return Err(SignatureError::ReplayCacheFull.into());
        }
        let asks = Asks {
            retry: notification.retry && fresh.is_some(),
            allow_downgrade: notification.allow_downgrade && fresh.is_some(),
        };
        let request = Request {
            id,
            org: target.org,
            repo: target.repo,
            package: Name::from(notification.package),
            tag: Name::from(notification.version.tag),
            digest: notification.version.digest,
            tags: target.tags,
            at: now.unix,
            allow_downgrade: asks.allow_downgrade,
        };
        let admitted = admit(request, asks).map_err(|e| match e {
            NotAdmitted::Busy(busy) => Reason::Busy(busy),
            NotAdmitted::Failed(failed) => Reason::failed_version(now, failed),
        })?;
        let stamp = fresh.map(|fresh| {
            let stamp = fresh.stamp();
            // Room was checked above, and nothing ran in between.
            let _ = self.replay.insert(fresh, now.unix, self.config.window);
            stamp
        });
        Ok(Accepted { admitted, stamp })
    }
}

/// Whether `body` is a JSON object whose first member is `"deploymentId":"<id>"` (ASCII
/// whitespace aside; other members, such as when it was requested, are not read).
fn names_deployment(body: &[u8], id: DeploymentId) -> bool {
    if !matches!(
        crate::json::validate(body, crate::json::MAX_DEPTH),
        Ok(crate::json::Kind::Object)
    ) {
        return false;
    }
    let mut expected = heapless::String::<64>::new();
    if write!(expected, "{{\"deploymentId\":\"{id}\"").is_err() {
        return false;
    }
    let mut got = body.iter().filter(|b| !b.is_ascii_whitespace());
    expected
        .bytes()
        .all(|want| got.next().is_some_and(|b| b.eq_ignore_ascii_case(&want)))
        && matches!(got.next(), Some(b'}' | b','))
}

#[cfg(test)]
mod tests;
