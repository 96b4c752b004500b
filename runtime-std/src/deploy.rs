//! `lockstep deploy <bundle>`: the manual trigger, as `conduct deploy --webhook bintray` behaves
//! (docs/PROTOCOL.md §3). In order:
//!
//! 1. the secret: `--secret-file`, else `BINTRAY_WEBHOOK_SECRET`, else the key
//!    `conductr.continuous-delivery.bintray-webhook-secret` of the official client's settings
//!    file (`$CONDUCTR_CUSTOM_SETTINGS_FILE`, else `~/.conductr/settings.conf`), read with
//!    core's HOCON reader;
//! 2. the bundle shorthand, resolved against the repository's `versions.json` (a directory or an
//!    `http://` base URL): the latest version, the latest with a tag, or the one whose digest
//!    starts with a prefix;
//! 3. on a terminal, `Deploy <package>:<tag>-<short digest>? [Y/n]: ` unless `-y`;
//! 4. the signed webhook to the service (`--url`, HAProxy's port 9000 by default);
//! 5. unless `--no-wait`, the deployment followed to its end: the event stream wakes the
//!    follower on each of the deployment's events and on each heartbeat, and every wake-up
//!    re-reads the deployment's events (`GET /deployments/{id}`), so that an event missed
//!    while the stream was (re)opening is still shown. Each new event is printed as the
//!    official client words it, with the time since the webhook was sent; on a terminal the
//!    lock-step is drawn as two bars (old and new instances) redrawn in place.
//!
//! Exit 0 when the deployment succeeded (or, with `--no-wait`, was accepted); 1 when it failed
//! (its failure on stderr), when `--wait-timeout` passed first, or when anything before it
//! failed.

use std::fmt;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_lite::FutureExt as _;
use lockstep_core::agent::http::{Client, HttpError, Method};
use lockstep_core::bundle::{BundleId, Shorthand, ShorthandError};
use lockstep_core::conductr::sse::{EventStream, Item};
use lockstep_core::hocon::Document;
use lockstep_core::service::Asks;
use lockstep_core::signature::Secret;
use serde_json::Value;

use crate::client::{self, Answer, ClientError, Scheme, Session};
use crate::credentials::Credentials;
use crate::platform::{StdTime, TcpConnector};
use crate::repository::{self, DirRepository, PublishedVersion, RepoError};
use crate::secret::{self, SecretError};
use crate::tls::Trust;
use crate::url::BaseUrl;

/// The service's default address: HAProxy in front of a ConductR cluster.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9000";

/// How long the deployment is followed by default, as the official client.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(180);

/// How long each connect, read and write may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The settings file's key that holds the secret.
pub const SETTINGS_KEY: &str = "conductr.continuous-delivery.bintray-webhook-secret";

/// The environment variable naming the official client's settings file.
pub const SETTINGS_ENV: &str = "CONDUCTR_CUSTOM_SETTINGS_FILE";

/// The environment variable that names the repository when `--repository` is not given (the
/// one `lockstep serve` reads).
pub const REPOSITORY_ENV: &str = "LOCKSTEP_REPOSITORY";

/// How many published versions an error lists, newest first.
pub const LISTED: usize = 10;

/// How often the deployment is read while the event stream cannot be opened.
const POLL: Duration = Duration::from_secs(2);

/// How long an open event stream may stay silent (no event of the deployment, no heartbeat)
/// before the deployment is read again anyway (and the stream reopened).
const QUIET: Duration = Duration::from_secs(10);

/// The least time between two reads of the deployment that heartbeats cause.
const HEARTBEAT_READS: Duration = Duration::from_millis(500);

/// The largest settings file read.
const MAX_SETTINGS: u64 = 64 * 1024;

/// What `lockstep deploy` was asked.
#[derive(Clone, Debug)]
pub struct Options {
    /// The bundle shorthand.
    pub bundle: String,
    /// The service's base URL.
    pub url: BaseUrl,
    /// `--repository`: a directory or an `http://` base URL.
    pub repository: Option<String>,
    /// `--secret-file`.
    pub secret_file: Option<PathBuf>,
    /// Which signature the webhook carries.
    pub scheme: Scheme,
    /// `--target-tag`, each sent as `?tag=`.
    pub target_tags: Vec<String>,
    /// `-y`: no question asked.
    pub yes: bool,
    /// `--no-wait`: print the id and exit.
    pub no_wait: bool,
    /// How long the deployment is followed.
    pub wait_timeout: Duration,
    /// How long each connect, read and write may take.
    pub timeout: Duration,
    /// `--ca-file`: CAs trusted for `https://` beside the system's.
    pub ca_file: Option<PathBuf>,
    /// `--repository-credentials`: sent to an `https://`/`http://` repository.
    pub repository_credentials: Option<PathBuf>,
    /// `--retry`: deploy the version even though its last deployment failed.
    pub retry: bool,
    /// `--allow-downgrade`: deploy the version even though it was published before the
    /// running one.
    pub allow_downgrade: bool,
}

impl Options {
    /// The options for `bundle` with every default.
    pub fn new(bundle: impl Into<String>) -> Self {
        Self {
            bundle: bundle.into(),
            url: BaseUrl::parse(DEFAULT_URL).unwrap_or_else(|_| unreachable!("a valid URL")),
            repository: None,
            secret_file: None,
            scheme: Scheme::Lockstep,
            target_tags: Vec::new(),
            yes: false,
            no_wait: false,
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            ca_file: None,
            repository_credentials: None,
            retry: false,
            allow_downgrade: false,
        }
    }
}

/// Where the command runs: its environment and whether a person is at the terminal.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// `BINTRAY_WEBHOOK_SECRET`.
    pub secret_env: Option<String>,
    /// `CONDUCTR_CUSTOM_SETTINGS_FILE`.
    pub settings_env: Option<PathBuf>,
    /// `HOME`.
    pub home: Option<PathBuf>,
    /// `LOCKSTEP_REPOSITORY`.
    pub repository_env: Option<String>,
    /// Standard input and output are terminals: ask before deploying, draw the progress.
    pub interactive: bool,
    /// Standard output is a terminal: draw the progress in place.
    pub tty: bool,
}

impl Context {
    /// The process's.
    pub fn of_process() -> Self {
        use std::io::IsTerminal as _;
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        let tty = io::stdout().is_terminal();
        Self {
            secret_env: var(secret::ENV),
            settings_env: var(SETTINGS_ENV).map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
            repository_env: var(REPOSITORY_ENV),
            interactive: tty && io::stdin().is_terminal(),
            tty,
        }
    }

    /// The official client's settings file.
    pub fn settings_file(&self) -> PathBuf {
        self.settings_env.clone().unwrap_or_else(|| {
            self.home
                .clone()
                .unwrap_or_else(|| PathBuf::from("~"))
                .join(".conductr")
                .join("settings.conf")
        })
    }
}

/// Why `lockstep deploy` did not deploy, or the deployment did not succeed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No secret anywhere.
    NoSecret {
        /// The settings file looked in.
        settings: PathBuf,
    },
    /// The settings file cannot be read, or is not HOCON lockstep reads.
    Settings {
        /// The file.
        file: PathBuf,
        /// Why.
        error: String,
    },
    /// `--secret-file` or `BINTRAY_WEBHOOK_SECRET` holds no usable secret.
    Secret(SecretError),
    /// The bundle is not a shorthand.
    Bundle {
        /// What was given.
        text: String,
        /// Why.
        error: ShorthandError,
    },
    /// `--ca-file` or `--repository-credentials` cannot be used.
    File(String),
    /// Neither `--repository` nor `LOCKSTEP_REPOSITORY`.
    NoRepository,
    /// The repository's index cannot be read.
    Repository(String),
    /// No published version matches, or a digest prefix matches several.
    NoMatch {
        /// The bundle as asked.
        asked: String,
        /// The package's coordinates, `org/repo/package`.
        package: String,
        /// How many a prefix matched, when several did.
        ambiguous: Option<usize>,
        /// The published versions, newest first (at most [`LISTED`]).
        versions: Vec<PublishedVersion>,
        /// How many versions are published in all.
        total: usize,
    },
    /// The question was answered no.
    Declined,
    /// The webhook got no answer.
    Send(ClientError),
    /// The service refused the webhook.
    Refused {
        /// The webhook's URL.
        url: String,
        /// The status.
        status: u16,
        /// The answer's line.
        line: String,
    },
    /// The service accepted the webhook but did not say which deployment it is.
    NoId {
        /// The webhook's URL.
        url: String,
    },
    /// Following the deployment failed (the service no longer answers, or answers nonsense).
    Follow(String),
    /// The deployment failed.
    Failed {
        /// Its failure line.
        failure: String,
    },
    /// `--wait-timeout` passed before the deployment ended.
    TimedOut {
        /// The deployment.
        id: String,
        /// `--wait-timeout`.
        after: Duration,
        /// Where its events are.
        url: String,
    },
    /// Writing to standard output failed.
    Output(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSecret { settings } => write!(
                f,
                "no webhook secret: {} does not set {SETTINGS_KEY}, no --secret-file was given \
                 and {} is not set\nAdd this line to {}:\n  {SETTINGS_KEY} = \"<the webhook \
                 secret of the lockstep service>\"",
                settings.display(),
                secret::ENV,
                settings.display()
            ),
            Self::Settings { file, error } => write!(f, "{}: {error}", file.display()),
            Self::Secret(e) => e.fmt(f),
            Self::Bundle { text, error } => write!(f, "`{text}` is not a bundle: {error}"),
            Self::NoRepository => write!(
                f,
                "no repository to resolve the bundle in: pass --repository DIR|URL or set \
                 {REPOSITORY_ENV} (the one the service reads)"
            ),
            Self::Repository(e) | Self::File(e) => f.write_str(e),
            Self::NoMatch {
                asked,
                package,
                ambiguous,
                versions,
                total,
            } => {
                match ambiguous {
                    Some(n) => write!(
                        f,
                        "`{asked}`: the digest prefix matches {n} published versions of \
                         {package}: give more of it"
                    )?,
                    None if *total == 0 => {
                        return write!(f, "`{asked}`: {package} has no published version");
                    }
                    None => write!(f, "`{asked}` matches no published version of {package}")?,
                }
                write!(f, "\nPublished versions, newest first")?;
                if *total > versions.len() {
                    write!(f, " ({} of {total})", versions.len())?;
                }
                f.write_str(":")?;
                let name = package.rsplit('/').next().unwrap_or(package);
                for v in versions {
                    write!(f, "\n  {name}:{v}  {}", v.published())?;
                }
                Ok(())
            }
            Self::Declined => f.write_str("Abort"),
            Self::Send(e) => write!(f, "the webhook got no answer: {e}"),
            Self::Refused { url, status, line } => {
                client::write_refusal(f, url, "webhook", *status, line)
            }
            Self::NoId { url } => write!(f, "{url} accepted the webhook but named no deployment"),
            Self::Follow(e) => write!(f, "following the deployment: {e}"),
            Self::Failed { failure } => write!(f, "Failure: {failure}"),
            Self::TimedOut { id, after, url } => write!(
                f,
                "deployment {id} is still in flight after {}s (--wait-timeout); its events: {url}",
                after.as_secs()
            ),
            Self::Output(e) => write!(f, "standard output: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::Output(e)
    }
}

/// Runs `lockstep deploy`: output on `out`, the question read from `input`.
pub fn run(
    options: &Options,
    context: &Context,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let secret = find_secret(options, context)?;
    let shorthand = Shorthand::parse(&options.bundle).map_err(|error| Error::Bundle {
        text: options.bundle.clone(),
        error,
    })?;
    let repository = options
        .repository
        .clone()
        .or_else(|| context.repository_env.clone())
        .ok_or(Error::NoRepository)?;
    let trust =
        Trust::from_option(options.ca_file.as_deref()).map_err(|e| Error::File(e.to_string()))?;
    let credentials = match &options.repository_credentials {
        Some(file) => Some(Credentials::read(file).map_err(|e| Error::File(e.to_string()))?),
        None => None,
    };
    let session = Session::new(options.timeout).with_trust(trust);
    let versions = published(&repository, &shorthand, &session, credentials.as_ref())?;
    let chosen = repository::select(&versions, &shorthand.version).map_err(|e| {
        let ambiguous = match e {
            RepoError::Ambiguous { count } => Some(count),
            _ => None,
        };
        Error::NoMatch {
            asked: options.bundle.clone(),
            package: format!("{}/{}/{}", shorthand.org, shorthand.repo, shorthand.package),
            ambiguous,
            versions: versions.iter().rev().take(LISTED).cloned().collect(),
            total: versions.len(),
        }
    })?;
    let version = chosen.version();
    let display = format!(
        "{}:{}-{}",
        shorthand.package,
        version.tag,
        version.digest.short()
    );
    if context.interactive && !options.yes && !confirmed(&display, input, out)? {
        return Err(Error::Declined);
    }

    let mut stream_buf = vec![0u8; client::BUFFER];
    let mut stream = Stream::new(session.client(&mut stream_buf));
    if !options.no_wait {
        // Open before the webhook is sent, so that not even the first event can pass unseen.
        async_io::block_on(stream.open(&options.url));
        writeln!(out, "Deploying {display}")?;
    }
    let target = webhook_target(&shorthand, &options.target_tags);
    let sent = Instant::now();
    let answer = client::send_webhook(
        &session,
        &options.url,
        &target,
        &client::Notice {
            package: shorthand.package,
            version: &version,
            asks: Asks {
                retry: options.retry,
                allow_downgrade: options.allow_downgrade,
            },
        },
        options.scheme,
        &secret,
    )
    .map_err(Error::Send)?;
    let (_, url) = client::target_of(&options.url, &target);
    let id = accepted_id(&answer, &url)?;
    if options.no_wait {
        writeln!(out, "{id}")?;
        return Ok(());
    }
    writeln!(out, "Deployment request sent.")?;
    writeln!(out, "Deployment id: {id}")?;
    out.flush()?;
    let mut reads_buf = vec![0u8; client::BUFFER];
    let mut follower = Follower {
        reads: session.client(&mut reads_buf),
        stream,
        base: &options.url,
        id: &id,
        sent,
        deadline: sent + options.wait_timeout,
        display: Display::new(context.tty),
    };
    let outcome = async_io::block_on(follower.follow(out));
    match outcome {
        Ok(Outcome::Succeeded) => Ok(()),
        Ok(Outcome::Failed(failure)) => Err(Error::Failed { failure }),
        Ok(Outcome::TimedOut) => Err(Error::TimedOut {
            id: id.clone(),
            after: options.wait_timeout,
            url: client::target_of(&options.url, &format!("/deployments/{id}")).1,
        }),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------------
// The secret
// ---------------------------------------------------------------------------------------------

/// The secret: `--secret-file`, else `BINTRAY_WEBHOOK_SECRET`, else the settings file.
fn find_secret(options: &Options, context: &Context) -> Result<Secret, Error> {
    find_secret_in(options.secret_file.as_deref(), context)
}

/// The secret of `--secret-file` (`secret_file`), else the environment's, else the official
/// client's settings file (`lockstep deploy` and `lockstep abort` look alike).
pub fn find_secret_in(secret_file: Option<&Path>, context: &Context) -> Result<Secret, Error> {
    if secret_file.is_some() || context.secret_env.is_some() {
        return secret::read(secret_file, context.secret_env.as_deref()).map_err(Error::Secret);
    }
    let file = context.settings_file();
    settings_secret(&file)?.ok_or(Error::NoSecret { settings: file })
}

/// The secret the settings file at `file` holds; `None` when there is no such file or it sets
/// no secret.
pub fn settings_secret(file: &Path) -> Result<Option<Secret>, Error> {
    let settings = |error: String| Error::Settings {
        file: file.to_path_buf(),
        error,
    };
    let text = match std::fs::File::open(file) {
        Ok(f) => {
            let mut text = Vec::new();
            io::Read::read_to_end(&mut io::Read::take(f, MAX_SETTINGS + 1), &mut text)
                .map_err(|e| settings(e.to_string()))?;
            if u64::try_from(text.len()).unwrap_or(u64::MAX) > MAX_SETTINGS {
                return Err(settings(format!("larger than {MAX_SETTINGS} bytes")));
            }
            text
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(settings(e.to_string())),
    };
    let document = Document::parse_bytes(&text).map_err(|e| settings(e.to_string()))?;
    let Some(value) =
        document.get_str::<{ lockstep_core::signature::MAX_SECRET_LEN }>(SETTINGS_KEY)
    else {
        return Ok(None);
    };
    let value = value.map_err(|_| {
        settings(format!(
            "{SETTINGS_KEY} is longer than {} bytes",
            lockstep_core::signature::MAX_SECRET_LEN
        ))
    })?;
    if value.is_empty() {
        return Ok(None);
    }
    Secret::new(value.as_bytes())
        .map(Some)
        .map_err(|e| settings(format!("{SETTINGS_KEY}: {e}")))
}

// ---------------------------------------------------------------------------------------------
// The repository
// ---------------------------------------------------------------------------------------------

/// The published versions of the shorthand's package, oldest first: from `versions.json` in a
/// directory or at an `http[s]://` base URL (none when there is no index), downloaded with
/// `credentials` as the agent downloads bundles (redirects followed).
fn published(
    repository: &str,
    shorthand: &Shorthand<'_>,
    session: &Session,
    credentials: Option<&Credentials>,
) -> Result<Vec<PublishedVersion>, Error> {
    let (org, repo, package) = (
        shorthand.org.as_str(),
        shorthand.repo.as_str(),
        shorthand.package.as_str(),
    );
    if !repository.contains("://") {
        return DirRepository::new(repository)
            .versions(org, repo, package)
            .map_err(|e| Error::Repository(format!("the repository {repository}: {e}")));
    }
    let base =
        BaseUrl::parse(repository).map_err(|e| Error::Repository(format!("--repository {e}")))?;
    let target = format!("/{org}/{repo}/{org}/{package}/{}", repository::INDEX_FILE);
    let answer = session
        .download(&base, &target, credentials.map(Credentials::authorization))
        .map_err(|e| Error::Repository(format!("the repository: {e}")))?;
    let url = client::target_of(&base, &target).1;
    match answer.status {
        200 => repository::parse_index(&answer.body)
            .map_err(|e| Error::Repository(format!("{url}: {e}"))),
        404 => Ok(Vec::new()),
        status => Err(Error::Repository(format!(
            "{url} answered {status} {}",
            answer.line()
        ))),
    }
}

/// Asks `Deploy <display>? [Y/n]: `; yes unless the answer is something else than empty, `y`
/// or `yes` (either case).
fn confirmed(display: &str, input: &mut dyn BufRead, out: &mut dyn Write) -> Result<bool, Error> {
    write!(out, "Deploy {display}? [Y/n]: ")?;
    out.flush()?;
    let mut line = String::new();
    input.read_line(&mut line)?;
    let answer = line.trim().to_ascii_lowercase();
    Ok(answer.is_empty() || answer == "y" || answer == "yes")
}

// ---------------------------------------------------------------------------------------------
// The webhook
// ---------------------------------------------------------------------------------------------

/// The webhook's path and query: `/deployments/{org}/{repo}/{org}[?tag=T...]`, as the official
/// client forms it.
fn webhook_target(shorthand: &Shorthand<'_>, tags: &[String]) -> String {
    let mut target = format!(
        "/deployments/{}/{}/{}",
        shorthand.org, shorthand.repo, shorthand.org
    );
    for (i, tag) in tags.iter().enumerate() {
        target.push(if i == 0 { '?' } else { '&' });
        target.push_str("tag=");
        target.push_str(tag);
    }
    target
}

/// The deployment id of a 202, or why there is none.
fn accepted_id(answer: &Answer, url: &str) -> Result<String, Error> {
    if !answer.is_success() {
        return Err(Error::Refused {
            url: url.to_owned(),
            status: answer.status,
            line: answer.line(),
        });
    }
    let id = answer.line();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(Error::NoId {
            url: url.to_owned(),
        });
    }
    Ok(id)
}

// ---------------------------------------------------------------------------------------------
// Following
// ---------------------------------------------------------------------------------------------

/// How a followed deployment ended.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Succeeded,
    Failed(String),
    TimedOut,
}

/// What woke the follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    /// News of the deployment, a heartbeat, or the poll interval passed.
    Read,
    /// The deadline passed.
    Deadline,
}

/// The service's event stream: open or not.
struct Stream<'b> {
    client: Client<'b, TcpConnector, StdTime>,
    open: bool,
}

impl<'b> Stream<'b> {
    fn new(client: Client<'b, TcpConnector, StdTime>) -> Self {
        Self {
            client,
            open: false,
        }
    }

    /// Opens the stream; stays closed when the service does not serve it.
    async fn open(&mut self, base: &BaseUrl) {
        let (path, _) = client::target_of(base, "/deployments/events");
        let begun = self
            .client
            .begin(
                Method::Get,
                base.url().origin(),
                &path,
                &[
                    ("Accept", "text/event-stream"),
                    ("User-Agent", client::USER_AGENT),
                ],
                None,
            )
            .await;
        self.open = begun.is_ok()
            && self
                .client
                .response()
                .await
                .is_ok_and(|head| head.status == 200);
        if !self.open {
            self.client.close();
        }
    }

    /// Waits until the stream names `id`, or sends a heartbeat at least [`HEARTBEAT_READS`]
    /// after `since` (a service that floods heartbeats is not re-read for each). An error or
    /// the stream's end closes it, and then waits [`POLL`] before it returns, so that a stream
    /// that fails at once cannot make the follower spin.
    async fn news(&mut self, id: &str, parser: &mut EventStream<'_>, since: Instant) {
        let mut chunk = [0u8; 1024];
        loop {
            let n = match self.client.read(&mut chunk).await {
                Ok(n) if n > 0 => n,
                _ => return self.failed().await,
            };
            let mut input = chunk.get(..n).unwrap_or_default();
            loop {
                match parser.next(&mut input) {
                    Ok(Some(Item::Heartbeat)) if since.elapsed() >= HEARTBEAT_READS => return,
                    Ok(Some(Item::Event(event))) if event.data == id => return,
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => return self.failed().await,
                }
            }
        }
    }

    /// Closes the stream, and returns after [`POLL`].
    async fn failed(&mut self) {
        self.open = false;
        self.client.close();
        async_io::Timer::after(POLL).await;
    }
}

/// Follows one deployment to its end.
struct Follower<'a, 'b> {
    reads: Client<'b, TcpConnector, StdTime>,
    stream: Stream<'b>,
    base: &'a BaseUrl,
    id: &'a str,
    sent: Instant,
    deadline: Instant,
    display: Display,
}

impl Follower<'_, '_> {
    async fn follow(&mut self, out: &mut dyn Write) -> Result<Outcome, Error> {
        let mut line_buf = vec![0u8; 4096];
        let mut shown = 0u64;
        loop {
            let mut events = self.events().await?;
            events.sort_by_key(sequence);
            for event in &events {
                if sequence(event) > shown {
                    shown = sequence(event);
                    self.display.event(out, event, self.sent.elapsed())?;
                }
            }
            if let Some(outcome) = ended(&events) {
                self.display.finish(out)?;
                return Ok(outcome);
            }
            let wake = {
                let mut parser = EventStream::new(&mut line_buf);
                self.wait(&mut parser).await
            };
            if wake == Wake::Deadline {
                self.display.finish(out)?;
                return Ok(Outcome::TimedOut);
            }
        }
    }

    /// Waits for news, a heartbeat, the poll interval or the deadline.
    async fn wait(&mut self, parser: &mut EventStream<'_>) -> Wake {
        let now = Instant::now();
        if now >= self.deadline {
            return Wake::Deadline;
        }
        if !self.stream.open {
            self.stream.open(self.base).await;
        }
        // An open stream wakes the follower itself (its heartbeats come every 2 s by
        // default); the poll interval covers a stream that cannot be opened, or went quiet.
        let poll = if self.stream.open { QUIET } else { POLL };
        let until = self.deadline.min(now + poll);
        let timer = async {
            async_io::Timer::at(until).await;
            if until >= self.deadline {
                Wake::Deadline
            } else {
                Wake::Read
            }
        };
        if self.stream.open {
            let id = self.id;
            let stream = &mut self.stream;
            async {
                stream.news(id, parser, now).await;
                Wake::Read
            }
            .or(timer)
            .await
        } else {
            timer.await
        }
    }

    /// The deployment's events, oldest first.
    async fn events(&mut self) -> Result<Vec<Value>, Error> {
        let target = format!("/deployments/{}", self.id);
        let mut tries = 0;
        let answer = loop {
            match client::request(
                &mut self.reads,
                Method::Get,
                self.base,
                &target,
                &[("Accept", "application/json")],
                &[],
                client::MAX_BODY,
            )
            .await
            {
                Ok(answer) => break answer,
                // A kept-alive connection the service closed meanwhile: once more, afresh.
                Err(ClientError::Http {
                    error: HttpError::Io,
                    ..
                }) if tries == 0 => tries += 1,
                Err(e) => return Err(Error::Follow(e.to_string())),
            }
        };
        if answer.status != 200 {
            return Err(Error::Follow(format!(
                "{} answered {} {}",
                client::target_of(self.base, &target).1,
                answer.status,
                answer.line()
            )));
        }
        match serde_json::from_slice::<Value>(&answer.body) {
            Ok(Value::Array(events)) => Ok(events),
            _ => Err(Error::Follow(format!(
                "{} is not a JSON array of events",
                client::target_of(self.base, &target).1
            ))),
        }
    }
}

fn sequence(event: &Value) -> u64 {
    event
        .get("deploymentSequence")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn event_type(event: &Value) -> &str {
    event
        .get("eventType")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// How the deployment ended, if it did.
fn ended(events: &[Value]) -> Option<Outcome> {
    events.iter().find_map(|e| match event_type(e) {
        "deploymentSuccess" => Some(Outcome::Succeeded),
        "deploymentFailure" => Some(Outcome::Failed(
            e.get("failure")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        )),
        _ => None,
    })
}

/// The scales of a `deploy` event: old, new.
fn scales(event: &Value) -> Option<(u64, u64)> {
    let scale = |side: &str| event.get(side)?.get("scale")?.as_u64();
    Some((scale("bundleOld")?, scale("bundleNew")?))
}

/// An event as the official client words it (`bundle_deploy_v2.py`): what `lockstep deploy`
/// and `lockstep demo` print.
pub fn describe(event: &Value) -> String {
    match event_type(event) {
        "deploymentStarted" => "Deployment started".to_owned(),
        "bundleDownload" => "Downloading bundle".to_owned(),
        "configDownload" => {
            let id = event
                .get("compatibleBundleId")
                .and_then(Value::as_str)
                .unwrap_or_default();
            // The short id (docs/PROTOCOL.md §3), as the official client shows it.
            let shown =
                BundleId::parse(id).map_or_else(|_| id.to_owned(), |b| b.short().to_string());
            format!("Downloading config from bundle {shown}")
        }
        "load" if event.get("configFileName").is_some() => "Loading bundle with config".to_owned(),
        "load" => "Loading bundle".to_owned(),
        "deploy" => match scales(event) {
            Some((old, new)) => format!("Deploying - {old} old instance vs {new} new instance"),
            None => "Deploying".to_owned(),
        },
        "deploymentSuccess" => "Success".to_owned(),
        "deploymentFailure" => format!(
            "Failure: {}",
            event
                .get("failure")
                .and_then(Value::as_str)
                .unwrap_or_default()
        ),
        other => format!("Unknown deployment state {other}"),
    }
}

/// How events are shown: a line each, or on a terminal the lock-step as bars redrawn in place.
#[derive(Debug)]
struct Display {
    tty: bool,
    /// The bars' line is on screen, unfinished.
    drawing: bool,
    /// The most instances either side had: the bars' width.
    widest: u64,
}

impl Display {
    const fn new(tty: bool) -> Self {
        Self {
            tty,
            drawing: false,
            widest: 1,
        }
    }

    fn event(&mut self, out: &mut dyn Write, event: &Value, elapsed: Duration) -> io::Result<()> {
        let line = describe(event);
        let at = format!("[{:>6.1}s]", elapsed.as_secs_f64());
        match (self.tty, scales(event)) {
            (true, Some((old, new))) => {
                self.widest = self.widest.max(old).max(new);
                write!(out, "\r\x1b[2K{at} {}  {line}", bars(old, new, self.widest))?;
                self.drawing = true;
            }
            _ => {
                self.finish(out)?;
                if event_type(event) == "deploymentFailure" {
                    // The failure goes to stderr, once, as the command's error.
                    return Ok(());
                }
                writeln!(out, "{at} {line}")?;
            }
        }
        out.flush()
    }

    /// Ends the bars' line, if one is drawn.
    fn finish(&mut self, out: &mut dyn Write) -> io::Result<()> {
        if self.drawing {
            self.drawing = false;
            writeln!(out)?;
        }
        out.flush()
    }
}

/// `old ███░░ 3  new ██░░░ 2`: each side's started instances out of `widest`.
pub fn bars(old: u64, new: u64, widest: u64) -> String {
    let bar = |n: u64| {
        let n = usize::try_from(n.min(widest)).unwrap_or(0);
        let width = usize::try_from(widest).unwrap_or(0);
        format!("{}{}", "█".repeat(n), "░".repeat(width.saturating_sub(n)))
    };
    format!("old {} {old}  new {} {new}", bar(old), bar(new))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::temp_dir;

    #[test]
    fn test_describe_words_events_as_the_official_client() {
        let cases = [
            (
                json!({"eventType": "deploymentStarted"}),
                "Deployment started",
            ),
            (json!({"eventType": "bundleDownload"}), "Downloading bundle"),
            (
                json!({"eventType": "configDownload", "compatibleBundleId":
                    "9f8928a01e3c4fe0bd04e70cca3b1604-65df1f2c13f738814ec84d209a54873e"}),
                "Downloading config from bundle 9f8928a-65df1f2",
            ),
            (json!({"eventType": "load"}), "Loading bundle"),
            (
                json!({"eventType": "load", "configFileName": "config-x.zip"}),
                "Loading bundle with config",
            ),
            (
                json!({"eventType": "deploy", "bundleOld": {"scale": 3}, "bundleNew": {"scale": 1}}),
                "Deploying - 3 old instance vs 1 new instance",
            ),
            (json!({"eventType": "deploymentSuccess"}), "Success"),
            (
                json!({"eventType": "deploymentFailure", "failure": "superseded by x"}),
                "Failure: superseded by x",
            ),
        ];
        for (event, line) in cases {
            assert_eq!(describe(&event), line);
        }
    }

    #[test]
    fn test_bars_show_each_side_out_of_the_widest() {
        assert_eq!(bars(3, 0, 3), "old ███ 3  new ░░░ 0");
        assert_eq!(bars(2, 1, 3), "old ██░ 2  new █░░ 1");
        // More than the width (a scale that grew meanwhile) fills the bar, never overflows.
        assert_eq!(bars(5, 0, 3), "old ███ 5  new ░░░ 0");
    }

    #[test]
    fn test_tty_display_redraws_the_lock_step_in_place() {
        let mut out = Vec::new();
        let mut display = Display::new(true);
        let deploy = |old, new| json!({"eventType": "deploy", "bundleOld": {"scale": old}, "bundleNew": {"scale": new}});
        display
            .event(&mut out, &json!({"eventType": "load"}), Duration::ZERO)
            .unwrap();
        display
            .event(&mut out, &deploy(3, 0), Duration::from_millis(100))
            .unwrap();
        display
            .event(&mut out, &deploy(3, 1), Duration::from_millis(200))
            .unwrap();
        display
            .event(
                &mut out,
                &json!({"eventType": "deploymentSuccess"}),
                Duration::from_millis(300),
            )
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "[   0.0s] Loading bundle\n\
             \r\x1b[2K[   0.1s] old ███ 3  new ░░░ 0  Deploying - 3 old instance vs 0 new instance\
             \r\x1b[2K[   0.2s] old ███ 3  new █░░ 1  Deploying - 3 old instance vs 1 new instance\n\
             [   0.3s] Success\n"
        );
    }

    #[test]
    fn test_plain_display_prints_a_line_per_event_and_leaves_the_failure_to_stderr() {
        let mut out = Vec::new();
        let mut display = Display::new(false);
        for event in [
            json!({"eventType": "deploy", "bundleOld": {"scale": 1}, "bundleNew": {"scale": 0}}),
            json!({"eventType": "deploymentFailure", "failure": "f"}),
        ] {
            display.event(&mut out, &event, Duration::ZERO).unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[   0.0s] Deploying - 1 old instance vs 0 new instance\n"
        );
    }

    #[test]
    fn test_settings_secret_in_nested_and_dotted_form() {
        let dir = temp_dir();
        let nested = dir.path().join("nested.conf");
        std::fs::write(
            &nested,
            "conductr {\n  continuous-delivery {\n    bintray-webhook-secret = bt-secret\n  }\n}\n",
        )
        .unwrap();
        let dotted = dir.path().join("dotted.conf");
        std::fs::write(
            &dotted,
            "# mine\nconductr.continuous-delivery.bintray-webhook-secret = \"bt-secret\"\n",
        )
        .unwrap();
        let expected = Secret::new(b"bt-secret").unwrap();
        for file in [nested, dotted] {
            let secret = settings_secret(&file).unwrap().unwrap();
            assert_eq!(
                lockstep_core::signature::bintray_sign(&secret, "p").as_str(),
                lockstep_core::signature::bintray_sign(&expected, "p").as_str()
            );
        }
    }

    #[test]
    fn test_settings_without_the_secret_or_absent_is_none_and_broken_is_an_error() {
        let dir = temp_dir();
        assert!(
            settings_secret(&dir.path().join("absent.conf"))
                .unwrap()
                .is_none()
        );
        let other = dir.path().join("other.conf");
        std::fs::write(&other, "conductr.ip = 10.0.0.1\n").unwrap();
        assert!(settings_secret(&other).unwrap().is_none());
        let broken = dir.path().join("broken.conf");
        std::fs::write(&broken, "include \"x.conf\"\n").unwrap();
        let e = settings_secret(&broken).unwrap_err().to_string();
        assert!(e.starts_with(&broken.display().to_string()), "{e}");
    }

    #[test]
    fn test_no_secret_is_three_lines_naming_the_file_and_the_line_to_add() {
        let text = Error::NoSecret {
            settings: PathBuf::from("/home/op/.conductr/settings.conf"),
        }
        .to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains("/home/op/.conductr/settings.conf"));
        assert_eq!(
            lines[1],
            "Add this line to /home/op/.conductr/settings.conf:"
        );
        assert!(lines[2].starts_with("  conductr.continuous-delivery.bintray-webhook-secret = "));
    }

    #[test]
    fn test_webhook_target_is_the_official_clients_path_and_tags() {
        let shorthand = Shorthand::parse("visualizer").unwrap();
        assert_eq!(
            webhook_target(&shorthand, &[]),
            "/deployments/typesafe/bundle/typesafe"
        );
        let shorthand = Shorthand::parse("acme/releases/web:1.0").unwrap();
        assert_eq!(
            webhook_target(&shorthand, &["blue".into(), "eu".into()]),
            "/deployments/acme/releases/acme?tag=blue&tag=eu"
        );
    }

    #[test]
    fn test_a_refused_webhook_says_status_and_line_and_hints_at_the_secret() {
        let answer = Answer {
            status: 403,
            content_type: String::new(),
            body: b"signature mismatch\n".to_vec(),
        };
        let e = accepted_id(&answer, "http://h/deployments/a/b/a").unwrap_err();
        assert_eq!(
            e.to_string(),
            "http://h/deployments/a/b/a refused the webhook: 403 signature mismatch (is the \
             secret the one the service has?)"
        );
    }

    /// A service that accepts the webhook and answers every request for the event stream
    /// `stream` (then closes); the deployment succeeds once `ends_after` has passed. Answers
    /// the number of times the deployment was read.
    fn hostile_service(
        stream: &'static [u8],
        ends_after: Duration,
    ) -> (BaseUrl, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::Read as _;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = BaseUrl::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let reads = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = reads.clone();
        let start = Instant::now();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let counted = counted.clone();
                std::thread::spawn(move || {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let Ok(n) = conn.read(&mut buf) else { return };
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                        let Some(end) = text.find("\r\n\r\n") else {
                            continue;
                        };
                        let length = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |n| n.trim().parse::<usize>().unwrap());
                        if request.len() < end + 4 + length {
                            continue;
                        }
                        let head = text[..end].to_owned();
                        request.drain(..end + 4 + length);
                        let answer: Vec<u8> = if head.starts_with("post ") {
                            b"HTTP/1.1 202 Accepted\r\nContent-Length: 36\r\n\r\n\
                              6bce8947-c7f6-4159-870f-f5be93001013"
                                .to_vec()
                        } else if head.starts_with("get /deployments/events ") {
                            let mut a = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                                          Connection: close\r\n\r\n"
                                .to_vec();
                            a.extend_from_slice(stream);
                            let _ = conn.write_all(&a);
                            return;
                        } else {
                            counted.fetch_add(1, Ordering::SeqCst);
                            let body = if start.elapsed() >= ends_after {
                                r#"[{"eventType":"deploymentSuccess","deploymentSequence":1}]"#
                            } else {
                                "[]"
                            };
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                                 Content-Length: {}\r\n\r\n{body}",
                                body.len()
                            )
                            .into_bytes()
                        };
                        if conn.write_all(&answer).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (base, reads)
    }

    /// A repository directory with one version of `web`.
    fn one_version() -> crate::tempdir::TempDir {
        let dir = temp_dir();
        let package = dir.path().join("typesafe/bundle/typesafe/web");
        std::fs::create_dir_all(&package).unwrap();
        std::fs::write(
            package.join("versions.json"),
            format!(
                r#"[{{"version":"1.0-{}","published":"2026-12-01T10:00:00Z"}}]"#,
                "ab".repeat(32)
            ),
        )
        .unwrap();
        dir
    }

    #[test]
    fn test_follow_a_stream_that_fails_at_once_or_floods_heartbeats_does_not_spin() {
        let repository = one_version();
        for stream in [
            // Closed at once.
            &b""[..],
            // A line longer than the parser's buffer.
            &[b'x'; 8192][..],
            // Heartbeats, as fast as the connection carries them.
            &b":\n\n:\n\n:\n\n:\n\n:\n\n:\n\n:\n\n:\n\n:\n\n:\n\n:\n\n:\n\n:\n\n:\n\n"[..],
        ] {
            let (url, reads) = hostile_service(stream, Duration::from_millis(1500));
            let mut options = Options::new("web");
            options.url = url;
            options.repository = Some(repository.path().display().to_string());
            let context = Context {
                secret_env: Some("s3cret".into()),
                ..Context::default()
            };
            let mut out = Vec::new();
            run(&options, &context, &mut io::empty(), &mut out).unwrap();
            // Read once at once, then every poll interval (2 s): a few reads, not thousands.
            let reads = reads.load(std::sync::atomic::Ordering::SeqCst);
            assert!((2..=6).contains(&reads), "{reads} reads");
            assert!(String::from_utf8(out).unwrap().ends_with("] Success\n"));
        }
    }
}
