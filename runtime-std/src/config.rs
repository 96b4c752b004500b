//! The settings of `lockstep serve`: one table, each setting a flag `--name`, an environment
//! variable `LOCKSTEP_NAME` and a key `name` of the TOML file given with `--config`.
//!
//! Precedence: flag > `LOCKSTEP_*` > ConductR's `DEPLOYMENTS_BIND_IP` / `DEPLOYMENTS_BIND_PORT`
//! (listen only) > the TOML file > the default. An unknown flag or key, or a bad value, refuses
//! to start with a message naming it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lockstep_core::access::{Credential, CredentialError};
use lockstep_core::agent;
use lockstep_core::agent::http::Scheme;
use lockstep_core::deployer::{NothingRunning, Policy, RollbackPolicy};
use lockstep_core::service::{self, Allowed, MAX_ALLOWED};
use lockstep_core::signature::Schemes;
use lockstep_core::webhook::{BodyLimit, BodyLimitError, MAX_BODY_LIMIT};

use crate::cluster::ClusterOptions;
use crate::credentials::{Credentials, CredentialsError};
use crate::deployments::{self, RepositoryError, RepositoryOption, create_private_dir};
use crate::http;
use crate::log::{LogFormat, LogLevel};
use crate::notify::{self, MAX_RECEIVERS, NotifyUrl, NotifyUrlError};
use crate::secret::{self, SecretError};
use crate::serve::{MAX_REPLAY_CACHE, Options};
use crate::tls::{CaFileError, Trust};
use crate::units::{ValueError, parse_address, parse_duration, parse_size};
use crate::url::{BadUrl, BaseUrl};

/// Every setting, parsed.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub conductr: BaseUrl,
    pub repository: Option<RepositoryOption>,
    pub data_dir: Option<PathBuf>,
    pub etcd: Vec<BaseUrl>,
    pub lease_ttl: Duration,
    pub advertise: Option<SocketAddr>,
    pub secret_file: Option<PathBuf>,
    pub read_credential_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub repository_credentials: Option<PathBuf>,
    pub max_head: usize,
    pub max_body: usize,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_event_streams: usize,
    pub max_in_flight: usize,
    pub replay_cache: usize,
    pub retention: usize,
    pub step_deadline: Duration,
    pub settle: Duration,
    pub resolve_deadline: Duration,
    pub rollback: RollbackPolicy,
    pub nothing_running: NothingRunning,
    pub schemes: Schemes,
    pub replay_window: Duration,
    pub allow: Vec<Allowed>,
    pub workers: usize,
    pub poll_interval: Duration,
    pub io_timeout: Duration,
    pub download_limit: Duration,
    pub max_bundle_size: u64,
    pub heartbeat: Duration,
    pub drain_deadline: Duration,
    pub notify: Vec<NotifyUrl>,
    pub notify_format: notify::Format,
    pub notify_retry: Duration,
    pub notify_timeout: Duration,
    pub log_format: LogFormat,
    pub log_level: LogLevel,
}

type Apply = fn(&mut Config, &str) -> Result<(), SettingError>;

/// Why a value is not one its setting takes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SettingError {
    /// Not a duration, size or address.
    Value(ValueError),
    /// Not a base URL.
    Url(BadUrl),
    /// Not a repository.
    Repository(RepositoryError),
    /// A path to a directory that is something else.
    NotADirectory(PathBuf),
    /// Not a whole number.
    NotWholeNumber(String),
    /// A count outside `1..=max`.
    OutOfRange {
        /// The count.
        n: usize,
        /// The most it may be.
        max: usize,
    },
    /// A duration of 0 where time must pass.
    Zero,
    /// Below the setting's minimum, as text (`256 bytes`).
    AtLeast(&'static str),
    /// Above the setting's maximum, as text (`1h`).
    AtMost(&'static str),
    /// A webhook body limit core does not take.
    BodyLimit(BodyLimitError),
    /// None of the setting's words.
    NotOneOf {
        /// The text.
        text: String,
        /// The words it may be, as `--help` lists them (`on or off`).
        choices: &'static str,
    },
    /// An `--allow` entry that is not `org/repo/package`.
    NotAllowed(String),
    /// An `https://` URL where only `http://` is spoken.
    HttpOnly(String),
    /// More `--allow` entries than [`MAX_ALLOWED`].
    TooManyAllowed,
    /// A `--notify` URL that is not one; `nth` (from 1) when there are several. The URL is
    /// not quoted: its path may hold a token.
    NotifyUrl {
        /// Which of several (`None` when it is the only one).
        nth: Option<usize>,
        /// What is wrong with it.
        error: NotifyUrlError,
    },
    /// More `--notify` URLs than [`MAX_RECEIVERS`].
    TooManyReceivers,
    /// `--max-event-streams` not below `--max-connections`: streams could hold every
    /// connection.
    StreamsNotBelowConnections {
        /// `--max-event-streams`.
        streams: usize,
        /// `--max-connections`.
        connections: usize,
    },
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value(e) => e.fmt(f),
            Self::Url(e) => e.fmt(f),
            Self::HttpOnly(url) => write!(f, "`{url}`: only http:// is supported here"),
            Self::Repository(e) => e.fmt(f),
            Self::NotADirectory(dir) => write!(f, "`{}` is not a directory", dir.display()),
            Self::NotWholeNumber(text) => write!(f, "`{text}` is not a whole number"),
            Self::OutOfRange { n, max } => write!(f, "{n} is not between 1 and {max}"),
            Self::Zero => f.write_str("must be more than 0"),
            Self::AtLeast(min) => write!(f, "must be at least {min}"),
            Self::AtMost(max) => write!(f, "must be at most {max}"),
            Self::BodyLimit(e) => e.fmt(f),
            Self::NotOneOf { text, choices } => write!(f, "`{text}` is not {choices}"),
            Self::NotAllowed(item) => {
                write!(f, "`{item}` is not org/repo/package (each a name or *)")
            }
            Self::TooManyAllowed => write!(f, "at most {MAX_ALLOWED} entries"),
            Self::NotifyUrl { nth: None, error } => error.fmt(f),
            Self::NotifyUrl {
                nth: Some(n),
                error,
            } => write!(f, "URL {n}: {error}"),
            Self::TooManyReceivers => write!(f, "at most {MAX_RECEIVERS} URLs"),
            Self::StreamsNotBelowConnections {
                streams,
                connections,
            } => write!(
                f,
                "--max-event-streams ({streams}) must be fewer than --max-connections \
                 ({connections}), so that streams can never hold every connection"
            ),
        }
    }
}

impl std::error::Error for SettingError {}

impl From<ValueError> for SettingError {
    fn from(e: ValueError) -> Self {
        Self::Value(e)
    }
}

impl From<BadUrl> for SettingError {
    fn from(e: BadUrl) -> Self {
        Self::Url(e)
    }
}

impl From<RepositoryError> for SettingError {
    fn from(e: RepositoryError) -> Self {
        Self::Repository(e)
    }
}

/// `text` as one of `words`, each with its value; `choices` lists them for the error.
fn one_of<T: Copy>(
    text: &str,
    words: &[(&str, T)],
    choices: &'static str,
) -> Result<T, SettingError> {
    words
        .iter()
        .find(|(word, _)| *word == text)
        .map(|(_, value)| *value)
        .ok_or_else(|| SettingError::NotOneOf {
            text: text.to_owned(),
            choices,
        })
}

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `--name`.
    Flag(&'static str),
    /// `LOCKSTEP_NAME`.
    Env(String),
    /// ConductR's `DEPLOYMENTS_BIND_IP` / `DEPLOYMENTS_BIND_PORT`.
    Bind,
    /// A key of the configuration file.
    File(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(name) => write!(f, "--{name}"),
            Self::Env(name) => f.write_str(name),
            Self::Bind => f.write_str("DEPLOYMENTS_BIND_IP/DEPLOYMENTS_BIND_PORT"),
            Self::File(key) => write!(f, "`{key}` in the configuration file"),
        }
    }
}

/// Why `lockstep serve` is not configured.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A key of the configuration file names no setting.
    UnknownKey(String),
    /// A `LOCKSTEP_*` variable names no setting.
    UnknownVariable(String),
    /// A value its setting does not take.
    Setting {
        /// Where it came from.
        origin: Origin,
        /// What is wrong with it.
        error: SettingError,
    },
    /// No `--repository`.
    NoRepository,
    /// No usable webhook secret.
    Secret(SecretError),
    /// No `--data-dir`, and no per-user location to default to.
    NoDataDir,
    /// Cluster mode, listening on every interface, without `--advertise`.
    NoAdvertise,
    /// `--data-dir` could not be created.
    DataDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// `--ca-file` cannot be used.
    CaFile(CaFileError),
    /// `--repository-credentials` cannot be used.
    RepositoryCredentials(CredentialsError),
    /// `--read-credential-file` could not be read.
    ReadCredentialFile {
        /// The file.
        file: PathBuf,
        /// Why: it could not be read.
        error: Option<std::io::Error>,
        /// Why: what it holds is not a credential (never the credential itself).
        invalid: Option<CredentialError>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKey(key) => write!(f, "unknown key `{key}` in the configuration file"),
            Self::UnknownVariable(name) => write!(
                f,
                "unknown environment variable {name}; `lockstep serve --help` lists them"
            ),
            Self::Setting { origin, error } => write!(f, "{origin}: {error}"),
            Self::NoRepository => f.write_str(
                "--repository is required: the http:// base URL or the directory bundles are \
                 published to (or LOCKSTEP_REPOSITORY)",
            ),
            Self::Secret(e) => e.fmt(f),
            Self::CaFile(e) => e.fmt(f),
            Self::RepositoryCredentials(e) => e.fmt(f),
            Self::NoAdvertise => f.write_str(
                "--advertise is required with --etcd when --listen is 0.0.0.0 or [::]: the \
                 other instances relay to the active one at that address",
            ),
            Self::NoDataDir => f.write_str(
                "--data-dir is required when neither XDG_STATE_HOME nor HOME is set (or \
                 LOCKSTEP_DATA_DIR)",
            ),
            Self::DataDir { dir, error } => {
                write!(
                    f,
                    "--data-dir: `{}` cannot be created: {error}",
                    dir.display()
                )
            }
            Self::ReadCredentialFile {
                file,
                error,
                invalid,
            } => {
                write!(f, "--read-credential-file {}: ", file.display())?;
                match (error, invalid) {
                    (Some(error), _) => error.fmt(f),
                    (None, Some(invalid)) => invalid.fmt(f),
                    (None, None) => f.write_str("not a credential"),
                }
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<SecretError> for Error {
    fn from(e: SecretError) -> Self {
        Self::Secret(e)
    }
}

/// One setting.
pub struct Setting {
    /// The flag without `--`; the environment variable is `LOCKSTEP_` and this in upper case
    /// with `_`; the TOML key is this with `_`.
    pub name: &'static str,
    /// The value used when none is given, as text (shown by `--help`).
    pub default: &'static str,
    /// What it does.
    pub help: &'static str,
    apply: Apply,
}

impl fmt::Debug for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Setting")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Setting {
    /// `LOCKSTEP_NAME`.
    pub fn env(&self) -> String {
        format!(
            "LOCKSTEP_{}",
            self.name.to_ascii_uppercase().replace('-', "_")
        )
    }

    /// `name` with `_`.
    pub fn key(&self) -> String {
        self.name.replace('-', "_")
    }
}

fn count(text: &str, max: usize) -> Result<usize, SettingError> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| SettingError::NotWholeNumber(text.to_owned()))?;
    if n == 0 || n > max {
        return Err(SettingError::OutOfRange { n, max });
    }
    Ok(n)
}

fn positive(text: &str) -> Result<Duration, SettingError> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err(SettingError::Zero);
    }
    Ok(d)
}

/// The longest `--settle`: a watch longer than this is a step that never ends.
const MAX_SETTLE: Duration = Duration::from_secs(3600);

/// The settings whose flag may be given several times, each adding to the list.
const REPEATABLE: &[&str] = &["notify"];

/// Where ConductR's control API is unless configured: its own default.
const DEFAULT_CONDUCTR: &str = "http://127.0.0.1:9005";

/// The table, in the order of `--help`.
pub static SETTINGS: &[Setting] = &[
    Setting {
        name: "listen",
        default: "127.0.0.1:9010",
        help: "Address to listen on (IP:PORT; port 0 picks a free port). ConductR's \
               DEPLOYMENTS_BIND_IP and DEPLOYMENTS_BIND_PORT are honoured below LOCKSTEP_LISTEN",
        apply: |c, v| {
            c.listen = parse_address(v)?;
            Ok(())
        },
    },
    Setting {
        name: "conductr",
        default: DEFAULT_CONDUCTR,
        help: "The ConductR control API's base URL",
        apply: |c, v| {
            c.conductr = BaseUrl::parse(v)?;
            Ok(())
        },
    },
    Setting {
        name: "repository",
        default: "(required)",
        help: "Where bundles are published: an http:// or https:// base URL, or a directory in \
               the same layout",
        apply: |c, v| {
            c.repository = Some(RepositoryOption::parse(v)?);
            Ok(())
        },
    },
    Setting {
        name: "ca-file",
        default: "(the system's CAs only)",
        help: "A PEM file of CA certificates trusted for https:// (--repository, --conductr, \
               --notify) beside the system's: a private CA. Verification cannot be turned off",
        apply: |c, v| {
            c.ca_file = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Setting {
        name: "repository-credentials",
        default: "(none)",
        help: "A file holding the repository's credentials, one line: user:password (HTTP \
               Basic) or Bearer <token>. Sent to the repository's host only, never to a host \
               a download is redirected to",
        apply: |c, v| {
            c.repository_credentials = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Setting {
        name: "data-dir",
        default: "($XDG_STATE_HOME/lockstep, else ~/.local/state/lockstep)",
        help: "The journal of deployments and the downloads in flight; created (0700) if \
               missing; one process per directory",
        apply: |c, v| {
            let dir = PathBuf::from(v);
            if dir.exists() && !dir.is_dir() {
                return Err(SettingError::NotADirectory(dir));
            }
            c.data_dir = Some(dir);
            Ok(())
        },
    },
    Setting {
        name: "etcd",
        default: "(none: the journal in --data-dir)",
        help: "Cluster mode: etcd's client URLs, comma-separated (http://). The journal is kept \
               in etcd under /lockstep/; one instance is active (it holds /lockstep/leader on \
               its lease), the others wait, not listening, and take over when its lease expires",
        apply: |c, v| {
            let urls: Result<Vec<BaseUrl>, BadUrl> = v
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(BaseUrl::parse)
                .collect();
            let urls = urls?;
            if urls.is_empty() {
                return Err(SettingError::AtLeast("one URL"));
            }
            if let Some(url) = urls.iter().find(|u| u.url().scheme() != Scheme::Http) {
                return Err(SettingError::HttpOnly(url.as_str().to_owned()));
            }
            c.etcd = urls;
            Ok(())
        },
    },
    Setting {
        name: "lease-ttl",
        default: "10s",
        help: "Cluster mode: the lease's time to live, in whole seconds: how long after the \
               active instance dies (or loses etcd) another takes over",
        apply: |c, v| {
            let ttl = positive(v)?;
            if ttl < Duration::from_secs(2) {
                return Err(SettingError::AtLeast("2s"));
            }
            c.lease_ttl = ttl;
            Ok(())
        },
    },
    Setting {
        name: "advertise",
        default: "(the listen address)",
        help: "Cluster mode: the address at which the other instances reach this one when it \
               is the active instance (they relay every connection to it); required when \
               --listen is 0.0.0.0 or [::]",
        apply: |c, v| {
            c.advertise = Some(parse_address(v)?);
            Ok(())
        },
    },
    Setting {
        name: "secret-file",
        default: "(BINTRAY_WEBHOOK_SECRET)",
        help: "A file holding the webhook secret (1 to 128 bytes; a trailing newline is not \
               part of it); otherwise the environment variable BINTRAY_WEBHOOK_SECRET",
        apply: |c, v| {
            c.secret_file = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Setting {
        name: "read-credential-file",
        default: "(reads are open)",
        help: "A file holding user:password (one line): GET /deployments..., the event stream \
               and /metrics then need it as HTTP Basic authentication (401 without). Off by \
               default, so that the official client, which sends none, keeps working",
        apply: |c, v| {
            c.read_credential_file = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Setting {
        name: "max-head",
        default: "8KiB",
        help: "Largest request head (431 above)",
        apply: |c, v| {
            c.max_head = parse_size(v)?;
            if c.max_head < 256 {
                return Err(SettingError::AtLeast("256 bytes"));
            }
            Ok(())
        },
    },
    Setting {
        name: "max-body",
        default: "8KiB",
        help: "Largest webhook body (413 above); at most 16KiB",
        apply: |c, v| {
            let n = parse_size(v)?;
            BodyLimit::new(n).map_err(SettingError::BodyLimit)?;
            c.max_body = n;
            Ok(())
        },
    },
    Setting {
        name: "read-timeout",
        default: "10s",
        help: "How long a request may take to arrive (408 after)",
        apply: |c, v| {
            c.read_timeout = positive(v)?;
            Ok(())
        },
    },
    Setting {
        name: "idle-timeout",
        default: "30s",
        help: "How long a kept-alive connection may wait for its next request",
        apply: |c, v| {
            c.idle_timeout = positive(v)?;
            Ok(())
        },
    },
    Setting {
        name: "max-connections",
        default: "256",
        help: "Connections held at once; at the limit, the one waiting longest without a \
               request under way is closed for a new one (or the new one refused when every \
               one is busy)",
        apply: |c, v| {
            c.max_connections = count(v, 65_536)?;
            Ok(())
        },
    },
    Setting {
        name: "max-event-streams",
        default: "32",
        help: "Event streams served at once (503 above); fewer than --max-connections",
        apply: |c, v| {
            c.max_event_streams = count(v, 65_535)?;
            Ok(())
        },
    },
    Setting {
        name: "max-in-flight",
        default: "64",
        help: "Deployments in flight at once (503 above); at most 64",
        apply: |c, v| {
            c.max_in_flight = count(v, deployments::CAPACITY)?;
            Ok(())
        },
    },
    Setting {
        name: "replay-cache",
        default: "1024",
        help: "Lockstep signatures remembered within their window (503 when all are live); at \
               most 4096",
        apply: |c, v| {
            c.replay_cache = count(v, MAX_REPLAY_CACHE)?;
            Ok(())
        },
    },
    Setting {
        name: "retention",
        default: "1000",
        help: "Ended deployments kept for reading (older ids answer 404)",
        apply: |c, v| {
            c.retention = count(v, 1_000_000)?;
            Ok(())
        },
    },
    Setting {
        name: "step-deadline",
        default: "2m",
        help: "How long each step of a deployment may take (a request, and the wait for \
               instances to start or stop)",
        apply: |c, v| {
            c.step_deadline = positive(v)?;
            Ok(())
        },
    },
    Setting {
        name: "settle",
        default: "0s",
        help: "How long the new bundle's instances are watched after each step that starts \
               one, before the old bundle goes down: an instance lost meanwhile fails the step \
               (rolled back); at most 1h",
        apply: |c, v| {
            let d = parse_duration(v)?;
            if d > MAX_SETTLE {
                return Err(SettingError::AtMost("1h"));
            }
            c.settle = d;
            Ok(())
        },
    },
    Setting {
        name: "resolve-deadline",
        default: "10m",
        help: "How long downloading and checking a bundle may take",
        apply: |c, v| {
            c.resolve_deadline = positive(v)?;
            Ok(())
        },
    },
    Setting {
        name: "rollback",
        default: "on",
        help: "After a failure in the lock-step: on (run it backwards) or off (leave things)",
        apply: |c, v| {
            c.rollback = one_of(
                v,
                &[("on", RollbackPolicy::On), ("off", RollbackPolicy::Off)],
                "on or off",
            )?;
            Ok(())
        },
    },
    Setting {
        name: "nothing-running",
        default: "fail",
        help: "When no compatible bundle runs: fail, or start-one (load it, run it at scale 1)",
        apply: |c, v| {
            c.nothing_running = one_of(
                v,
                &[
                    ("fail", NothingRunning::Fail),
                    ("start-one", NothingRunning::StartOne),
                ],
                "fail or start-one",
            )?;
            Ok(())
        },
    },
    Setting {
        name: "schemes",
        default: "both",
        help: "Signature schemes accepted: both, lockstep or bintray",
        apply: |c, v| {
            c.schemes = one_of(
                v,
                &[
                    ("both", Schemes::BOTH),
                    ("lockstep", Schemes::LOCKSTEP_ONLY),
                    ("bintray", Schemes::BINTRAY_ONLY),
                ],
                "both, lockstep or bintray",
            )?;
            Ok(())
        },
    },
    Setting {
        name: "replay-window",
        default: "5m",
        help: "How far from now a lockstep signature's timestamp may be",
        apply: |c, v| {
            c.replay_window = positive(v)?;
            Ok(())
        },
    },
    Setting {
        name: "allow",
        default: "(all)",
        help: "org/repo/package that may be deployed (each part may be *), comma-separated; \
               others are refused with 403. Empty: all",
        apply: |c, v| {
            c.allow.clear();
            for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let allowed = Allowed::parse(item)
                    .ok_or_else(|| SettingError::NotAllowed(item.to_owned()))?;
                c.allow.push(allowed);
            }
            if c.allow.len() > MAX_ALLOWED {
                return Err(SettingError::TooManyAllowed);
            }
            Ok(())
        },
    },
    Setting {
        name: "workers",
        default: "4",
        help: "Commands carried out at once (downloads, control API requests)",
        apply: |c, v| {
            c.workers = count(v, agent::MAX_WORKERS)?;
            Ok(())
        },
    },
    Setting {
        name: "poll-interval",
        default: "1s",
        help: "How often a waiting step looks at the cluster when no bundle event arrives",
        apply: |c, v| {
            c.poll_interval = positive(v)?;
            Ok(())
        },
    },
    Setting {
        name: "io-timeout",
        default: "10s",
        help: "Deadline of every connect, read and write to ConductR and the repository",
        apply: |c, v| {
            c.io_timeout = positive(v)?;
            Ok(())
        },
    },
    Setting {
        name: "download-limit",
        default: "5m",
        help: "How long one try of a bundle download may take (a failed try is retried; \
               --resolve-deadline bounds them all)",
        apply: |c, v| {
            c.download_limit = positive(v)?;
            Ok(())
        },
    },
    Setting {
        name: "max-bundle-size",
        default: "512MiB",
        help: "Largest bundle (or configuration) downloaded",
        apply: |c, v| {
            c.max_bundle_size = u64::try_from(parse_size(v)?).unwrap_or(u64::MAX);
            Ok(())
        },
    },
    Setting {
        name: "heartbeat",
        default: "2s",
        help: "Interval of the event stream's heartbeats",
        apply: |c, v| {
            c.heartbeat = positive(v)?;
            Ok(())
        },
    },
    Setting {
        name: "drain-deadline",
        default: "30s",
        help: "On SIGTERM or SIGINT, how long running steps may take to finish",
        apply: |c, v| {
            c.drain_deadline = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        name: "notify",
        default: "(none)",
        help: "An http:// or https:// URL to POST each deployment's outcome to, as JSON signed \
               with X-Lockstep-Signature (the webhook secret), once it ends; retried with \
               backoff, never delaying a deployment. Repeatable (at most 8); comma-separated \
               in LOCKSTEP_NOTIFY, a list in the file",
        apply: |c, v| {
            let texts: Vec<&str> = v
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .collect();
            if texts.len() > MAX_RECEIVERS {
                return Err(SettingError::TooManyReceivers);
            }
            let several = texts.len() > 1;
            c.notify = texts
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    NotifyUrl::parse(text).map_err(|error| SettingError::NotifyUrl {
                        nth: several.then_some(i + 1),
                        error,
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(())
        },
    },
    Setting {
        name: "notify-format",
        default: "json",
        help: "The notifications' body: json (the summary) or slack ({\"text\": \"<one line>\"}, \
               for Slack's incoming webhooks and the like)",
        apply: |c, v| {
            c.notify_format = one_of(
                v,
                &[
                    ("json", notify::Format::Json),
                    ("slack", notify::Format::Slack),
                ],
                "json or slack",
            )?;
            Ok(())
        },
    },
    Setting {
        name: "notify-retry",
        default: "1s",
        help: "The pause after a notification's first failed attempt; doubled after each, up \
               to 60s, 8 attempts in all",
        apply: |c, v| {
            c.notify_retry = positive(v)?;
            Ok(())
        },
    },
    Setting {
        name: "notify-timeout",
        default: "10s",
        help: "How long one attempt to deliver a notification may take, from connecting to \
               the answer",
        apply: |c, v| {
            c.notify_timeout = positive(v)?;
            Ok(())
        },
    },
    Setting {
        name: "log-format",
        default: "human",
        help: "human or json (one object per line), on stderr",
        apply: |c, v| {
            c.log_format = one_of(
                v,
                &[("human", LogFormat::Human), ("json", LogFormat::Json)],
                "human or json",
            )?;
            Ok(())
        },
    },
    Setting {
        name: "log-level",
        default: "info",
        help: "error, warn, info or debug",
        apply: |c, v| {
            c.log_level = one_of(
                v,
                &[
                    ("error", LogLevel::Error),
                    ("warn", LogLevel::Warn),
                    ("info", LogLevel::Info),
                    ("debug", LogLevel::Debug),
                ],
                "error, warn, info or debug",
            )?;
            Ok(())
        },
    },
];

impl Default for Config {
    fn default() -> Self {
        let mut config = Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9010)),
            conductr: BaseUrl::parse(DEFAULT_CONDUCTR).expect("the default is a URL"),
            repository: None,
            data_dir: None,
            etcd: Vec::new(),
            lease_ttl: Duration::from_secs(10),
            advertise: None,
            secret_file: None,
            read_credential_file: None,
            ca_file: None,
            repository_credentials: None,
            max_head: 0,
            max_body: 0,
            read_timeout: Duration::ZERO,
            idle_timeout: Duration::ZERO,
            max_connections: 0,
            max_event_streams: 0,
            max_in_flight: 0,
            replay_cache: 0,
            retention: 0,
            step_deadline: Duration::ZERO,
            settle: Duration::ZERO,
            resolve_deadline: Duration::ZERO,
            rollback: RollbackPolicy::On,
            nothing_running: NothingRunning::Fail,
            schemes: Schemes::BOTH,
            replay_window: Duration::ZERO,
            allow: Vec::new(),
            workers: 0,
            poll_interval: Duration::ZERO,
            io_timeout: Duration::ZERO,
            download_limit: Duration::ZERO,
            max_bundle_size: 0,
            heartbeat: Duration::ZERO,
            drain_deadline: Duration::ZERO,
            notify: Vec::new(),
            notify_format: notify::Format::Json,
            notify_retry: Duration::ZERO,
            notify_timeout: Duration::ZERO,
            log_format: LogFormat::Human,
            log_level: LogLevel::Info,
        };
        // The defaults are the table's own texts, parsed like any value.
        for setting in SETTINGS {
            if !setting.default.starts_with('(') {
                let _ = (setting.apply)(&mut config, setting.default);
            }
        }
        config
    }
}

/// Where the values come from.
#[derive(Debug, Default)]
pub struct Sources {
    /// `--name value` pairs, in order.
    pub flags: Vec<(String, String)>,
    /// The environment.
    pub env: BTreeMap<String, String>,
    /// The TOML file's keys, as text.
    pub file: BTreeMap<String, String>,
}

impl Config {
    /// The configuration from these sources, by precedence.
    pub fn from_sources(sources: &Sources) -> Result<Self, Error> {
        let mut config = Self::default();
        for key in sources.file.keys() {
            if !SETTINGS.iter().any(|s| s.key() == *key) {
                return Err(Error::UnknownKey(key.clone()));
            }
        }
        // A variable in our namespace that names no setting is a typo, not someone else's.
        for name in sources.env.keys() {
            if name.starts_with("LOCKSTEP_")
                && name != CONFIG_ENV
                && !SETTINGS.iter().any(|s| s.env() == *name)
            {
                return Err(Error::UnknownVariable(name.clone()));
            }
        }
        let mut origins: Vec<(&str, Origin)> = Vec::new();
        for setting in SETTINGS {
            let mut given = sources
                .flags
                .iter()
                .filter(|(name, _)| name == setting.name)
                .map(|(_, v)| v.as_str());
            // The last flag wins, but a repeatable one's values add up (a comma-separated
            // list, as in its variable).
            let flag = if REPEATABLE.contains(&setting.name) {
                let all: Vec<&str> = given.collect();
                (!all.is_empty()).then(|| all.join(","))
            } else {
                given.next_back().map(str::to_owned)
            }
            .map(|v| (v, Origin::Flag(setting.name)));
            let env = sources
                .env
                .get(&setting.env())
                .map(|v| (v.clone(), Origin::Env(setting.env())));
            let bind = (setting.name == "listen")
                .then(|| bind_from_env(&sources.env))
                .flatten()
                .map(|v| (v, Origin::Bind));
            let file = sources
                .file
                .get(&setting.key())
                .map(|v| (v.clone(), Origin::File(setting.key())));
            if let Some((value, origin)) = flag.or(env).or(bind).or(file) {
                (setting.apply)(&mut config, &value).map_err(|error| Error::Setting {
                    origin: origin.clone(),
                    error,
                })?;
                origins.push((setting.name, origin));
            }
        }
        // Across settings, once all are read: named by where the stream cap came from, or by
        // --max-connections when only that was given.
        if config.max_event_streams >= config.max_connections {
            let origin = ["max-event-streams", "max-connections"]
                .iter()
                .find_map(|name| origins.iter().find(|(n, _)| n == name))
                .map_or(Origin::Flag("max-event-streams"), |(_, o)| o.clone());
            return Err(Error::Setting {
                origin,
                error: SettingError::StreamsNotBelowConnections {
                    streams: config.max_event_streams,
                    connections: config.max_connections,
                },
            });
        }
        Ok(config)
    }

    /// The service's options: the secret read, the repository required.
    pub fn options(&self, env: &BTreeMap<String, String>) -> Result<Options, Error> {
        let repository = self.repository.clone().ok_or(Error::NoRepository)?;
        let secret = secret::read(
            self.secret_file.as_deref(),
            env.get(secret::ENV).map(String::as_str),
        )?;
        let read_credential = match &self.read_credential_file {
            Some(file) => Some(read_credential(file)?),
            None => None,
        };
        let trust = Trust::from_option(self.ca_file.as_deref()).map_err(Error::CaFile)?;
        let repository_credentials = match &self.repository_credentials {
            Some(file) => Some(Credentials::read(file).map_err(Error::RepositoryCredentials)?),
            None => None,
        };
        if !self.etcd.is_empty() && self.advertise.is_none() && self.listen.ip().is_unspecified() {
            return Err(Error::NoAdvertise);
        }
        let data_dir = match &self.data_dir {
            Some(dir) => dir.clone(),
            None => default_data_dir(env).ok_or(Error::NoDataDir)?,
        };
        create_private_dir(&data_dir).map_err(|error| Error::DataDir {
            dir: data_dir.clone(),
            error,
        })?;
        let core = crate::platform::from_std_duration;
        let mut webhooks = service::Config {
            schemes: self.schemes,
            window: core(self.replay_window),
            body_limit: BodyLimit::new(self.max_body).unwrap_or_default(),
            ..service::Config::default()
        };
        for a in &self.allow {
            // At most MAX_ALLOWED: checked when the setting was read.
            let _ = webhooks.allowed.push(*a);
        }
        Ok(Options {
            listen: self.listen,
            conductr: self.conductr.clone(),
            repository,
            data_dir,
            secret,
            limits: http::Limits {
                head_bytes: self.max_head,
                body_bytes: self.max_body.min(MAX_BODY_LIMIT),
                read_timeout: self.read_timeout,
                idle_timeout: self.idle_timeout,
                write_timeout: self.read_timeout,
                max_connections: self.max_connections,
                max_event_streams: self.max_event_streams,
            },
            webhooks,
            replay_cache: self.replay_cache,
            retention: self.retention,
            workers: self.workers,
            policy: Policy {
                nothing_running: self.nothing_running,
                rollback: self.rollback,
                step_deadline: core(self.step_deadline),
                resolve_deadline: core(self.resolve_deadline),
                max_in_flight: self.max_in_flight,
                settle: core(self.settle),
            },
            agent: agent::Config {
                io_timeout: core(self.io_timeout),
                download_limit: core(self.download_limit),
                max_bundle_size: self.max_bundle_size,
                poll_interval: core(self.poll_interval),
                ..agent::Config::default()
            },
            heartbeat: self.heartbeat,
            drain_deadline: self.drain_deadline,
            read_credential,
            trust,
            repository_credentials,
            cluster: (!self.etcd.is_empty()).then(|| ClusterOptions {
                endpoints: self.etcd.clone(),
                lease_ttl: self.lease_ttl,
                advertise: self.advertise,
            }),
            notify: notify::Options {
                receivers: self.notify.clone(),
                format: self.notify_format,
                retry: self.notify_retry,
                timeout: self.notify_timeout,
            },
        })
    }
}

/// The read credential of a file; errors name the file, never what it holds.
fn read_credential(file: &Path) -> Result<Credential, Error> {
    let failed = |error, invalid| Error::ReadCredentialFile {
        file: file.to_path_buf(),
        error,
        invalid,
    };
    let mut bytes = std::fs::read(file).map_err(|e| failed(Some(e), None))?;
    let credential = Credential::from_file_contents(&bytes).map_err(|e| failed(None, Some(e)));
    bytes.fill(0);
    credential
}

/// `DEPLOYMENTS_BIND_IP` and `DEPLOYMENTS_BIND_PORT` (either, with the default for the other)
/// as an address, when set.
fn bind_from_env(env: &BTreeMap<String, String>) -> Option<String> {
    let ip = env.get("DEPLOYMENTS_BIND_IP");
    let port = env.get("DEPLOYMENTS_BIND_PORT");
    if ip.is_none() && port.is_none() {
        return None;
    }
    let ip = ip.map_or("127.0.0.1", String::as_str);
    let port = port.map_or("9010", String::as_str);
    Some(if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    })
}

/// The variable that names the configuration file when `--config` is not given.
pub const CONFIG_ENV: &str = "LOCKSTEP_CONFIG";

/// What `lockstep serve --help` prints: each setting with its flag, variable, key and default.
pub fn help() -> String {
    let mut text = String::from(
        "lockstep serve — the webhook service: a registry's notification in, a lock-step \
         deployment out\n\nUsage: lockstep serve --repository URL|DIR [options]\n\nEvery \
         setting is a flag, an environment variable and a key of the TOML file of --config; \
         precedence: flag > LOCKSTEP_* > DEPLOYMENTS_BIND_* (listen only) > file > default.\n\n\
         Options:\n  --config FILE\n      A TOML file of settings (keys as below)\n      \
         [env: LOCKSTEP_CONFIG] [default: none]\n",
    );
    for s in SETTINGS {
        text.push_str(&format!(
            "  --{} VALUE\n      {}\n      [env: {}] [key: {}] [default: {}]\n",
            s.name,
            s.help,
            s.env(),
            s.key(),
            s.default
        ));
    }
    text.push_str("  -h, --help             Print this help\n");
    text
}

/// The data directory when none is given: `$XDG_STATE_HOME/lockstep`, else
/// `$HOME/.local/state/lockstep` (the XDG base directory specification's place for state that
/// should survive a restart); `None` when neither variable is set (or either is relative).
pub fn default_data_dir(env: &BTreeMap<String, String>) -> Option<PathBuf> {
    let absolute = |name: &str| env.get(name).map(PathBuf::from).filter(|p| p.is_absolute());
    absolute("XDG_STATE_HOME")
        .map(|state| state.join("lockstep"))
        .or_else(|| absolute("HOME").map(|home| home.join(".local/state/lockstep")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(flags: &[(&str, &str)], env: &[(&str, &str)], file: &[(&str, &str)]) -> Sources {
        let pairs = |items: &[(&str, &str)]| {
            items
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        };
        Sources {
            flags: pairs(flags),
            env: pairs(env).into_iter().collect(),
            file: pairs(file).into_iter().collect(),
        }
    }

    #[test]
    fn test_defaults_parse() {
        let c = Config::default();
        assert_eq!(c.listen, "127.0.0.1:9010".parse().unwrap());
        assert_eq!(c.conductr.as_str(), "http://127.0.0.1:9005");
        assert_eq!(c.max_body, 8192);
        assert_eq!(c.step_deadline, Duration::from_secs(120));
        assert_eq!(c.replay_cache, 1024);
        assert_eq!(c.workers, 4);
    }

    #[test]
    fn test_settle_is_0_by_default_and_at_most_an_hour() {
        assert_eq!(Config::default().settle, Duration::ZERO);
        let settle = |v: &str| Config::from_sources(&sources(&[("settle", v)], &[], &[]));
        assert_eq!(settle("1h").unwrap().settle, Duration::from_secs(3600));
        assert_eq!(settle("0s").unwrap().settle, Duration::ZERO);
        assert_eq!(
            settle("3601s").unwrap_err().to_string(),
            "--settle: must be at most 1h"
        );
        assert!(settle("soon").is_err());
    }

    #[test]
    fn test_https_where_it_is_spoken_and_refused_where_it_is_not() {
        let c = Config::from_sources(&sources(
            &[
                ("conductr", "https://conductr.example"),
                ("ca-file", "/etc/ca.pem"),
                ("repository-credentials", "/etc/creds"),
            ],
            &[],
            &[],
        ))
        .unwrap();
        assert_eq!(c.conductr.url().port(), 443);
        assert_eq!(c.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(
            c.repository_credentials.as_deref(),
            Some(Path::new("/etc/creds"))
        );
        // etcd's gateway is spoken over plain http:// only.
        let e = Config::from_sources(&sources(
            &[("etcd", "http://a:2379,https://b:2379")],
            &[],
            &[],
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--etcd: `https://b:2379`: only http:// is supported here"
        );
    }

    #[test]
    fn test_precedence() {
        let all = sources(
            &[("step-deadline", "1s")],
            &[("LOCKSTEP_STEP_DEADLINE", "2s")],
            &[("step_deadline", "3s")],
        );
        assert_eq!(
            Config::from_sources(&all).unwrap().step_deadline,
            Duration::from_secs(1)
        );
        let env = sources(
            &[],
            &[("LOCKSTEP_STEP_DEADLINE", "2s")],
            &[("step_deadline", "3s")],
        );
        assert_eq!(
            Config::from_sources(&env).unwrap().step_deadline,
            Duration::from_secs(2)
        );
        let file = sources(&[], &[], &[("step_deadline", "3s")]);
        assert_eq!(
            Config::from_sources(&file).unwrap().step_deadline,
            Duration::from_secs(3)
        );
        // Listen: LOCKSTEP_LISTEN beats DEPLOYMENTS_BIND_*, which beats the file.
        let bind = sources(
            &[],
            &[
                ("DEPLOYMENTS_BIND_IP", "0.0.0.0"),
                ("DEPLOYMENTS_BIND_PORT", "9999"),
            ],
            &[("listen", "127.0.0.2:1")],
        );
        assert_eq!(
            Config::from_sources(&bind).unwrap().listen,
            "0.0.0.0:9999".parse().unwrap()
        );
        let port_only = sources(&[], &[("DEPLOYMENTS_BIND_PORT", "9999")], &[]);
        assert_eq!(
            Config::from_sources(&port_only).unwrap().listen,
            "127.0.0.1:9999".parse().unwrap()
        );
        let listen = sources(
            &[],
            &[
                ("LOCKSTEP_LISTEN", "127.0.0.3:3"),
                ("DEPLOYMENTS_BIND_PORT", "9999"),
            ],
            &[],
        );
        assert_eq!(
            Config::from_sources(&listen).unwrap().listen,
            "127.0.0.3:3".parse().unwrap()
        );
    }

    #[test]
    fn test_bad_values_name_their_origin() {
        for (s, message) in [
            (sources(&[("max-body", "17KiB")], &[], &[]), "--max-body"),
            (
                sources(&[], &[("LOCKSTEP_ROLLBACK", "maybe")], &[]),
                "LOCKSTEP_ROLLBACK",
            ),
            (
                sources(&[], &[], &[("workers", "0")]),
                "`workers` in the configuration file",
            ),
            (sources(&[], &[], &[("nope", "1")]), "unknown key `nope`"),
            (
                sources(&[], &[("LOCKSTEP_MAX_BODDY", "1")], &[]),
                "unknown environment variable LOCKSTEP_MAX_BODDY",
            ),
            (sources(&[("allow", "a/b")], &[], &[]), "--allow"),
            (sources(&[("listen", "x")], &[], &[]), "--listen"),
        ] {
            let e = Config::from_sources(&s).unwrap_err().to_string();
            assert!(e.contains(message), "{e}");
        }
    }

    #[test]
    fn test_notify_is_repeatable_and_checked_without_quoting_it() {
        let c = Config::default();
        assert!(c.notify.is_empty());
        assert_eq!(c.notify_format, notify::Format::Json);
        assert_eq!(
            (c.notify_retry, c.notify_timeout),
            (Duration::from_secs(1), Duration::from_secs(10))
        );
        let origins = |c: &Config| c.notify.iter().map(NotifyUrl::origin).collect::<Vec<_>>();
        // Flags add up; the variable and the file's list are comma-separated; flags win.
        let flags = sources(
            &[
                ("notify", "http://a.example/hook"),
                ("notify-format", "slack"),
                ("notify", "https://b.example/services/T/B/x"),
            ],
            &[("LOCKSTEP_NOTIFY", "http://c.example")],
            &[],
        );
        let c = Config::from_sources(&flags).unwrap();
        assert_eq!(origins(&c), ["http://a.example", "https://b.example"]);
        assert_eq!(c.notify_format, notify::Format::Slack);
        let env = sources(
            &[],
            &[(
                "LOCKSTEP_NOTIFY",
                "http://c.example, http://d.example:8080/x",
            )],
            &[("notify", "http://e.example")],
        );
        assert_eq!(
            origins(&Config::from_sources(&env).unwrap()),
            ["http://c.example", "http://d.example:8080"]
        );
        for (s, message) in [
            (
                sources(&[("notify", "ftp://hooks.example/secret-token")], &[], &[]),
                "--notify: a URL must start with http:// or https://",
            ),
            (
                sources(
                    &[
                        ("notify", "http://a.example"),
                        ("notify", "http://b.example/a b"),
                    ],
                    &[],
                    &[],
                ),
                "--notify: URL 2: a URL's path and query may hold only visible ASCII",
            ),
            (
                sources(&[], &[], &[("notify", &"http://a.example,".repeat(9))]),
                "`notify` in the configuration file: at most 8 URLs",
            ),
            (
                sources(&[("notify-format", "xml")], &[], &[]),
                "--notify-format: `xml` is not json or slack",
            ),
            (
                sources(&[("notify-retry", "0s")], &[], &[]),
                "--notify-retry: must be more than 0",
            ),
        ] {
            let e = Config::from_sources(&s).unwrap_err().to_string();
            assert!(e.starts_with(message), "{e}");
            assert!(!e.contains("secret-token") && !e.contains("a b"), "{e}");
        }
    }

    #[test]
    fn test_max_event_streams_below_max_connections() {
        let c = Config::default();
        assert_eq!((c.max_connections, c.max_event_streams), (256, 32));
        // The edge: one below is accepted, equal is refused, whichever setting moved.
        let ok = sources(
            &[("max-connections", "3"), ("max-event-streams", "2")],
            &[],
            &[],
        );
        let c = Config::from_sources(&ok).unwrap();
        assert_eq!((c.max_connections, c.max_event_streams), (3, 2));
        for (s, origin) in [
            (
                sources(&[("max-event-streams", "256")], &[], &[]),
                "--max-event-streams: ",
            ),
            (
                sources(&[], &[("LOCKSTEP_MAX_CONNECTIONS", "32")], &[]),
                "LOCKSTEP_MAX_CONNECTIONS: ",
            ),
            (
                sources(
                    &[("max-connections", "2")],
                    &[],
                    &[("max_event_streams", "2")],
                ),
                "`max_event_streams` in the configuration file: ",
            ),
        ] {
            let e = Config::from_sources(&s).unwrap_err().to_string();
            assert!(e.starts_with(origin), "{e}");
            assert!(
                e.contains("--max-event-streams (") && e.contains("must be fewer than"),
                "{e}"
            );
        }
        let zero = sources(&[("max-event-streams", "0")], &[], &[]);
        let e = Config::from_sources(&zero).unwrap_err().to_string();
        assert!(e.contains("--max-event-streams"), "{e}");
    }

    #[test]
    fn test_options_need_repository_and_secret() {
        let c = Config::default();
        assert!(matches!(
            c.options(&BTreeMap::new()),
            Err(Error::NoRepository)
        ));
        let c = Config {
            repository: Some(RepositoryOption::Dir("/tmp".into())),
            ..Config::default()
        };
        let e = c.options(&BTreeMap::new()).unwrap_err().to_string();
        assert!(
            e.contains("BINTRAY_WEBHOOK_SECRET") && e.contains("--secret-file"),
            "{e}"
        );
        let mut env: BTreeMap<String, String> =
            [("BINTRAY_WEBHOOK_SECRET".to_owned(), "s".to_owned())]
                .into_iter()
                .collect();
        // No --data-dir, no HOME: nowhere to keep the journal.
        let e = c.options(&env).unwrap_err().to_string();
        assert!(e.contains("--data-dir is required"), "{e}");
        let state = crate::tempdir::TempDir::new("lockstep-config-state").unwrap();
        env.insert(
            "XDG_STATE_HOME".to_owned(),
            state.path().display().to_string(),
        );
        let options = c.options(&env).unwrap();
        assert_eq!(options.data_dir, state.path().join("lockstep"));
        assert!(options.data_dir.is_dir());
    }

    #[test]
    fn test_default_data_dir_is_the_xdg_state_directory() {
        let env = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(
            default_data_dir(&env(&[("XDG_STATE_HOME", "/s"), ("HOME", "/h")])),
            Some(PathBuf::from("/s/lockstep"))
        );
        assert_eq!(
            default_data_dir(&env(&[("HOME", "/h")])),
            Some(PathBuf::from("/h/.local/state/lockstep"))
        );
        // Relative values are ignored, as the XDG specification says.
        assert_eq!(
            default_data_dir(&env(&[("XDG_STATE_HOME", "s"), ("HOME", "/h")])),
            Some(PathBuf::from("/h/.local/state/lockstep"))
        );
        assert_eq!(default_data_dir(&env(&[("HOME", "")])), None);
    }

    #[test]
    fn test_help_starts_and_ends_as_written() {
        let text = help();
        // The text an operator reads, written out: the head, the first setting; the last.
        let head = "\
lockstep serve — the webhook service: a registry's notification in, a lock-step deployment out

Usage: lockstep serve --repository URL|DIR [options]

Every setting is a flag, an environment variable and a key of the TOML file of --config; \
precedence: flag > LOCKSTEP_* > DEPLOYMENTS_BIND_* (listen only) > file > default.

Options:
  --config FILE
      A TOML file of settings (keys as below)
      [env: LOCKSTEP_CONFIG] [default: none]
  --listen VALUE
      Address to listen on (IP:PORT; port 0 picks a free port). ConductR's DEPLOYMENTS_BIND_IP \
and DEPLOYMENTS_BIND_PORT are honoured below LOCKSTEP_LISTEN
      [env: LOCKSTEP_LISTEN] [key: listen] [default: 127.0.0.1:9010]
  --conductr VALUE
";
        let tail = "
  --log-level VALUE
      error, warn, info or debug
      [env: LOCKSTEP_LOG_LEVEL] [key: log_level] [default: info]
  -h, --help             Print this help
";
        assert!(text.starts_with(head), "{text}");
        assert!(text.ends_with(tail), "{text}");
    }

    #[test]
    fn test_help_has_one_entry_per_setting_in_table_order() {
        let text = help();
        let flags: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("  --")?.strip_suffix(" VALUE"))
            .collect();
        let names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        assert_eq!(flags, names);
    }

    #[test]
    fn test_setting_spellings() {
        let setting = |name| SETTINGS.iter().find(|s| s.name == name).unwrap();
        let max_body = setting("max-body");
        assert_eq!(
            (max_body.env(), max_body.key()),
            ("LOCKSTEP_MAX_BODY".to_owned(), "max_body".to_owned())
        );
        let listen = setting("listen");
        assert_eq!(
            (listen.env(), listen.key()),
            ("LOCKSTEP_LISTEN".to_owned(), "listen".to_owned())
        );
    }
}
