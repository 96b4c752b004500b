//! `https://`: whom lockstep trusts ([`Trust`]) and how a TLS connection is made over a TCP
//! stream ([`Trust::connect`]).
//!
//! - Trust is the system's CA certificates (the OS store, read by rustls-native-certs:
//!   `SSL_CERT_FILE`/`SSL_CERT_DIR`, else the distribution's bundle) plus the CAs of
//!   `--ca-file` (PEM). There is no way to turn verification off.
//! - The system store is read on the first `https://` connection, not at start-up: a lockstep
//!   that speaks only `http://` never pays for it.
//! - Crypto is rustls's ring provider; TLS 1.2 and 1.3.
//! - A refusal is a [`TlsError`] (unknown CA, name mismatch, expired...), never retried; the
//!   service logs it with the host it concerns ([`Trust::logging_refusals`]), a command names
//!   the URL in its error.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use async_net::TcpStream;
use futures_rustls::TlsConnector;
use futures_rustls::client::TlsStream;
use lockstep_core::agent::{ConnectError, TlsError};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};

/// The CA certificates lockstep trusts for `https://`. Clones share the one configuration.
#[derive(Clone, Default)]
pub struct Trust {
    inner: Arc<Inner>,
    /// Whether a refusal is logged (the service: its deployments' failures do not name the
    /// host); a command names it in its own error instead.
    log: bool,
}

#[derive(Default)]
struct Inner {
    /// `--ca-file`, and the certificates read from it at start-up.
    ca_file: Option<(PathBuf, Vec<CertificateDer<'static>>)>,
    /// Made on the first TLS connection.
    config: OnceLock<Arc<ClientConfig>>,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trust")
            .field(
                "ca_file",
                &self
                    .inner
                    .ca_file
                    .as_ref()
                    .map(|(path, certs)| (path, certs.len())),
            )
            .finish()
    }
}

/// A `--ca-file` that cannot be used.
#[derive(Debug)]
pub struct CaFileError {
    file: PathBuf,
    reason: String,
}

impl fmt::Display for CaFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--ca-file {}: {}", self.file.display(), self.reason)
    }
}

impl std::error::Error for CaFileError {}

impl Trust {
    /// The system's CA certificates only.
    pub fn system() -> Self {
        Self::default()
    }

    /// The system's CA certificates and those of the PEM file `file` (read now: a file that is
    /// missing, unreadable or holds no certificate is an error now, not at the first
    /// connection).
    pub fn with_ca_file(file: &Path) -> Result<Self, CaFileError> {
        let error = |reason: String| CaFileError {
            file: file.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(file).map_err(|e| error(e.to_string()))?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| error(format!("not PEM certificates ({e})")))?;
        if certs.is_empty() {
            return Err(error("holds no PEM certificate".to_owned()));
        }
        let mut roots = RootCertStore::empty();
        for cert in &certs {
            roots
                .add(cert.clone())
                .map_err(|e| error(format!("a certificate that is not a CA's ({e})")))?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                ca_file: Some((file.to_path_buf(), certs)),
                config: OnceLock::new(),
            }),
            log: false,
        })
    }

    /// This trust, logging each refusal as a warning naming the host and what to do.
    #[must_use]
    pub fn logging_refusals(mut self) -> Self {
        self.log = true;
        self
    }

    /// [`Trust::with_ca_file`] when a file is given, else [`Trust::system`].
    pub fn from_option(file: Option<&Path>) -> Result<Self, CaFileError> {
        file.map_or_else(|| Ok(Self::system()), Self::with_ca_file)
    }

    /// The `--ca-file`, if one is given.
    pub fn ca_file(&self) -> Option<&Path> {
        self.inner.ca_file.as_ref().map(|(path, _)| path.as_path())
    }

    /// The client configuration: made once, on first use.
    fn config(&self) -> Arc<ClientConfig> {
        Arc::clone(self.inner.config.get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let system = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(system.certs);
            if let Some((_, certs)) = &self.inner.ca_file {
                roots.add_parsable_certificates(certs.iter().cloned());
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|builder| builder.with_root_certificates(roots).with_no_client_auth());
            // ring's provider supports the safe default versions: this cannot fail.
            Arc::new(config.unwrap_or_else(|e| unreachable!("ring supports TLS 1.2/1.3: {e}")))
        }))
    }

    /// A TLS connection to `host` over `tcp`, the server's certificate verified for `host`
    /// (a name or an IP address).
    pub async fn connect(
        &self,
        tcp: TcpStream,
        host: &str,
        port: u16,
    ) -> Result<TlsStream<TcpStream>, ConnectError> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| ConnectError::Tls(TlsError::NameMismatch))?;
        let connector = TlsConnector::from(self.config());
        match connector.connect(name, tcp).await {
            Ok(stream) => Ok(stream),
            Err(e) => {
                let error = classify(&e);
                if let ConnectError::Tls(tls) = error
                    && self.log
                {
                    // rustls's own words too: they tell a CA certificate used as the server's
                    // (a self-signed one, which --ca-file cannot make trusted) from the rest.
                    crate::log::warn(&format!(
                        "{}: {tls} (rustls: {e}){}",
                        origin(host, port),
                        self.hint(tls)
                    ));
                }
                Err(error)
            }
        }
    }

    /// What to do about a refusal, when lockstep can say.
    fn hint(&self, e: TlsError) -> &'static str {
        match (e, self.ca_file()) {
            (TlsError::UnknownIssuer, None) => {
                "; if a private CA signed it, give lockstep that CA with --ca-file"
            }
            (TlsError::UnknownIssuer, Some(_)) => {
                "; neither the system's CAs nor --ca-file signed it"
            }
            (TlsError::BadCertificate, _) => {
                "; a self-signed server certificate cannot be trusted as such: --ca-file takes \
                 the CA that signed the server's certificate"
            }
            _ => "",
        }
    }
}

/// `https://host:port`, for messages.
fn origin(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    }
}

/// What a failed handshake means: the certificate's faults and TLS refusals are [`TlsError`]s
/// (trying again will not help); a connection that broke during it may pass next time.
pub fn classify(e: &io::Error) -> ConnectError {
    let Some(rustls_error) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return ConnectError::Failed;
    };
    ConnectError::Tls(match rustls_error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => TlsError::UnknownIssuer,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsError::NameMismatch
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                TlsError::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                TlsError::NotYetValid
            }
            _ => TlsError::BadCertificate,
        },
        _ => TlsError::Handshake,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ca_file_errors_name_the_file() {
        let dir = crate::tempdir::TempDir::new("lockstep-tls").unwrap();
        let missing = dir.path().join("missing.pem");
        let e = Trust::with_ca_file(&missing).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("--ca-file {}: ", missing.display())),
            "{e}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let e = Trust::with_ca_file(&empty).unwrap_err().to_string();
        assert!(e.ends_with("holds no PEM certificate"), "{e}");
        let bad = dir.path().join("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(Trust::with_ca_file(&bad).is_err());
    }

    #[test]
    fn test_classify_handshake_failures() {
        let tls = |e: rustls::Error| classify(&io::Error::new(io::ErrorKind::InvalidData, e));
        let certificate = |e| tls(rustls::Error::InvalidCertificate(e));
        for (refusal, expected) in [
            (CertificateError::UnknownIssuer, TlsError::UnknownIssuer),
            (CertificateError::NotValidForName, TlsError::NameMismatch),
            (CertificateError::Expired, TlsError::Expired),
            (CertificateError::NotValidYet, TlsError::NotYetValid),
            (CertificateError::BadSignature, TlsError::BadCertificate),
        ] {
            assert_eq!(certificate(refusal), ConnectError::Tls(expected));
        }
        assert_eq!(
            tls(rustls::Error::DecryptError),
            ConnectError::Tls(TlsError::Handshake)
        );
        assert_eq!(
            classify(&io::ErrorKind::ConnectionReset.into()),
            ConnectError::Failed
        );
    }

    #[test]
    fn test_debug_names_the_file_not_the_certificates() {
        assert_eq!(format!("{:?}", Trust::system()), "Trust { ca_file: None }");
    }
}
