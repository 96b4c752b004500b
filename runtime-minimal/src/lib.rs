//! lockstep-minimal: lockstep as a `#![no_std]` picoserve application, for appliances and
//! microcontrollers, with a small Linux binary that runs it.
//!
//! The library holds what does not depend on the platform, so that it could run on embassy;
//! the binary plugs in the platform.
#![no_std]

/// What `lockstep-minimal --help` prints.
pub const USAGE: &str = "\
lockstep-minimal — lockstep's minimal runtime (picoserve, fixed buffers)

Usage: lockstep-minimal [--help | --version]

Options:
  -h, --help       Print this help
  -V, --version    Print the version
";
