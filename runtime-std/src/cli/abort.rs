//! `lockstep abort`'s command line.

use lockstep_core::deployer::DeploymentId;

use super::{Error, option_value, parsed_value};
use crate::abort::Options;
use crate::deploy::{self, DEFAULT_TIMEOUT, DEFAULT_URL};
use crate::units::parse_duration;
use crate::url::BaseUrl;

/// What `lockstep abort --help` prints.
pub const USAGE: &str = "\
lockstep abort — abort a deployment

Usage: lockstep abort [options] <deployment id>

Asks the lockstep service at --url to abort the deployment: one still resolving or queued
ends failed, `aborted`; one in its lock-step is rolled back as after a failure (with
--rollback off on the service, stopped where it stands); a rollback under way goes on; one
that ended is left as it is. Aborting again changes nothing more. The request is signed with
X-Lockstep-Signature over a body naming the deployment, with the webhook secret:
--secret-file, else BINTRAY_WEBHOOK_SECRET, else the official client's settings file, as
`lockstep deploy` finds it.

Options:
  --url URL            The lockstep service, http:// or https://  [default: http://127.0.0.1:9000]
  --secret-file FILE   A file holding the webhook secret
  --ca-file FILE       A PEM file of CA certificates trusted for https:// beside the system's
  --timeout DUR        How long each connect, read and write may take         [default: 10s]
  -h, --help           Print this help

Prints `<id>: <what the abort did>`. Exit status: 0 when the service took the abort (or the
deployment had ended already: the line says so); 1 when it refused it (no such deployment,
a rejected signature) or could not be reached; 2 for a command line that cannot be read.
";

/// Parses `lockstep abort`'s options; `None` for `--help`.
pub fn parse(args: &[String]) -> Result<Option<Options>, Error> {
    use lexopt::prelude::*;

    let url_error = |e| Error::Url {
        option: "--url",
        error: e,
    };
    let mut url = BaseUrl::parse(DEFAULT_URL).map_err(url_error)?;
    let (mut secret_file, mut ca_file, mut timeout) = (None, None, DEFAULT_TIMEOUT);
    let mut id = None;
    let mut parser = lexopt::Parser::from_args(args.iter().cloned());
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("url") => {
                url = BaseUrl::parse(&option_value(&mut parser, "--url")?).map_err(url_error)?;
            }
            Long("secret-file") => {
                secret_file = Some(option_value(&mut parser, "--secret-file")?.into());
            }
            Long("ca-file") => ca_file = Some(option_value(&mut parser, "--ca-file")?.into()),
            Long("timeout") => timeout = parsed_value(&mut parser, "--timeout", parse_duration)?,
            Value(value) if id.is_none() => {
                let text = value.into_string().map_err(|_| Error::NotUtf8 {
                    option: "<deployment id>".to_owned(),
                })?;
                id = Some(DeploymentId::parse(&text).map_err(|e| Error::Invalid {
                    option: "<deployment id>",
                    why: format!("`{text}`: {e}"),
                })?);
            }
            _ => {
                return Err(Error::Unexpected {
                    command: "abort",
                    error: arg.unexpected(),
                });
            }
        }
    }
    let id = id.ok_or(Error::Invalid {
        option: "<deployment id>",
        why: "which deployment? see `lockstep abort --help`".to_owned(),
    })?;
    Ok(Some(Options {
        id,
        url,
        secret_file,
        ca_file,
        timeout,
    }))
}

/// Runs `lockstep abort` in this process.
pub fn run(options: &Options, out: &mut dyn std::io::Write) -> Result<(), crate::abort::Error> {
    crate::abort::run(options, &deploy::Context::of_process(), out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn test_parse_options_and_refusals() {
        let id = "0f5e2c8e-4b8a-4e43-9d8e-3a0c1b2d4e5f";
        let o = parse(&args(&[id])).unwrap().unwrap();
        assert_eq!(o.id.to_string(), id);
        assert_eq!(o.url.as_str(), DEFAULT_URL);
        let o = parse(&args(&["--url", "https://h:9", "--timeout", "2s", id]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (o.url.as_str(), o.timeout),
            ("https://h:9", Duration::from_secs(2))
        );
        assert!(parse(&args(&["--help"])).unwrap().is_none());
        for (list, says) in [
            (&[][..], "which deployment"),
            (&["not-an-id"][..], "`not-an-id`"),
            (&[id, id][..], "abort --help"),
        ] {
            let e = parse(&args(list)).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains(says), "{e}");
        }
    }
}
