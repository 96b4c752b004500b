//! `http[s]://host[:port][/path]`, the base URLs the agent is configured with, and the
//! absolute URLs a redirect names.

use core::fmt;

use super::{MAX_HOST_LEN, is_host};
use crate::text::InlineStr;

/// The longest base path a [`UrlBuf`] holds.
pub const MAX_PATH_LEN: usize = 255;

/// How a connection is made: plain TCP, or TLS over it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Scheme {
    /// `http://`: plain TCP, port 80 by default.
    Http,
    /// `https://`: TLS, port 443 by default. The [`Connector`](crate::agent::Connector) verifies
    /// the server's certificate for the host, or refuses ([`TlsError`](crate::agent::TlsError)).
    Https,
}

impl Scheme {
    /// The port of a URL that names none.
    pub const fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }

    /// `http` or `https`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    fn parse(scheme: &str) -> Result<Self, UrlError> {
        if scheme.eq_ignore_ascii_case("http") {
            Ok(Self::Http)
        } else if scheme.eq_ignore_ascii_case("https") {
            Ok(Self::Https)
        } else {
            Err(UrlError::Scheme)
        }
    }
}

/// Where a request goes: a scheme, a host (a name, an IPv4 address, or an IPv6 address without
/// its brackets) and a port. A connection is reused only for the same origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Origin<'a> {
    /// Plain or TLS.
    pub scheme: Scheme,
    /// The host.
    pub host: &'a str,
    /// The port.
    pub port: u16,
}

impl<'a> Origin<'a> {
    /// `http://{host}:{port}`.
    pub const fn http(host: &'a str, port: u16) -> Self {
        Self {
            scheme: Scheme::Http,
            host,
            port,
        }
    }

    /// Whether `other` is the same origin (the host compared without regard to case).
    pub fn same_as(&self, other: &Origin<'_>) -> bool {
        self.scheme == other.scheme
            && self.port == other.port
            && self.host.eq_ignore_ascii_case(other.host)
    }
}

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(self.host)?;
        }
        if self.port != self.scheme.default_port() {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// A parsed `http[s]://host[:port][/path]` base URL: the scheme; a name, an IPv4 address or a
/// bracketed IPv6 address; the port (80, or 443 for `https`, by default); a base path without
/// its trailing `/`, so that a path is appended as `{path}/...`.
///
/// Nothing is decoded: the path is used as written. Refused: other schemes, user information,
/// a query or a fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Url<'a> {
    scheme: Scheme,
    host: &'a str,
    port: u16,
    path: &'a str,
}

/// Why a string is not a [`Url`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum UrlError {
    /// Neither `http://` nor `https://`.
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
            Self::Scheme => "a URL must start with http:// or https://",
            Self::Host => "a URL's host must be a name, an IPv4 address or an [IPv6] address",
            Self::Port => "a URL's port must be a number from 1 to 65535",
            Self::Path => "a URL's path may not hold a query, a fragment, spaces or controls",
            Self::PathTooLong => "a URL's path may be at most 255 bytes long",
        })
    }
}

impl core::error::Error for UrlError {}

impl<'a> Url<'a> {
    /// Parses `http[s]://host[:port][/path]` (the scheme in any case).
    pub fn parse(s: &'a str) -> Result<Self, UrlError> {
        let (origin, path) = parse_origin(s)?;
        if !path
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
        {
            return Err(UrlError::Path);
        }
        Ok(Self {
            scheme: origin.scheme,
            host: origin.host,
            port: origin.port,
            path: path.trim_end_matches('/'),
        })
    }

    /// The scheme.
    pub const fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Where requests under this URL go.
    pub const fn origin(&self) -> Origin<'a> {
        Origin {
            scheme: self.scheme,
            host: self.host,
            port: self.port,
        }
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

/// Splits an absolute URL into its origin and the rest (the path, with any query; empty or
/// starting with `/`).
fn parse_origin(s: &str) -> Result<(Origin<'_>, &str), UrlError> {
    let (scheme, rest) = s.split_once("://").ok_or(UrlError::Scheme)?;
    let scheme = Scheme::parse(scheme)?;
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
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
        None => scheme.default_port(),
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or(UrlError::Port)?,
        Some(_) => return Err(UrlError::Port),
    };
    Ok((Origin { scheme, host, port }, path))
}

/// Where a redirect's `Location` points: an absolute URL (`http[s]://host[:port]/path?query`)
/// or an absolute path (`/path?query`, on the same origin); the fragment dropped. The target
/// answered is `/` for a URL without a path. Any other reference, or a character a request
/// target may not hold, is refused ([`UrlError`]).
pub fn redirect_target<'l>(
    location: &'l str,
    from: Origin<'l>,
) -> Result<(Origin<'l>, &'l str), UrlError> {
    let location = location.split('#').next().unwrap_or_default();
    let (origin, target) = if location.starts_with('/') && !location.starts_with("//") {
        (from, location)
    } else {
        parse_origin(location)?
    };
    if !(target.is_empty() || target.starts_with('/'))
        || !target.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(UrlError::Path);
    }
    Ok((origin, if target.is_empty() { "/" } else { target }))
}

impl fmt::Display for Url<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.origin().fmt(f)?;
        f.write_str(self.path)
    }
}

/// A [`Url`] that owns its parts, for a runtime to keep as long as it runs: parsed once, then
/// lent as a [`Url`] without being parsed again, so no later use can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UrlBuf {
    scheme: Scheme,
    host: InlineStr<MAX_HOST_LEN>,
    port: u16,
    path: InlineStr<MAX_PATH_LEN>,
}

impl UrlBuf {
    /// Parses `http[s]://host[:port][/path]` as [`Url::parse`] does, and keeps it.
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        Self::try_from(Url::parse(s)?)
    }

    /// The URL.
    pub fn as_url(&self) -> Url<'_> {
        Url {
            scheme: self.scheme,
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
            scheme: url.scheme,
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
        assert_eq!(Url::parse("ftp://h"), Err(UrlError::Scheme));
        assert_eq!(Url::parse("h:9005"), Err(UrlError::Scheme));
        assert_eq!(Url::parse("http://"), Err(UrlError::Host));
        assert_eq!(Url::parse("http:///path"), Err(UrlError::Host));
        assert_eq!(Url::parse("http://u:p@h"), Err(UrlError::Host));
        assert_eq!(Url::parse("http://[::1"), Err(UrlError::Host));
        assert_eq!(Url::parse("http://[::1]x"), Err(UrlError::Host));
        assert_eq!(Url::parse("http://[h]"), Err(UrlError::Host));
        assert_eq!(Url::parse("http://h?q"), Err(UrlError::Path));
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
    fn test_parse_https_with_its_default_port() {
        let url = Url::parse("HTTPS://repo.example/r").unwrap();
        assert_eq!(url.scheme(), Scheme::Https);
        assert_eq!(
            (url.host(), url.port(), url.path()),
            ("repo.example", 443, "/r")
        );
        assert_eq!(url.to_string(), "https://repo.example/r");
        assert_eq!(
            Url::parse("https://h:80").unwrap().to_string(),
            "https://h:80"
        );
        assert_eq!(
            Url::parse("http://h:443").unwrap().to_string(),
            "http://h:443"
        );
        assert_eq!(Url::parse("http://h").unwrap().scheme(), Scheme::Http);
    }

    #[test]
    fn test_origins_compare_scheme_host_and_port() {
        let a = Url::parse("https://Repo.example/a").unwrap().origin();
        assert!(a.same_as(&Url::parse("https://repo.EXAMPLE:443/b").unwrap().origin()));
        assert!(!a.same_as(&Url::parse("http://repo.example:443").unwrap().origin()));
        assert!(!a.same_as(&Url::parse("https://repo.example:8443").unwrap().origin()));
        assert!(!a.same_as(&Url::parse("https://cdn.example").unwrap().origin()));
    }

    #[test]
    fn test_redirect_targets() {
        let from = Origin {
            scheme: Scheme::Https,
            host: "repo.example",
            port: 8443,
        };
        let cdn = Origin {
            scheme: Scheme::Https,
            host: "cdn.example",
            port: 443,
        };
        assert_eq!(
            redirect_target("/b/c.zip?x=1#frag", from),
            Ok((from, "/b/c.zip?x=1"))
        );
        assert_eq!(
            redirect_target("https://cdn.example/z.zip?sig=a%2Fb", from),
            Ok((cdn, "/z.zip?sig=a%2Fb"))
        );
        assert_eq!(redirect_target("https://cdn.example", from), Ok((cdn, "/")));
        assert_eq!(
            redirect_target("http://[::1]:81/a", from),
            Ok((Origin::http("::1", 81), "/a"))
        );
        for bad in [
            "z.zip",
            "//cdn.example/a",
            "ftp://h/a",
            "https://u@h/a",
            "/a b",
            "/a\u{7f}",
            "https://cdn.example?q",
        ] {
            assert!(redirect_target(bad, from).is_err(), "{bad}");
        }
    }

    #[test]
    fn test_display_round_trips() {
        for s in [
            "http://h",
            "https://h:8443/r",
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
        assert_eq!(UrlBuf::parse("ftp://h"), Err(UrlError::Scheme));
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
