//! `lockstep sign`: the signature header of a webhook body, for an operator's curl.

use std::fmt;
use std::io::{self, Read};
use std::path::PathBuf;

use lockstep_core::bundle::{Segment, SegmentError};
use lockstep_core::signature;

use crate::secret::{self, SecretError};

/// What to sign, with which secret.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The file holding the secret; [`secret::ENV`] when `None`.
    pub secret_file: Option<PathBuf>,
    /// Sign for Bintray's scheme, for this package, instead of a body.
    pub bintray: Option<String>,
    /// The body's file; standard input when `None` or `-`.
    pub body_file: Option<String>,
}

/// Why nothing could be signed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No usable secret.
    Secret(SecretError),
    /// `--bintray`'s package is no package name.
    Package(SegmentError),
    /// Standard input cannot be read.
    Stdin(io::Error),
    /// The body file cannot be read.
    Body {
        /// The file.
        file: String,
        /// Why.
        error: io::Error,
    },
    /// The system clock is before the Unix epoch: no timestamp can be signed.
    Clock,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret(e) => e.fmt(f),
            Self::Package(e) => write!(f, "--bintray: the package {e}"),
            Self::Stdin(e) => write!(f, "standard input: {e}"),
            Self::Body { file, error } => write!(f, "{file}: {error}"),
            Self::Clock => f.write_str("the clock is before 1970"),
        }
    }
}

impl std::error::Error for Error {}

impl From<SecretError> for Error {
    fn from(e: SecretError) -> Self {
        Self::Secret(e)
    }
}

/// The header line: `X-Lockstep-Signature: ...` over the body at the current time, or
/// `X-Bintray-Hook-Hmac: ...` for the package.
pub fn run(options: &Options) -> Result<String, Error> {
    let env = std::env::var(secret::ENV).ok();
    let secret = secret::read(options.secret_file.as_deref(), env.as_deref())?;
    if let Some(package) = &options.bintray {
        Segment::parse(package).map_err(Error::Package)?;
        let value = signature::bintray_sign(&secret, package);
        return Ok(format!("{}: {}", signature::BINTRAY_HEADER, value.as_str()));
    }
    let mut body = Vec::new();
    match options.body_file.as_deref() {
        None | Some("-") => {
            io::stdin().read_to_end(&mut body).map_err(Error::Stdin)?;
        }
        Some(file) => {
            body = std::fs::read(file).map_err(|error| Error::Body {
                file: file.to_owned(),
                error,
            })?;
        }
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| Error::Clock)?
        .as_secs();
    let value = signature::lockstep_sign(&secret, t, &body);
    Ok(format!(
        "{}: {}",
        signature::LOCKSTEP_HEADER,
        value.as_str()
    ))
}
