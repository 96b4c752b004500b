//! The command line and environment of `lockstep-minimal`: the settings `lockstep serve` has
//! that this runtime takes, with the same flags, `LOCKSTEP_*` variables and defaults (no
//! configuration file).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use lockstep::deployments::RepositoryOption;
use lockstep::units::{parse_address, parse_duration, parse_size};
use lockstep::url::BaseUrl;
use lockstep_core::agent::http::Scheme;
use lockstep_core::signature::Secret;
use lockstep_core::webhook::BodyLimit;

/// The most deployments in flight (the deployer's table).
pub(crate) const IN_FLIGHT: usize = 16;
/// The most ended deployments retained for reading (`--retention` at most).
pub(crate) const RETENTION: usize = 64;
/// The replay cache's capacity.
pub(crate) const REPLAY_CACHE: usize = 1024;

/// What `lockstep-minimal --help` prints.
pub(crate) const USAGE: &str = "\
lockstep-minimal — lockstep's minimal runtime: the webhook service of `lockstep serve` on
picoserve, single-threaded, with fixed buffers. There is no configuration file (to keep it
small): every setting is a flag, or the environment variable LOCKSTEP_<NAME>. It speaks
plain http:// only (TLS would double its size): for an https:// repository or control API,
use `lockstep serve`, or a TLS proxy in front.

Usage: lockstep-minimal --repository URL|DIR [options]

Options (flag, then its default):
      --listen IP:PORT        127.0.0.1:9010 (below LOCKSTEP_LISTEN: DEPLOYMENTS_BIND_IP
                              and DEPLOYMENTS_BIND_PORT)
      --conductr URL          http://127.0.0.1:9005   the ConductR control API (http:// only)
      --repository URL|DIR    (required) where bundles are published: http:// or a directory
      --data-dir DIR          $XDG_STATE_HOME/lockstep-minimal, else
                              ~/.local/state/lockstep-minimal: the journal and downloads
      --secret-file FILE      (BINTRAY_WEBHOOK_SECRET) the webhook secret; never printed
      --max-body SIZE         8KiB      largest webhook body (413 above); at most 16KiB
      --max-connections N     64        connections served at once (503 above)
      --heartbeat DURATION    2s        interval of the event stream's heartbeats
      --poll-interval DURATION 1s       how often a waiting step looks at the cluster
      --io-timeout DURATION   10s       deadline of every connect, read and write
      --step-deadline DURATION 2m       how long each step of a deployment may take
      --retention N           64        ended deployments kept for reading (at most 64)
      --replay-window DURATION 5m       how far from now a lockstep signature's time may be
  -h, --help                  Print this help
  -V, --version               Print the version
";

/// `url` if it is `http://`: the minimal runtime has no TLS.
fn http_only(origin: &str, url: BaseUrl) -> Result<BaseUrl, Failure> {
    if url.url().scheme() == Scheme::Http {
        Ok(url)
    } else {
        Err(Failure::usage(format!(
            "{origin}: `{url}`: lockstep-minimal speaks http:// only; use `lockstep serve` for \
             https://, or a TLS proxy in front"
        )))
    }
}

/// A failure with its exit code: 2 for usage and configuration, 1 at run time.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) code: u8,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 2,
        }
    }

    pub(crate) fn run(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }
}

/// Every setting, parsed.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) listen: SocketAddr,
    pub(crate) conductr: BaseUrl,
    pub(crate) repository: RepositoryOption,
    pub(crate) data_dir: PathBuf,
    pub(crate) secret: Secret,
    pub(crate) max_body: BodyLimit,
    pub(crate) max_connections: usize,
    pub(crate) heartbeat: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) io_timeout: Duration,
    pub(crate) step_deadline: Duration,
    pub(crate) retention: usize,
    pub(crate) replay_window: Duration,
}

/// What the command line asks.
#[derive(Debug)]
pub(crate) enum Parsed {
    Help,
    Version,
    Run(Box<Options>),
}

const NAMES: &[&str] = &[
    "listen",
    "conductr",
    "repository",
    "data-dir",
    "secret-file",
    "max-body",
    "max-connections",
    "heartbeat",
    "poll-interval",
    "io-timeout",
    "step-deadline",
    "retention",
    "replay-window",
];

fn env_name(name: &str) -> String {
    format!("LOCKSTEP_{}", name.to_ascii_uppercase().replace('-', "_"))
}

/// Parses the arguments (without the program name) and the environment.
pub(crate) fn parse(args: Vec<OsString>) -> Result<Parsed, Failure> {
    let mut flags: Vec<(&'static str, String)> = Vec::new();
    let mut parser = lexopt::Parser::from_args(args);
    let unusable = |e: lexopt::Error| Failure::usage(format!("{e}; see `lockstep-minimal --help`"));
    while let Some(arg) = parser.next().map_err(unusable)? {
        match arg {
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => return Ok(Parsed::Help),
            lexopt::Arg::Short('V') | lexopt::Arg::Long("version") => {
                return Ok(Parsed::Version);
            }
            lexopt::Arg::Long(long) => {
                let Some(name) = NAMES.iter().find(|n| **n == long) else {
                    return Err(Failure::usage(format!(
                        "unknown option `--{long}`; see `lockstep-minimal --help`"
                    )));
                };
                let value = parser.value().map_err(unusable)?;
                let value = value
                    .into_string()
                    .map_err(|_| Failure::usage(format!("--{name}: not valid UTF-8")))?;
                flags.retain(|(n, _)| n != name);
                flags.push((name, value));
            }
            other => return Err(unusable(other.unexpected())),
        }
    }
    let get = |name: &'static str| -> Option<(String, String)> {
        if let Some((_, v)) = flags.iter().find(|(n, _)| *n == name) {
            return Some((format!("--{name}"), v.clone()));
        }
        let env = env_name(name);
        std::env::var(&env).ok().map(|v| (env, v))
    };
    let bad = |origin: &str, e: &dyn std::fmt::Display| Failure::usage(format!("{origin}: {e}"));
    let duration = |name: &'static str, default: Duration| -> Result<Duration, Failure> {
        match get(name) {
            None => Ok(default),
            Some((origin, v)) => {
                let d = parse_duration(&v).map_err(|e| bad(&origin, &e))?;
                if d.is_zero() {
                    return Err(bad(&origin, &"must be more than 0"));
                }
                Ok(d)
            }
        }
    };
    let count = |name: &'static str, default: usize, max: usize| -> Result<usize, Failure> {
        match get(name) {
            None => Ok(default),
            Some((origin, v)) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                Ok(n) => Err(bad(&origin, &format!("{n} is not between 1 and {max}"))),
                Err(_) => Err(bad(&origin, &format!("`{v}` is not a whole number"))),
            },
        }
    };
    let listen = match get("listen") {
        Some((origin, v)) => parse_address(&v).map_err(|e| bad(&origin, &e))?,
        None => bind_env()?,
    };
    let conductr = match get("conductr") {
        Some((origin, v)) => http_only(&origin, BaseUrl::parse(&v).map_err(|e| bad(&origin, &e))?)?,
        None => BaseUrl::parse("http://127.0.0.1:9005").map_err(|e| bad("--conductr", &e))?,
    };
    let repository = match get("repository") {
        Some((origin, v)) => match RepositoryOption::parse(&v).map_err(|e| bad(&origin, &e))? {
            RepositoryOption::Http(url) => RepositoryOption::Http(http_only(&origin, url)?),
            dir @ RepositoryOption::Dir(_) => dir,
        },
        None => {
            return Err(Failure::usage(
                "--repository is required: the http:// base URL or the directory bundles are \
                 published to (or LOCKSTEP_REPOSITORY)",
            ));
        }
    };
    let data_dir = match get("data-dir") {
        Some((origin, v)) => {
            let dir = PathBuf::from(v);
            if dir.exists() && !dir.is_dir() {
                return Err(bad(
                    &origin,
                    &format!("`{}` is not a directory", dir.display()),
                ));
            }
            dir
        }
        None => default_data_dir().ok_or_else(|| {
            Failure::usage(
                "--data-dir is required when neither XDG_STATE_HOME nor HOME is set (or \
                 LOCKSTEP_DATA_DIR)",
            )
        })?,
    };
    let secret_file = get("secret-file").map(|(_, v)| PathBuf::from(v));
    let env_secret = std::env::var(lockstep::secret::ENV).ok();
    let secret = lockstep::secret::read(secret_file.as_deref(), env_secret.as_deref())
        .map_err(|e| Failure::usage(e.to_string()))?;
    let max_body = match get("max-body") {
        None => BodyLimit::new(8 * 1024).map_err(|e| bad("--max-body", &e))?,
        Some((origin, v)) => {
            let n = parse_size(&v).map_err(|e| bad(&origin, &e))?;
            BodyLimit::new(n).map_err(|e| bad(&origin, &e))?
        }
    };
    Ok(Parsed::Run(Box::new(Options {
        listen,
        conductr,
        repository,
        data_dir,
        secret,
        max_body,
        max_connections: count("max-connections", 64, 4096)?,
        heartbeat: duration("heartbeat", Duration::from_secs(2))?,
        poll_interval: duration("poll-interval", Duration::from_secs(1))?,
        io_timeout: duration("io-timeout", Duration::from_secs(10))?,
        step_deadline: duration("step-deadline", Duration::from_secs(120))?,
        retention: count("retention", RETENTION, RETENTION)?,
        replay_window: duration("replay-window", Duration::from_secs(300))?,
    })))
}

/// ConductR's `DEPLOYMENTS_BIND_IP` / `DEPLOYMENTS_BIND_PORT`, else the default.
fn bind_env() -> Result<SocketAddr, Failure> {
    let ip = std::env::var("DEPLOYMENTS_BIND_IP").ok();
    let port = std::env::var("DEPLOYMENTS_BIND_PORT").ok();
    let text = format!(
        "{}:{}",
        ip.as_deref().unwrap_or("127.0.0.1"),
        port.as_deref().unwrap_or("9010")
    );
    let text = if text.matches(':').count() > 1 && !text.starts_with('[') {
        // An IPv6 address.
        let (ip, port) = text.rsplit_once(':').unwrap_or((&text, "9010"));
        format!("[{ip}]:{port}")
    } else {
        text
    };
    parse_address(&text)
        .map_err(|e| Failure::usage(format!("DEPLOYMENTS_BIND_IP/DEPLOYMENTS_BIND_PORT: {e}")))
}

fn default_data_dir() -> Option<PathBuf> {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        return Some(PathBuf::from(state).join("lockstep-minimal"));
    }
    let home = std::env::var_os("HOME").filter(|s| !s.is_empty())?;
    Some(PathBuf::from(home).join(".local/state/lockstep-minimal"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_help_and_unknown() {
        assert!(matches!(parse(vec!["--help".into()]), Ok(Parsed::Help)));
        assert!(matches!(parse(vec!["-V".into()]), Ok(Parsed::Version)));
        let e = parse(vec!["--config".into(), "x".into()]).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.message.contains("--config"), "{}", e.message);
    }

    #[test]
    fn test_https_is_refused_at_start_up() {
        assert!(USAGE.contains("It speaks\nplain http:// only"));
        for (flag, url) in [
            ("--repository", "https://repo.example/bundles"),
            ("--conductr", "https://127.0.0.1:9005"),
        ] {
            let mut args = vec![flag.into(), url.into()];
            if flag != "--repository" {
                args.extend(["--repository".into(), "http://repo.example".into()]);
            }
            let e = parse(args).unwrap_err();
            assert_eq!(e.code, 2);
            assert_eq!(
                e.message,
                format!(
                    "{flag}: `{url}`: lockstep-minimal speaks http:// only; use `lockstep \
                     serve` for https://, or a TLS proxy in front"
                )
            );
        }
    }

    #[test]
    fn test_step_deadline() {
        let dir = std::env::temp_dir().join(format!("minimal-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "s3cret-for-the-test").unwrap();
        let args = |deadline: Option<&str>| {
            let mut args: Vec<OsString> = vec![
                "--repository".into(),
                "http://repo.example".into(),
                "--secret-file".into(),
                secret.clone().into(),
                "--data-dir".into(),
                dir.clone().into(),
            ];
            if let Some(d) = deadline {
                args.extend(["--step-deadline".into(), d.into()]);
            }
            args
        };
        let deadline = |parsed| match parsed {
            Ok(Parsed::Run(options)) => options.step_deadline,
            other => panic!("{other:?}"),
        };
        assert_eq!(deadline(parse(args(None))), Duration::from_secs(120));
        assert_eq!(deadline(parse(args(Some("1h")))), Duration::from_secs(3600));
        let e = parse(args(Some("0s"))).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.message.contains("--step-deadline"), "{}", e.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn test_env_names() {
        assert_eq!(env_name("poll-interval"), "LOCKSTEP_POLL_INTERVAL");
    }

    #[test]
    fn test_usage_says_no_config_file() {
        assert!(USAGE.contains("no configuration file"));
        for name in NAMES {
            assert!(USAGE.contains(&format!("--{name}")), "{name}");
        }
    }
}
