//! `lockstep sandbox`'s command line.

use super::{Error, option_value, parsed_value};
use crate::config::{self, Origin, SettingError};
use crate::sandbox::{self, faults::Faults};
use crate::units::{parse_address, parse_duration, parse_size};
use crate::url::BaseUrl;
use lockstep_core::agent::http::Scheme;

/// What `lockstep sandbox --help` prints.
pub const USAGE: &str = "\
lockstep sandbox — a ConductR-compatible cluster in one process

Usage: lockstep sandbox [options]

Serves the ConductR control API v2 (what lockstep drives and what `conduct info|load|run|stop|
unload --api-version 2` call), simulated instances, the bundle event stream, and a bundle
repository under /repository/. Prints `listening on http://IP:PORT`, then
`repository http://IP:PORT/repository`.

With --deployments, every request to /deployments, /v2/deployments or a path under them is
forwarded to that lockstep service, as ConductR's control API forwarded them to its Continuous
Delivery service: `conduct deploy --webhook bintray --port <this port>` works against the
sandbox. Method, path, query, end-to-end headers and body go through; the answer comes back
byte for byte, the event stream event by event; the connection closes after it. A service that
does not accept the connection within 2 s, or does not begin its answer within 30 s, gets
502 `the deployments service at URL does not answer`. Without --deployments those paths are
not found (404).

Options:
  --listen ADDR          Address to listen on; port 0 picks a free port   [default: 127.0.0.1:9005]
  --data-dir DIR         Where bundles, configurations and the repository are kept
                                                           [default: a fresh temporary directory]
  --start-delay DUR      How long an instance takes to start                      [default: 500ms]
  --stop-delay DUR       How long a started instance takes to stop                [default: 100ms]
  --heartbeat DUR        Interval of the event stream's heartbeats                   [default: 2s]
  --max-upload SIZE      Largest load request accepted                          [default: 512MiB]
  --faults JSON|@FILE    Faults in force from the start (the JSON of POST /sandbox/faults)
  --demo                 Publish the sample versions of bundle visualizer (org typesafe, repo
                         bundle), run the first at scale 3 with a configuration, and print one
                         line per version: `version visualizer:<tag>-<digest> <role>`
  --bundles NAME,...     With --demo: the same for each of these bundles, in order, instead of
                         visualizer alone (a name: 1 to 255 of [A-Za-z0-9._-])
  --deployments URL      Forward the deployments endpoints to the lockstep service at this
                         http:// base URL (a path in it is kept as a prefix), and print
                         `deployments forwarded to URL` last                   [default: none]
  -h, --help             Print this help
";

/// Parses `lockstep sandbox`'s options; `None` for `--help`.
pub fn parse(args: &[String]) -> Result<Option<sandbox::Options>, Error> {
    use lexopt::prelude::*;

    let mut options = sandbox::Options::default();
    let mut parser = lexopt::Parser::from_args(args.iter().cloned());
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("listen") => {
                options.listen = parsed_value(&mut parser, "--listen", parse_address)?;
            }
            Long("data-dir") => {
                options.data_dir = Some(option_value(&mut parser, "--data-dir")?.into());
            }
            Long("start-delay") => {
                options.start_delay = parsed_value(&mut parser, "--start-delay", parse_duration)?;
            }
            Long("stop-delay") => {
                options.stop_delay = parsed_value(&mut parser, "--stop-delay", parse_duration)?;
            }
            Long("heartbeat") => {
                options.heartbeat = parsed_value(&mut parser, "--heartbeat", parse_duration)?;
            }
            Long("max-upload") => {
                options.max_upload = parsed_value(&mut parser, "--max-upload", parse_size)?;
            }
            Long("faults") => {
                let text = option_value(&mut parser, "--faults")?;
                let json = match text.strip_prefix('@') {
                    Some(file) => std::fs::read(file).map_err(|error| Error::FaultsFile {
                        file: file.to_owned(),
                        error,
                    })?,
                    None => text.into_bytes(),
                };
                options.faults = Faults::parse(&json, 0).map_err(Error::Faults)?;
            }
            Long("deployments") => {
                let text = option_value(&mut parser, "--deployments")?;
                let setting = |error| {
                    Error::Config(config::Error::Setting {
                        origin: Origin::Flag("deployments"),
                        error,
                    })
                };
                let service =
                    BaseUrl::parse(&text).map_err(|bad| setting(SettingError::Url(bad)))?;
                // lockstep serves its deployments over plain HTTP.
                if service.url().scheme() != Scheme::Http {
                    return Err(setting(SettingError::HttpOnly(text)));
                }
                options.deployments = Some(service);
            }
            Long("demo") => options.demo = true,
            Long("bundles") => {
                let names = option_value(&mut parser, "--bundles")?;
                options.bundles = names
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            _ => {
                return Err(Error::Unexpected {
                    command: "sandbox",
                    error: arg.unexpected(),
                });
            }
        }
    }
    Ok(Some(options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn test_deployments_takes_an_http_base_url() {
        let options = parse(&args(&["--deployments", "http://127.0.0.1:9010"]))
            .unwrap()
            .unwrap();
        assert_eq!(
            options.deployments.as_ref().map(BaseUrl::as_str),
            Some("http://127.0.0.1:9010")
        );
        let options = parse(&args(&[])).unwrap().unwrap();
        assert_eq!(options.deployments, None);
    }

    #[test]
    fn test_reject_deployments_that_is_no_http_url() {
        for (text, says) in [
            ("https://127.0.0.1:9010", "only http:// is supported here"),
            ("127.0.0.1:9010", "a URL must start with http://"),
            ("http://127.0.0.1:0", "port"),
        ] {
            let error = parse(&args(&["--deployments", text])).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{text}");
            let line = error.to_string();
            assert!(
                line.starts_with(&format!("--deployments: `{text}`: ")) && line.contains(says),
                "{line}"
            );
        }
        let error = parse(&args(&["--deployments"])).unwrap_err();
        assert_eq!(error.exit_code(), 2);
    }
}
