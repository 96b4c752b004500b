//! `lockstep publish`'s command line.

use super::{Error, option_value, parsed_value};
use crate::publish::{self, Options};
use crate::units::parse_duration;

/// What `lockstep publish --help` prints.
pub const USAGE: &str = "\
lockstep publish — publish a bundle zip into a repository directory, then notify lockstep

Usage: lockstep publish BUNDLE.zip --repository DIR [options]

Publishes the bundle in the layout lockstep serve and the sandbox read (docs/PROTOCOL.md §4):

  DIR/{org}/{repo}/{org}/{package}/{version}/{package}-{version}.zip
  DIR/{org}/{repo}/{org}/{package}/versions.json            (the index, one entry per version)

The package is bundle.conf's name; the version is <tag>-<SHA-256 of the zip>, the tag being
--tag, else bundle.conf's first tag, else v<compatibilityVersion>. Every file is written to a
temporary file and renamed into place; the index is changed under a lock on
.versions.json.lock beside it, so that publishers running at once each add their entry.
Publishing a version that is already there changes nothing (no file is rewritten) and says
`already published`. A configuration (--configuration) is kept beside the bundle as
{package}-{version}-config.zip; lockstep serve never reads it (a deployment re-applies the
running bundle's configuration), a version already published with another one is refused.

Everything is checked before anything is written: the options, the --notify URL and secret,
the bundle (a zip whose bundle.conf has a name that is a valid package, 1 to 64 characters
of A-Z a-z 0-9 . _ -, and a compatibilityVersion) and the configuration (a zip holding
runtime-config.sh). With --notify, once the index is written, the signed webhook for the new
version is sent to that URL, the one a registry would call.

Options:
  --repository DIR      The repository's root directory (created when needed)     (required)
  --configuration FILE  A configuration zip to publish beside the bundle
  --tag TAG             The version's tag              [default: the bundle's first tag, else
                                                                   v<compatibilityVersion>]
  --org ORG             The organisation                              [default: typesafe]
  --repo REPO           The repository within it                      [default: bundle]
  --notify URL          Then POST the webhook to this URL, e.g.
                        http://127.0.0.1:9010/deployments/typesafe/bundle/typesafe[?tag=T];
                        its {org}/{repo} must be --org/--repo
  --secret-file FILE    The webhook secret, for --notify (a trailing newline is not part of
                        it)                    [default: the environment's BINTRAY_WEBHOOK_SECRET]
  --bintray             Sign with X-Bintray-Hook-Hmac instead of X-Lockstep-Signature
  --ca-file FILE        A PEM file of CA certificates trusted for an https:// --notify URL
                        beside the system's
  --timeout DURATION    The webhook's time-out for its connect and each read    [default: 10s]
  -h, --help            Print this help

Prints, one line each: `published <package>:<version> to <zip file>` (or `already published
<package>:<version> at <zip file>`), with --configuration `published its configuration to
<file>` (or `already published its configuration at <file>`), the version alone, and with
--notify the service's answer, `notified <url>: 202 <deployment id>`.

Exit codes: 0 published (and notified); 1 nothing published (the bundle, configuration or
repository refused, with one line on stderr saying why), or published but the notification
refused or unanswered (the line says so: the publication stays); 2 a bad command line, --notify
URL or secret, before anything is written.
";

/// Parses `lockstep publish`'s options; `None` for `--help`.
pub fn parse(args: &[String]) -> Result<Option<Options>, Error> {
    use lexopt::prelude::*;

    let missing = |what| Error::Publish(publish::Error::Missing(what));
    let mut bundle = None;
    let mut repository = None;
    let mut options = Options::new("", "");
    let mut parser = lexopt::Parser::from_args(args.iter().cloned());
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("repository") => {
                repository = Some(option_value(&mut parser, "--repository")?);
            }
            Long("configuration") => {
                let file = option_value(&mut parser, "--configuration")?;
                options.configuration = Some(file.into());
            }
            Long("tag") => options.tag = Some(option_value(&mut parser, "--tag")?),
            Long("org") => options.org = option_value(&mut parser, "--org")?,
            Long("repo") => options.repo = option_value(&mut parser, "--repo")?,
            Long("notify") => options.notify = Some(option_value(&mut parser, "--notify")?),
            Long("secret-file") => {
                let file = option_value(&mut parser, "--secret-file")?;
                options.secret_file = Some(file.into());
            }
            Long("bintray") => options.bintray = true,
            Long("ca-file") => {
                options.ca_file = Some(option_value(&mut parser, "--ca-file")?.into());
            }
            Long("timeout") => {
                options.timeout = parsed_value(&mut parser, "--timeout", parse_duration)?;
            }
            Value(file) if bundle.is_none() => bundle = Some(file),
            _ => {
                return Err(Error::Unexpected {
                    command: "publish",
                    error: arg.unexpected(),
                });
            }
        }
    }
    options.bundle = bundle.ok_or_else(|| missing("no bundle zip"))?.into();
    options.repository = repository
        .ok_or_else(|| missing("--repository DIR is required"))?
        .into();
    Ok(Some(options))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse_args(args: &[&str]) -> Result<Option<Options>, Error> {
        let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
        parse(&args)
    }

    #[test]
    fn test_parse_publish_defaults_and_flags() {
        let options = parse_args(&["b.zip", "--repository", "/srv"])
            .unwrap()
            .unwrap();
        assert_eq!(
            (options.bundle.to_str(), options.repository.to_str()),
            (Some("b.zip"), Some("/srv"))
        );
        assert_eq!(
            (options.org.as_str(), options.repo.as_str()),
            ("typesafe", "bundle")
        );
        assert_eq!(options.timeout, publish::DEFAULT_TIMEOUT);
        assert!(options.tag.is_none() && options.notify.is_none() && !options.bintray);

        let options = parse_args(&[
            "--repository=/r",
            "--configuration",
            "c.zip",
            "--tag",
            "v9",
            "--org",
            "o",
            "--repo",
            "r",
            "--notify",
            "http://h/deployments/o/r/o",
            "--secret-file",
            "s",
            "--bintray",
            "--timeout",
            "2s",
            "b.zip",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(options.configuration.unwrap().to_str(), Some("c.zip"));
        assert_eq!(options.tag.as_deref(), Some("v9"));
        assert_eq!((options.org.as_str(), options.repo.as_str()), ("o", "r"));
        assert_eq!(
            options.notify.as_deref(),
            Some("http://h/deployments/o/r/o")
        );
        assert_eq!(options.secret_file.unwrap().to_str(), Some("s"));
        assert!(options.bintray);
        assert_eq!(options.timeout, Duration::from_secs(2));
        assert!(parse_args(&["x", "--help"]).unwrap().is_none());
    }

    #[test]
    fn test_parse_publish_refusals() {
        let code = |args: &[&str]| {
            let e = parse_args(args).unwrap_err();
            (e.exit_code(), e.to_string())
        };
        assert_eq!(
            code(&["--repository", "/r"]),
            (2, "no bundle zip; see `lockstep publish --help`".to_owned())
        );
        assert_eq!(
            code(&["b.zip"]),
            (
                2,
                "--repository DIR is required; see `lockstep publish --help`".to_owned()
            )
        );
        assert_eq!(code(&["a.zip", "b.zip", "--repository", "/r"]).0, 2);
        assert_eq!(
            code(&["a.zip", "--repository", "/r", "--timeout", "x"]).0,
            2
        );
        assert_eq!(code(&["a.zip", "--repository"]).0, 2);
        assert_eq!(code(&["a.zip", "--bintray=yes", "--repository", "/r"]).0, 2);
    }
}
