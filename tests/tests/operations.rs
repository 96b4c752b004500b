//! Operating `lockstep serve`: its configuration (flag, `LOCKSTEP_*`, TOML file, default, and
//! refusals of what is wrong), its logs (human and JSON lines), `GET /metrics` read by a strict
//! parser, draining on SIGTERM and SIGINT, `lockstep sign`, `--version`, and `lockstep demo`.
//!
//! Every process here is started through [`Process`], which fails the test if a secret it was
//! given appears in anything it printed; so does every other end-to-end suite.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use lockstep::config::SETTINGS;
use lockstep_tests::prometheus::{self, Kind};
use lockstep_tests::stack::{
    HOOK, LOCK_STEP_3, SECRET, Sandbox, Serve, WAIT, accepted, assert_refused, bundles, ended,
    events, lockstep_header, notify, python_hmac, run_lockstep, sandbox, serve, serve_with,
};
use lockstep_tests::{Client, Process, TempDir, binary, eventually};
use serde_json::Value;

/// An environment variable: name, value.
type Env<'a> = (&'a str, &'a str);

// ---- helpers ---------------------------------------------------------------------------------

/// A `lockstep serve` that needs no cluster (nothing is deployed): a repository directory and
/// the data directory in the directory returned, a ConductR URL nobody answers, the test
/// secret, `extra` flags and `env` on top.
fn standalone(extra: &[&str], env: &[Env<'_>]) -> (Process, TempDir) {
    let dir = TempDir::new("lockstep-operations");
    let data = dir.path().join("data").display().to_string();
    let mut flags = vec!["--data-dir", data.as_str()];
    flags.extend_from_slice(extra);
    (serve_without_cluster(&dir, &flags, env), dir)
}

/// [`standalone`] with its repository in `dir`, and no data directory unless `flags` name one.
fn serve_without_cluster(dir: &TempDir, flags: &[&str], env: &[Env<'_>]) -> Process {
    let repository = dir.path().join("repository");
    std::fs::create_dir_all(&repository).expect("a repository directory");
    let repository = repository.display().to_string();
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--conductr",
        "http://127.0.0.1:9",
        "--repository",
        &repository,
    ];
    args.extend_from_slice(flags);
    let mut all_env = vec![("BINTRAY_WEBHOOK_SECRET", SECRET)];
    all_env.extend_from_slice(env);
    Process::start(&binary("lockstep", "lockstep"), &args, &all_env)
}

/// POSTs a JSON body of exactly `size` bytes (unsigned: refused, but only after its size was
/// checked).
fn post_of_size(client: &Client, size: usize) -> u16 {
    let mut body = br#"{"package":"visualizer","version":"1.0.0"}"#.to_vec();
    body.resize(size, b' ');
    client
        .request("POST", HOOK, &[("Content-Type", "application/json")], &body)
        .status
}

/// The deployment `id` ran to success.
fn succeeded(v: &Serve, id: &str) -> Vec<Value> {
    let events = ended(v, id);
    assert_eq!(
        events.last().expect("events")["eventType"],
        "deploymentSuccess",
        "{events:#?}"
    );
    events
}

/// Deploys the first compatible demo version; returns the deployment's events.
fn deploy_compatible(s: &Sandbox, v: &Serve) -> Vec<Value> {
    let r = notify(v, &s.compatible(0));
    let id = accepted(v, &r, "/deployments");
    succeeded(v, &id)
}

/// The lines of stderr once the process has exited after SIGTERM, with exit code 0.
fn stop_and_read_stderr(process: &mut Process) -> String {
    process.stop("TERM", WAIT);
    process.stderr()
}

// ---- configuration ---------------------------------------------------------------------------

#[test]
fn test_version_prints_the_package_version() {
    for flag in ["--version", "-V"] {
        let ran = run_lockstep(&[flag], &[], b"");
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        assert_eq!(
            ran.stdout,
            format!("lockstep {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

/// Every setting of `lockstep serve` as an operator spells it: flag (without `--`), variable,
/// TOML key and default, in the order of `--help`. Written out, not computed: this is the
/// interface `--help` and the README promise.
#[rustfmt::skip]
const SETTING_SPELLINGS: [(&str, &str, &str, &str); 41] = [
    ("listen", "LOCKSTEP_LISTEN", "listen", "127.0.0.1:9010"),
    ("conductr", "LOCKSTEP_CONDUCTR", "conductr", "http://127.0.0.1:9005"),
    ("repository", "LOCKSTEP_REPOSITORY", "repository", "(required)"),
    ("ca-file", "LOCKSTEP_CA_FILE", "ca_file", "(the system's CAs only)"),
    (
        "repository-credentials",
        "LOCKSTEP_REPOSITORY_CREDENTIALS",
        "repository_credentials",
        "(none)",
    ),
    ("data-dir", "LOCKSTEP_DATA_DIR", "data_dir", "($XDG_STATE_HOME/lockstep, else ~/.local/state/lockstep)"),
    ("etcd", "LOCKSTEP_ETCD", "etcd", "(none: the journal in --data-dir)"),
    ("lease-ttl", "LOCKSTEP_LEASE_TTL", "lease_ttl", "10s"),
    ("advertise", "LOCKSTEP_ADVERTISE", "advertise", "(the listen address)"),
    ("secret-file", "LOCKSTEP_SECRET_FILE", "secret_file", "(BINTRAY_WEBHOOK_SECRET)"),
    (
        "read-credential-file",
        "LOCKSTEP_READ_CREDENTIAL_FILE",
        "read_credential_file",
        "(reads are open)",
    ),
    ("max-head", "LOCKSTEP_MAX_HEAD", "max_head", "8KiB"),
    ("max-body", "LOCKSTEP_MAX_BODY", "max_body", "8KiB"),
    ("read-timeout", "LOCKSTEP_READ_TIMEOUT", "read_timeout", "10s"),
    ("idle-timeout", "LOCKSTEP_IDLE_TIMEOUT", "idle_timeout", "30s"),
    ("max-connections", "LOCKSTEP_MAX_CONNECTIONS", "max_connections", "256"),
    ("max-event-streams", "LOCKSTEP_MAX_EVENT_STREAMS", "max_event_streams", "32"),
    ("max-in-flight", "LOCKSTEP_MAX_IN_FLIGHT", "max_in_flight", "64"),
    ("replay-cache", "LOCKSTEP_REPLAY_CACHE", "replay_cache", "1024"),
    ("retention", "LOCKSTEP_RETENTION", "retention", "1000"),
    ("step-deadline", "LOCKSTEP_STEP_DEADLINE", "step_deadline", "2m"),
    ("settle", "LOCKSTEP_SETTLE", "settle", "0s"),
    ("resolve-deadline", "LOCKSTEP_RESOLVE_DEADLINE", "resolve_deadline", "10m"),
    ("rollback", "LOCKSTEP_ROLLBACK", "rollback", "on"),
    ("nothing-running", "LOCKSTEP_NOTHING_RUNNING", "nothing_running", "fail"),
    ("schemes", "LOCKSTEP_SCHEMES", "schemes", "both"),
    ("replay-window", "LOCKSTEP_REPLAY_WINDOW", "replay_window", "5m"),
    ("allow", "LOCKSTEP_ALLOW", "allow", "(all)"),
    ("workers", "LOCKSTEP_WORKERS", "workers", "4"),
    ("poll-interval", "LOCKSTEP_POLL_INTERVAL", "poll_interval", "1s"),
    ("io-timeout", "LOCKSTEP_IO_TIMEOUT", "io_timeout", "10s"),
    ("download-limit", "LOCKSTEP_DOWNLOAD_LIMIT", "download_limit", "5m"),
    ("max-bundle-size", "LOCKSTEP_MAX_BUNDLE_SIZE", "max_bundle_size", "512MiB"),
    ("heartbeat", "LOCKSTEP_HEARTBEAT", "heartbeat", "2s"),
    ("drain-deadline", "LOCKSTEP_DRAIN_DEADLINE", "drain_deadline", "30s"),
    ("notify", "LOCKSTEP_NOTIFY", "notify", "(none)"),
    ("notify-format", "LOCKSTEP_NOTIFY_FORMAT", "notify_format", "json"),
    ("notify-retry", "LOCKSTEP_NOTIFY_RETRY", "notify_retry", "1s"),
    ("notify-timeout", "LOCKSTEP_NOTIFY_TIMEOUT", "notify_timeout", "10s"),
    ("log-format", "LOCKSTEP_LOG_FORMAT", "log_format", "human"),
    ("log-level", "LOCKSTEP_LOG_LEVEL", "log_level", "info"),
];

/// The entries of `lockstep serve --help` read off its text: for each `  --NAME VALUE`, its
/// `[env: ...] [key: ...] [default: ...]` line.
fn help_entries(text: &str) -> Vec<(String, String, String, String)> {
    let mut entries = Vec::new();
    let mut flag = None;
    for line in text.lines() {
        if let Some(name) = line
            .strip_prefix("  --")
            .and_then(|l| l.strip_suffix(" VALUE"))
        {
            flag = Some(name.to_owned());
            continue;
        }
        let Some(fields) = line
            .trim_start()
            .strip_prefix('[')
            .and_then(|l| l.strip_suffix(']'))
        else {
            continue;
        };
        let fields: Vec<&str> = fields.split("] [").collect();
        if let (Some(flag), [env, key, default]) = (flag.take(), fields.as_slice()) {
            let value = |field: &str, name: &str| {
                field
                    .strip_prefix(name)
                    .unwrap_or_else(|| panic!("no {name} in {line:?}"))
                    .to_owned()
            };
            entries.push((
                flag,
                value(env, "env: "),
                value(key, "key: "),
                value(default, "default: "),
            ));
        }
    }
    entries
}

#[test]
fn test_serve_help_shows_every_setting_with_its_variable_key_and_default() {
    let ran = run_lockstep(&["serve", "--help"], &[], b"");
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let expected: Vec<(String, String, String, String)> = SETTING_SPELLINGS
        .iter()
        .map(|(f, e, k, d)| ((*f).into(), (*e).into(), (*k).into(), (*d).into()))
        .collect();
    assert_eq!(help_entries(&ran.stdout), expected, "{}", ran.stdout);
    // One whole entry, help text included, as an operator reads it.
    assert!(
        ran.stdout.contains(
            "  --max-body VALUE\n      Largest webhook body (413 above); at most 16KiB\n      \
             [env: LOCKSTEP_MAX_BODY] [key: max_body] [default: 8KiB]\n"
        ),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains(
        "  --config FILE\n      A TOML file of settings (keys as below)\n      \
         [env: LOCKSTEP_CONFIG] [default: none]\n"
    ));
}

#[test]
fn test_readme_documents_every_setting() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("the README");
    for s in SETTINGS {
        for spelling in [format!("--{}", s.name), s.env(), format!("`{}`", s.key())] {
            assert!(
                readme.contains(&spelling),
                "the README does not mention {spelling}"
            );
        }
    }
}

#[test]
fn test_readme_toml_example_starts_the_service() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("the README");
    let example: String = readme
        .lines()
        .skip_while(|l| *l != "    # /etc/lockstep.toml")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    assert!(example.contains("secret_file"), "the example: {example:?}");
    // As written, but on a free port and with a secret file of the test's.
    let dir = TempDir::new("lockstep-readme-toml");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "readme-example-secret\n").expect("write the secret");
    let config = dir.path().join("lockstep.toml");
    let text = example
        .replace("0.0.0.0:9010", "127.0.0.1:0")
        .replace("/etc/lockstep/secret", &secret.display().to_string());
    std::fs::write(&config, text).expect("write the file");
    let mut process = Process::start(
        &binary("lockstep", "lockstep"),
        &["serve", "--config", &config.display().to_string()],
        &[],
    );
    process.guard_secret("readme-example-secret");
    let client = Client::new(process.listening());
    assert_eq!(client.get("/healthz").status, 200);
    // Its log_format = "json" is in force.
    let stderr = stop_and_read_stderr(&mut process);
    for line in stderr.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
}

#[test]
fn test_serve_refuses_bad_configuration_naming_it() {
    let dir = TempDir::new("lockstep-bad-config");
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write a file");
        path.display().to_string()
    };
    let unknown_key = file("unknown.toml", "max_bodyy = 1\n");
    let bad_value = file("bad-value.toml", "workers = 0\n");
    let bad_type = file("bad-type.toml", "step_deadline = [1]\n");
    let bad_toml = file("bad.toml", "max_body = = 1\n");
    let long_secret = "s".repeat(129);
    let long_secret_file = file("long-secret", &long_secret);
    let not_a_dir = file("not-a-dir", "");
    let no_colon = file("no-colon", "readerwithoutapassword\n");
    let missing = dir.path().join("missing").display().to_string();
    let repository = dir.path().display().to_string();
    let secret = [("BINTRAY_WEBHOOK_SECRET", SECRET)];
    // (flags, environment, what the one-line error must name)
    let cases: Vec<(Vec<&str>, Vec<Env<'_>>, &str)> = vec![
        (vec!["--frobnicate", "1"], vec![], "--frobnicate"),
        (vec!["--max-body", "huge"], vec![], "--max-body"),
        (vec!["--max-body"], vec![], "--max-body"),
        (vec!["--listen", "here"], vec![], "--listen"),
        (vec!["--rollback", "maybe"], vec![], "--rollback"),
        (vec!["--schemes", "md5"], vec![], "--schemes"),
        (
            vec![],
            vec![("LOCKSTEP_ROLLBACK", "maybe")],
            "LOCKSTEP_ROLLBACK",
        ),
        (
            vec![],
            vec![("LOCKSTEP_MAX_BODDY", "1")],
            "unknown environment variable LOCKSTEP_MAX_BODDY",
        ),
        (
            vec!["--config", &unknown_key],
            vec![],
            "unknown key `max_bodyy`",
        ),
        (
            vec!["--config", &bad_value],
            vec![],
            "`workers` in the configuration file",
        ),
        (vec!["--config", &bad_type], vec![], "`step_deadline`"),
        (vec!["--config", &bad_toml], vec![], "bad.toml"),
        (vec![], vec![("LOCKSTEP_CONFIG", &unknown_key)], "max_bodyy"),
        (
            vec!["--config", "/nonexistent/lockstep.toml"],
            vec![],
            "/nonexistent/lockstep.toml",
        ),
        (
            vec!["--secret-file", &long_secret_file],
            vec![],
            "--secret-file",
        ),
        // URL and path settings are checked at start-up, not when a webhook arrives.
        (
            vec!["--repository", "ftp://repo.example/b"],
            vec![],
            "--repository",
        ),
        (vec!["--repository", &missing], vec![], "--repository"),
        (vec!["--repository", &not_a_dir], vec![], "--repository"),
        (vec!["--data-dir", &not_a_dir], vec![], "--data-dir"),
        (
            vec!["--data-dir", "/proc/lockstep-cannot-be-here"],
            vec![],
            "--data-dir",
        ),
        (
            vec!["--conductr", "ftp://conductr:9005"],
            vec![],
            "--conductr",
        ),
        (
            vec!["--read-credential-file", &no_colon],
            vec![],
            "--read-credential-file",
        ),
        (
            vec!["--read-credential-file", &missing],
            vec![],
            "--read-credential-file",
        ),
    ];
    for (flags, env, named) in cases {
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--repository",
            &repository,
        ];
        args.extend_from_slice(&flags);
        let mut all_env = secret.to_vec();
        all_env.extend_from_slice(&env);
        let ran = run_lockstep(&args, &all_env, b"");
        let case = format!("{flags:?} {env:?}");
        assert_eq!(ran.code, Some(2), "{case}: {}", ran.stderr);
        assert!(
            ran.stderr.contains(named),
            "{case}: {:?} does not name {named}",
            ran.stderr
        );
        assert_eq!(
            ran.stderr.lines().count(),
            1,
            "{case}: one line: {:?}",
            ran.stderr
        );
        assert!(!ran.stdout.contains("listening"), "{case}: it started");
        assert!(
            !ran.stderr.contains(&long_secret),
            "{case}: the secret file was printed"
        );
        assert!(
            !ran.stderr.contains(SECRET),
            "{case}: the secret was printed"
        );
    }
}

#[test]
fn test_serve_precedence_flag_over_environment_over_file_over_default() {
    let dir = TempDir::new("lockstep-precedence");
    let config = dir.path().join("lockstep.toml");
    std::fs::write(&config, "max_body = 1000\n").expect("write the file");
    let config = config.display().to_string();
    let env = [("LOCKSTEP_MAX_BODY", "2000")];
    // (flags, environment, the limit in force)
    let cases: [(Vec<&str>, &[Env<'_>], usize); 5] = [
        (vec![], &[], 8192),
        (vec!["--config", &config], &[], 1000),
        (vec!["--config", &config], &env, 2000),
        (vec!["--config", &config, "--max-body", "3000"], &env, 3000),
        // The file may also be named by LOCKSTEP_CONFIG; a flag still wins over it.
        (
            vec!["--max-body", "3000"],
            &[("LOCKSTEP_CONFIG", config.as_str())],
            3000,
        ),
    ];
    for (flags, env, limit) in cases {
        let (mut process, _dir) = standalone(&flags, env);
        let client = Client::new(process.listening());
        let case = format!("{flags:?} {env:?}");
        assert_ne!(
            post_of_size(&client, limit),
            413,
            "{case}: {limit} bytes refused"
        );
        assert_eq!(
            post_of_size(&client, limit + 1),
            413,
            "{case}: {} bytes",
            limit + 1
        );
    }
}

// ---- logs ------------------------------------------------------------------------------------

/// What the JSON and human log tests do: a deployment, a refused signature, a request with a
/// query and a header whose values must not be logged.
fn logged_session(format: &str) -> (String, Vec<Value>, usize) {
    let s = sandbox(&[]);
    let mut v = serve(&s, &["--log-format", format, "--log-level", "debug"]);
    let deployed = deploy_compatible(&s, &v);
    let r = v.client.request(
        "POST",
        HOOK,
        &[
            ("Content-Type", "application/json"),
            ("X-Lockstep-Signature", "t=1,v1=header-value-marker"),
        ],
        s.compatible(1).body().as_bytes(),
    );
    assert_refused(&r, 401, "a bad signature");
    let r = v.client.request(
        "GET",
        "/nowhere?token=query-value-marker",
        &[("X-Probe", "another-header-marker")],
        b"",
    );
    assert_eq!(r.status, 404);
    let stderr = stop_and_read_stderr(&mut v.process);
    for marker in [
        "header-value-marker",
        "query-value-marker",
        "another-header-marker",
    ] {
        assert!(!stderr.contains(marker), "{marker} was logged:\n{stderr}");
    }
    // The requests this test made: the webhook, the deployment's events polled by `ended`
    // (any number), the refused webhook and the 404.
    let requests = stderr.lines().filter(|l| l.contains("request")).count();
    (stderr, deployed, requests)
}

#[test]
fn test_serve_json_logs_one_object_per_line() {
    let (stderr, deployed, _) = logged_session("json");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    for line in &lines {
        let object = line
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {line}"));
        let time = object["time"].as_str().expect("time");
        assert!(
            time.len() >= 20 && time.ends_with('Z') && time.contains('T'),
            "{time}"
        );
        assert!(
            ["error", "warn", "info", "debug"].contains(&object["level"].as_str().expect("level")),
            "{line}"
        );
        assert!(object["kind"].is_string(), "{line}");
    }
    let of_kind = |kind: &'static str| lines.iter().filter(move |l| l["kind"] == kind);
    // One line per request: method, path without its query, status, duration.
    let requests: Vec<&Value> = of_kind("request").collect();
    for r in &requests {
        assert!(r["method"].is_string() && r["path"].is_string(), "{r}");
        assert!(r["status"].is_u64() && r["duration_ms"].is_u64(), "{r}");
    }
    let find = |method: &str, path: &str, status: u64| {
        requests
            .iter()
            .filter(|r| r["method"] == method && r["path"] == path && r["status"] == status)
            .count()
    };
    assert_eq!(find("POST", HOOK, 202), 1, "{requests:#?}");
    assert_eq!(find("POST", HOOK, 401), 1, "{requests:#?}");
    assert_eq!(find("GET", "/nowhere", 404), 1, "{requests:#?}");
    // One line per step: every event of the deployment, in order.
    let id = deployed[0]["deploymentId"].as_str().expect("id");
    let steps: Vec<(&str, u64)> = of_kind("deployment")
        .filter(|l| l["deployment"] == id)
        .map(|l| {
            (
                l["event"].as_str().expect("event"),
                l["sequence"].as_u64().expect("seq"),
            )
        })
        .collect();
    let expected: Vec<(&str, u64)> = deployed
        .iter()
        .map(|e| {
            let kind = e["eventType"].as_str().expect("eventType");
            (kind, e["deploymentSequence"].as_u64().expect("sequence"))
        })
        .collect();
    assert_eq!(steps, expected);
    let deploy = of_kind("deployment")
        .find(|l| l["event"] == "deploy")
        .expect("a deploy step");
    assert!(deploy["old"].is_u64() && deploy["new"].is_u64(), "{deploy}");
    // The drain on SIGTERM is logged too.
    assert!(
        of_kind("message").any(|l| l["message"].as_str().is_some_and(|m| m.contains("drained"))),
        "{stderr}"
    );
}

#[test]
fn test_serve_human_logs_one_line_per_request_and_step() {
    let (stderr, deployed, request_lines) = logged_session("human");
    let mut steps = 0;
    for line in stderr.lines() {
        let mut words = line.split(' ');
        let time = words.next().unwrap_or_default();
        assert!(time.ends_with('Z') && time.contains('T'), "{line:?}");
        let level = words.next().unwrap_or_default();
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG"].contains(&level),
            "{line:?}"
        );
        let kind = words.next().unwrap_or_default();
        if kind == "request" {
            assert!(
                line.contains(" method=") && line.contains(" path="),
                "{line:?}"
            );
            assert!(
                line.contains(" status=") && line.contains(" duration_ms="),
                "{line:?}"
            );
        }
        if kind == "deployment" {
            steps += 1;
        }
    }
    assert!(request_lines >= 3, "{stderr}");
    assert!(
        stderr.contains(&format!("request method=POST path={HOOK} status=202")),
        "{stderr}"
    );
    assert!(
        stderr.contains("request method=GET path=/nowhere status=404"),
        "{stderr}"
    );
    assert_eq!(steps, deployed.len(), "{stderr}");
}

#[test]
fn test_serve_log_level_error_is_silent_when_all_goes_well() {
    let s = sandbox(&[]);
    let mut v = serve(&s, &["--log-level", "error"]);
    deploy_compatible(&s, &v);
    let stderr = stop_and_read_stderr(&mut v.process);
    assert_eq!(stderr, "", "nothing at level error");
}

#[test]
fn test_serve_never_logs_the_secret_from_a_file() {
    // The secret from a file, the most verbose logs, and every path that reads the secret:
    // a deployment, a good and a bad signature of each scheme. Process checks the output.
    let s = sandbox(&[]);
    let dir = TempDir::new("lockstep-secret-file");
    let secret = "file-secret-that-must-never-be-printed";
    let file = dir.path().join("secret");
    std::fs::write(&file, format!("{secret}\n")).expect("write the secret");
    let file = file.display().to_string();
    let mut v = serve_with(&s, &["--secret-file", &file, "--log-level", "debug"], &[]);
    let body = s.compatible(0).body();
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let mac = python_hmac(secret, format!("{t}.{body}").as_bytes(), "hex");
    let signed = format!("t={t},v1={mac}");
    let r = v.client.request(
        "POST",
        HOOK,
        &[
            ("Content-Type", "application/json"),
            ("X-Lockstep-Signature", &signed),
        ],
        body.as_bytes(),
    );
    let id = accepted(&v, &r, "/deployments");
    succeeded(&v, &id);
    for header in [
        (
            "X-Lockstep-Signature",
            format!("t={t},v1={}", "0".repeat(64)),
        ),
        (
            "X-Bintray-Hook-Hmac",
            python_hmac("wrong", b"visualizer", "base64"),
        ),
    ] {
        let r = v.client.request(
            "POST",
            HOOK,
            &[("Content-Type", "application/json"), (header.0, &header.1)],
            s.compatible(1).body().as_bytes(),
        );
        assert_refused(&r, 403, header.0);
    }
    let stderr = stop_and_read_stderr(&mut v.process);
    assert!(!stderr.contains(secret), "{stderr}");
    assert!(
        stderr.contains("request"),
        "the requests were logged: {stderr}"
    );
}

// ---- metrics ---------------------------------------------------------------------------------

#[test]
fn test_serve_metrics_are_strict_prometheus_text() {
    let s = sandbox(&[]);
    let v = serve(&s, &["--replay-cache", "64"]);
    let deployed = deploy_compatible(&s, &v);
    // Signed with the right secret, an hour ago: outside the window.
    let body = s.compatible(1).body();
    let stale = lockstep_header(body.as_bytes(), now() - 3600);
    let r = v.client.request(
        "POST",
        HOOK,
        &[
            ("Content-Type", "application/json"),
            ("X-Lockstep-Signature", &stale),
        ],
        body.as_bytes(),
    );
    assert_refused(&r, 403, "a stale signature");
    assert_eq!(v.client.get("/nowhere").status, 404);
    assert_eq!(v.client.get("/healthz").status, 200);

    let r = v.client.get("/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    let m = prometheus::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for family in &m.families {
        assert!(family.name.starts_with("lockstep_"), "{}", family.name);
        assert!(family.help.is_some(), "{} has no HELP", family.name);
        assert_ne!(family.kind, Kind::Untyped, "{} has no TYPE", family.name);
    }
    let kind = |name: &str| m.family(name).unwrap_or_else(|| panic!("no {name}")).kind;
    assert_eq!(kind("lockstep_requests_total"), Kind::Counter);
    assert_eq!(kind("lockstep_signature_refusals_total"), Kind::Counter);
    assert_eq!(kind("lockstep_deployments_total"), Kind::Counter);
    assert_eq!(kind("lockstep_deployments_in_flight"), Kind::Gauge);
    assert_eq!(kind("lockstep_step_duration_seconds"), Kind::Histogram);
    assert_eq!(kind("lockstep_replay_cache_entries"), Kind::Gauge);
    assert_eq!(kind("lockstep_replay_cache_capacity"), Kind::Gauge);

    let value = |name: &str, labels: &[(&str, &str)]| {
        m.value(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{text}"))
    };
    let requests = "lockstep_requests_total";
    assert_eq!(
        value(requests, &[("endpoint", "webhook"), ("status", "202")]),
        1.0
    );
    assert_eq!(
        value(requests, &[("endpoint", "webhook"), ("status", "403")]),
        1.0
    );
    assert_eq!(
        value(requests, &[("endpoint", "unknown"), ("status", "404")]),
        1.0
    );
    assert_eq!(
        value(requests, &[("endpoint", "healthz"), ("status", "200")]),
        1.0
    );
    assert!(value(requests, &[("endpoint", "deployment"), ("status", "200")]) >= 1.0);
    let refusals = "lockstep_signature_refusals_total";
    assert_eq!(value(refusals, &[("reason", "stale")]), 1.0);
    assert_eq!(
        m.family(refusals).expect("refusals").samples.len(),
        1,
        "only the stale one"
    );
    assert_eq!(
        value("lockstep_deployments_total", &[("outcome", "succeeded")]),
        1.0
    );
    assert_eq!(value("lockstep_deployments_in_flight", &[]), 0.0);
    // A step is the time from one event to the next: one fewer than the events.
    let steps = (deployed.len() - 1) as f64;
    assert_eq!(value("lockstep_step_duration_seconds_count", &[]), steps);
    assert_eq!(
        value("lockstep_step_duration_seconds_bucket", &[("le", "+Inf")]),
        steps
    );
    assert!(value("lockstep_step_duration_seconds_sum", &[]) > 0.0);
    // The accepted lockstep signature is remembered until its window passes.
    assert_eq!(value("lockstep_replay_cache_entries", &[]), 1.0);
    assert_eq!(value("lockstep_replay_cache_capacity", &[]), 64.0);
}

#[test]
fn test_serve_metrics_count_a_deployment_in_flight_and_a_rollback() {
    let s = sandbox(&[]);
    s.add_faults(r#"{"bundles": [{"match": "visualizer", "neverStart": true}]}"#);
    let v = serve(&s, &["--step-deadline", "1s"]);
    let r = notify(&v, &s.compatible(0));
    let id = accepted(&v, &r, "/deployments");
    let in_flight = |v: &Serve| {
        let m = prometheus::parse(&v.client.get("/metrics").text()).expect("strict");
        m.value("lockstep_deployments_in_flight", &[])
    };
    assert_eq!(in_flight(&v), Some(1.0));
    let events = ended(&v, &id);
    assert_eq!(
        events.last().expect("events")["eventType"],
        "deploymentFailure"
    );
    let m = prometheus::parse(&v.client.get("/metrics").text()).expect("strict");
    assert_eq!(m.value("lockstep_deployments_in_flight", &[]), Some(0.0));
    let outcomes = m.family("lockstep_deployments_total").expect("outcomes");
    assert_eq!(outcomes.samples.len(), 1, "{outcomes:?}");
    assert_eq!(
        m.value("lockstep_deployments_total", &[("outcome", "rolled_back")]),
        Some(1.0),
        "{outcomes:?}"
    );
}

// ---- shutting down ---------------------------------------------------------------------------

/// A deployment whose first scale command (PUT /v2/bundles/...) gets `action` from the sandbox,
/// under way when this returns: the command was received.
fn deployment_in_a_slow_command(action: &str, serve_flags: &[&str]) -> (Sandbox, Serve, String) {
    let s = sandbox(&[]);
    s.add_faults(&format!(
        r#"{{"requests": [{{"method": "PUT", "path": "/v2/bundles/", "times": 1, {action}}}]}}"#
    ));
    let v = serve(&s, serve_flags);
    let id = accepted(&v, &notify(&v, &s.compatible(0)), "/deployments");
    // The rule is spent once its request arrived; the command is then under way.
    eventually("the scale command to reach the sandbox", WAIT, || {
        let faults = s.client.get("/sandbox/faults").json();
        (faults["requests"][0]["times"] == 0).then_some(())
    });
    (s, v, id)
}

#[test]
fn test_serve_sigterm_drains_refusing_webhooks_until_the_deadline() {
    // The command hangs: the drain lasts until its deadline, answering 503 meanwhile.
    let (s, mut v, id) = deployment_in_a_slow_command(
        r#""hang": true"#,
        &["--io-timeout", "10m", "--drain-deadline", "5s"],
    );
    let before = bundles(&s);
    v.process.signal("TERM");
    eventually("/healthz to answer 503", WAIT, || {
        (v.client.get("/healthz").status == 503).then_some(())
    });
    let r = v.client.get("/healthz");
    assert_eq!(
        assert_refused(&r, 503, "healthz while draining"),
        "shutting down"
    );
    let r = notify(&v, &s.compatible(1));
    assert_eq!(
        assert_refused(&r, 503, "a webhook while draining"),
        "shutting down"
    );
    // What is in flight can still be read.
    assert_eq!(
        events(&v, "/deployments", &id)[0]["eventType"],
        "deploymentStarted"
    );
    assert_eq!(v.process.wait(WAIT), Some(0), "{}", v.process.stderr());
    let stderr = v.process.stderr();
    assert!(stderr.contains("draining"), "{stderr}");
    assert!(
        stderr.contains("the drain deadline of 5000ms passed with 1 command(s) still under way"),
        "{stderr}"
    );
    assert!(
        stderr.contains("drained; 1 deployment(s) left in flight"),
        "{stderr}"
    );
    // The cluster is where the last step left it: both bundles loaded, the old one at scale 3.
    assert_eq!(bundles(&s), before);
    let old = before
        .iter()
        .find(|b| b.digest == s.running().digest)
        .expect("old");
    assert_eq!((old.scale, old.started), (Some(3), 3));
    // The listener is closed.
    assert!(std::net::TcpStream::connect(v.client.addr).is_err());
}

#[test]
fn test_serve_sigterm_lets_the_running_command_finish_then_exits() {
    // The command takes a while but finishes within the deadline; nothing starts after it.
    let (s, mut v, _id) =
        deployment_in_a_slow_command(r#""delayMs": 3000"#, &["--drain-deadline", "10m"]);
    v.process.stop("TERM", WAIT);
    let stderr = v.process.stderr();
    assert!(!stderr.contains("drain deadline"), "{stderr}");
    assert!(
        stderr.contains("drained; 1 deployment(s) left in flight"),
        "{stderr}"
    );
    // The scale command took effect (the new bundle at scale 1); the old one is untouched.
    let new = bundles(&s)
        .into_iter()
        .find(|b| b.digest == s.compatible(0).digest)
        .expect("the new bundle is loaded");
    assert_eq!(new.scale, Some(1), "{new:?}");
    let old = bundles(&s)
        .into_iter()
        .find(|b| b.digest == s.running().digest)
        .expect("the old bundle is still loaded");
    assert_eq!(old.scale, Some(3), "{old:?}");
}

#[test]
fn test_serve_sigint_when_idle_exits_at_once() {
    let (mut process, _dir) = standalone(&[], &[]);
    let client = Client::new(process.listening());
    assert_eq!(client.get("/healthz").status, 200);
    process.stop("INT", WAIT);
    let stderr = process.stderr();
    assert!(
        stderr.contains("drained; 0 deployment(s) left in flight"),
        "{stderr}"
    );
}

#[test]
fn test_serve_without_data_dir_keeps_its_journal_in_the_per_user_state_directory() {
    use std::os::unix::fs::PermissionsExt;

    let repository = TempDir::new("lockstep-serve-state-repository");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    for (name, base) in [("XDG_STATE_HOME", ""), ("HOME", ".local/state")] {
        let home = TempDir::new("lockstep-serve-state");
        let env = [(name, home.path_text())];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        // Without XDG_STATE_HOME, HOME decides.
        let env = if name == "HOME" {
            [env.as_slice(), &[("XDG_STATE_HOME", "")]].concat()
        } else {
            env
        };
        let mut process = serve_without_cluster(&repository, &[], &env);
        process.listening();
        let dir = home.path().join(base).join("lockstep");
        assert_eq!(mode(&dir), 0o700, "{dir:?}");
        assert_eq!(mode(&dir.join("journal")), 0o600);
        assert_eq!(mode(&dir.join("store")), 0o700);
        // A second process on the same directory is refused, naming it and the holder.
        let second = run_lockstep(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--repository",
                &repository.path_text(),
                "--data-dir",
                &dir.display().to_string(),
            ],
            &[("BINTRAY_WEBHOOK_SECRET", SECRET)],
            b"",
        );
        assert_eq!(second.code, Some(1), "{}", second.stderr);
        assert!(
            second
                .stderr
                .contains("is in use by another lockstep (pid ")
                && second.stderr.contains(&dir.display().to_string()),
            "{}",
            second.stderr
        );
        process.stop("TERM", WAIT);
        // Kept: the next start reads it.
        assert!(dir.join("journal").is_file());
    }
}

#[test]
fn test_serve_without_data_dir_nor_home_is_refused() {
    let repository = TempDir::new("lockstep-serve-state-repository");
    let ran = run_lockstep(
        &["serve", "--repository", &repository.path_text()],
        &[
            ("BINTRAY_WEBHOOK_SECRET", SECRET),
            ("HOME", ""),
            ("XDG_STATE_HOME", ""),
        ],
        b"",
    );
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("--data-dir is required when neither XDG_STATE_HOME nor HOME is set"),
        "{}",
        ran.stderr
    );
}

// ---- lockstep sign ---------------------------------------------------------------------------

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

#[test]
fn test_sign_prints_the_lockstep_header_an_independent_hmac_agrees_with() {
    let dir = TempDir::new("lockstep-sign");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "sign-secret\n").expect("write the secret");
    let secret_file = secret_file.display().to_string();
    let body = br#"{"package":"visualizer","version":"1.1.0"}"#;
    let body_file = dir.path().join("body.json");
    std::fs::write(&body_file, body).expect("write the body");
    let body_file = body_file.display().to_string();
    let env_secret = [("BINTRAY_WEBHOOK_SECRET", "sign-secret")];
    for (args, env, stdin) in [
        (
            vec!["sign", "--secret-file", &secret_file, &body_file],
            &[][..],
            &b""[..],
        ),
        (
            vec!["sign", "--secret-file", &secret_file, "-"],
            &[][..],
            &body[..],
        ),
        (
            vec!["sign", "--secret-file", &secret_file],
            &[][..],
            &body[..],
        ),
        (vec!["sign", &body_file], &env_secret[..], &b""[..]),
    ] {
        let before = now();
        let ran = run_lockstep(&args, env, stdin);
        let after = now();
        assert_eq!(ran.code, Some(0), "{args:?}: {}", ran.stderr);
        let value = ran
            .stdout
            .strip_prefix("X-Lockstep-Signature: ")
            .and_then(|v| v.strip_suffix('\n'))
            .unwrap_or_else(|| panic!("{args:?}: {:?}", ran.stdout));
        let (t, mac) = value
            .strip_prefix("t=")
            .and_then(|v| v.split_once(",v1="))
            .unwrap_or_else(|| panic!("{value:?}"));
        let t: u64 = t.parse().expect("unix seconds");
        assert!(
            (before..=after).contains(&t),
            "{t} not in {before}..={after}"
        );
        let mut message = format!("{t}.").into_bytes();
        message.extend_from_slice(body);
        assert_eq!(mac, python_hmac("sign-secret", &message, "hex"), "{args:?}");
        assert!(!ran.stdout.contains("sign-secret") && !ran.stderr.contains("sign-secret"));
    }
    let ran = run_lockstep(
        &[
            "sign",
            "--secret-file",
            &secret_file,
            "--bintray",
            "visualizer",
        ],
        &[],
        b"",
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(
        ran.stdout,
        format!(
            "X-Bintray-Hook-Hmac: {}\n",
            python_hmac("sign-secret", b"visualizer", "base64")
        )
    );
}

#[test]
fn test_sign_refuses_what_it_cannot_sign() {
    let dir = TempDir::new("lockstep-sign-refusals");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").expect("write");
    let empty = empty.display().to_string();
    for (args, named) in [
        (vec!["sign", "-"], "BINTRAY_WEBHOOK_SECRET"),
        (
            vec!["sign", "--secret-file", "/nonexistent/secret", "-"],
            "/nonexistent/secret",
        ),
        (vec!["sign", "--secret-file", &empty, "-"], "--secret-file"),
        (vec!["sign", "--frobnicate"], "--frobnicate"),
        (vec!["sign", "--bintray"], "--bintray"),
    ] {
        let ran = run_lockstep(&args, &[], b"{}");
        assert_eq!(ran.code, Some(2), "{args:?}: {}", ran.stderr);
        assert!(ran.stderr.contains(named), "{args:?}: {}", ran.stderr);
        assert_eq!(ran.stdout, "", "{args:?}");
    }
    let ran = run_lockstep(
        &["sign", "/nonexistent/body.json"],
        &[("BINTRAY_WEBHOOK_SECRET", "s")],
        b"",
    );
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("/nonexistent/body.json"),
        "{}",
        ran.stderr
    );
}

// ---- lockstep demo ---------------------------------------------------------------------------

/// The lines `lockstep demo` prints up to (and with) the first that `done` accepts.
fn demo_lines_until(demo: &mut Process, done: impl Fn(&str) -> bool) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = demo.line(WAIT);
        let stop = done(&line);
        lines.push(line);
        if stop {
            return lines;
        }
    }
}

/// The block of shell commands printed under `# visualizer <tag>`.
fn demo_commands(lines: &[String], header: &str) -> String {
    let start = lines
        .iter()
        .position(|l| l.trim_start().starts_with(&format!("# {header}")))
        .unwrap_or_else(|| panic!("no commands after `# {header}`: {lines:#?}"));
    lines[start + 1..]
        .iter()
        .take_while(|l| !l.trim().is_empty())
        .map(|l| format!("{}\n", l.trim_start()))
        .collect()
}

/// Runs printed commands with sh (they use `lockstep deploy`, curl and `lockstep sign`);
/// returns whether they succeeded, and stdout and stderr.
fn run_printed(commands: &str) -> (bool, String, String) {
    let curl = Command::new("curl").arg("--version").output();
    assert!(
        curl.is_ok_and(|o| o.status.success()),
        "this test runs the commands the demo prints, which need curl (apt-get install curl)"
    );
    let output = Command::new("sh")
        .args(["-e", "-c", commands])
        .output()
        .expect("run sh");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn test_demo_deploys_then_prints_commands_that_work() {
    let mut demo = Process::lockstep(&["demo"]);
    let lines = demo_lines_until(&mut demo, |l| l == "Ctrl-C to stop.");
    let text = lines.join("\n");
    // The deployment's progress, as `conduct deploy` prints it, to success.
    let progress: Vec<&str> = lines
        .iter()
        .skip_while(|l| !l.contains("202 Accepted: deployment "))
        .skip(1)
        .map(|l| l.trim_start())
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_once("s  ").map_or(l, |(_, what)| what))
        .collect();
    let mut expected = vec!["Deployment started", "Downloading bundle"];
    let config = progress
        .iter()
        .find(|l| l.starts_with("Downloading config from bundle "))
        .expect("the configuration is carried over");
    expected.push(config);
    expected.push("Loading bundle with config");
    let steps =
        LOCK_STEP_3.map(|(o, n)| format!("Deploying - {o} old instance vs {n} new instance"));
    expected.extend(steps.iter().map(String::as_str));
    expected.push("Success");
    assert_eq!(progress, expected, "{text}");
    // The secret is in a file of the data directory, and never printed.
    let secret_file = text
        .split_whitespace()
        .skip_while(|w| *w != "--secret-file")
        .nth(1)
        .expect("the commands name the secret file")
        .to_owned();
    let secret = std::fs::read_to_string(&secret_file).expect("the secret file");
    demo.guard_secret(secret.trim_end());
    assert!(
        secret.trim_end().len() >= 32,
        "a throwaway secret of some strength"
    );
    let lockstep = text
        .split_whitespace()
        .find(|w| w.starts_with("http://") && w.ends_with("/deployments/typesafe/bundle/typesafe"))
        .and_then(|w| w.strip_suffix("/deployments/typesafe/bundle/typesafe"))
        .expect("the webhook URL")
        .to_owned();
    let client = Client::new(
        lockstep
            .trim_start_matches("http://")
            .parse()
            .expect("addr"),
    );

    // The printed `lockstep deploy` for the next compatible version deploys it, following it
    // to its success.
    let (ok, stdout, stderr) = run_printed(&demo_commands(&lines, "visualizer 1.2.0 "));
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.starts_with("Deploying visualizer:1.2.0-"),
        "{stdout}"
    );
    assert!(stdout.ends_with("] Success\n"), "{stdout}");
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Deployment id: "))
        .expect("the id")
        .to_owned();
    let last_event = |id: &str| {
        let events = client.get(&format!("/deployments/{id}")).json();
        events.as_array()?.last()?["eventType"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eq!(last_event(&id).as_deref(), Some("deploymentSuccess"));
    // The one for the other compatibilityVersion is accepted, then fails, and says why.
    let (ok, stdout, stderr) = run_printed(&demo_commands(&lines, "visualizer 2.0.0 "));
    assert!(!ok, "{stdout}{stderr}");
    assert_eq!(
        stderr,
        "lockstep deploy: Failure: no running bundle with compatibilityVersion 2 (a bundle with \
         compatibilityVersion 1 runs)\n"
    );
    // The curl one, the webhook a registry sends, is accepted.
    let (ok, answer, stderr) = run_printed(&demo_commands(&lines, "with curl, "));
    assert!(ok, "{answer}{stderr}");
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let id = answer.lines().last().expect("the id").trim().to_owned();
    eventually("the redelivered 1.2.0 deployment to end", WAIT, || {
        (last_event(&id)? == "deploymentSuccess").then_some(())
    });

    // Ctrl-C: it stops, and removes the temporary directory it made.
    demo.stop("INT", WAIT);
    assert!(
        !std::path::Path::new(&secret_file).exists(),
        "{secret_file} was left behind"
    );
}
