//! lockstep's std runtime: the sockets, clock, files and process around `lockstep_core`.
//!
//! A library target so that the end-to-end suites can reach its pieces; the `lockstep`
//! binary is a thin `main` over it.

use std::io::Write;

/// What `lockstep --help` prints.
pub const USAGE: &str = "\
lockstep — a continuous-delivery deployer for ConductR clusters

Usage: lockstep [--help | --version]

A registry's webhook in, a lock-step deployment out: lockstep replaces a running bundle by
its new compatible version, one new instance up, then one old instance down.

Options:
  -h, --help       Print this help
  -V, --version    Print the version
";

/// Runs the command line `args` (without the program name); returns the process exit code.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match args.first().map(String::as_str) {
        None | Some("-h" | "--help" | "help") => {
            let _ = out.write_all(USAGE.as_bytes());
            0
        }
        Some("-V" | "--version") => {
            let _ = writeln!(out, "lockstep {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some(other) => {
            let _ = writeln!(
                err,
                "lockstep: unknown command or option `{other}`; see `lockstep --help`"
            );
            2
        }
    }
}
