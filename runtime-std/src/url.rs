//! The base URLs lockstep is configured with (`--conductr`, an `http://` `--repository`):
//! parsed once, when the configuration is read, then handed out as core's [`Url`] without
//! being parsed again, so that no later use can fail.
//!
//! Core's [`Url`] borrows the text it was parsed from, and core has no owned form of it. So
//! the text is kept for the rest of the process (leaked, once per distinct URL: a process is
//! configured with one or two) and parsed there, giving a `Url<'static>` that every task of a
//! service can copy.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use lockstep_core::agent::http::{Url, UrlError};

/// A valid `http://host[:port][/path]` base URL.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BaseUrl {
    text: &'static str,
    url: Url<'static>,
}

impl BaseUrl {
    /// Parses `text` as core's [`Url::parse`] does.
    pub fn parse(text: &str) -> Result<Self, BadUrl> {
        let text = kept(text);
        match Url::parse(text) {
            Ok(url) => Ok(Self { text, url }),
            Err(error) => Err(BadUrl {
                text: text.to_owned(),
                error,
            }),
        }
    }

    /// The parsed URL.
    pub const fn url(&self) -> Url<'static> {
        self.url
    }

    /// The URL as it was written.
    pub const fn as_str(&self) -> &'static str {
        self.text
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text)
    }
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BaseUrl").field(&self.text).finish()
    }
}

/// A text that is not a base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadUrl {
    /// The text.
    pub text: String,
    /// What is wrong with it.
    pub error: UrlError,
}

impl fmt::Display for BadUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.text, self.error)
    }
}

impl std::error::Error for BadUrl {}

/// `text`, kept for the rest of the process; the same text is kept once.
fn kept(text: &str) -> &'static str {
    static KEPT: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(text) = kept.get(text) {
        return text;
    }
    let text: &'static str = Box::leak(text.into());
    kept.insert(text);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_keeps_the_text_and_the_parsed_url() {
        let a = BaseUrl::parse("http://conductr.example:9005/api/").unwrap();
        assert_eq!(a.as_str(), "http://conductr.example:9005/api/");
        assert_eq!(
            (a.url().host(), a.url().port(), a.url().path()),
            ("conductr.example", 9005, "/api")
        );
        // The same text is kept once.
        let b = BaseUrl::parse(&String::from("http://conductr.example:9005/api/")).unwrap();
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        assert_eq!(a, b);
    }

    #[test]
    fn test_reject_what_core_rejects_naming_the_text() {
        for (text, error) in [
            ("https://conductr.example", UrlError::Https),
            ("conductr.example:9005", UrlError::Scheme),
            ("http://conductr.example:0", UrlError::Port),
        ] {
            let e = BaseUrl::parse(text).unwrap_err();
            assert_eq!(e.error, error, "{text}");
            assert!(e.to_string().starts_with(&format!("`{text}`: ")), "{e}");
        }
    }
}
