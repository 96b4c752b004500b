//! The `lockstep-minimal` Linux binary.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        None | Some("-h" | "--help") => {
            let _ = std::io::stdout().write_all(lockstep_minimal::USAGE.as_bytes());
            ExitCode::SUCCESS
        }
        Some("-V" | "--version") => {
            println!("lockstep-minimal {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("lockstep-minimal: unknown option `{other}`; see `lockstep-minimal --help`");
            ExitCode::from(2)
        }
    }
}
