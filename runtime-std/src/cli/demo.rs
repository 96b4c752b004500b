//! `lockstep demo`'s command line.

use super::{Error, option_value, parsed_value};
use crate::demo;
use crate::units::parse_address;

/// What `lockstep demo --help` prints.
pub const USAGE: &str = "\
lockstep demo — a ConductR sandbox and lockstep in one process: watch a lock-step deployment

Usage: lockstep demo [options]

Starts a sandbox with the demo (bundle visualizer at scale 3 with a configuration, and newer
versions published) and a lockstep service wired to it, with a throwaway secret written to a
file in the data directory (never printed). The sandbox's control API forwards /deployments
and /v2/deployments to the service, as ConductR's did. Sends itself a signed webhook for the
first compatible version and prints the deployment's progress as `conduct deploy` shows it;
then prints the commands to deploy the other versions (with curl, and with the official
`conduct deploy --webhook bintray` against the sandbox's port, its settings file written to
the data directory), and runs until Ctrl-C.

Options:
  --listen ADDR       Where lockstep listens                     [default: 127.0.0.1:0, any port]
  --sandbox ADDR      Where the sandbox listens                  [default: 127.0.0.1:0, any port]
  --data-dir DIR      Where everything is kept    [default: a fresh temporary directory, removed]
  -h, --help          Print this help
";

/// Parses `lockstep demo`'s options; `None` for `--help`.
pub fn parse(args: &[String]) -> Result<Option<demo::Options>, Error> {
    use lexopt::prelude::*;

    let mut options = demo::Options::default();
    let mut parser = lexopt::Parser::from_args(args.iter().cloned());
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("listen") => {
                options.listen = parsed_value(&mut parser, "--listen", parse_address)?;
            }
            Long("sandbox") => {
                options.sandbox = parsed_value(&mut parser, "--sandbox", parse_address)?;
            }
            Long("data-dir") => {
                options.data_dir = Some(option_value(&mut parser, "--data-dir")?.into());
            }
            _ => {
                return Err(Error::Unexpected {
                    command: "demo",
                    error: arg.unexpected(),
                });
            }
        }
    }
    Ok(Some(options))
}
