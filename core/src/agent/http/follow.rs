//! Downloads that follow redirects: object stores and registries (Artifactory, Nexus, GitHub
//! releases) answer a download with a redirect to where the bytes are.

use core::fmt;

use super::{
    Client, HttpError, MAX_HOST_LEN, Method, Origin, ResponseHead, Scheme, redirect_target,
};
use crate::agent::{Connector, Time};
use crate::text::InlineStr;

/// The most redirects a download follows; one more is [`HttpError::TooManyRedirects`].
pub const MAX_REDIRECTS: u8 = 5;

/// `GET {target}` at `origin`, following up to [`MAX_REDIRECTS`] redirects (`301`, `302`,
/// `303`, `307`, `308` with a `Location`): answers the first head that is not one, its body
/// left to read from `client`.
///
/// - `authorization` (an `Authorization` header value) is sent to `origin` only: never to
///   another scheme, host or port a redirect leads to.
/// - A redirect from `https` to `http` is refused ([`HttpError::InsecureRedirect`]); one whose
///   `Location` is not an absolute URL or path is [`HttpError::Malformed`].
/// - `scratch` holds a `Location` and the next request's target between two requests: one
///   longer than half of it is [`HttpError::HeadTooLarge`].
///
/// What was downloaded is the caller's to check (the digest decides, not where it came from).
pub async fn get_following<C: Connector, T: Time>(
    client: &mut Client<'_, C, T>,
    origin: Origin<'_>,
    target: &dyn fmt::Display,
    authorization: Option<&str>,
    scratch: &mut [u8],
) -> Result<ResponseHead, HttpError> {
    // A Location is read into one half; the next request's target kept in the other.
    let (location_buf, target_buf) = scratch.split_at_mut(scratch.len() / 2);
    // Where the next request goes, once a redirect named it (the host copied out of the
    // Location, which the next answer overwrites).
    let mut moved: Option<(Scheme, InlineStr<MAX_HOST_LEN>, u16)> = None;
    let mut next_target: Option<&str> = None;
    let mut hops = 0u8;
    loop {
        let at = match &moved {
            None => origin,
            Some((scheme, host, port)) => Origin {
                scheme: *scheme,
                host: host.as_str(),
                port: *port,
            },
        };
        let credentials = authorization.filter(|_| at.same_as(&origin));
        let header = [("Authorization", credentials.unwrap_or_default())];
        let headers = if credentials.is_some() {
            &header[..]
        } else {
            &[]
        };
        match next_target {
            None => client.begin(Method::Get, at, target, headers, None).await?,
            Some(path) => client.begin(Method::Get, at, path, headers, None).await?,
        }
        let (head, len) = client.response_with_location(location_buf).await?;
        if !matches!(head.status, 301 | 302 | 303 | 307 | 308) || len == 0 {
            return Ok(head);
        }
        if hops == MAX_REDIRECTS {
            client.close();
            return Err(HttpError::TooManyRedirects);
        }
        hops = hops.saturating_add(1);
        client.discard().await?;
        let location = location_buf
            .get(..len)
            .and_then(|bytes| core::str::from_utf8(bytes).ok())
            .ok_or(HttpError::Malformed)?;
        let (next, next_path) = redirect_target(location, at).map_err(|_| HttpError::Malformed)?;
        if at.scheme == Scheme::Https && next.scheme == Scheme::Http {
            client.close();
            return Err(HttpError::InsecureRedirect);
        }
        let host = InlineStr::new(next.host).map_err(|_| HttpError::Malformed)?;
        let kept = target_buf
            .get_mut(..next_path.len())
            .ok_or(HttpError::HeadTooLarge)?;
        kept.copy_from_slice(next_path.as_bytes());
        moved = Some((next.scheme, host, next.port));
        next_target = Some(core::str::from_utf8(kept).map_err(|_| HttpError::Malformed)?);
    }
}

#[cfg(test)]
mod tests {
    use std::format;
    use std::string::String;
    use std::vec::Vec;

    use super::super::testing::{Fixture, Script};
    use super::*;
    use crate::agent::TlsError;

    const REPO: Origin<'static> = Origin {
        scheme: Scheme::Https,
        host: "repo.example",
        port: 443,
    };
    const AUTH: &str = "Basic dTpw";

    fn redirect(location: &str) -> Vec<u8> {
        format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 3\r\n\r\nabc")
            .into_bytes()
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    /// The status and body got, or the error.
    type Got = Result<(u16, Vec<u8>), HttpError>;

    /// GETs `/a.zip` from [`REPO`] with [`AUTH`] over connections answering `scripts`: the
    /// result, the body, and what was written to each connection, with its scheme.
    fn follow(scripts: impl IntoIterator<Item = Script>) -> (Got, Vec<(Scheme, String)>) {
        let fixture = Fixture::new(scripts).buffer(1024);
        let result = fixture.run(async |client| {
            let mut scratch = [0u8; 512];
            let head = get_following(client, REPO, &"/a.zip", Some(AUTH), &mut scratch).await?;
            let mut body = Vec::new();
            let mut out = [0u8; 64];
            loop {
                match client.read(&mut out).await? {
                    0 => break,
                    n => body.extend_from_slice(&out[..n]),
                }
            }
            Ok((head.status, body))
        });
        let connector = &fixture.connector;
        let written = (0..connector.connects())
            .map(|i| (connector.scheme(i), connector.written(i)))
            .collect();
        (result, written)
    }

    #[test]
    fn test_credentials_never_follow_a_redirect_to_another_host() {
        let (result, written) = follow([
            Script::new().bytes(&redirect("https://cdn.example:8443/z.zip?sig=a%2Fb#top")),
            Script::new().bytes(OK),
        ]);
        assert_eq!(result, Ok((200, b"ok".to_vec())));
        assert_eq!(written.len(), 2);
        assert!(
            written[0]
                .1
                .starts_with("GET /a.zip HTTP/1.1\r\nHost: repo.example\r\n")
        );
        assert!(written[0].1.contains("Authorization: Basic dTpw\r\n"));
        assert_eq!(written[1].0, Scheme::Https);
        assert_eq!(
            written[1].1,
            "GET /z.zip?sig=a%2Fb HTTP/1.1\r\nHost: cdn.example:8443\r\n\
             Connection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn test_a_redirect_on_the_same_origin_keeps_the_connection_and_the_credentials() {
        let answers = Script::new()
            .bytes(&redirect("/b.zip"))
            .bytes(&redirect("https://REPO.example:443/c.zip"))
            .bytes(OK);
        let (result, written) = follow([answers]);
        assert_eq!(result, Ok((200, b"ok".to_vec())));
        assert_eq!(written.len(), 1, "one connection");
        let requests = &written[0].1;
        assert_eq!(requests.matches("Authorization: Basic dTpw\r\n").count(), 3);
        assert!(requests.contains("GET /b.zip HTTP/1.1\r\n"));
        assert!(requests.contains("GET /c.zip HTTP/1.1\r\n"));
    }

    #[test]
    fn test_https_to_http_is_refused() {
        let (result, written) = follow([
            Script::new().bytes(&redirect("http://cdn.example/z.zip")),
            Script::new().bytes(OK),
        ]);
        assert_eq!(result, Err(HttpError::InsecureRedirect));
        assert_eq!(written.len(), 1, "nothing asked of the http host");
    }

    #[test]
    fn test_five_redirects_are_followed_and_a_sixth_is_refused() {
        let hops = |n: u8| {
            (0..n)
                .fold(Script::new(), |s, i| {
                    s.bytes(&redirect(&format!("/{i}.zip")))
                })
                .bytes(OK)
        };
        let (result, written) = follow([hops(MAX_REDIRECTS)]);
        assert_eq!(result, Ok((200, b"ok".to_vec())));
        assert_eq!(written[0].1.matches("GET ").count(), 6);
        let (result, written) = follow([hops(MAX_REDIRECTS + 1)]);
        assert_eq!(result, Err(HttpError::TooManyRedirects));
        assert_eq!(written[0].1.matches("GET ").count(), 6);
    }

    #[test]
    fn test_locations_that_cannot_be_followed() {
        for (location, error) in [
            ("z.zip", HttpError::Malformed),
            ("ftp://cdn.example/z.zip", HttpError::Malformed),
            ("https://u:p@cdn.example/z.zip", HttpError::Malformed),
            // Half of the 512-byte scratch.
            (&*format!("/{}", "x".repeat(256)), HttpError::HeadTooLarge),
        ] {
            let (result, _) = follow([Script::new().bytes(&redirect(location))]);
            assert_eq!(result, Err(error), "{location}");
        }
        // The longest Location that fits is followed.
        let longest = format!("/{}", "x".repeat(255));
        let (result, written) = follow([Script::new().bytes(&redirect(&longest)).bytes(OK)]);
        assert_eq!(result, Ok((200, b"ok".to_vec())));
        assert!(written[0].1.contains(&format!("GET {longest} HTTP/1.1")));
    }

    #[test]
    fn test_a_redirect_without_location_and_other_statuses_are_answered() {
        let (result, _) =
            follow([Script::new().bytes(b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n")]);
        assert_eq!(result, Ok((302, Vec::new())));
        let (result, _) = follow([Script::new()
            .bytes(b"HTTP/1.1 401 Unauthorized\r\nLocation: /login\r\nContent-Length: 0\r\n\r\n")]);
        assert_eq!(result, Ok((401, Vec::new())));
    }

    #[test]
    fn test_a_tls_refusal_is_the_answer() {
        let (result, written) = follow([
            Script::new().bytes(&redirect("https://cdn.example/z.zip")),
            Script::new().tls_refused(TlsError::NameMismatch),
        ]);
        assert_eq!(result, Err(HttpError::Tls(TlsError::NameMismatch)));
        assert_eq!(written.len(), 1);
    }
}
