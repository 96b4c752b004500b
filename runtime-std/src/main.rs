//! The `lockstep` binary.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = lockstep::run(&args, &mut std::io::stdout(), &mut std::io::stderr());
    // Request lines still held (lockstep::log::HELD): exit runs no destructor.
    lockstep::log::flush();
    std::process::exit(code);
}
