//! `lockstep serve`'s command line: its flags, and the `--config` file they may name (the
//! settings themselves, and `--help`, are [`crate::config`]'s).

use crate::config;

/// Parses `lockstep serve`'s flags, reads the environment and the `--config` file; `None` for
/// `--help`.
#[allow(
    clippy::type_complexity,
    reason = "the configuration and the environment it was read with"
)]
pub fn parse(
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
            Long("config") => file = Some(super::option_value(&mut parser, "--config")?),
            Long(name) if config::SETTINGS.iter().any(|s| s.name == name) => {
                let name = name.to_owned();
                let value = super::option_value(&mut parser, &format!("--{name}"))?;
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
