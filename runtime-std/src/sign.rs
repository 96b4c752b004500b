//! `lockstep sign`: the signature header of a webhook body, for an operator's curl.

use std::io::Read;

use lockstep_core::signature::{self, Secret};

/// What to sign, with which secret.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The file holding the secret; `BINTRAY_WEBHOOK_SECRET` when `None`.
    pub secret_file: Option<String>,
    /// Sign for Bintray's scheme, for this package, instead of a body.
    pub bintray: Option<String>,
    /// The body's file; standard input when `None` or `-`.
    pub body_file: Option<String>,
}

/// The header line: `X-Lockstep-Signature: ...` over the body at the current time, or
/// `X-Bintray-Hook-Hmac: ...` for the package.
pub fn run(options: &Options) -> Result<String, String> {
    let secret = match &options.secret_file {
        Some(file) => {
            let bytes = std::fs::read(file).map_err(|e| format!("--secret-file {file}: {e}"))?;
            Secret::from_file_contents(&bytes).map_err(|e| format!("--secret-file {file}: {e}"))?
        }
        None => match std::env::var("BINTRAY_WEBHOOK_SECRET") {
            Ok(value) => {
                Secret::new(value.as_bytes()).map_err(|e| format!("BINTRAY_WEBHOOK_SECRET: {e}"))?
            }
            Err(_) => {
                return Err(
                    "no secret: pass --secret-file FILE or set BINTRAY_WEBHOOK_SECRET".into(),
                );
            }
        },
    };
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
