//! lockstep's std runtime: the sockets, clock, files and process around `lockstep_core`.
//!
//! A library target so that the end-to-end suites can reach its pieces; the `lockstep`
//! binary is a thin `main` over it.

use std::io::Write;

pub mod cli;
pub mod config;
pub mod demo;
pub mod deployments;
pub mod http;
pub mod log;
pub mod metrics;
pub mod platform;
pub mod repository;
pub mod samples;
pub mod sandbox;
pub mod secret;
pub mod serve;
pub mod sign;
pub mod signals;
pub mod tempdir;
pub mod time;
pub mod units;
pub mod url;
pub mod zip;

#[cfg(test)]
mod testing;

/// Runs the command line `args` (without the program name); returns the process exit code.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match args.first().map(String::as_str) {
        None | Some("-h" | "--help" | "help") => {
            let _ = out.write_all(cli::USAGE.as_bytes());
            0
        }
        Some("-V" | "--version") => {
            let _ = writeln!(out, "lockstep {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some("serve") => match cli::serve::parse(args.get(1..).unwrap_or_default()) {
            Ok(None) => {
                let _ = out.write_all(config::help().as_bytes());
                0
            }
            Ok(Some((config, env))) => {
                log::init(config.log_format, config.log_level);
                match config.options(&env) {
                    Ok(options) => match serve::run(options, out) {
                        Ok(()) => 0,
                        Err(e) => {
                            let _ = writeln!(err, "lockstep serve: {e}");
                            1
                        }
                    },
                    Err(e) => {
                        let _ = writeln!(err, "lockstep serve: {e}");
                        2
                    }
                }
            }
            Err(e) => {
                let _ = writeln!(err, "lockstep serve: {e}");
                2
            }
        },
        Some("demo") => match cli::demo::parse(args.get(1..).unwrap_or_default()) {
            Ok(None) => {
                let _ = out.write_all(cli::demo::USAGE.as_bytes());
                0
            }
            Ok(Some(options)) => match demo::run(&options, out) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = writeln!(err, "lockstep demo: {e}");
                    1
                }
            },
            Err(e) => {
                let _ = writeln!(err, "lockstep demo: {e}");
                2
            }
        },
        Some("sign") => match cli::sign::parse(args.get(1..).unwrap_or_default())
            .and_then(|options| options.map(|o| sign::run(&o)).transpose())
        {
            Ok(Some(header)) => {
                let _ = writeln!(out, "{header}");
                0
            }
            Ok(None) => {
                let _ = out.write_all(cli::sign::USAGE.as_bytes());
                0
            }
            Err(e) => {
                let _ = writeln!(err, "lockstep sign: {e}");
                2
            }
        },
        Some("sandbox") => match cli::sandbox::parse(args.get(1..).unwrap_or_default()) {
            Ok(None) => {
                let _ = out.write_all(cli::sandbox::USAGE.as_bytes());
                0
            }
            Ok(Some(options)) => match sandbox::run(options, out) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = writeln!(err, "lockstep sandbox: {e}");
                    1
                }
            },
            Err(e) => {
                let _ = writeln!(err, "lockstep sandbox: {e}");
                2
            }
        },
        Some(other) => {
            let _ = writeln!(
                err,
                "lockstep: unknown command or option `{other}`; see `lockstep --help`"
            );
            2
        }
    }
}
