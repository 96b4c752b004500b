//! `lockstep deploy`'s command line.

use std::time::Duration;

use lockstep_core::bundle::Segment;

use super::{Error, option_value, parsed_value};
use crate::client::Scheme;
use crate::deploy::{self, Options};
use crate::units::{ValueError, parse_duration};
use crate::url::BaseUrl;

/// What `lockstep deploy --help` prints.
pub const USAGE: &str = "\
lockstep deploy — deploy a published version now, and follow it to its end

Usage: lockstep deploy [options] <bundle>

Sends the signed webhook a registry would send for the version <bundle> names, to the lockstep
service at --url, then follows the deployment until it succeeds or fails, as
`conduct deploy --webhook bintray` does.

<bundle> is [org/][repo/]package[:tag[-digest]] (org `typesafe`, repo `bundle` unless given),
resolved against the repository's versions.json: no tag is the latest version, a tag the latest
with that tag, tag-digest exactly that version (a digest prefix of at least 7 hex characters
will do). visualizer, visualizer:1.1.0, visualizer:1.1.0-65df1f2.

The webhook secret: --secret-file, else BINTRAY_WEBHOOK_SECRET, else the official client's
settings file ($CONDUCTR_CUSTOM_SETTINGS_FILE, else ~/.conductr/settings.conf), key
conductr.continuous-delivery.bintray-webhook-secret (nested or dotted HOCON).

On a terminal it asks `Deploy <package>:<tag>-<digest>? [Y/n]` (unless -y) and draws the
lock-step as two bars; piped, it prints one line per event with the seconds since the webhook.

Options:
  --url URL            The lockstep service (HAProxy's port on a ConductR cluster), http:// or
                       https://                             [default: http://127.0.0.1:9000]
  --repository DIR|URL The repository to resolve <bundle> in: a directory or an http:// or
                       https:// base URL       [default: $LOCKSTEP_REPOSITORY, as the service]
  --repository-credentials FILE
                       A file holding the repository's credentials, one line: user:password
                       or Bearer <token>; sent to the repository's host only
  --ca-file FILE       A PEM file of CA certificates trusted for https:// beside the system's
  --secret-file FILE   A file holding the webhook secret
  --bintray            Sign with X-Bintray-Hook-Hmac instead of X-Lockstep-Signature
  --target-tag TAG     Replace only a running bundle carrying TAG (?tag=); repeatable, up to 8
  --retry              Deploy the version even though its last deployment failed (the service
                       refuses it otherwise, 409); needs lockstep's signature, not --bintray
  --allow-downgrade    Deploy the version even though the repository published it before the
                       running one (refused otherwise); needs lockstep's signature
  -y, --yes            Do not ask before deploying
  --no-wait            Print the deployment id and exit without following it
  --wait-timeout DUR   How long to follow the deployment (180, 180s, 3m)     [default: 180s]
  --timeout DUR        How long each connect, read and write may take         [default: 10s]
  -h, --help           Print this help

Exit status: 0 when the deployment succeeded (with --no-wait: was accepted); 1 when it failed
(`Failure: <why>` on stderr), when --wait-timeout passed first, or when it could not be sent;
2 for a command line that cannot be read.
";

/// At most this many `--target-tag`s, as the service takes.
pub const MAX_TARGET_TAGS: usize = 8;

/// Parses `lockstep deploy`'s options; `None` for `--help`.
pub fn parse(args: &[String]) -> Result<Option<Options>, Error> {
    use lexopt::prelude::*;

    let mut options = Options::new(String::new());
    let mut bundle = None;
    let mut parser = lexopt::Parser::from_args(args.iter().cloned());
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("url") => {
                let text = option_value(&mut parser, "--url")?;
                options.url = BaseUrl::parse(&text).map_err(|e| Error::Url {
                    option: "--url",
                    error: e,
                })?;
            }
            Long("repository") => {
                options.repository = Some(option_value(&mut parser, "--repository")?);
            }
            Long("secret-file") => {
                options.secret_file = Some(option_value(&mut parser, "--secret-file")?.into());
            }
            Long("ca-file") => {
                options.ca_file = Some(option_value(&mut parser, "--ca-file")?.into());
            }
            Long("repository-credentials") => {
                options.repository_credentials =
                    Some(option_value(&mut parser, "--repository-credentials")?.into());
            }
            Long("bintray") => options.scheme = Scheme::Bintray,
            Long("target-tag") => {
                let tag = option_value(&mut parser, "--target-tag")?;
                if let Err(e) = Segment::parse(&tag) {
                    return Err(Error::Invalid {
                        option: "--target-tag",
                        why: format!("the tag {e}"),
                    });
                }
                if options.target_tags.len() == MAX_TARGET_TAGS {
                    return Err(Error::Invalid {
                        option: "--target-tag",
                        why: format!("at most {MAX_TARGET_TAGS} tags"),
                    });
                }
                options.target_tags.push(tag);
            }
            Long("retry") => options.retry = true,
            Long("allow-downgrade") => options.allow_downgrade = true,
            Short('y') | Long("yes") => options.yes = true,
            Long("no-wait") => options.no_wait = true,
            Long("wait-timeout") => {
                options.wait_timeout = parsed_value(&mut parser, "--wait-timeout", seconds)?;
            }
            Long("timeout") => {
                options.timeout = parsed_value(&mut parser, "--timeout", parse_duration)?;
            }
            Value(value) if bundle.is_none() => {
                bundle = Some(value.into_string().map_err(|_| Error::NotUtf8 {
                    option: "<bundle>".to_owned(),
                })?);
            }
            _ => {
                return Err(Error::Unexpected {
                    command: "deploy",
                    error: arg.unexpected(),
                });
            }
        }
    }
    let body_asks = [
        (options.retry, "--retry"),
        (options.allow_downgrade, "--allow-downgrade"),
    ];
    if let Some(option) = body_asks
        .iter()
        .find(|(asked, _)| *asked)
        .map(|(_, option)| *option)
        && options.scheme == Scheme::Bintray
    {
        return Err(Error::Invalid {
            option,
            why: "needs lockstep's signature: the Bintray one does not cover the body, so the \
                  service would not honour it (drop --bintray)"
                .to_owned(),
        });
    }
    options.bundle = bundle.ok_or(Error::Invalid {
        option: "<bundle>",
        why: "which bundle? see `lockstep deploy --help`".to_owned(),
    })?;
    Ok(Some(options))
}

/// A duration, or a whole number of seconds as the official client's `--wait-timeout` takes.
fn seconds(text: &str) -> Result<Duration, ValueError> {
    match text.trim().parse::<u64>() {
        Ok(n) => Ok(Duration::from_secs(n)),
        Err(_) => parse_duration(text),
    }
}

/// Runs `lockstep deploy` in this process.
pub fn run(options: &Options, out: &mut dyn std::io::Write) -> Result<(), deploy::Error> {
    let context = deploy::Context::of_process();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    deploy::run(options, &context, &mut input, out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn test_parse_defaults_and_every_option() {
        let options = parse(&args(&["visualizer"])).unwrap().unwrap();
        assert_eq!(options.bundle, "visualizer");
        assert_eq!(options.url.as_str(), deploy::DEFAULT_URL);
        assert_eq!(options.wait_timeout, deploy::DEFAULT_WAIT_TIMEOUT);
        let options = parse(&args(&[
            "-y",
            "--url",
            "http://h:9",
            "--repository",
            "/r",
            "--bintray",
            "--target-tag",
            "blue",
            "--no-wait",
            "--wait-timeout",
            "30",
            "--timeout",
            "2s",
            "--ca-file",
            "/ca.pem",
            "--repository-credentials",
            "/creds",
            "web:1.0",
        ]))
        .unwrap()
        .unwrap();
        assert!(options.yes && options.no_wait);
        assert_eq!(options.scheme, Scheme::Bintray);
        assert_eq!(options.target_tags, ["blue"]);
        assert_eq!(options.wait_timeout, Duration::from_secs(30));
        assert_eq!(options.timeout, Duration::from_secs(2));
        assert_eq!(options.repository.as_deref(), Some("/r"));
        assert_eq!(options.ca_file.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(
            options.repository_credentials.as_deref(),
            Some(Path::new("/creds"))
        );
    }

    #[test]
    fn test_parse_retry() {
        assert!(!parse(&args(&["x"])).unwrap().unwrap().retry);
        assert!(parse(&args(&["--retry", "x"])).unwrap().unwrap().retry);
    }

    #[test]
    fn test_parse_allow_downgrade() {
        let plain = parse(&args(&["x"])).unwrap().unwrap();
        assert!(!plain.allow_downgrade);
        let allowing = parse(&args(&["--allow-downgrade", "x"])).unwrap().unwrap();
        assert!(allowing.allow_downgrade && !allowing.retry);
    }

    #[test]
    fn test_parse_refuses_what_it_cannot_send() {
        for (list, expected) in [
            (&["--url", "ftp://h", "x"][..], "--url"),
            (&["--target-tag", "a/b", "x"][..], "--target-tag"),
            (&[][..], "<bundle>"),
            (&["x", "y"][..], "deploy --help"),
            (&["--wait-timeout", "soon", "x"][..], "--wait-timeout"),
            (&["--retry", "--bintray", "x"][..], "drop --bintray"),
            (
                &["--bintray", "--allow-downgrade", "x"][..],
                "--allow-downgrade",
            ),
        ] {
            let e = parse(&args(list)).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains(expected), "{list:?}: {e}");
        }
        let nine: Vec<&str> = ["--target-tag", "t"]
            .iter()
            .cycle()
            .take(18)
            .copied()
            .chain(["x"])
            .collect();
        assert!(
            parse(&args(&nine))
                .unwrap_err()
                .to_string()
                .contains("at most 8")
        );
    }
}
