//! lockstep's std runtime: the sockets, clock, files and process around `lockstep_core`.
//!
//! A library target so that the end-to-end suites can reach its pieces; the `lockstep`
//! binary is a thin `main` over it.

use std::io::Write;

pub mod abort;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod deploy;
pub mod deployments;
pub mod etcd;
pub mod http;
pub mod journal;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod pack;
pub mod platform;
pub mod publish;
pub mod random;
pub mod relay;
pub mod repository;
pub mod samples;
pub mod sandbox;
pub mod secret;
pub mod serve;
pub mod sign;
pub mod signals;
pub mod tempdir;
pub mod time;
pub mod tls;
pub mod ui;
pub mod units;
pub mod url;
pub mod zip;

#[cfg(test)]
mod testing;

/// Runs the command line `args` (without the program name); returns the process exit code.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let rest = args.get(1..).unwrap_or_default();
    let (who, ran) = match args.first().map(String::as_str) {
        None | Some("-h" | "--help" | "help") => ("lockstep", print(out, cli::USAGE)),
        Some("-V" | "--version") => (
            "lockstep",
            print(out, &format!("lockstep {}\n", env!("CARGO_PKG_VERSION"))),
        ),
        Some("serve") => ("lockstep serve", serve(rest, out)),
        Some("demo") => ("lockstep demo", demo(rest, out)),
        Some("deploy") => ("lockstep deploy", deploy(rest, out)),
        Some("abort") => ("lockstep abort", abort(rest, out)),
        Some("sign") => ("lockstep sign", sign(rest, out)),
        Some("bundle") => ("lockstep bundle", bundle(rest, out)),
        Some("sandbox") => ("lockstep sandbox", sandbox(rest, out)),
        Some("publish") => ("lockstep publish", publish(rest, out)),
        Some(other) => (
            "lockstep",
            Err(cli::Error::UnknownCommand(other.to_owned())),
        ),
    };
    match ran {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "{who}: {e}");
            e.exit_code()
        }
    }
}

fn print(out: &mut dyn Write, text: &str) -> Result<(), cli::Error> {
    let _ = out.write_all(text.as_bytes());
    Ok(())
}

fn serve(args: &[String], out: &mut dyn Write) -> Result<(), cli::Error> {
    let Some(serve) = cli::serve::parse(args)? else {
        return print(out, &config::help());
    };
    log::init(serve.log_format, serve.log_level);
    serve::run(serve.options, out).map_err(cli::Error::Serve)
}

fn demo(args: &[String], out: &mut dyn Write) -> Result<(), cli::Error> {
    let Some(options) = cli::demo::parse(args)? else {
        return print(out, cli::demo::USAGE);
    };
    Ok(demo::run(&options, out)?)
}

fn deploy(args: &[String], out: &mut dyn Write) -> Result<(), cli::Error> {
    let Some(options) = cli::deploy::parse(args)? else {
        return print(out, cli::deploy::USAGE);
    };
    cli::deploy::run(&options, out).map_err(cli::Error::Deploy)
}

fn abort(args: &[String], out: &mut dyn Write) -> Result<(), cli::Error> {
    let Some(options) = cli::abort::parse(args)? else {
        return print(out, cli::abort::USAGE);
    };
    cli::abort::run(&options, out).map_err(cli::Error::Abort)
}

fn bundle(args: &[String], out: &mut dyn Write) -> Result<(), cli::Error> {
    let Some(options) = cli::bundle::parse(args)? else {
        return print(out, cli::bundle::USAGE);
    };
    let written = pack::run(&options).map_err(cli::Error::Bundle)?;
    print(out, &written.to_string())
}

fn sign(args: &[String], out: &mut dyn Write) -> Result<(), cli::Error> {
    let Some(options) = cli::sign::parse(args)? else {
        return print(out, cli::sign::USAGE);
    };
    let header = sign::run(&options)?;
    print(out, &format!("{header}\n"))
}

fn sandbox(args: &[String], out: &mut dyn Write) -> Result<(), cli::Error> {
    let Some(options) = cli::sandbox::parse(args)? else {
        return print(out, cli::sandbox::USAGE);
    };
    sandbox::run(options, out).map_err(cli::Error::Sandbox)
}

fn publish(args: &[String], out: &mut dyn Write) -> Result<(), cli::Error> {
    let Some(options) = cli::publish::parse(args)? else {
        return print(out, cli::publish::USAGE);
    };
    publish::run(&options, out).map_err(cli::Error::Publish)
}
