//! `lockstep`'s command lines: each submodule reads one command's arguments into its options
//! (`None` for `--help`) and holds its usage text; [`crate::run`] dispatches to the commands.

pub mod abort;
pub mod bundle;
pub mod demo;
pub mod deploy;
pub mod publish;
pub mod sandbox;
pub mod serve;
pub mod sign;

use std::fmt;
use std::io;

use crate::config;
use crate::sandbox::faults::FaultError;
use crate::units::ValueError;

/// What `lockstep --help` prints.
pub const USAGE: &str = "\
lockstep — a continuous-delivery deployer for ConductR clusters

Usage: lockstep <command> [options]
       lockstep [--help | --version]

A registry's webhook in, a lock-step deployment out: lockstep replaces a running bundle by
its new compatible version, one new instance up, then one old instance down.

Commands:
  abort            Abort a deployment: roll back its lock-step (`lockstep abort --help`)
  bundle           Write lockstep as a ConductR bundle, or a configuration (`lockstep bundle --help`)
  demo             A sandbox and lockstep in one process: watch a deployment (`lockstep demo --help`)
  deploy           Deploy a published version now and follow it, as `conduct deploy` (`lockstep deploy --help`)
  publish          Publish a bundle zip into a repository directory, then notify (`lockstep publish --help`)
  serve            The webhook service: deploy what a registry notifies (`lockstep serve --help`)
  sandbox          Run a ConductR-compatible cluster in one process (`lockstep sandbox --help`)
  sign             Print the X-Lockstep-Signature header for a webhook body (`lockstep sign --help`)

Options:
  -h, --help       Print this help
  -V, --version    Print the version
";

/// Why a command did not do what it was asked; [`Error::exit_code`] is how `lockstep` exits.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No such command (or top-level option).
    UnknownCommand(String),
    /// The arguments cannot be read (a value given to a flag that takes none, say).
    Arguments(lexopt::Error),
    /// An argument the command does not take.
    Unexpected {
        /// The command (`serve`).
        command: &'static str,
        /// lexopt's description of the argument.
        error: lexopt::Error,
    },
    /// An option without its value.
    MissingValue {
        /// The option (`--listen`).
        option: String,
        /// lexopt's description.
        error: lexopt::Error,
    },
    /// An option's value is not UTF-8.
    NotUtf8 {
        /// The option.
        option: String,
    },
    /// `lockstep sign`'s body file name is not UTF-8.
    BodyFileNotUtf8,
    /// An option's value is not a duration, size or address.
    Value {
        /// The option.
        option: String,
        /// What is wrong with the value.
        error: ValueError,
    },
    /// The file of `--faults @FILE` cannot be read.
    FaultsFile {
        /// The file.
        file: String,
        /// Why.
        error: io::Error,
    },
    /// `--faults` holds no faults the sandbox knows.
    Faults(FaultError),
    /// The `--config` file (or `LOCKSTEP_CONFIG`'s) cannot be read as settings.
    ConfigFile {
        /// The file.
        path: String,
        /// Why.
        error: serve::FileError,
    },
    /// `lockstep serve`'s settings.
    Config(config::Error),
    /// `lockstep sign` cannot sign.
    Sign(crate::sign::Error),
    /// `lockstep serve` could not run.
    Serve(io::Error),
    /// `lockstep sandbox` could not run.
    Sandbox(io::Error),
    /// `lockstep demo` failed.
    Demo(crate::demo::Error),
    /// `lockstep bundle` wrote nothing.
    Bundle(crate::pack::Error),
    /// An option's value is not an `http://` URL.
    Url {
        /// The option.
        option: &'static str,
        /// Why.
        error: crate::url::BadUrl,
    },
    /// An option's or argument's value is refused.
    Invalid {
        /// The option or argument.
        option: &'static str,
        /// Why.
        why: String,
    },
    /// `lockstep deploy` did not deploy, or the deployment failed.
    Deploy(crate::deploy::Error),
    /// `lockstep abort` did not abort.
    Abort(crate::abort::Error),
    /// `lockstep publish` failed; its own exit code.
    Publish(crate::publish::Error),
}

impl Error {
    /// 2 for what the command line or the configuration says wrong; 1 for a command that
    /// failed while running.
    pub const fn exit_code(&self) -> i32 {
        match self {
            Self::Serve(_)
            | Self::Sandbox(_)
            | Self::Demo(_)
            | Self::Deploy(_)
            | Self::Abort(_)
            | Self::Bundle(_) => 1,
            Self::Publish(e) => e.exit_code(),
            _ => 2,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownCommand(command) => write!(
                f,
                "unknown command or option `{command}`; see `lockstep --help`"
            ),
            Self::Arguments(e) => e.fmt(f),
            Self::Unexpected { command, error } => {
                write!(f, "{error}; see `lockstep {command} --help`")
            }
            Self::MissingValue { option, error } => write!(f, "{option}: {error}"),
            Self::NotUtf8 { option } => write!(f, "{option}: the value is not UTF-8"),
            Self::BodyFileNotUtf8 => f.write_str("the body file name is not UTF-8"),
            Self::Value { option, error } => write!(f, "{option}: {error}"),
            Self::FaultsFile { file, error } => write!(f, "--faults: {file}: {error}"),
            Self::Faults(e) => write!(f, "--faults: {e}"),
            Self::ConfigFile { path, error } => write!(f, "--config {path}: {error}"),
            Self::Config(e) => e.fmt(f),
            Self::Sign(e) => e.fmt(f),
            Self::Serve(e) | Self::Sandbox(e) => e.fmt(f),
            Self::Demo(e) => e.fmt(f),
            Self::Bundle(e) => e.fmt(f),
            Self::Url { option, error } => write!(f, "{option}: {error}"),
            Self::Invalid { option, why } => write!(f, "{option}: {why}"),
            Self::Deploy(e) => e.fmt(f),
            Self::Abort(e) => e.fmt(f),
            Self::Publish(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl From<lexopt::Error> for Error {
    fn from(e: lexopt::Error) -> Self {
        Self::Arguments(e)
    }
}

impl From<config::Error> for Error {
    fn from(e: config::Error) -> Self {
        Self::Config(e)
    }
}

impl From<crate::sign::Error> for Error {
    fn from(e: crate::sign::Error) -> Self {
        Self::Sign(e)
    }
}

impl From<crate::demo::Error> for Error {
    fn from(e: crate::demo::Error) -> Self {
        Self::Demo(e)
    }
}

/// The value of the option just read, as text, or an error naming the option.
pub(crate) fn option_value(parser: &mut lexopt::Parser, option: &str) -> Result<String, Error> {
    parser
        .value()
        .map_err(|error| Error::MissingValue {
            option: option.to_owned(),
            error,
        })?
        .into_string()
        .map_err(|_| Error::NotUtf8 {
            option: option.to_owned(),
        })
}

/// The value of the option just read, read by `parse` (a parser of [`crate::units`]), or an
/// error naming the option.
pub(crate) fn parsed_value<T>(
    parser: &mut lexopt::Parser,
    option: &str,
    parse: fn(&str) -> Result<T, ValueError>,
) -> Result<T, Error> {
    let text = option_value(parser, option)?;
    parse(&text).map_err(|error| Error::Value {
        option: option.to_owned(),
        error,
    })
}
