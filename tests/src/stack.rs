//! What the end-to-end suites of `lockstep serve` share: a `lockstep sandbox --demo` and a
//! `lockstep serve` wired to it, both on OS-chosen loopback ports; webhook signatures (core's,
//! and an independent one by python3's `hmac`); requests and the answers they must get; the
//! cluster as the sandbox shows it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lockstep_core::signature::{Secret, lockstep_sign};
use serde_json::{Value, json};

use crate::{Client, Process, Response, TempDir, binary, eventually};

pub const WAIT: Duration = Duration::from_secs(30);
pub const SECRET: &str = "serve-test-secret";
pub const HOOK: &str = "/deployments/typesafe/bundle/typesafe";
pub const HOOK_V2: &str = "/v2/deployments/typesafe/bundle/typesafe";
/// The lock-step of the demo bundle at scale 3: (old, new) started after each step.
pub const LOCK_STEP_3: [(u32, u32); 7] = [(3, 0), (3, 1), (2, 1), (2, 2), (1, 2), (1, 3), (0, 3)];

/// The event types of a deployment that replaces a bundle running at scale 3 with a
/// configuration: started, download, config, load, a `deploy` per step of [`LOCK_STEP_3`],
/// success.
pub fn event_types_at_scale_3() -> Vec<&'static str> {
    let mut types = vec![
        "deploymentStarted",
        "bundleDownload",
        "configDownload",
        "load",
    ];
    types.extend(LOCK_STEP_3.map(|_| "deploy"));
    types.push("deploymentSuccess");
    types
}

// ---- processes -------------------------------------------------------------------------------

/// A demo version the sandbox published.
#[derive(Clone, Debug)]
pub struct Version {
    /// Its bundle's name (`visualizer` unless the sandbox was given `--bundles`).
    pub name: String,
    pub tag: String,
    pub digest: String,
    pub role: String,
}

impl Version {
    /// Where the sandbox's repository serves its zip: the prefix a fault rule holds its
    /// download by (`/repository/` alone would hold the package's versions.json too, which a
    /// deployment reads first to screen the version, docs/DESIGN.md rule 12).
    pub fn zip_path(&self) -> String {
        format!(
            "/repository/typesafe/bundle/typesafe/{}/{}/",
            self.name,
            self.full()
        )
    }

    /// `<tag>-<digest>`.
    pub fn full(&self) -> String {
        format!("{}-{}", self.tag, self.digest)
    }

    /// The webhook body naming it.
    pub fn body(&self) -> String {
        format!(
            r#"{{"package":"{}","version":"{}"}}"#,
            self.name,
            self.full()
        )
    }

    /// The webhook body naming it and asking `"retry": true` (honoured under lockstep's
    /// signature): for a test that notifies a version failing at once (the incompatible one)
    /// again and again, which a plain body would find refused 409 after its first failure
    /// (docs/DESIGN.md rule 11).
    pub fn retry_body(&self) -> String {
        format!(
            r#"{{"package":"{}","version":"{}","retry":true}}"#,
            self.name,
            self.full()
        )
    }
}

/// A running `lockstep sandbox --demo`.
#[derive(Debug)]
pub struct Sandbox {
    pub process: Process,
    pub client: Client,
    pub dir: TempDir,
    pub versions: Vec<Version>,
}

impl Sandbox {
    pub fn url(&self) -> String {
        format!("http://{}", self.client.addr)
    }

    pub fn version(&self, role: &str, nth: usize) -> Version {
        self.version_of("visualizer", role, nth)
    }

    /// The `nth` version of bundle `name` in `role`.
    pub fn version_of(&self, name: &str, role: &str, nth: usize) -> Version {
        self.versions
            .iter()
            .filter(|v| v.name == name && v.role == role)
            .nth(nth)
            .unwrap_or_else(|| panic!("no {role} version #{nth}"))
            .clone()
    }

    pub fn running(&self) -> Version {
        self.version("running", 0)
    }

    pub fn compatible(&self, nth: usize) -> Version {
        self.version("compatible", nth)
    }

    pub fn incompatible(&self) -> Version {
        self.version("incompatible", 0)
    }

    /// Instances of `version` never start (a sandbox fault): a deployment of it stays in flight
    /// until its step deadline.
    pub fn never_start(&self, version: &Version) {
        self.add_faults(&format!(
            r#"{{"bundles":[{{"match":"{}","neverStart":true}}]}}"#,
            &version.digest[..12]
        ));
    }

    pub fn add_faults(&self, json: &str) {
        let r = self
            .client
            .request("POST", "/sandbox/faults", &[], json.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
    }

    pub fn history(&self) -> Vec<Value> {
        let r = self.client.get("/sandbox/history");
        assert_eq!(r.status, 200);
        r.json().as_array().expect("an array").clone()
    }
}

/// A sandbox with the demo and quick instances; `extra` flags come last (and win).
pub fn sandbox(extra: &[&str]) -> Sandbox {
    let dir = TempDir::new("lockstep-serve-sandbox");
    let data = dir.path().to_str().expect("UTF-8 path").to_owned();
    let mut args = vec![
        "sandbox",
        "--listen",
        "127.0.0.1:0",
        "--demo",
        "--start-delay",
        "30ms",
        "--stop-delay",
        "10ms",
        "--heartbeat",
        "200ms",
        "--data-dir",
        &data,
    ];
    args.extend_from_slice(extra);
    let mut process = Process::lockstep(&args);
    let addr = process.listening();
    let repository = process.line(WAIT);
    assert_eq!(repository, format!("repository http://{addr}/repository"));
    // Four versions of each bundle of the demo.
    let bundles = extra
        .windows(2)
        .find(|pair| pair[0] == "--bundles")
        .map_or(1, |pair| pair[1].split(',').count());
    let versions = (0..4 * bundles)
        .map(|_| {
            let line = process.line(WAIT);
            let rest = line
                .strip_prefix("version ")
                .unwrap_or_else(|| panic!("a version line: {line:?}"));
            let (name, rest) = rest.split_once(':').expect("a name");
            let (version, role) = rest.split_once(' ').expect("version and role");
            let (tag, digest) = version.rsplit_once('-').expect("tag and digest");
            Version {
                name: name.to_owned(),
                tag: tag.to_owned(),
                digest: digest.to_owned(),
                role: role.to_owned(),
            }
        })
        .collect();
    Sandbox {
        process,
        client: Client::new(addr),
        dir,
        versions,
    }
}

/// A running `lockstep serve`.
#[derive(Debug)]
pub struct Serve {
    pub process: Process,
    pub client: Client,
    pub dir: TempDir,
}

impl Serve {
    /// The files left in the store of downloads (`<data dir>/store`).
    pub fn stored(&self) -> Vec<String> {
        let mut files = vec![];
        let mut dirs = vec![self.dir.path().join("store")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("the store exists") {
                let path = entry.expect("an entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    files.push(path.display().to_string());
                }
            }
        }
        files
    }
}

/// `lockstep serve` against the sandbox with quick settings, the secret in the environment;
/// `extra` flags come last (and win).
pub fn serve(s: &Sandbox, extra: &[&str]) -> Serve {
    serve_with(s, extra, &[("BINTRAY_WEBHOOK_SECRET", SECRET)])
}

pub fn serve_with(s: &Sandbox, extra: &[&str], env: &[(&str, &str)]) -> Serve {
    serve_on(s, TempDir::new("lockstep-serve-data"), extra, env)
}

/// [`serve_with`] on the data directory `dir` (one an earlier `lockstep serve` left, for a
/// restart).
pub fn serve_on(s: &Sandbox, dir: TempDir, extra: &[&str], env: &[(&str, &str)]) -> Serve {
    serve_on_runtime(Runtime::Serve, s, dir, extra, env)
}

/// The webhook service of a runtime against the sandbox with quick settings, the secret in the
/// environment; `extra` flags come last (and win).
pub fn serve_runtime(runtime: Runtime, s: &Sandbox, extra: &[&str]) -> Serve {
    serve_on_runtime(
        runtime,
        s,
        TempDir::new("lockstep-serve-data"),
        extra,
        &[("BINTRAY_WEBHOOK_SECRET", SECRET)],
    )
}

/// Which binary serves the webhook: `lockstep serve` or `lockstep-minimal`. The end-to-end
/// suites that both must pass define each test once, for both ([`crate::on_both_runtimes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `lockstep serve` (runtime-std).
    Serve,
    /// `lockstep-minimal` (picoserve).
    Minimal,
}

impl Runtime {
    /// The program (built now if needed) and the arguments before the flags.
    pub fn program(self) -> (std::path::PathBuf, &'static [&'static str]) {
        match self {
            Self::Serve => (binary("lockstep", "lockstep"), &["serve"]),
            Self::Minimal => (binary("lockstep-minimal", "lockstep-minimal"), &[]),
        }
    }
}

/// [`serve_on`] with the binary of `runtime`.
pub fn serve_on_runtime(
    runtime: Runtime,
    s: &Sandbox,
    dir: TempDir,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Serve {
    let (program, command) = runtime.program();
    serve_program_on(&program, command, s, dir, extra, env)
}

/// [`serve_on_runtime`] with `program` and the arguments before the flags (`command`).
pub fn serve_program_on(
    program: &std::path::Path,
    command: &[&str],
    s: &Sandbox,
    dir: TempDir,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Serve {
    let (mut process, dir) = start_program_on(program, command, s, dir, extra, env);
    let addr = process.listening();
    Serve {
        process,
        client: Client::new(addr),
        dir,
    }
}

/// [`serve_program_on`] without waiting for its `listening` line (a cluster's standby prints
/// it only once it is the active instance).
pub fn start_program_on(
    program: &std::path::Path,
    command: &[&str],
    s: &Sandbox,
    dir: TempDir,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Process, TempDir) {
    let data = dir.path().to_str().expect("UTF-8 path").to_owned();
    let conductr = s.url();
    let repository = format!("{conductr}/repository");
    let mut args = command.to_vec();
    args.extend_from_slice(&[
        "--listen",
        "127.0.0.1:0",
        "--conductr",
        &conductr,
        "--repository",
        &repository,
        "--data-dir",
        &data,
        "--poll-interval",
        "100ms",
        "--io-timeout",
        "2s",
        "--heartbeat",
        "100ms",
    ]);
    args.extend_from_slice(extra);
    (Process::start(program, &args, env), dir)
}

/// What a finished `lockstep` run left.
#[derive(Debug)]
pub struct Ran {
    /// Its exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

/// `lockstep deploy -y <args>` against `v`, resolving in `s`'s repository, signing with
/// [`SECRET`], in a home of its own.
pub fn deploy_cli(s: &Sandbox, v: &Serve, args: &[&str]) -> Ran {
    let home = TempDir::new("lockstep-deploy-home");
    let url = format!("http://{}", v.client.addr);
    let repository = format!("{}/repository", s.url());
    let mut all = vec!["deploy", "-y", "--url", &url, "--repository", &repository];
    all.extend_from_slice(args);
    let home = home.path().to_str().expect("UTF-8");
    run_lockstep(
        &all,
        &[("HOME", home), ("BINTRAY_WEBHOOK_SECRET", SECRET)],
        b"",
    )
}

/// Runs `lockstep <args>` without any webhook secret or `LOCKSTEP_*` setting of the test's own
/// environment, with `stdin` as its input, until it exits.
///
/// # Panics
/// When it does not exit within [`WAIT`].
pub fn run_lockstep(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Ran {
    let mut command = Command::new(binary("lockstep", "lockstep"));
    command.args(args);
    // A default data directory of its own (`lockstep serve` without `--data-dir`).
    let state_home = TempDir::new("lockstep-state-home");
    command.env("XDG_STATE_HOME", state_home.path());
    for (name, _) in std::env::vars() {
        if name.starts_with("LOCKSTEP_")
            || name.starts_with("DEPLOYMENTS_BIND_")
            || name == "BINTRAY_WEBHOOK_SECRET"
        {
            command.env_remove(name);
        }
    }
    let mut child = command
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lockstep");
    // Its input, from a thread: it may exit without reading it (a refusal), which is no error
    // of the test's.
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    // Read both pipes on threads of their own, so that neither fills while the other waits.
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = read(Box::new(child.stderr.take().expect("piped stderr")));
    let status = exit_within(&mut child, WAIT, &format!("lockstep {args:?}"));
    Ran {
        code: status.code(),
        stdout: stdout.join().expect("stdout read"),
        stderr: stderr.join().expect("stderr read"),
    }
}

/// The exit status of `child`, which must exit within `within`.
///
/// # Panics
/// When it does not (it is killed first), naming it `what`.
pub fn exit_within(child: &mut std::process::Child, within: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `lockstep <args>` as [`run_lockstep`] does, without input; returns its exit code and
/// stderr.
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let ran = run_lockstep(args, env, b"");
    (ran.code, ran.stderr)
}

// ---- signatures ------------------------------------------------------------------------------

pub fn secret() -> Secret {
    Secret::new(SECRET.as_bytes()).expect("a valid secret")
}

pub fn now_millis() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    u64::try_from(since.as_millis()).expect("in range")
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// `X-Lockstep-Signature` of `body` at `t`, by core's signer.
pub fn lockstep_header(body: &[u8], t: u64) -> String {
    lockstep_sign(&secret(), t, body).as_str().to_owned()
}

/// HMAC-SHA256(key, message) by python3's `hmac`, as lowercase hex or standard base64.
pub fn python_hmac(key: &str, message: &[u8], encoding: &str) -> String {
    let script = "import base64, hashlib, hmac, sys\n\
                  mac = hmac.new(sys.argv[1].encode(), sys.stdin.buffer.read(), hashlib.sha256)\n\
                  d = mac.digest()\n\
                  print(d.hex() if sys.argv[2] == 'hex' else base64.b64encode(d).decode())";
    let mut child = Command::new("python3")
        .args(["-c", script, key, encoding])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed for the independent signatures");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(message)
        .expect("write to python3");
    let output = child.wait_with_output().expect("python3 ran");
    assert!(
        output.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

// ---- requests --------------------------------------------------------------------------------

/// POSTs a webhook body with these headers (and `Content-Type: application/json`).
pub fn post(v: &Serve, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    v.client.request("POST", path, &all, body)
}

/// POSTs `body` to `path`, lockstep-signed at `t`.
pub fn post_signed(v: &Serve, path: &str, body: &[u8], t: u64) -> Response {
    let header = lockstep_header(body, t);
    post(v, path, &[("X-Lockstep-Signature", &header)], body)
}

/// Notifies `version`, lockstep-signed now.
pub fn notify(v: &Serve, version: &Version) -> Response {
    post_signed(v, HOOK, version.body().as_bytes(), now_secs())
}

/// The id of an accepted webhook (202, the id as text/plain, `Location` under `prefix`); its
/// events answer at once, starting with deploymentStarted (docs/PROTOCOL.md §2: never a 404 once
/// an id was returned).
pub fn accepted(v: &Serve, r: &Response, prefix: &str) -> String {
    assert_eq!(r.status, 202, "{}", r.text());
    let content_type = r.header("content-type").unwrap_or("");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let id = r.text();
    assert_uuid_v4(&id);
    assert_eq!(
        r.header("location"),
        Some(format!("{prefix}/{id}").as_str()),
        "Location"
    );
    let logged = events(v, prefix, &id);
    let first = logged.first().expect("deploymentStarted is logged at once");
    assert_eq!(first["eventType"], "deploymentStarted", "{logged:#?}");
    assert_eq!(first["deploymentId"], id.as_str());
    id
}

/// `xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`, lowercase hex, no `:`.
pub fn assert_uuid_v4(id: &str) {
    let b = id.as_bytes();
    let ok = b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            14 => c == b'4',
            19 => matches!(c, b'8' | b'9' | b'a' | b'b'),
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        });
    assert!(ok && !id.contains(':'), "not a UUID v4: {id:?}");
}

/// A refusal: this status, a one-line text/plain body.
pub fn assert_refused(r: &Response, status: u16, what: &str) -> String {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    let content_type = r.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("text/plain"),
        "{what}: {content_type}"
    );
    let text = r.text();
    let line = text.strip_suffix('\n').unwrap_or(&text);
    assert!(
        !line.trim().is_empty() && !line.contains('\n') && !line.contains('\r'),
        "{what}: not one line: {text:?}"
    );
    line.to_owned()
}

/// The events of a deployment (`GET {prefix}/{id}`: 200, an array).
pub fn events(v: &Serve, prefix: &str, id: &str) -> Vec<Value> {
    let r = v.client.get(&format!("{prefix}/{id}"));
    assert_eq!(r.status, 200, "{prefix}/{id}: {}", r.text());
    r.json().as_array().expect("an array of events").clone()
}

/// The events of a deployment once its last is deploymentSuccess or deploymentFailure; they
/// are numbered 1, 2, 3 ..., start with deploymentStarted and end once.
pub fn ended(v: &Serve, id: &str) -> Vec<Value> {
    let events = eventually(&format!("deployment {id} to end"), WAIT, || {
        let events = events(v, "/deployments", id);
        let last = events.last()?["eventType"].as_str()?.to_owned();
        matches!(last.as_str(), "deploymentSuccess" | "deploymentFailure").then_some(events)
    });
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["deploymentSequence"], i + 1, "{events:#?}");
    }
    let types = event_types(&events);
    assert_eq!(types[0], "deploymentStarted", "{events:#?}");
    let ends = types
        .iter()
        .filter(|t| *t == "deploymentSuccess" || *t == "deploymentFailure")
        .count();
    assert_eq!(ends, 1, "{events:#?}");
    events
}

pub fn event_types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["eventType"].as_str().expect("eventType").to_owned())
        .collect()
}

/// The `failure` of a deployment that failed.
pub fn failure(events: &[Value]) -> String {
    let last = events.last().expect("events");
    assert_eq!(last["eventType"], "deploymentFailure", "{events:#?}");
    last["failure"].as_str().expect("failure").to_owned()
}

pub fn assert_succeeded(events: &[Value]) {
    let last = events.last().expect("events");
    assert_eq!(last["eventType"], "deploymentSuccess", "{events:#?}");
}

/// `GET {prefix}` (the listing).
pub fn listing(v: &Serve, prefix: &str) -> Vec<Value> {
    let r = v.client.get(prefix);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().as_array().expect("an array").clone()
}

// ---- the cluster -----------------------------------------------------------------------------

/// A bundle as `GET /v2/bundles` shows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bundle {
    pub id: String,
    pub digest: String,
    pub config: Option<String>,
    pub scale: Option<u64>,
    pub started: usize,
    pub executions: usize,
}

/// The sandbox's bundles, by id.
pub fn bundles(s: &Sandbox) -> Vec<Bundle> {
    let r = s.client.get("/v2/bundles");
    assert_eq!(r.status, 200);
    let mut all: Vec<Bundle> = r
        .json()
        .as_array()
        .expect("an array")
        .iter()
        .map(|b| {
            let executions = b["bundleExecutions"].as_array().expect("bundleExecutions");
            Bundle {
                id: b["bundleId"].as_str().expect("bundleId").to_owned(),
                digest: b["bundleDigest"].as_str().expect("bundleDigest").to_owned(),
                config: b["configurationDigest"].as_str().map(str::to_owned),
                scale: b["bundleScale"]["scale"].as_u64(),
                started: executions.iter().filter(|e| e["isStarted"] == true).count(),
                executions: executions.len(),
            }
        })
        .collect();
    all.sort();
    all
}

pub fn the_running_bundle(s: &Sandbox) -> Bundle {
    let all = bundles(s);
    assert_eq!(all.len(), 1, "{all:#?}");
    let b = all[0].clone();
    assert_eq!((b.scale, b.started), (Some(3), 3), "{b:?}");
    b
}

pub fn bundle_of(s: &Sandbox, digest: &str) -> Bundle {
    bundles(s)
        .into_iter()
        .find(|b| b.digest == digest)
        .unwrap_or_else(|| panic!("no bundle with digest {digest}"))
}

/// Nothing changed: the same bundles at the same scales, and no deployment listed.
pub fn assert_unchanged(s: &Sandbox, v: &Serve, before: &[Bundle], what: &str) {
    assert_eq!(bundles(s), before, "{what}: the cluster changed");
    assert_eq!(
        listing(v, "/deployments"),
        Vec::<Value>::new(),
        "{what}: a deployment was created"
    );
}

/// The deployment `id` of `new` replaced `old` (the demo's running bundle) at scale 3: the
/// events, the cluster and the listing.
pub fn assert_replaced_at_scale_3(s: &Sandbox, v: &Serve, id: &str, new: &Version, old: &Bundle) {
    let events = ended(v, id);
    let config = old
        .config
        .as_deref()
        .expect("the demo runs with a configuration");
    let mut expected = vec![
        json!({"eventType": "deploymentStarted", "deploymentSequence": 1, "deploymentId": id,
               "bundleName": "visualizer", "compatibleVersion": new.tag}),
        json!({"eventType": "bundleDownload", "deploymentSequence": 2}),
        json!({"eventType": "configDownload", "deploymentSequence": 3,
               "compatibleBundleId": old.id}),
        json!({"eventType": "load", "deploymentSequence": 4,
               "configFileName": format!("config-{config}.zip")}),
    ];
    for (i, (o, n)) in LOCK_STEP_3.iter().enumerate() {
        expected.push(json!({"eventType": "deploy", "deploymentSequence": 5 + i,
                             "bundleOld": {"scale": o}, "bundleNew": {"scale": n}}));
    }
    expected.push(json!({"eventType": "deploymentSuccess", "deploymentSequence": 12}));
    assert_eq!(events, expected);
    assert_cluster_replaced_at_scale_3(s, new, old);

    let listed = listing(v, "/deployments");
    assert_eq!(listed.len(), 1, "{listed:#?}");
    let d = &listed[0];
    assert_eq!(d["deploymentId"], id);
    assert_eq!(d["bundleName"], "visualizer");
    assert_eq!(d["version"], new.full());
    assert_eq!(d["compatibilityVersion"], "1");
    assert_eq!(d["state"], "succeeded");
    let started = d["startedAt"].as_u64().expect("startedAt, a number");
    let ended = d["endedAt"].as_u64().expect("endedAt, a number");
    assert!(started <= ended, "{d}");
    // Unix milliseconds, of this run.
    let now = now_millis();
    assert!(
        now - 600_000 < started && ended <= now + 60_000,
        "{d} at {now}"
    );
    assert!(d.get("failure").is_none(), "{d}");
    assert_store_emptied(v);
}

/// The cluster after `new` replaced `old` at scale 3: the old bundle still loaded at scale 0,
/// the new one running 3 instances with the old one's configuration.
pub fn assert_cluster_replaced_at_scale_3(s: &Sandbox, new: &Version, old: &Bundle) {
    let after = bundles(s);
    assert_eq!(after.len(), 2, "{after:#?}");
    let old_after = after
        .iter()
        .find(|b| b.id == old.id)
        .expect("old still loaded");
    assert_eq!(
        (old_after.scale, old_after.executions),
        (Some(0), 0),
        "{old_after:?}"
    );
    let new_after = after
        .iter()
        .find(|b| b.id != old.id)
        .expect("the new bundle");
    let (_, config_part) = old
        .id
        .split_once('-')
        .expect("the old id has a config part");
    assert_eq!(new_after.digest, new.digest);
    assert_eq!(
        new_after.id,
        format!("{}-{config_part}", &new.digest[..32]),
        "the new bundle carries the old one's configuration"
    );
    assert_eq!(
        (new_after.scale, new_after.started, new_after.executions),
        (Some(3), 3, 3)
    );
}

/// A rollback of the demo completed: the old bundle back at 3 started instances, every other
/// bundle at 0.
pub fn assert_rolled_back(s: &Sandbox, old_id: &str) {
    let all = bundles(s);
    let old = all.iter().find(|b| b.id == old_id).expect("the old bundle");
    assert_eq!((old.scale, old.started), (Some(3), 3), "{all:#?}");
    let others: usize = all
        .iter()
        .filter(|b| b.id != old_id)
        .map(|b| b.started)
        .sum();
    assert_eq!(others, 0, "{all:#?}");
}

/// Where the sandbox's history stands: how many changes it holds, and the started instances
/// of each bundle then.
#[derive(Debug)]
pub struct Mark {
    pub seen: usize,
    pub started: HashMap<String, u64>,
}

pub fn mark(s: &Sandbox) -> Mark {
    let seen = s.history().len();
    let started = bundles(s)
        .into_iter()
        .map(|b| (b.id, b.started as u64))
        .collect();
    Mark { seen, started }
}

/// One deployment of the key at a time, each within N-1..=N+1 for N = 3: the started
/// instances of all the bundles stay within 2..=4 at every change since `mark`.
pub fn assert_history_within_2_to_4(s: &Sandbox, mark: Mark) {
    let Mark { seen, mut started } = mark;
    let history = s.history();
    assert!(history.len() > seen, "no change since the mark");
    for entry in &history[seen..] {
        let bundle = entry["bundleId"].as_str().expect("bundleId").to_owned();
        started.insert(bundle, entry["started"].as_u64().expect("started"));
        let total: u64 = started.values().sum();
        assert!((2..=4).contains(&total), "{total} started at {entry}");
    }
}

/// A deployment's downloads are removed when it ends.
pub fn assert_store_emptied(v: &Serve) {
    eventually("the store of downloads to be emptied", WAIT, || {
        v.stored().is_empty().then_some(())
    });
}
