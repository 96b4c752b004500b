//! Helpers of lockstep's end-to-end suites: they run the real binaries.
//!
//! [`binary`] builds a binary of the workspace with cargo (once per test process) and returns
//! its path. It never skips: a binary that cannot be built fails the test that asked for it.
//! [`Process`] runs one, reads the address it prints and kills it when dropped; what it wrote
//! shows with a failing test's output, and nowhere otherwise. [`Client`] is
//! a small blocking HTTP/1.1 client, independent of the servers under test. [`eventually`]
//! waits for a condition with a deadline, never for a fixed time.

pub mod etcd;
pub mod prometheus;
pub mod raw;
pub mod stack;
pub mod tls;
pub mod webdriver;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

/// `name` on the PATH (or in /usr/sbin, /usr/bin).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `program`, installed now from Debian's `package` when it is missing (`apt-get`, as root; the
/// lists updated first when the install fails without them), so that the test command sets up
/// what its end-to-end tests start, as `.ci/run` does.
///
/// # Panics
/// When it is missing and cannot be installed here: the test must not pass without it.
pub fn provide(program: &str, package: &str) -> PathBuf {
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALLING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = which(program) {
        return path;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root && which("apt-get").is_some() {
        let install = || {
            Command::new("apt-get")
                .args([
                    "-o",
                    "DPkg::Lock::Timeout=120",
                    "install",
                    "-y",
                    "-q",
                    package,
                ])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !install() {
            let _ = Command::new("apt-get")
                .args(["-o", "DPkg::Lock::Timeout=120", "update", "-q"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            install();
        }
    }
    which(program).unwrap_or_else(|| {
        panic!(
            "this test needs `{program}`: install Debian's {package} (apt-get install {package}); \
             the test command installs it itself when run as root on Debian"
        )
    })
}

/// The path of `bin` from package `package`, built now with the test's own profile if needed.
///
/// # Panics
/// When cargo cannot build it: the test cannot run without it, and must not pass silently.
pub fn binary(package: &str, bin: &str) -> PathBuf {
    binary_with_feature(package, bin, None)
}

/// [`binary`] built with `feature` on, when given, in a target directory of its own (`<target
/// dir>/with-<feature>`): the same binary path with and without it would be swapped under the
/// tests running the other.
///
/// # Panics
/// When cargo cannot build it.
pub fn binary_with_feature(package: &str, bin: &str, feature: Option<&str>) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let key = format!("{bin} {}", feature.unwrap_or(""));
    if let Some(path) = built.get(&key) {
        return path.clone();
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.args([
        "build",
        "--quiet",
        "--message-format=json",
        "--package",
        package,
        "--bin",
        bin,
    ]);
    if test_profile_is_release() {
        command.arg("--release");
    }
    // What cargo set for this test's own crate (CARGO_MANIFEST_DIR, CARGO_PKG_NAME...) is not
    // the build's business: build scripts that watch those variables (ring's does) would
    // otherwise be run again, and their crates rebuilt, on every test run.
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_",
        ]
        .iter()
        .any(|prefix| name_text.starts_with(prefix))
            || name_text == "OUT_DIR"
        {
            command.env_remove(&name);
        }
    }
    if let Some(feature) = feature {
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
            || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
            PathBuf::from,
        );
        command
            .args(["--features", feature, "--target-dir"])
            .arg(target.join(format!("with-{feature}")));
    }
    let output = command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {bin}: {e}"));
    assert!(
        output.status.success(),
        "cargo could not build {bin}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == bin)
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo built {bin} but named no executable"));
    built.insert(key, path.clone());
    path
}

/// Whether this test binary was built with `--release` (its directory is `.../release/deps`).
fn test_profile_is_release() -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent()?.file_name().map(|n| n == "release"))
        .unwrap_or(false)
}

/// A directory of the test's own under the system's temporary directory, removed when
/// dropped (lockstep's own [`lockstep::tempdir::TempDir`]).
#[derive(Debug)]
pub struct TempDir(lockstep::tempdir::TempDir);

impl TempDir {
    /// A new, empty directory.
    ///
    /// # Panics
    /// When it cannot be made.
    pub fn new(prefix: &str) -> Self {
        Self(lockstep::tempdir::TempDir::new(prefix).expect("create a temporary directory"))
    }

    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        self.0.path()
    }

    /// Its path as text (for an argument or a variable such as `TMPDIR`).
    ///
    /// # Panics
    /// When it is not UTF-8.
    pub fn path_text(&self) -> String {
        self.path().to_str().expect("a UTF-8 path").to_owned()
    }

    /// Checks that it holds nothing (any more); `when` says when, for the failure.
    ///
    /// # Panics
    /// When it holds something.
    pub fn assert_empty(&self, when: &str) {
        assert_eq!(self.entries(), Vec::<PathBuf>::new(), "{when}");
    }

    /// What it holds (not what those hold), sorted.
    pub fn entries(&self) -> Vec<PathBuf> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(self.path())
            .expect("read the temporary directory")
            .map(|entry| entry.expect("a directory entry").path())
            .collect();
        entries.sort();
        entries
    }

    /// The one directory a process made in here (given as its `TMPDIR`), checked to be named
    /// `<prefix>-...` and to be private to the user (0700).
    ///
    /// # Panics
    /// When it holds anything else.
    pub fn only_private_dir(&self, prefix: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;

        let entries = self.entries();
        let [made] = entries.as_slice() else {
            panic!(
                "expected one directory in {}: {entries:?}",
                self.path().display()
            );
        };
        let name = made.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(name.starts_with(&format!("{prefix}-")), "{made:?}");
        let mode = std::fs::metadata(made)
            .expect("its metadata")
            .permissions()
            .mode();
        assert!(made.is_dir(), "{made:?}");
        assert_eq!(mode & 0o777, 0o700, "{made:?}: mode {mode:o}");
        made.clone()
    }
}

/// Waits until `condition` gives `Some`, checking every few milliseconds, up to `timeout`.
///
/// # Panics
/// When the deadline passes, naming `what`.
pub fn eventually<T>(what: &str, timeout: Duration, mut condition: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running binary; killed when dropped.
///
/// What it wrote is kept, not shown: dropped while its test is failing (panicking), it
/// prints all of it through `eprintln!`, which the harness shows with that test's output.
///
/// Every secret it was given (the `BINTRAY_WEBHOOK_SECRET` environment variable, the contents
/// of a `--secret-file`, and any passed to [`Process::guard_secret`]) is looked for in all it
/// wrote, stdout and stderr, when it is dropped: finding one fails the test. Every end-to-end
/// suite starts its binaries through `Process`, so every log line of the suite is checked.
#[derive(Debug)]
pub struct Process {
    /// The program and its command (`lockstep sandbox`), to head what it wrote.
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Everything it wrote to stdout, including the lines already taken by [`Process::line`].
    stdout: std::sync::Arc<Mutex<String>>,
    /// The secrets it must never print.
    secrets: Vec<String>,
    /// Everything it wrote to stderr, gathered by a thread.
    stderr: std::sync::Arc<Mutex<String>>,
    /// That thread: joined once the process exited, so that nothing it wrote is missed.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    /// Its own `XDG_STATE_HOME` (where `lockstep serve` keeps its journal when given no
    /// `--data-dir`), unless the test gave one: no two tests share a default data directory.
    _state_home: Option<TempDir>,
}

impl Process {
    /// Starts `lockstep <args>` (built first if needed).
    pub fn lockstep(args: &[&str]) -> Self {
        Self::start(&binary("lockstep", "lockstep"), args, &[])
    }

    /// Starts a program with arguments and extra environment variables.
    pub fn start(program: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(program);
        let state_home = (!env.iter().any(|(k, _)| *k == "XDG_STATE_HOME")).then(|| {
            let dir = TempDir::new("lockstep-state-home");
            command.env("XDG_STATE_HOME", dir.path());
            dir
        });
        command
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let stdout: ChildStdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        let everything = std::sync::Arc::new(Mutex::new(String::new()));
        let copy = everything.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                {
                    let mut copy = copy.lock().unwrap_or_else(|p| p.into_inner());
                    copy.push_str(&line);
                    copy.push('\n');
                }
                // The test may have stopped listening; the copy above still counts.
                let _ = tx.send(line);
            }
        });
        let stderr = std::sync::Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&text);
            }
        });
        let program_name = program.file_name().map_or_else(
            || program.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let name = match args.first() {
            Some(command) => format!("{program_name} {command}"),
            None => program_name,
        };
        Self {
            name,
            child,
            lines,
            stdout: everything,
            secrets: secrets_given(args, env),
            stderr,
            stderr_reader: Some(stderr_reader),
            _state_home: state_home,
        }
    }

    /// Adds a secret it must never print (one it made itself, say).
    pub fn guard_secret(&mut self, secret: &str) {
        if !secret.is_empty() {
            self.secrets.push(secret.to_owned());
        }
    }

    /// Everything it wrote to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The next line it prints on stdout, within `timeout`.
    ///
    /// # Panics
    /// When none comes in time (with what it wrote on stderr).
    pub fn line(&mut self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(_) => panic!(
                "no line on stdout within {timeout:?}; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// Reads the `listening on http://IP:PORT` line and returns the address.
    pub fn listening(&mut self) -> SocketAddr {
        let line = self.line(Duration::from_secs(60));
        let addr = line
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("expected `listening on http://IP:PORT`, got {line:?}"));
        addr.parse()
            .unwrap_or_else(|_| panic!("not an address: {addr:?}"))
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Stops it with `signal`: it must exit with 0 within `timeout`.
    ///
    /// # Panics
    /// When it does not.
    pub fn stop(&mut self, signal: &str, timeout: Duration) {
        self.signal(signal);
        assert_eq!(self.wait(timeout), Some(0), "{}", self.stderr());
    }

    /// Sends it `signal` (`TERM`, `INT`) with kill(1).
    ///
    /// # Panics
    /// When kill fails.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for it to exit, up to `timeout`; returns its exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // The pipe is at its end once the process is gone (unless a child of its own
                // holds it): read all of it.
                if let Some(reader) = self.stderr_reader.take() {
                    let _ = reader.join();
                }
                return status.code();
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Process {
    /// Reads stderr to its end, once the process is gone (bounded: a child of its own could
    /// hold the pipe open).
    fn read_stderr_to_end(&mut self) {
        if let Some(reader) = self.stderr_reader.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !reader.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            self.read_stderr_to_end();
            let (name, pid) = (&self.name, self.child.id());
            eprintln!(
                "---- {name} (pid {pid}) stdout ----\n{}---- {name} (pid {pid}) stderr ----\n{}",
                self.stdout(),
                self.stderr()
            );
            return;
        }
        if self.secrets.is_empty() {
            return;
        }
        self.read_stderr_to_end();
        let (stdout, stderr) = (self.stdout(), self.stderr());
        for secret in &self.secrets {
            for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
                if let Some(line) = text.lines().find(|line| line.contains(secret.as_str())) {
                    panic!("the secret appears on {name}: {line:?}");
                }
            }
        }
    }
}

/// The secrets a process is given by its arguments and environment.
fn secrets_given(args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let mut secrets: Vec<String> = env
        .iter()
        .filter(|(name, _)| *name == "BINTRAY_WEBHOOK_SECRET")
        .map(|(_, value)| (*value).to_owned())
        .collect();
    // The webhook secret's file, and the read credential's.
    let secret_flag = |flag: &str| flag == "--secret-file" || flag == "--read-credential-file";
    let files = args
        .windows(2)
        .filter(|pair| secret_flag(pair[0]))
        .map(|pair| pair[1])
        .chain(args.iter().filter_map(|a| {
            a.strip_prefix("--secret-file=")
                .or_else(|| a.strip_prefix("--read-credential-file="))
        }));
    for file in files {
        if let Ok(text) = std::fs::read_to_string(file) {
            secrets.push(text.trim_end_matches(['\n', '\r']).to_owned());
        }
    }
    secrets.retain(|s| !s.is_empty());
    secrets
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names in lowercase.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Panics
    /// When it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// A blocking HTTP/1.1 client for tests: one connection per request unless kept.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// The server.
    pub addr: SocketAddr,
    /// Read and write time-out.
    pub timeout: Duration,
}

impl Client {
    /// A client of `addr` with a 30 s time-out.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            timeout: Duration::from_secs(30),
        }
    }

    /// Sends a request with these headers and body (Content-Length added when there is a
    /// body); returns the response.
    ///
    /// # Panics
    /// On a connection or protocol error.
    pub fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.try_request(method, target, headers, body)
            .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
    }

    /// [`request`](Self::request), returning errors.
    pub fn try_request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut stream = TcpStream::connect_timeout(&self.addr, self.timeout)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || matches!(method, "POST" | "PUT") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        read_response(&mut BufReader::new(stream))
    }

    /// GET.
    pub fn get(&self, target: &str) -> Response {
        self.request("GET", target, &[], b"")
    }

    /// Opens a stream (server-sent events) and returns its reader after the head.
    ///
    /// # Panics
    /// When the answer is not a 200 stream.
    pub fn stream(&self, target: &str) -> EventStream {
        let stream = TcpStream::connect_timeout(&self.addr, self.timeout).expect("connect");
        stream
            .set_read_timeout(Some(self.timeout))
            .expect("timeout");
        let mut writer = stream.try_clone().expect("clone");
        write!(
            writer,
            "GET {target} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
            self.addr
        )
        .expect("write");
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader).expect("head");
        assert_eq!(status, 200, "{target}");
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
        EventStream {
            reader,
            chunked,
            pending: Vec::new(),
        }
    }
}

fn read_head(reader: &mut impl BufRead) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    Ok((status, headers))
}

fn read_response(reader: &mut impl BufRead) -> std::io::Result<Response> {
    let (status, headers) = read_head(reader)?;
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim(), 16).map_err(std::io::Error::other)?;
            let mut chunk = vec![0u8; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = find("content-length") {
        let length: usize = length.parse().map_err(std::io::Error::other)?;
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// An open event stream.
#[derive(Debug)]
pub struct EventStream {
    reader: BufReader<TcpStream>,
    chunked: bool,
    pending: Vec<u8>,
}

impl EventStream {
    /// Raw bytes as they come (de-chunked), at least one byte; `None` at the end.
    pub fn next_bytes(&mut self) -> Option<Vec<u8>> {
        if !self.pending.is_empty() {
            return Some(std::mem::take(&mut self.pending));
        }
        if self.chunked {
            let mut size = String::new();
            self.reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0u8; size + 2];
            self.reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                return None;
            }
            chunk.truncate(size);
            Some(chunk)
        } else {
            let mut buf = vec![0u8; 4096];
            let n = self.reader.read(&mut buf).ok()?;
            (n > 0).then(|| {
                buf.truncate(n);
                buf
            })
        }
    }

    /// The text received until `done` says it has enough, within `timeout`.
    ///
    /// # Panics
    /// When the stream ends or the time runs out first.
    pub fn read_until(&mut self, timeout: Duration, mut done: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let mut text = String::new();
        while !done(&text) {
            assert!(Instant::now() < deadline, "stream: timed out; got {text:?}");
            let bytes = self
                .next_bytes()
                .unwrap_or_else(|| panic!("stream ended; got {text:?}"));
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
        text
    }
}

/// Defines each test once and runs it against both webhook runtimes, `lockstep serve` and
/// `lockstep-minimal`: `fn name(runtime: Runtime) { ... }` becomes the tests `name::serve` and
/// `name::minimal` (one suite, not two copies).
#[macro_export]
macro_rules! on_both_runtimes {
    ($(
        $(#[$meta:meta])*
        fn $name:ident($runtime:ident: Runtime) $body:block
    )*) => {
        $(
            $(#[$meta])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                fn run($runtime: $crate::stack::Runtime) $body

                #[test]
                fn serve() {
                    run($crate::stack::Runtime::Serve);
                }

                #[test]
                fn minimal() {
                    run($crate::stack::Runtime::Minimal);
                }
            }
        )*
    };
}
