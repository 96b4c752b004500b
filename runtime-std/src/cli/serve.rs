//! `lockstep serve`'s command line: its flags, and the `--config` file they may name (the
//! settings themselves, and `--help`, are [`crate::config`]'s).

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use super::{Error, option_value};
use crate::config::{CONFIG_ENV, Config, SETTINGS, Sources};
use crate::log::{LogFormat, LogLevel};
use crate::serve;

/// Why the `--config` file cannot be read as settings.
#[derive(Debug)]
#[non_exhaustive]
pub enum FileError {
    /// It cannot be read.
    Read(io::Error),
    /// It is not TOML.
    Toml(toml::de::Error),
    /// A key holds a list of something else than strings.
    NotStrings(String),
    /// A key holds a table, a float or a date.
    WrongType(String),
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(e) => e.fmt(f),
            Self::Toml(e) => f.write_str(e.message()),
            Self::NotStrings(key) => write!(f, "`{key}` must be a list of strings"),
            Self::WrongType(key) => write!(f, "`{key}` must be a string, a number or a list"),
        }
    }
}

impl std::error::Error for FileError {}

/// What `lockstep serve` runs with.
#[derive(Debug)]
pub struct Invocation {
    /// How it logs.
    pub log_format: LogFormat,
    /// What it logs.
    pub log_level: LogLevel,
    /// The service's options (the secret read).
    pub options: serve::Options,
}

/// Parses `lockstep serve`'s flags, reads the environment, the `--config` file and the secret;
/// `None` for `--help`.
pub fn parse(args: &[String]) -> Result<Option<Invocation>, Error> {
    use lexopt::prelude::*;

    let mut sources = Sources {
        env: std::env::vars().collect(),
        ..Sources::default()
    };
    let mut file = None;
    let mut parser = lexopt::Parser::from_args(args.iter().cloned());
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("config") => file = Some(option_value(&mut parser, "--config")?),
            Long(name) if SETTINGS.iter().any(|s| s.name == name) => {
                let name = name.to_owned();
                let value = option_value(&mut parser, &format!("--{name}"))?;
                sources.flags.push((name, value));
            }
            _ => {
                return Err(Error::Unexpected {
                    command: "serve",
                    error: arg.unexpected(),
                });
            }
        }
    }
    if let Some(path) = file.or_else(|| sources.env.get(CONFIG_ENV).cloned()) {
        sources.file = config_file(&path).map_err(|error| Error::ConfigFile { path, error })?;
    }
    let config = Config::from_sources(&sources)?;
    Ok(Some(Invocation {
        log_format: config.log_format,
        log_level: config.log_level,
        options: config.options(&sources.env)?,
    }))
}

/// The keys of a TOML configuration file, each as the text its flag would take.
fn config_file(path: &str) -> Result<BTreeMap<String, String>, FileError> {
    let text = std::fs::read_to_string(path).map_err(FileError::Read)?;
    let table: toml::Table = text.parse().map_err(FileError::Toml)?;
    let mut keys = BTreeMap::new();
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
                        _ => return Err(FileError::NotStrings(key)),
                    }
                }
                parts.join(",")
            }
            _ => return Err(FileError::WrongType(key)),
        };
        keys.insert(key, text);
    }
    Ok(keys)
}
