//! `lockstep demo`: a sandbox with the demo and a lockstep service wired to it, in one process.
//! It sends itself a signed webhook for the first compatible version, prints the deployment's
//! progress as the official client shows it, then prints how to deploy the other versions (with
//! curl, and with the official client through the sandbox's control API, which forwards the
//! deployments endpoints to the service) and stays up until Ctrl-C.

use std::fmt;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use lockstep_core::deployer::{DeploymentId, DeploymentIdError};
use lockstep_core::signature::{Secret, SecretError, lockstep_sign};

use crate::config::{self, Config};
use crate::deployments::RepositoryOption;
use crate::signals::Stop;
use crate::tempdir::DataDir;
use crate::url::{BadUrl, BaseUrl};
use crate::{log, sandbox, serve};

/// How the demo runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where everything is kept; a fresh temporary directory (removed at the end) when `None`.
    pub data_dir: Option<PathBuf>,
    /// Where the service listens (port 0: any free port).
    pub listen: SocketAddr,
    /// Where the sandbox listens.
    pub sandbox: SocketAddr,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            data_dir: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            sandbox: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// Why the demo stopped short.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No temporary directory could be made.
    TempDir(io::Error),
    /// A file or directory of the demo's cannot be written.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The OS has no randomness for the secret.
    Random(getrandom::Error),
    /// The secret made is no secret (it always is).
    Secret(SecretError),
    /// The sandbox did not start.
    Sandbox(io::Error),
    /// The sandbox has not loaded the demo.
    NoDemo,
    /// The sandbox's demo lacks a version: `running`, `compatible`, `second compatible` or
    /// `incompatible`.
    NoVersion(&'static str),
    /// A URL of the sandbox's is none for lockstep.
    Url(BadUrl),
    /// The service's configuration.
    Config(config::Error),
    /// The service did not start.
    Service(io::Error),
    /// The webhook could not be sent.
    Webhook(io::Error),
    /// The webhook was refused.
    Refused {
        /// The status.
        status: u16,
        /// The answer's body.
        answer: String,
    },
    /// The webhook's answer is no deployment id.
    BadId(DeploymentIdError),
    /// The deployment cannot be followed.
    Follow(io::Error),
    /// Its events are not JSON.
    BadEvents(serde_json::Error),
    /// The deployment failed.
    Failed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TempDir(e) | Self::Follow(e) => e.fmt(f),
            Self::Io { path, error } => write!(f, "{}: {error}", path.display()),
            Self::Random(e) => e.fmt(f),
            Self::Secret(e) => e.fmt(f),
            Self::Sandbox(e) => write!(f, "sandbox: {e}"),
            Self::NoDemo => f.write_str("the sandbox has no demo"),
            Self::NoVersion(which) => write!(f, "no {which} version"),
            Self::Url(e) => e.fmt(f),
            Self::Config(e) => e.fmt(f),
            Self::Service(e) => write!(f, "lockstep: {e}"),
            Self::Webhook(e) => write!(f, "webhook: {e}"),
            Self::Refused { status, answer } => {
                write!(f, "the webhook was answered {status}: {answer}")
            }
            Self::BadId(e) => e.fmt(f),
            Self::BadEvents(e) => e.fmt(f),
            Self::Failed => f.write_str("the deployment failed"),
        }
    }
}

impl std::error::Error for Error {}

impl From<BadUrl> for Error {
    fn from(e: BadUrl) -> Self {
        Self::Url(e)
    }
}

impl From<config::Error> for Error {
    fn from(e: config::Error) -> Self {
        Self::Config(e)
    }
}

/// POSTs a webhook to `addr` and returns the status and body.
async fn post(
    addr: SocketAddr,
    target: &str,
    headers: &[(&str, String)],
    body: &str,
) -> io::Result<(u16, String)> {
    let mut stream = async_net::TcpStream::connect(addr).await?;
    let mut request = format!(
        "POST {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

/// Runs the demo until Ctrl-C (SIGINT) or SIGTERM.
pub fn run(options: &Options, out: &mut dyn Write) -> Result<(), Error> {
    // Caught from the start: a signal during the first deployment ends the demo too, and the
    // temporary directory is still removed.
    let mut stop = Stop::catch();
    let data_dir = DataDir::given_or_new(options.data_dir.as_deref(), "lockstep-demo")
        .map_err(Error::TempDir)?;
    let path = data_dir.path();
    std::fs::create_dir_all(path).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })?;
    run_in(options, path, &mut stop, out)
}

fn write_secret(path: &Path, client_settings: &Path) -> Result<Secret, Error> {
    let mut random = [0u8; 24];
    getrandom::fill(&mut random).map_err(Error::Random)?;
    let text: String = random.iter().map(|b| format!("{b:02x}")).collect();
    write_private(path, &format!("{text}\n"))?;
    // The official client's settings (docs/PROTOCOL.md §3), so that `conduct deploy
    // --webhook bintray --custom-settings-file <it>` signs with the same secret.
    write_private(
        client_settings,
        &format!("conductr.continuous-delivery.bintray-webhook-secret = \"{text}\"\n"),
    )?;
    Secret::new(text.as_bytes()).map_err(Error::Secret)
}

/// Writes a file only its owner may read.
fn write_private(path: &Path, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

fn run_in(
    options: &Options,
    data_dir: &Path,
    stop: &mut Stop,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let secret_file = data_dir.join("webhook-secret");
    let client_settings = data_dir.join("conductr-settings.conf");
    // The service reads it from the file, as an operator's would; the demo signs with it.
    let signing = write_secret(&secret_file, &client_settings)?;
    let executor = Rc::new(LocalExecutor::new());
    let sandbox = async_io::block_on(executor.run(sandbox::start(
        executor.clone(),
        sandbox::Options {
            listen: options.sandbox,
            data_dir: Some(data_dir.join("sandbox")),
            start_delay: Duration::from_millis(600),
            demo: true,
            ..sandbox::Options::default()
        },
    )))
    .map_err(Error::Sandbox)?;
    let demo = sandbox.demo.clone().ok_or(Error::NoDemo)?;
    let config = Config {
        listen: options.listen,
        conductr: BaseUrl::parse(&sandbox.url())?,
        repository: Some(RepositoryOption::Http(BaseUrl::parse(
            &sandbox.repository_url(),
        )?)),
        data_dir: Some(data_dir.join("serve")),
        secret_file: Some(secret_file.clone()),
        poll_interval: Duration::from_millis(200),
        ..Config::default()
    };
    log::init(config.log_format, log::LogLevel::Warn);
    let env = std::collections::BTreeMap::new();
    let serve_options = config.options(&env)?;
    let addr = async_io::block_on(executor.run(serve::start(&executor, serve_options)))
        .map_err(Error::Service)?
        .addr();
    // The sandbox's control API forwards the deployments endpoints to the service, as
    // ConductR's did: the official client reaches it at the sandbox's port.
    sandbox.forward_deployments(Some(BaseUrl::parse(&format!("http://{addr}"))?));

    let version_of = |role: &str, nth: usize| {
        demo.versions
            .iter()
            .filter(|(_, _, r)| *r == role)
            .nth(nth)
            .map(|(_, v, _)| v.clone())
    };
    let running = version_of("running", 0).ok_or(Error::NoVersion("running"))?;
    let first = version_of("compatible", 0).ok_or(Error::NoVersion("compatible"))?;
    let second = version_of("compatible", 1).ok_or(Error::NoVersion("second compatible"))?;
    let incompatible = version_of("incompatible", 0).ok_or(Error::NoVersion("incompatible"))?;
    let tag = |v: &str| v.rsplit_once('-').map_or(v, |(t, _)| t).to_owned();
    let webhook = format!("http://{addr}/deployments/typesafe/bundle/typesafe");
    let _ = writeln!(
        out,
        "lockstep demo: a ConductR sandbox and lockstep, in one process\n"
    );
    let _ = writeln!(out, "  ConductR sandbox  {}", sandbox.url());
    let _ = writeln!(out, "  repository        {}", sandbox.repository_url());
    let _ = writeln!(
        out,
        "  lockstep          http://{addr}  (webhook {webhook})"
    );
    let _ = writeln!(out, "  watch it          http://{addr}/deployments/ui");
    let _ = writeln!(
        out,
        "  running           visualizer {} at scale 3, with a configuration\n",
        tag(&running)
    );
    let _ = writeln!(
        out,
        "Deploying visualizer {} (compatible) with a signed webhook:",
        tag(&first)
    );
    let _ = out.flush();

    let body = format!(r#"{{"package":"visualizer","version":"{first}"}}"#);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = lockstep_sign(&signing, t, body.as_bytes());
    let started = Instant::now();
    let deployed = executor.clone();
    let deployment = async {
        let (status, id) = post(
            addr,
            "/deployments/typesafe/bundle/typesafe",
            &[
                ("Content-Type", "application/json".to_owned()),
                ("X-Lockstep-Signature", header.as_str().to_owned()),
            ],
            &body,
        )
        .await
        .map_err(Error::Webhook)?;
        if status != 202 {
            return Err(Error::Refused { status, answer: id });
        }
        let id = DeploymentId::parse(id.trim()).map_err(Error::BadId)?;
        let _ = writeln!(out, "  202 Accepted: deployment {id}");
        // Follow it on the service's own event stream, printing what the official client
        // would.
        let events = events_of(&executor, addr).await?;
        let mut shown = 0;
        loop {
            let log = fetch_log(addr, id).await?;
            for event in log.iter().skip(shown) {
                let _ = writeln!(
                    out,
                    "  {:>6.1}s  {}",
                    started.elapsed().as_secs_f64(),
                    event
                );
                let _ = out.flush();
            }
            shown = log.len();
            if log
                .last()
                .is_some_and(|l| l.starts_with("Success") || l.starts_with("Failure"))
            {
                return if log.last().is_some_and(|l| l.starts_with("Success")) {
                    Ok(())
                } else {
                    Err(Error::Failed)
                };
            }
            let _ = events.recv().await;
        }
    };
    let stopped = async {
        stop.signalled().await;
        None
    };
    match async_io::block_on(deployed.run(async { Some(deployment.await) }.or(stopped))) {
        Some(result) => result?,
        None => return Ok(()),
    }

    let exe =
        std::env::current_exe().map_or_else(|_| "lockstep".into(), |p| p.display().to_string());
    let _ = writeln!(
        out,
        "\nlockstep keeps running. Deploy the other versions yourself:\n"
    );
    let repository = sandbox.repository_url();
    for (version, what) in [
        (
            &second,
            "compatible: replaces the one just deployed, in lock-step",
        ),
        (
            &incompatible,
            "another compatibilityVersion: accepted, then it fails and the cluster is not touched",
        ),
    ] {
        let _ = writeln!(out, "  # visualizer {} ({what})", tag(version));
        let _ = writeln!(
            out,
            "  {exe} deploy -y --url http://{addr} --repository {repository} \\\n    --secret-file {} \
             visualizer:{}\n",
            secret_file.display(),
            tag(version)
        );
    }
    let _ = writeln!(
        out,
        "  # with curl, the webhook a registry sends (visualizer {} again: the same deployment, or \
         none if it is done)",
        tag(&second)
    );
    let _ = writeln!(
        out,
        "  body='{{\"package\":\"visualizer\",\"version\":\"{second}\"}}'"
    );
    let _ = writeln!(
        out,
        "  curl -si {webhook} -H 'Content-Type: application/json' \\\n    -H \"$(printf %s \"$body\" | {exe} sign --secret-file {} -)\" --data \"$body\"\n",
        secret_file.display()
    );
    let _ = writeln!(
        out,
        "  # follow: curl -s http://{addr}/deployments  and  curl -sN http://{addr}/deployments/events"
    );
    let _ = writeln!(
        out,
        "\n  # the official client (conductr-cli 1.2.x), through the sandbox's control API, which \
         forwards\n  # /deployments and /v2/deployments to lockstep; its settings file holds the \
         line\n  # conductr.continuous-delivery.bintray-webhook-secret = \"<the demo's secret>\""
    );
    let _ = writeln!(
        out,
        "  conduct deploy --webhook bintray --ip {} --port {} --custom-settings-file {} \
         visualizer:{}",
        sandbox.addr.ip(),
        sandbox.addr.port(),
        client_settings.display(),
        tag(&second)
    );
    let _ = writeln!(
        out,
        "  # (it first looks the version up in Bintray's API, gone since 2021: offline, \
         tests/conductr_deploy.py\n  # stands in for that look-up)"
    );
    let _ = writeln!(out, "\nCtrl-C to stop.");
    let _ = out.flush();
    async_io::block_on(executor.run(stop.signalled()));
    Ok(())
}

/// A channel that yields whenever the service's event stream says something (an event or a
/// heartbeat): a nudge to look again.
async fn events_of(
    executor: &Rc<LocalExecutor<'static>>,
    addr: SocketAddr,
) -> Result<async_channel::Receiver<()>, Error> {
    let mut stream = async_net::TcpStream::connect(addr)
        .await
        .map_err(Error::Follow)?;
    let request = format!(
        "GET /deployments/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(Error::Follow)?;
    let (tx, rx) = async_channel::bounded(16);
    executor
        .spawn(async move {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 || tx.send(()).await.is_err() {
                    break;
                }
            }
        })
        .detach();
    Ok(rx)
}

/// The events of a deployment, as the official client shows them.
async fn fetch_log(addr: SocketAddr, id: DeploymentId) -> Result<Vec<String>, Error> {
    let mut stream = async_net::TcpStream::connect(addr)
        .await
        .map_err(Error::Follow)?;
    let request =
        format!("GET /deployments/{id} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(Error::Follow)?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .map_err(Error::Follow)?;
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let events: serde_json::Value = serde_json::from_str(body).map_err(Error::BadEvents)?;
    Ok(events
        .as_array()
        .map(|events| events.iter().map(crate::deploy::describe).collect())
        .unwrap_or_default())
}
