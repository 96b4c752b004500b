//! The `lockstep-minimal` Linux binary: the `lockstep_minimal` app on async-io sockets, one
//! single-threaded executor, with runtime-std's platform (TCP connections, clocks, the bundle
//! store, the repository) and its journal file format in the data directory.

// The connection task nests picoserve's futures deeply.
#![recursion_limit = "256"]

mod config;
mod linux;

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let ran = match config::parse(args) {
        Ok(config::Parsed::Help) => {
            let _ = std::io::stdout().write_all(config::USAGE.as_bytes());
            Ok(())
        }
        Ok(config::Parsed::Version) => {
            println!("lockstep-minimal {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Ok(config::Parsed::Run(options)) => linux::run(*options),
        Err(e) => Err(e),
    };
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "lockstep-minimal: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
