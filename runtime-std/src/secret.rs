//! Where `lockstep serve` and `lockstep sign` get the webhook secret: a file (`--secret-file`),
//! else the environment variable [`ENV`]; never a command-line argument. An error names where
//! it looked, never what it found.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use lockstep_core::signature::{self, Secret};

/// The environment variable that holds the secret when no file is given.
pub const ENV: &str = "BINTRAY_WEBHOOK_SECRET";

/// Why there is no secret.
#[derive(Debug)]
#[non_exhaustive]
pub enum SecretError {
    /// The file cannot be read.
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The file holds no secret: empty (but for a newline) or too long.
    File {
        /// The file.
        file: PathBuf,
        /// What is wrong with its contents.
        error: signature::SecretError,
    },
    /// The environment variable holds no secret.
    Env(signature::SecretError),
    /// Neither a file nor the variable.
    Missing,
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { file, error } => write!(f, "--secret-file {}: {error}", file.display()),
            Self::File { file, error } => write!(f, "--secret-file {}: {error}", file.display()),
            Self::Env(error) => write!(f, "{ENV}: {error}"),
            Self::Missing => write!(
                f,
                "no webhook secret: set the environment variable {ENV}, or pass --secret-file FILE"
            ),
        }
    }
}

impl std::error::Error for SecretError {}

/// The secret in `file` (a trailing newline is not part of it) when one is given, else `env`,
/// the value of [`ENV`].
pub fn read(file: Option<&Path>, env: Option<&str>) -> Result<Secret, SecretError> {
    match (file, env) {
        (Some(file), _) => {
            let bytes = std::fs::read(file).map_err(|error| SecretError::Read {
                file: file.to_path_buf(),
                error,
            })?;
            Secret::from_file_contents(&bytes).map_err(|error| SecretError::File {
                file: file.to_path_buf(),
                error,
            })
        }
        (None, Some(value)) => Secret::new(value.as_bytes()).map_err(SecretError::Env),
        (None, None) => Err(SecretError::Missing),
    }
}

#[cfg(test)]
mod tests {
    use lockstep_core::signature::bintray_sign;

    use super::*;
    use crate::testing::temp_dir;

    /// Whether `secret` is the secret `expected`: they sign alike.
    fn is(secret: &Secret, expected: &[u8]) -> bool {
        bintray_sign(secret, "p") == bintray_sign(&Secret::new(expected).unwrap(), "p")
    }

    #[test]
    fn test_read_file_wins_and_loses_its_newline() {
        let dir = temp_dir();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-file\n").unwrap();
        let secret = read(Some(&file), Some("from-env")).unwrap();
        assert!(is(&secret, b"from-file"));
        assert!(is(&read(None, Some("from-env")).unwrap(), b"from-env"));
    }

    #[test]
    fn test_read_refusals_name_the_source_not_the_contents() {
        let dir = temp_dir();
        let long = dir.path().join("long");
        let contents = "s".repeat(129);
        std::fs::write(&long, &contents).unwrap();
        let missing = dir.path().join("missing");
        for (e, named) in [
            (read(Some(&long), None).unwrap_err(), "--secret-file"),
            (read(Some(&missing), None).unwrap_err(), "missing"),
            (
                read(None, Some("")).unwrap_err(),
                "BINTRAY_WEBHOOK_SECRET: ",
            ),
            (read(None, None).unwrap_err(), "BINTRAY_WEBHOOK_SECRET"),
        ] {
            let (text, debug) = (e.to_string(), format!("{e:?}"));
            assert!(text.contains(named), "{text}");
            assert!(
                !text.contains(&contents) && !debug.contains(&contents),
                "{debug}"
            );
        }
        let text = read(None, None).unwrap_err().to_string();
        assert!(text.contains("--secret-file"), "{text}");
    }
}
