//! `lockstep`'s command lines: each submodule reads one command's arguments into its options
//! (`None` for `--help`) and holds its usage text; [`crate::run`] dispatches to the commands.

pub mod demo;
pub mod sandbox;
pub mod serve;
pub mod sign;

/// What `lockstep --help` prints.
pub const USAGE: &str = "\
lockstep — a continuous-delivery deployer for ConductR clusters

Usage: lockstep <command> [options]
       lockstep [--help | --version]

A registry's webhook in, a lock-step deployment out: lockstep replaces a running bundle by
its new compatible version, one new instance up, then one old instance down.

Commands:
  demo             A sandbox and lockstep in one process: watch a deployment (`lockstep demo --help`)
  serve            The webhook service: deploy what a registry notifies (`lockstep serve --help`)
  sandbox          Run a ConductR-compatible cluster in one process (`lockstep sandbox --help`)
  sign             Print the X-Lockstep-Signature header for a webhook body (`lockstep sign --help`)

Options:
  -h, --help       Print this help
  -V, --version    Print the version
";

/// The value of the option just read, as text, or an error naming the option.
pub(crate) fn option_value(parser: &mut lexopt::Parser, option: &str) -> Result<String, String> {
    parser
        .value()
        .map_err(|e| format!("{option}: {e}"))?
        .into_string()
        .map_err(|_| format!("{option}: the value is not UTF-8"))
}

/// The value of the option just read, as an `IP:PORT` address, or an error naming the option.
pub(crate) fn address_value(
    parser: &mut lexopt::Parser,
    option: &str,
) -> Result<std::net::SocketAddr, String> {
    let text = option_value(parser, option)?;
    text.parse()
        .map_err(|_| format!("{option}: `{text}` is not an IP:PORT address"))
}
