//! `http://host[:port][/path]`, the base URLs the agent is configured with.

use core::fmt;

use super::{MAX_HOST_LEN, is_host};
use crate::text::InlineStr;

/// The longest base path a [`UrlBuf`] holds.
pub const MAX_PATH_LEN: usize = 255;

/// A parsed `http://host[:port][/path]` base URL: a name, an IPv4 address or a bracketed
/// IPv6 address; the port (80 by default); a base path without its trailing `/`, so that a
/// path is appended as `{path}/...`.
///
/// Nothing is decoded: the path is used as written. Refused: other schemes (`https` among
/// them), user information, a query or a fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Url<'a> {
    host: &'a str,
    port: u16,
    path: &'a str,
}

/// Why a string is not a [`Url`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum UrlError {
    /// `https://`: the agent speaks plain HTTP only.
    Https,
    /// Not `http://` at all.
    Scheme,
    /// The host is missing, too long, holds user information or a character no name or
    /// address has, or an IPv6 literal is not closed.
    Host,
    /// The port is not a number from 1 to 65535.
    Port,
    /// The path holds a query, a fragment, a space or a control character.
    Path,
    /// The path is longer than a [`UrlBuf`] holds ([`MAX_PATH_LEN`]).
    PathTooLong,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Https => "https URLs are not supported: use http:// (behind a TLS proxy)",
            Self::Scheme => "a URL must start with http://",
            Self::Host => "a URL's host must be a name, an IPv4 address or an [IPv6] address",
            Self::Port => "a URL's port must be a number from 1 to 65535",
            Self::Path => "a URL's path may not hold a query, a fragment, spaces or controls",
            Self::PathTooLong => "a URL's path may be at most 255 bytes long",
        })
    }
}

impl core::error::Error for UrlError {}

impl<'a> Url<'a> {
    /// The port of a URL that names none.
    pub const DEFAULT_PORT: u16 = 80;

    /// Parses `http://host[:port][/path]` (the scheme in any case).
    pub fn parse(s: &'a str) -> Result<Self, UrlError> {
        let (scheme, rest) = s.split_once("://").ok_or(UrlError::Scheme)?;
        if scheme.eq_ignore_ascii_case("https") {
            return Err(UrlError::Https);
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(UrlError::Scheme);
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.contains('@') {
            return Err(UrlError::Host);
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or(UrlError::Host)?;
            if !host.contains(':') {
                return Err(UrlError::Host);
            }
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or(UrlError::Host)?)),
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if !is_host(host) {
            return Err(UrlError::Host);
        }
        let port = match port {
            None => Self::DEFAULT_PORT,
            Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or(UrlError::Port)?,
            Some(_) => return Err(UrlError::Port),
        };
        if !path
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
        {
            return Err(UrlError::Path);
        }
        Ok(Self {
            host,
            port,
            path: path.trim_end_matches('/'),
        })
    }

    /// The host: a name, an IPv4 address, or an IPv6 address without its brackets (what a
    /// [`Connector`](crate::agent::Connector) is given).
    pub const fn host(&self) -> &'a str {
        self.host
    }

    /// The port.
    pub const fn port(&self) -> u16 {
        self.port
    }

    /// The base path: empty, or starting with `/` and not ending with one.
    pub const fn path(&self) -> &'a str {
        self.path
    }
}

impl fmt::Display for Url<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]", self.host)?;
        } else {
            write!(f, "http://{}", self.host)?;
        }
        if self.port != Self::DEFAULT_PORT {
            write!(f, ":{}", self.port)?;
        }
        f.write_str(self.path)
    }
}

/// A [`Url`] that owns its parts, for a runtime to keep as long as it runs: parsed once, then
/// lent as a [`Url`] without being parsed again, so no later use can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UrlBuf {
    host: InlineStr<MAX_HOST_LEN>,
    port: u16,
    path: InlineStr<MAX_PATH_LEN>,
}

impl UrlBuf {
    /// Parses `http://host[:port][/path]` as [`Url::parse`] does, and keeps it.
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        Self::try_from(Url::parse(s)?)
    }

    /// The URL.
    pub fn as_url(&self) -> Url<'_> {
        Url {
            host: self.host.as_str(),
            port: self.port,
            path: self.path.as_str(),
        }
    }
}

impl TryFrom<Url<'_>> for UrlBuf {
    type Error = UrlError;

    fn try_from(url: Url<'_>) -> Result<Self, UrlError> {
        Ok(Self {
            // A parsed host has at most MAX_HOST_LEN bytes.
            host: InlineStr::new(url.host).map_err(|_| UrlError::Host)?,
            port: url.port,
            path: InlineStr::new(url.path).map_err(|_| UrlError::PathTooLong)?,
        })
    }
}

impl fmt::Display for UrlBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_url().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use std::format;
    use std::string::ToString;

    use super::*;

    fn parts(s: &str) -> (&str, u16, &str) {
        let url = Url::parse(s).unwrap();
        (url.host(), url.port(), url.path())
    }

    // The two URLs the agent is configured with (docs/PROTOCOL.md §4, §5).
    #[test]
    fn test_parse_conductr_and_repository() {
        assert_eq!(parts("http://127.0.0.1:9005"), ("127.0.0.1", 9005, ""));
        assert_eq!(
            parts("http://127.0.0.1:9005/repository"),
            ("127.0.0.1", 9005, "/repository")
        );
    }

    #[test]
    fn test_parse_defaults_and_forms() {
        assert_eq!(parts("http://conductr"), ("conductr", 80, ""));
        assert_eq!(parts("HTTP://conductr/"), ("conductr", 80, ""));
        assert_eq!(parts("http://h/a/b//"), ("h", 80, "/a/b"));
        assert_eq!(parts("http://[::1]:9005/r"), ("::1", 9005, "/r"));
        assert_eq!(parts("http://[fe80::1]"), ("fe80::1", 80, ""));
        assert_eq!(parts("http://h:65535/%20x"), ("h", 65535, "/%20x"));
    }

    #[test]
    fn test_reject_urls() {
        assert_eq!(Url::parse("https://h"), Err(UrlError::Https));
        assert_eq!(Url::parse("HTTPS://h"), Err(UrlError::Https));
        assert_eq!(Url::parse("ftp://h"), Err(UrlError::Scheme));
        assert_eq!(Url::parse("h:9005"), Err(UrlError::Scheme));
        assert_eq!(Url::parse("http://"), Err(UrlError::Host));
        assert_eq!(Url::parse("http:///path"), Err(UrlError::Host));
        assert_eq!(Url::parse("http://u:p@h"), Err(UrlError::Host));
        assert_eq!(Url::parse("http://[::1"), Err(UrlError::Host));
        assert_eq!(Url::parse("http://[::1]x"), Err(UrlError::Host));
        assert_eq!(Url::parse("http://[h]"), Err(UrlError::Host));
        assert_eq!(Url::parse("http://h?q"), Err(UrlError::Host));
        assert_eq!(Url::parse("http://h:"), Err(UrlError::Port));
        assert_eq!(Url::parse("http://h:0"), Err(UrlError::Port));
        assert_eq!(Url::parse("http://h:65536"), Err(UrlError::Port));
        assert_eq!(Url::parse("http://h:+80"), Err(UrlError::Port));
        assert_eq!(Url::parse("http://h:1:2"), Err(UrlError::Port));
        assert_eq!(Url::parse("http://h/a?b"), Err(UrlError::Path));
        assert_eq!(Url::parse("http://h/a#b"), Err(UrlError::Path));
        assert_eq!(Url::parse("http://h/a b"), Err(UrlError::Path));
    }

    #[test]
    fn test_display_round_trips() {
        for s in [
            "http://h",
            "http://127.0.0.1:9005/repository",
            "http://[::1]:8/a",
        ] {
            assert_eq!(Url::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn test_url_buf_keeps_what_url_parses() {
        for text in [
            "http://127.0.0.1:9005",
            "http://[::1]:9005/r/",
            "HTTP://conductr/a/b",
        ] {
            let owned = UrlBuf::parse(text).unwrap();
            assert_eq!(owned.as_url(), Url::parse(text).unwrap(), "{text}");
            assert_eq!(owned.to_string(), Url::parse(text).unwrap().to_string());
        }
        assert_eq!(UrlBuf::parse("https://h"), Err(UrlError::Https));
    }

    #[test]
    fn test_url_buf_path_at_its_limit() {
        let path = "/".to_string() + &"p".repeat(MAX_PATH_LEN - 1);
        let owned = UrlBuf::parse(&format!("http://h{path}")).unwrap();
        assert_eq!(owned.as_url().path(), path);
        assert_eq!(
            UrlBuf::parse(&format!("http://h{path}p")),
            Err(UrlError::PathTooLong)
        );
    }
}
