//! Who may read (docs/PROTOCOL.md §7, "Reading"): the deployments, their events and the
//! metrics are open by default, so that the official client (which sends no credential) keeps
//! working; with a [`Credential`] configured, they answer only a request that presents it as
//! HTTP Basic authentication (RFC 7617). Webhooks are not reads: their signature is their
//! credential. `/healthz` stays open, for load balancers.

use core::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ctutils::CtEq as _;
use zeroize::Zeroize;

/// The longest `user:password` a [`Credential`] holds.
pub const MAX_CREDENTIAL_LEN: usize = 256;

/// The challenge of a read refused for its missing or wrong credential (`WWW-Authenticate`).
pub const CHALLENGE: &str = "Basic realm=\"lockstep\", charset=\"UTF-8\"";

/// The `user:password` a reader must present. Never printed: `Debug` shows `Credential(..)`;
/// zeroized on drop; compared in constant time.
pub struct Credential {
    bytes: heapless::Vec<u8, MAX_CREDENTIAL_LEN>,
}

/// Why bytes are not a [`Credential`]. Never shows the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CredentialError {
    /// Not `user:password`: no `:`, or nothing before it.
    Form,
    /// A control character, which a header cannot carry.
    Control,
    /// Longer than [`MAX_CREDENTIAL_LEN`] bytes.
    TooLong,
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Form => "the read credential must be user:password, with a user",
            Self::Control => "the read credential may not hold control characters",
            Self::TooLong => "the read credential is longer than 256 bytes",
        })
    }
}

impl core::error::Error for CredentialError {}

impl Credential {
    /// `user:password` (RFC 7617: the user holds no `:`; the password may).
    pub fn new(user_password: &[u8]) -> Result<Self, CredentialError> {
        match user_password.iter().position(|&b| b == b':') {
            Some(0) | None => return Err(CredentialError::Form),
            Some(_) => {}
        }
        if user_password.iter().any(u8::is_ascii_control) {
            return Err(CredentialError::Control);
        }
        let bytes =
            heapless::Vec::from_slice(user_password).map_err(|_| CredentialError::TooLong)?;
        Ok(Self { bytes })
    }

    /// The credential of a file's contents: one line, its newline (`\n` or `\r\n`) not part
    /// of it.
    pub fn from_file_contents(contents: &[u8]) -> Result<Self, CredentialError> {
        let line = contents.strip_suffix(b"\n").unwrap_or(contents);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        Self::new(line)
    }

    /// Whether an `Authorization` header value presents this credential: `Basic` (any case),
    /// one space, the base64 of `user:password`. The comparison takes the same time whatever
    /// the bytes (only a length that differs ends it early).
    pub fn admits(&self, authorization: &[u8]) -> bool {
        let Some((scheme, token)) = split_once(authorization, b' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"Basic") {
            return false;
        }
        // Base64 of up to MAX_CREDENTIAL_LEN bytes; a longer token cannot match.
        let mut decoded = [0u8; MAX_CREDENTIAL_LEN];
        let admitted = match STANDARD.decode_slice(token, &mut decoded) {
            Ok(len) => decoded
                .get(..len)
                .is_some_and(|presented| presented.ct_eq(self.bytes.as_slice()).to_bool()),
            Err(_) => false,
        };
        decoded.zeroize();
        admitted
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(..)")
    }
}

impl Drop for Credential {
    fn drop(&mut self) {
        self.bytes.as_mut_slice().zeroize();
    }
}

/// `bytes` split at the first `separator`.
fn split_once(bytes: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == separator)?;
    let (before, after) = bytes.split_at(at);
    Some((before, after.get(1..)?))
}

#[cfg(test)]
mod tests {
    use std::format;
    use std::string::String;

    use super::*;

    fn encode(bytes: &[u8]) -> String {
        let mut out = [0u8; 2 * MAX_CREDENTIAL_LEN];
        let len = STANDARD.encode_slice(bytes, &mut out).unwrap();
        String::from_utf8(out[..len].to_vec()).unwrap()
    }

    fn basic(user_password: &str) -> String {
        format!("Basic {}", encode(user_password.as_bytes()))
    }

    // RFC 7617 §2's example: `Aladdin:open sesame`.
    const RFC_HEADER: &str = "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==";

    #[test]
    fn test_admits_the_rfc_7617_example() {
        let c = Credential::new(b"Aladdin:open sesame").unwrap();
        assert!(c.admits(RFC_HEADER.as_bytes()));
        assert!(c.admits(b"basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="));
        assert_eq!(basic("Aladdin:open sesame"), RFC_HEADER);
    }

    #[test]
    fn test_reject_other_credentials_and_forms() {
        let c = Credential::new(b"reader:pass:word").unwrap();
        assert!(c.admits(basic("reader:pass:word").as_bytes()));
        for header in [
            basic("reader:pass:wore"),
            basic("reader:pass:word "),
            basic("reader:pass"),
            basic(""),
            String::from("Bearer cmVhZGVyOnBhc3M6d29yZA=="),
            String::from("Basic"),
            String::from("Basic "),
            String::from("Basic not-base64!"),
            format!("Basic {}", "A".repeat(400)),
            String::new(),
        ] {
            assert!(!c.admits(header.as_bytes()), "{header}");
        }
    }

    #[test]
    fn test_credential_edges() {
        assert_eq!(
            Credential::new(b"nocolon").err(),
            Some(CredentialError::Form)
        );
        assert_eq!(Credential::new(b":pw").err(), Some(CredentialError::Form));
        assert_eq!(
            Credential::new(b"u:p\nq").err(),
            Some(CredentialError::Control)
        );
        assert!(Credential::new(b"u:").is_ok(), "an empty password");
        let longest = [b"u:".as_slice(), &[b'p'; MAX_CREDENTIAL_LEN - 2]].concat();
        let c = Credential::new(&longest).unwrap();
        assert!(c.admits(format!("Basic {}", encode(&longest)).as_bytes()));
        let too_long = [longest.as_slice(), b"p"].concat();
        assert_eq!(
            Credential::new(&too_long).err(),
            Some(CredentialError::TooLong)
        );
        assert!(
            Credential::from_file_contents(b"u:p\r\n")
                .is_ok_and(|c| c.admits(basic("u:p").as_bytes()))
        );
        assert!(
            Credential::from_file_contents(b"u:p\n")
                .is_ok_and(|c| c.admits(basic("u:p").as_bytes()))
        );
    }

    #[test]
    fn test_debug_never_shows_the_credential() {
        let c = Credential::new(b"reader:hunter2").unwrap();
        assert_eq!(format!("{c:?}"), "Credential(..)");
        assert!(!format!("{:?}", Credential::new(b"x").unwrap_err()).contains('x'));
    }
}
