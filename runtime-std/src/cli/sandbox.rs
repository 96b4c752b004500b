//! `lockstep sandbox`'s command line.

use std::path::PathBuf;

use crate::sandbox;
use crate::units::{parse_duration, parse_size};

/// What `lockstep sandbox --help` prints.
pub const USAGE: &str = "\
lockstep sandbox — a ConductR-compatible cluster in one process

Usage: lockstep sandbox [options]

Serves the ConductR control API v2 (what lockstep drives and what `conduct info|load|run|stop|
unload --api-version 2` call), simulated instances, the bundle event stream, and a bundle
repository under /repository/. Prints `listening on http://IP:PORT`, then
`repository http://IP:PORT/repository`.

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
  -h, --help             Print this help
";

/// Parses `lockstep sandbox`'s options; `None` for `--help`.
pub fn parse(args: &[String]) -> Result<Option<sandbox::Options>, String> {
    use lexopt::prelude::*;

    let mut options = sandbox::Options::default();
    let mut parser = lexopt::Parser::from_args(args.iter().cloned());
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("listen") => options.listen = super::address_value(&mut parser, "--listen")?,
            Long("data-dir") => {
                let dir = super::option_value(&mut parser, "--data-dir")?;
                options.data_dir = Some(PathBuf::from(dir));
            }
            Long("start-delay") => {
                options.start_delay =
                    parse_duration(&super::option_value(&mut parser, "--start-delay")?)
                        .map_err(|e| format!("--start-delay: {e}"))?;
            }
            Long("stop-delay") => {
                options.stop_delay =
                    parse_duration(&super::option_value(&mut parser, "--stop-delay")?)
                        .map_err(|e| format!("--stop-delay: {e}"))?;
            }
            Long("heartbeat") => {
                options.heartbeat =
                    parse_duration(&super::option_value(&mut parser, "--heartbeat")?)
                        .map_err(|e| format!("--heartbeat: {e}"))?;
            }
            Long("max-upload") => {
                options.max_upload = parse_size(&super::option_value(&mut parser, "--max-upload")?)
                    .map_err(|e| format!("--max-upload: {e}"))?;
            }
            Long("faults") => {
                let text = super::option_value(&mut parser, "--faults")?;
                let json = match text.strip_prefix('@') {
                    Some(file) => {
                        std::fs::read(file).map_err(|e| format!("--faults: {file}: {e}"))?
                    }
                    None => text.into_bytes(),
                };
                options.faults = sandbox::faults::Faults::parse(&json, 0)
                    .map_err(|e| format!("--faults: {e}"))?;
            }
            Long("demo") => options.demo = true,
            _ => {
                return Err(format!(
                    "{}; see `lockstep sandbox --help`",
                    arg.unexpected()
                ));
            }
        }
    }
    Ok(Some(options))
}
