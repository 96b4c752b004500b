//! `lockstep sign`: the signature header of a webhook body, for an operator's curl.

use std::io::Read;
use std::path::PathBuf;

use lockstep_core::signature;

use crate::secret;

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

/// The header line: `X-Lockstep-Signature: ...` over the body at the current time, or
/// `X-Bintray-Hook-Hmac: ...` for the package.
pub fn run(options: &Options) -> Result<String, String> {
    let env = std::env::var(secret::ENV).ok();
    let secret =
        secret::read(options.secret_file.as_deref(), env.as_deref()).map_err(|e| e.to_string())?;
    if let Some(package) = &options.bintray {
        lockstep_core::bundle::Segment::parse(package)
            .map_err(|e| format!("--bintray: the package {e}"))?;
        let value = signature::bintray_sign(&secret, package);
        return Ok(format!("{}: {}", signature::BINTRAY_HEADER, value.as_str()));
    }
    let mut body = Vec::new();
    match options.body_file.as_deref() {
        None | Some("-") => std::io::stdin()
            .read_to_end(&mut body)
            .map(|_| ())
            .map_err(|e| format!("standard input: {e}"))?,
        Some(file) => body = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?,
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "the clock is before 1970")?
        .as_secs();
    let value = signature::lockstep_sign(&secret, t, &body);
    Ok(format!(
        "{}: {}",
        signature::LOCKSTEP_HEADER,
        value.as_str()
    ))
}
