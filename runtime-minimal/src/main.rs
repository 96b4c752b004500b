//! The `lockstep-minimal` Linux binary: the `lockstep_minimal` app and the agent on the runtime
//! of `rt` (one thread, epoll, fixed tables: no allocation per request), with runtime-std's
//! bundle store, repositories and journal file format in the data directory.

// The connection task nests picoserve's futures deeply.
#![recursion_limit = "256"]

mod config;
mod linux;
mod os;
mod rt;

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
    lockstep::log::flush();
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "lockstep-minimal: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
