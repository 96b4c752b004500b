//! lockstep's std runtime: the sockets, clock, files and process around `lockstep_core`.
//!
//! A library target so that the end-to-end suites can reach its pieces; the `lockstep`
//! binary is a thin `main` over it.

use std::io::Write;
use std::path::PathBuf;

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
pub mod serve;
pub mod signals;
pub mod tempdir;
pub mod time;
pub mod zip;

#[cfg(test)]
mod testing;

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

/// What `lockstep demo --help` prints.
pub const DEMO_USAGE: &str = "\
lockstep demo — a ConductR sandbox and lockstep in one process: watch a lock-step deployment

Usage: lockstep demo [options]

Starts a sandbox with the demo (bundle visualizer at scale 3 with a configuration, and newer
versions published) and a lockstep service wired to it, with a throwaway secret written to a
file in the data directory (never printed). Sends itself a signed webhook for the first
compatible version and prints the deployment's progress as `conduct deploy` shows it; then
prints the commands to deploy the other versions, and runs until Ctrl-C.

Options:
  --listen ADDR       Where lockstep listens                     [default: 127.0.0.1:0, any port]
  --sandbox ADDR      Where the sandbox listens                  [default: 127.0.0.1:0, any port]
  --data-dir DIR      Where everything is kept    [default: a fresh temporary directory, removed]
  -h, --help          Print this help
";

/// What `lockstep sign --help` prints.
pub const SIGN_USAGE: &str = "\
lockstep sign — print the X-Lockstep-Signature header of a webhook body

Usage: lockstep sign [--secret-file FILE] [BODY-FILE | -]
       lockstep sign [--secret-file FILE] --bintray PACKAGE

Signs the body (a file, or standard input with - or no argument) with the webhook secret
(--secret-file, else the environment variable BINTRAY_WEBHOOK_SECRET) at the current time, and
prints the whole header line, for curl -H:

  X-Lockstep-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.\" + body)>

With --bintray, prints the Bintray scheme's header for a package instead (the same for every
version of it).

Options:
  --secret-file FILE  A file holding the secret (a trailing newline is not part of it)
  --bintray PACKAGE   Print X-Bintray-Hook-Hmac for this package
  -h, --help          Print this help
";

/// What `lockstep sandbox --help` prints.
pub const SANDBOX_USAGE: &str = "\
lockstep sandbox — a ConductR-compatible cluster in one process

Usage: lockstep sandbox [options]

Serves the ConductR control API v2 (what lockstep drives and what `conduct info|load|run|stop|
unload --api-version 2` call), simulated instances, the bundle event stream, and a bundle
repository under /repository/. Prints `listening on http://IP:PORT`, then
`repository http://IP:PORT/repository`.

Options:
  --listen ADDR          Address to listen on; port 0 picks a free port   [default: 127.0.0.1:9005]
  --data-dir DIR         Where bundles, configurations and the repository are kept
                                                           [default: a fresh temporary directory]
  --start-delay DUR      How long an instance takes to start                      [default: 500ms]
  --stop-delay DUR       How long a started instance takes to stop                [default: 100ms]
  --heartbeat DUR        Interval of the event stream's heartbeats                   [default: 2s]
  --max-upload SIZE      Largest load request accepted                          [default: 512MiB]
  --faults JSON|@FILE    Faults in force from the start (the JSON of POST /sandbox/faults)
  --demo                 Publish the sample versions of bundle visualizer (org typesafe, repo
                         bundle), run the first at scale 3 with a configuration, and print one
                         line per version: `version visualizer:<tag>-<digest> <role>`
  -h, --help             Print this help
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
        Some("serve") => match serve_config(args.get(1..).unwrap_or_default()) {
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
        Some("demo") => match demo_options(args.get(1..).unwrap_or_default()) {
            Ok(None) => {
                let _ = out.write_all(DEMO_USAGE.as_bytes());
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
        Some("sign") => match sign(args.get(1..).unwrap_or_default()) {
            Ok(Some(header)) => {
                let _ = writeln!(out, "{header}");
                0
            }
            Ok(None) => {
                let _ = out.write_all(SIGN_USAGE.as_bytes());
                0
            }
            Err(e) => {
                let _ = writeln!(err, "lockstep sign: {e}");
                2
            }
        },
        Some("sandbox") => match sandbox_options(args.get(1..).unwrap_or_default()) {
            Ok(None) => {
                let _ = out.write_all(SANDBOX_USAGE.as_bytes());
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

/// Parses `lockstep sandbox`'s options; `None` for `--help`.
fn sandbox_options(args: &[String]) -> Result<Option<sandbox::Options>, String> {
    use lexopt::prelude::*;

    let mut options = sandbox::Options::default();
    let mut parser = lexopt::Parser::from_args(args.iter().cloned());
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("listen") => options.listen = cli::address_value(&mut parser, "--listen")?,
            Long("data-dir") => {
                let dir = cli::option_value(&mut parser, "--data-dir")?;
                options.data_dir = Some(PathBuf::from(dir));
            }
            Long("start-delay") => {
                options.start_delay =
                    cli::parse_duration(&cli::option_value(&mut parser, "--start-delay")?)
                        .map_err(|e| format!("--start-delay: {e}"))?;
            }
            Long("stop-delay") => {
                options.stop_delay =
                    cli::parse_duration(&cli::option_value(&mut parser, "--stop-delay")?)
                        .map_err(|e| format!("--stop-delay: {e}"))?;
            }
            Long("heartbeat") => {
                options.heartbeat =
                    cli::parse_duration(&cli::option_value(&mut parser, "--heartbeat")?)
                        .map_err(|e| format!("--heartbeat: {e}"))?;
            }
            Long("max-upload") => {
                options.max_upload =
                    cli::parse_size(&cli::option_value(&mut parser, "--max-upload")?)
                        .map_err(|e| format!("--max-upload: {e}"))?;
            }
            Long("faults") => {
                let text = cli::option_value(&mut parser, "--faults")?;
                let json = match text.strip_prefix('@') {
                    Some(file) => {
                        std::fs::read(file).map_err(|e| format!("--faults: {file}: {e}"))?
                    }
                    None => text.into_bytes(),
                };
                options.faults = sandbox::faults::Faults::parse(&json, 0)
                    .map_err(|e| format!("--faults: {e}"))?;
            }
            Long("demo") => options.demo = true,
            _ => {
                return Err(format!(
                    "{}; see `lockstep sandbox --help`",
                    arg.unexpected()
                ));
            }
        }
    }
    Ok(Some(options))
}

/// Parses `lockstep serve`'s flags, reads the environment and the `--config` file; `None` for
/// `--help`.
#[allow(clippy::type_complexity, reason = "a private helper's tuple")]
fn serve_config(
    args: &[String],
) -> Result<Option<(config::Config, std::collections::BTreeMap<String, String>)>, String> {
    use lexopt::prelude::*;

    let mut sources = config::Sources {
        env: std::env::vars().collect(),
        ..config::Sources::default()
    };
    let mut file = None;
    let mut parser = lexopt::Parser::from_args(args.iter().cloned());
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("config") => file = Some(cli::option_value(&mut parser, "--config")?),
            Long(name) if config::SETTINGS.iter().any(|s| s.name == name) => {
                let name = name.to_owned();
                let value = cli::option_value(&mut parser, &format!("--{name}"))?;
                sources.flags.push((name, value));
            }
            _ => return Err(format!("{}; see `lockstep serve --help`", arg.unexpected())),
        }
    }
    if let Some(path) = file.or_else(|| sources.env.get(config::CONFIG_ENV).cloned()) {
        sources.file = config_file(&path)?;
    }
    let config = config::Config::from_sources(&sources)?;
    Ok(Some((config, sources.env)))
}

/// The keys of a TOML configuration file, each as the text its flag would take.
fn config_file(path: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--config {path}: {e}"))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("--config {path}: {}", e.message()))?;
    let mut keys = std::collections::BTreeMap::new();
    for (key, value) in table {
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => (if b { "on" } else { "off" }).to_owned(),
            toml::Value::Array(items) => {
                let mut parts = Vec::new();
                for item in items {
                    match item {
                        toml::Value::String(s) => parts.push(s),
                        _ => {
                            return Err(format!(
                                "--config {path}: `{key}` must be a list of strings"
                            ));
                        }
                    }
                }
                parts.join(",")
            }
            _ => {
                return Err(format!(
                    "--config {path}: `{key}` must be a string, a number or a list"
                ));
            }
        };
        keys.insert(key, text);
    }
    Ok(keys)
}

/// Parses `lockstep demo`'s options; `None` for `--help`.
fn demo_options(args: &[String]) -> Result<Option<demo::Options>, String> {
    use lexopt::prelude::*;

    let mut options = demo::Options::default();
    let mut parser = lexopt::Parser::from_args(args.iter().cloned());
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("listen") => options.listen = cli::address_value(&mut parser, "--listen")?,
            Long("sandbox") => options.sandbox = cli::address_value(&mut parser, "--sandbox")?,
            Long("data-dir") => {
                let dir = cli::option_value(&mut parser, "--data-dir")?;
                options.data_dir = Some(PathBuf::from(dir));
            }
            _ => return Err(format!("{}; see `lockstep demo --help`", arg.unexpected())),
        }
    }
    Ok(Some(options))
}

/// `lockstep sign`: the header line, or `None` for `--help`.
fn sign(args: &[String]) -> Result<Option<String>, String> {
    use std::io::Read;

    use lexopt::prelude::*;
    use lockstep_core::signature::{self, Secret};

    let mut secret_file = None;
    let mut bintray = None;
    let mut body_file = None;
    let mut parser = lexopt::Parser::from_args(args.iter().cloned());
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("secret-file") => {
                secret_file = Some(cli::option_value(&mut parser, "--secret-file")?);
            }
            Long("bintray") => bintray = Some(cli::option_value(&mut parser, "--bintray")?),
            Value(file) if body_file.is_none() => {
                body_file = Some(
                    file.into_string()
                        .map_err(|_| "the body file name is not UTF-8")?,
                );
            }
            _ => return Err(format!("{}; see `lockstep sign --help`", arg.unexpected())),
        }
    }
    let secret = match secret_file {
        Some(file) => {
            let bytes = std::fs::read(&file).map_err(|e| format!("--secret-file {file}: {e}"))?;
            Secret::from_file_contents(&bytes).map_err(|e| format!("--secret-file {file}: {e}"))?
        }
        None => match std::env::var("BINTRAY_WEBHOOK_SECRET") {
            Ok(value) => {
                Secret::new(value.as_bytes()).map_err(|e| format!("BINTRAY_WEBHOOK_SECRET: {e}"))?
            }
            Err(_) => {
                return Err(
                    "no secret: pass --secret-file FILE or set BINTRAY_WEBHOOK_SECRET".into(),
                );
            }
        },
    };
    if let Some(package) = bintray {
        lockstep_core::bundle::Segment::parse(&package)
            .map_err(|e| format!("--bintray: the package {e}"))?;
        let value = signature::bintray_sign(&secret, &package);
        return Ok(Some(format!(
            "{}: {}",
            signature::BINTRAY_HEADER,
            value.as_str()
        )));
    }
    let mut body = Vec::new();
    match body_file.as_deref() {
        None | Some("-") => std::io::stdin()
            .read_to_end(&mut body)
            .map(|_| ())
            .map_err(|e| format!("standard input: {e}"))?,
        Some(file) => body = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?,
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "the clock is before 1970")?
        .as_secs();
    let value = signature::lockstep_sign(&secret, t, &body);
    Ok(Some(format!(
        "{}: {}",
        signature::LOCKSTEP_HEADER,
        value.as_str()
    )))
}
