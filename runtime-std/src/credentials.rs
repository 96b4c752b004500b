//! `--repository-credentials FILE`: what lockstep sends a repository that wants credentials,
//! as the `Authorization` header, to the repository's own origin only (never to a host a
//! download is redirected to).
//!
//! The file holds one line:
//! - `user:password`: HTTP Basic authentication (Artifactory, Nexus, a web server's
//!   `.htpasswd`);
//! - `Bearer <token>`, or a token alone (no `:` in it): a bearer token (GitHub, GitLab,
//!   registries' API keys).
//!
//! A trailing newline is not part of it. Never a flag value (it would show in `ps`), never in
//! a log line, an error or `Debug`: errors name the file, never what it holds.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// The longest credentials file, bytes.
pub const MAX_LEN: usize = 4096;

/// An `Authorization` header value, read from a file. Its memory is wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    header: Zeroizing<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.header.starts_with("Basic ") {
            "Basic"
        } else {
            "Bearer"
        };
        write!(f, "Credentials({kind}, <redacted>)")
    }
}

/// Why a credentials file cannot be used (never what it holds).
#[derive(Debug)]
pub struct CredentialsError {
    file: PathBuf,
    reason: Reason,
}

#[derive(Debug)]
enum Reason {
    Read(io::Error),
    Empty,
    TooLong,
    NotText,
    Lines,
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--repository-credentials {}: ", self.file.display())?;
        match &self.reason {
            Reason::Read(e) => write!(f, "{e}"),
            Reason::Empty => f.write_str("the file is empty"),
            Reason::TooLong => write!(f, "the file is longer than {MAX_LEN} bytes"),
            Reason::NotText => f.write_str(
                "the file holds control characters or is not UTF-8: it must be one line, \
                 user:password or Bearer <token>",
            ),
            Reason::Lines => f.write_str(
                "the file holds more than one line: it must be one line, user:password or \
                 Bearer <token>",
            ),
        }
    }
}

impl std::error::Error for CredentialsError {}

impl Credentials {
    /// The credentials in `file`.
    pub fn read(file: &Path) -> Result<Self, CredentialsError> {
        let error = |reason| CredentialsError {
            file: file.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(file).map_err(|e| error(Reason::Read(e)))?;
        if meta.len() > MAX_LEN as u64 {
            return Err(error(Reason::TooLong));
        }
        let bytes = Zeroizing::new(std::fs::read(file).map_err(|e| error(Reason::Read(e)))?);
        Self::parse(&bytes).map_err(error)
    }

    /// The credentials of a file's contents.
    fn parse(bytes: &[u8]) -> Result<Self, Reason> {
        if bytes.len() > MAX_LEN {
            return Err(Reason::TooLong);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| Reason::NotText)?;
        let line = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(text);
        if line.contains('\n') {
            return Err(Reason::Lines);
        }
        if line.chars().any(char::is_control) {
            return Err(Reason::NotText);
        }
        if line.trim().is_empty() {
            return Err(Reason::Empty);
        }
        let bearer = line
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("bearer "))
            .map(|_| line[7..].trim());
        let header = match bearer {
            Some("") => return Err(Reason::Empty),
            Some(token) => format!("Bearer {token}"),
            None if line.contains(':') => format!("Basic {}", STANDARD.encode(line)),
            None => format!("Bearer {}", line.trim()),
        };
        Ok(Self {
            header: Zeroizing::new(header),
        })
    }

    /// The `Authorization` header value.
    pub fn authorization(&self) -> &str {
        &self.header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text: &str) -> String {
        Credentials::parse(text.as_bytes())
            .unwrap()
            .authorization()
            .to_owned()
    }

    #[test]
    fn test_basic_and_bearer() {
        // RFC 7617's example.
        assert_eq!(
            header("Aladdin:open sesame\n"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(header("u:p:with:colons\r\n"), "Basic dTpwOndpdGg6Y29sb25z");
        assert_eq!(header("Bearer ghp_abc123\n"), "Bearer ghp_abc123");
        assert_eq!(header("bearer   tok"), "Bearer tok");
        assert_eq!(header("glpat-xyz\n"), "Bearer glpat-xyz");
    }

    #[test]
    fn test_refusals_never_show_the_contents() {
        for (text, reason) in [
            ("", "empty"),
            ("\n", "empty"),
            ("Bearer \n", "empty"),
            ("user:sw0rdf1sh\nsecond:line\n", "more than one line"),
            ("user:sw0rd\x07f1sh", "control characters"),
            ("user:sw0rd\rf1sh", "control characters"),
        ] {
            let dir = crate::tempdir::TempDir::new("lockstep-credentials").unwrap();
            let file = dir.path().join("credentials");
            std::fs::write(&file, text).unwrap();
            let e = Credentials::read(&file).unwrap_err().to_string();
            assert!(e.starts_with("--repository-credentials "), "{e}");
            assert!(e.contains(reason), "{text:?}: {e}");
            assert!(!e.contains("sw0rd") && !e.contains("f1sh"), "{e}");
        }
        let long = "x".repeat(MAX_LEN + 1);
        assert!(matches!(
            Credentials::parse(long.as_bytes()),
            Err(Reason::TooLong)
        ));
        assert!(Credentials::parse("x".repeat(MAX_LEN).as_bytes()).is_ok());
        let e = Credentials::read(Path::new("/nonexistent/credentials")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/credentials"), "{e}");
    }

    #[test]
    fn test_debug_is_redacted() {
        let c = Credentials::parse(b"user:hunter2").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(format!("{c:?}"), "Credentials(Basic, <redacted>)");
        let c = Credentials::parse(b"Bearer hunter2").unwrap();
        assert_eq!(format!("{c:?}"), "Credentials(Bearer, <redacted>)");
    }
}
