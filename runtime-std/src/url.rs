//! The base URLs lockstep is configured with (`--conductr`, an `http[s]://` `--repository`):
//! parsed once, when the configuration is read, into core's owned [`UrlBuf`], then lent as a
//! [`Url`] without being parsed again, so that no later use can fail.

use std::fmt;

use lockstep_core::agent::http::{Url, UrlBuf, UrlError};

/// A valid `http[s]://host[:port][/path]` base URL, and the text it was written as.
#[derive(Clone, PartialEq, Eq)]
pub struct BaseUrl {
    text: String,
    url: UrlBuf,
}

impl BaseUrl {
    /// Parses `text` as core's [`Url::parse`] does.
    pub fn parse(text: &str) -> Result<Self, BadUrl> {
        match UrlBuf::parse(text) {
            Ok(url) => Ok(Self {
                text: text.to_owned(),
                url,
            }),
            Err(error) => Err(BadUrl {
                text: text.to_owned(),
                error,
            }),
        }
    }

    /// The parsed URL, owned: a task can keep a copy.
    pub const fn parsed(&self) -> UrlBuf {
        self.url
    }

    /// The parsed URL.
    pub fn url(&self) -> Url<'_> {
        self.url.as_url()
    }

    /// The URL as it was written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
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
        let b = BaseUrl::parse(&String::from("http://conductr.example:9005/api/")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.parsed().as_url(), a.url());
    }

    #[test]
    fn test_reject_what_core_rejects_naming_the_text() {
        for (text, error) in [
            ("ftp://conductr.example", UrlError::Scheme),
            ("conductr.example:9005", UrlError::Scheme),
            ("http://conductr.example:0", UrlError::Port),
        ] {
            let e = BaseUrl::parse(text).unwrap_err();
            assert_eq!(e.error, error, "{text}");
            assert!(e.to_string().starts_with(&format!("`{text}`: ")), "{e}");
        }
    }
}
