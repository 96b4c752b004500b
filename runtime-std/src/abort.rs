//! `lockstep abort <id>`: an operator's abort of a deployment (docs/PROTOCOL.md §7,
//! `POST /deployments/{id}/abort`), signed with `X-Lockstep-Signature` over a body that names
//! the deployment, so that the signature aborts no other.

use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lockstep_core::agent::http::Method;
use lockstep_core::deployer::DeploymentId;
use lockstep_core::signature;

use crate::client::{self, ClientError, Session};
use crate::deploy::{self, Context};
use crate::time::rfc3339;
use crate::tls::Trust;
use crate::url::BaseUrl;

/// `lockstep abort`'s options.
#[derive(Clone, Debug)]
pub struct Options {
    /// The deployment.
    pub id: DeploymentId,
    /// The service's base URL.
    pub url: BaseUrl,
    /// `--secret-file`.
    pub secret_file: Option<PathBuf>,
    /// `--ca-file`.
    pub ca_file: Option<PathBuf>,
    /// How long each connect, read and write may take.
    pub timeout: Duration,
}

/// Why `lockstep abort` did not abort.
#[derive(Debug)]
pub enum Error {
    /// No webhook secret, or one that cannot be read (found as `lockstep deploy` finds it).
    Secret(deploy::Error),
    /// `--ca-file` cannot be used.
    CaFile(String),
    /// The abort got no answer.
    Unanswered(ClientError),
    /// The service refused the abort.
    Refused {
        /// The abort's URL.
        url: String,
        /// The status.
        status: u16,
        /// The answer's line.
        line: String,
    },
    /// Writing to standard output failed.
    Output(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret(e) => e.fmt(f),
            Self::CaFile(e) => f.write_str(e),
            Self::Unanswered(e) => write!(f, "the abort got no answer: {e}"),
            Self::Refused { url, status, line } => {
                client::write_refusal(f, url, "abort", *status, line)
            }
            Self::Output(e) => write!(f, "writing the answer: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::Output(e)
    }
}

/// The body of an abort of `id` at `at`: `{"deploymentId":"<id>","requested":"<RFC 3339>"}`;
/// the time makes each abort's body, and so its signature, its own (the service refuses a
/// signature it saw before).
pub fn body(id: DeploymentId, at: SystemTime) -> String {
    let requested = rfc3339(at).unwrap_or_default();
    format!("{{\"deploymentId\":\"{id}\",\"requested\":\"{requested}\"}}")
}

/// Sends the abort and prints the service's answer (what the abort did) on `out`.
pub fn run(options: &Options, context: &Context, out: &mut dyn Write) -> Result<(), Error> {
    let secret =
        deploy::find_secret_in(options.secret_file.as_deref(), context).map_err(Error::Secret)?;
    let trust =
        Trust::from_option(options.ca_file.as_deref()).map_err(|e| Error::CaFile(e.to_string()))?;
    let session = Session::new(options.timeout).with_trust(trust);
    let target = format!("/deployments/{}/abort", options.id);
    let now = SystemTime::now();
    let body = body(options.id, now);
    let t = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let header = signature::lockstep_sign(&secret, t, body.as_bytes());
    let answer = session
        .exchange(
            Method::Post,
            &options.url,
            &target,
            &[
                ("Content-Type", "application/json"),
                (signature::LOCKSTEP_HEADER, header.as_str()),
            ],
            body.as_bytes(),
        )
        .map_err(Error::Unanswered)?;
    if !answer.is_success() {
        return Err(Error::Refused {
            url: client::target_of(&options.url, &target).1,
            status: answer.status,
            line: answer.line(),
        });
    }
    writeln!(out, "{}: {}", options.id, answer.line())?;
    Ok(())
}
