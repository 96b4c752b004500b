//! `lockstep bundle`: lockstep as a ConductR bundle, and a folder as its configuration, loaded
//! into `lockstep sandbox` as `conduct load` sends them (the files under the names they were
//! written with) and run there; the failures that must leave nothing behind.
//!
//! `lockstep bundle` runs from a copy of the binary in the test's own directory: what it packs
//! is compared with the very file that ran, which a concurrent build may replace at its shared
//! path.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lockstep_core::archive::{self, Inflater};
use lockstep_core::conductr::multipart::{Boundary, FileName, Multipart, Part};
use lockstep_tests::{Client, Process, Response, TempDir, binary, eventually};
use serde_json::Value;
use sha2::Digest as _;

const WAIT: Duration = Duration::from_secs(30);
const VERSION: &str = env!("CARGO_PKG_VERSION");
const SECRET: &str = "bundle-test-secret-value";

/// What `lockstep bundle` did.
#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// The three lines it prints: the path, `digest <64 hex>`, `id <32 hex>`.
    fn printed(&self) -> (PathBuf, String, String) {
        assert_eq!(self.code, Some(0), "{self:?}");
        let lines: Vec<&str> = self.stdout.lines().collect();
        let [path, digest, id] = lines.as_slice() else {
            panic!("expected three lines: {:?}", self.stdout);
        };
        let digest = digest.strip_prefix("digest ").expect("the digest line");
        let id = id.strip_prefix("id ").expect("the id line");
        assert_eq!(digest.len(), 64, "{digest}");
        assert_eq!(id, &digest[..32]);
        (PathBuf::from(path), digest.to_owned(), id.to_owned())
    }

    /// It failed with exit code `code`, printing nothing on stdout and one line on stderr that
    /// starts with `prefix`.
    fn assert_failed(&self, code: i32, prefix: &str) {
        assert_eq!(self.code, Some(code), "{self:?}");
        assert_eq!(self.stdout, "", "{self:?}");
        assert!(self.stderr.starts_with(prefix), "{self:?}");
        assert_eq!(self.stderr.lines().count(), 1, "{self:?}");
    }
}

/// How long a freshly copied binary may stay busy (see [`bundle`]).
const EXEC_BUSY_DEADLINE: Duration = Duration::from_secs(5);

/// A copy of the lockstep binary in `dir`.
fn own_binary(dir: &TempDir) -> PathBuf {
    let copy = dir.path().join("lockstep");
    std::fs::copy(binary("lockstep", "lockstep"), &copy).expect("copy the binary");
    copy
}

/// Runs `lockstep bundle <args>` from `program` in `cwd`.
///
/// `program` is a copy written by this process a moment ago: a child that another test's thread
/// forked while the copy was still open for writing holds that descriptor until it execs, and
/// meanwhile executing the copy fails with ETXTBSY. That passes within milliseconds: try again
/// until [`EXEC_BUSY_DEADLINE`].
fn bundle(program: &Path, cwd: &Path, args: &[&str]) -> Ran {
    let deadline = Instant::now() + EXEC_BUSY_DEADLINE;
    let output = loop {
        match Command::new(program)
            .arg("bundle")
            .args(args)
            .current_dir(cwd)
            .env_remove("BINTRAY_WEBHOOK_SECRET")
            .output()
        {
            Err(e) if e.kind() == ErrorKind::ExecutableFileBusy && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => break other.expect("run lockstep bundle"),
        }
    };
    let ran = Ran {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    };
    for text in [&ran.stdout, &ran.stderr] {
        assert!(!text.contains(SECRET), "a secret printed: {ran:?}");
    }
    ran
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What `dir` holds, by name.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read the directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .into_string()
                .expect("UTF-8")
        })
        .collect();
    names.sort();
    names
}

fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .expect("a file name")
}

/// A configuration folder `lockstep-test` in `dir`: a runtime-config.sh that exports the
/// secret, and an overlay.
fn configuration_folder(dir: &TempDir) -> PathBuf {
    let folder = dir.path().join("lockstep-test");
    std::fs::create_dir(&folder).expect("make the folder");
    std::fs::write(
        folder.join("runtime-config.sh"),
        format!(
            "export BINTRAY_WEBHOOK_SECRET={SECRET}\n\
             export LOCKSTEP_REPOSITORY=http://repo.example/bundles\n"
        ),
    )
    .expect("write runtime-config.sh");
    std::fs::write(
        folder.join("bundle.conf"),
        "annotations = { \"lockstep.test\" = \"overlay\" }\n",
    )
    .expect("write the overlay");
    folder
}

// ---- the sandbox -----------------------------------------------------------------------------

/// A `lockstep sandbox` with quick instances, and its data directory.
fn sandbox() -> (Process, Client, TempDir) {
    let dir = TempDir::new("lockstep-bundle-sandbox");
    let data = dir.path_text();
    let mut process = Process::lockstep(&[
        "sandbox",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data,
        "--start-delay",
        "30ms",
        "--stop-delay",
        "10ms",
    ]);
    let client = Client::new(process.listening());
    let repository = process.line(WAIT);
    assert!(repository.starts_with("repository "), "{repository}");
    (process, client, dir)
}

/// The first `*bundle.conf` of a zip, by core's reader.
fn bundle_conf(zip: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 64 * 1024];
    let mut inflater = Box::new(Inflater::new());
    let mut reader = zip;
    archive::read_bundle_conf(&mut reader, &mut inflater, &mut out)
        .expect("a bundle.conf")
        .to_vec()
}

/// `POST /v2/bundles` as conductr-cli 1.2.25's `conduct load` sends it: `bundleConf`,
/// `bundleConfOverlay` (with a configuration that has one), `bundle` and `configuration`,
/// each zip under its file's own name.
fn load(client: &Client, bundle: &Path, configuration: Option<&Path>) -> Response {
    let zip = std::fs::read(bundle).expect("read the bundle");
    let config = configuration.map(|c| std::fs::read(c).expect("read the configuration"));
    let conf = bundle_conf(&zip);
    let overlay = config.as_deref().map(bundle_conf);
    let len = |bytes: &[u8]| bytes.len() as u64;
    let mut parts = vec![Part {
        name: "bundleConf",
        filename: Some(FileName::Plain("bundle.conf")),
        len: len(&conf),
    }];
    let mut contents = vec![conf.as_slice()];
    if let Some(overlay) = &overlay {
        parts.push(Part {
            name: "bundleConfOverlay",
            filename: Some(FileName::Plain("bundle.conf")),
            len: len(overlay),
        });
        contents.push(overlay);
    }
    parts.push(Part {
        name: "bundle",
        filename: Some(FileName::Plain(file_name(bundle))),
        len: len(&zip),
    });
    contents.push(&zip);
    if let (Some(path), Some(config)) = (configuration, &config) {
        parts.push(Part {
            name: "configuration",
            filename: Some(FileName::Plain(file_name(path))),
            len: len(config),
        });
        contents.push(config);
    }
    // Made of the digest, as lockstep's own boundary: it cannot occur in the zip it names.
    let boundary_text = format!("lockstep-{}", &sha256_hex(&zip)[..48]);
    let boundary = Boundary::new(&boundary_text).expect("a boundary");
    let form = Multipart::new(boundary, &parts).expect("a form");
    let mut body = vec![];
    for (index, content) in contents.iter().enumerate() {
        let mut head = String::new();
        form.write_head(index, &mut head).expect("a part head");
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(content);
    }
    let mut close = String::new();
    form.write_close(&mut close).expect("the close");
    body.extend_from_slice(close.as_bytes());
    client.request(
        "POST",
        "/v2/bundles",
        &[("Content-Type", &boundary.content_type().to_string())],
        &body,
    )
}

/// The bundle `id` as `GET /v2/bundles` lists it.
fn listed(client: &Client, id: &str) -> Option<Value> {
    let response = client.get("/v2/bundles");
    assert_eq!(response.status, 200);
    response
        .json()
        .as_array()
        .expect("an array")
        .iter()
        .find(|b| b["bundleId"] == id)
        .cloned()
}

/// Loads the files, checks the id, runs it at scale 1 and waits until its instance started.
fn load_and_run(client: &Client, bundle: &Path, configuration: Option<&Path>, id: &str) {
    let response = load(client, bundle, configuration);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["bundleId"], id);
    let attributes = &listed(client, id).expect("listed")["attributes"];
    assert_eq!(attributes["bundleName"], "lockstep");
    assert_eq!(attributes["compatibilityVersion"], "0.1");
    assert_eq!(attributes["tags"], serde_json::json!([VERSION]));
    let response = client.request("PUT", &format!("/v2/bundles/{id}?scale=1"), &[], b"");
    assert_eq!(response.status, 200, "{}", response.text());
    eventually("its instance to start", WAIT, || {
        let bundle = listed(client, id)?;
        let executions = bundle["bundleExecutions"].as_array()?;
        let started = executions.iter().filter(|e| e["isStarted"] == true).count();
        (bundle["bundleScale"]["scale"] == 1 && started == 1).then_some(())
    });
}

// ---- the bundle ------------------------------------------------------------------------------

#[test]
fn test_bundle_loads_into_the_sandbox_and_runs() {
    let work = TempDir::new("lockstep-bundle-test");
    let program = own_binary(&work);
    let (path, digest, id) = bundle(&program, work.path(), &[]).printed();
    // In the current directory, under ConductR's name, nothing else left there.
    let name = format!("lockstep-{VERSION}-{digest}.zip");
    assert_eq!(path, PathBuf::from(&name));
    assert_eq!(listing(work.path()), ["lockstep".to_owned(), name.clone()]);
    let zip = std::fs::read(work.path().join(&name)).expect("the zip");
    assert_eq!(sha256_hex(&zip), digest);

    let (_sandbox, client, _data) = sandbox();
    load_and_run(&client, &work.path().join(&name), None, &id);
    // Its bundle.conf, as the sandbox hands it back.
    let response = client.request(
        "GET",
        &format!("/v2/bundles/{id}"),
        &[("Accept", "application/hocon")],
        b"",
    );
    assert_eq!(response.status, 200);
    let text = response.text();
    assert!(
        text.contains(r#"start-command    = ["lockstep/bin/lockstep", "serve"]"#),
        "{text}"
    );
    assert!(text.contains(r#"path-beg = "/deployments""#), "{text}");
}

#[test]
fn test_bundle_with_configuration_loads_into_the_sandbox_and_runs() {
    let work = TempDir::new("lockstep-bundle-test");
    let program = own_binary(&work);
    let folder = configuration_folder(&work);
    let out = work.path().join("out");
    std::fs::create_dir(&out).expect("make out");
    let out_text = out.to_str().expect("UTF-8");
    let (bundle_path, _, bundle_id) =
        bundle(&program, work.path(), &["--output", out_text]).printed();
    let folder_text = folder.to_str().expect("UTF-8");
    let ran = bundle(
        &program,
        work.path(),
        &["--configuration", folder_text, "--output", out_text],
    );
    let (config_path, config_digest, config_id) = ran.printed();
    assert_eq!(ran.stderr, "");
    assert_eq!(
        config_path,
        out.join(format!("lockstep-test-{config_digest}.zip"))
    );
    assert_eq!(
        sha256_hex(&std::fs::read(&config_path).expect("the configuration")),
        config_digest
    );
    assert_eq!(
        listing(&out),
        [file_name(&bundle_path), file_name(&config_path)]
    );

    let (_sandbox, client, _data) = sandbox();
    let id = format!("{bundle_id}-{config_id}");
    load_and_run(&client, &bundle_path, Some(&config_path), &id);
    // The overlay went with it.
    let response = client.request(
        "GET",
        &format!("/v2/bundles/{id}"),
        &[("Accept", "application/hocon")],
        b"",
    );
    assert!(
        response.text().contains("lockstep.test"),
        "{}",
        response.text()
    );
}

#[test]
fn test_bundle_holds_the_running_binary_executable() {
    let work = TempDir::new("lockstep-bundle-test");
    let program = own_binary(&work);
    let (path, _, _) = bundle(&program, work.path(), &[]).printed();
    // Unpacked by an independent reader (Python's zipfile), each file with the mode the zip
    // gives it, as ConductR unpacks a bundle.
    let unpacked = work.path().join("unpacked");
    let script = "import os, sys, zipfile\n\
                  z = zipfile.ZipFile(sys.argv[1])\n\
                  for info in z.infolist():\n\
                  \x20   print(info.filename, oct(info.external_attr >> 16))\n\
                  \x20   target = z.extract(info, sys.argv[2])\n\
                  \x20   os.chmod(target, (info.external_attr >> 16) & 0o7777)\n";
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(work.path().join(&path))
        .arg(&unpacked)
        .output()
        .expect("python3 is needed to unpack the zip independently");
    assert!(output.status.success(), "{output:?}");
    let top = format!("lockstep-{VERSION}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("{top}/bundle.conf 0o100644\n{top}/lockstep/bin/lockstep 0o100755\n")
    );
    // The start command's path, from the bundle's top directory.
    let packed = unpacked.join(&top).join("lockstep/bin/lockstep");
    let same = std::fs::read(&packed).expect("the packed binary")
        == std::fs::read(&program).expect("the binary");
    assert!(same, "the packed binary differs from the one that ran");
    let output = Command::new(&packed)
        .arg("--version")
        .output()
        .expect("the packed binary runs");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("lockstep {VERSION}\n")
    );
}

// ---- failures --------------------------------------------------------------------------------

#[test]
fn test_bundle_configuration_without_runtime_config_fails_and_writes_nothing() {
    let work = TempDir::new("lockstep-bundle-test");
    let program = own_binary(&work);
    let folder = work.path().join("conf");
    std::fs::create_dir(&folder).expect("make the folder");
    std::fs::write(folder.join("bundle.conf"), "a = 1\n").expect("write");
    let ran = bundle(&program, work.path(), &["--configuration", "conf"]);
    ran.assert_failed(1, "lockstep bundle: conf: holds no runtime-config.sh");
    assert_eq!(listing(work.path()), ["conf", "lockstep"]);
    // A symbolic link out of the folder is not followed.
    std::fs::write(folder.join("runtime-config.sh"), "export A=1\n").expect("write");
    std::os::unix::fs::symlink("/etc/hostname", folder.join("host")).expect("link");
    let ran = bundle(&program, work.path(), &["--configuration", "conf"]);
    ran.assert_failed(1, "lockstep bundle: conf/host: a symbolic link");
    assert_eq!(listing(work.path()), ["conf", "lockstep"]);
}

#[test]
fn test_bundle_unwritable_output_fails_and_writes_nothing() {
    let work = TempDir::new("lockstep-bundle-test");
    let program = own_binary(&work);
    std::fs::write(work.path().join("file"), "a file, not a folder").expect("write");
    for output in ["file/out.zip", "missing/out.zip"] {
        let ran = bundle(&program, work.path(), &["--output", output]);
        ran.assert_failed(1, &format!("lockstep bundle: cannot write {output}: "));
    }
    assert_eq!(listing(work.path()), ["file", "lockstep"]);
    // A folder it may not write in (root may write anywhere).
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        use std::os::unix::fs::PermissionsExt;
        let locked = work.path().join("locked");
        std::fs::create_dir(&locked).expect("make locked");
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        let ran = bundle(&program, work.path(), &["--output", "locked"]);
        ran.assert_failed(1, "lockstep bundle: cannot write locked: ");
        assert_eq!(listing(&locked), Vec::<String>::new());
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

#[test]
fn test_bundle_refuses_bad_arguments() {
    let work = TempDir::new("lockstep-bundle-test");
    let program = own_binary(&work);
    for args in [
        &["--frob"][..],
        &["extra"],
        &["--output"],
        &["--configuration"],
    ] {
        let ran = bundle(&program, work.path(), args);
        ran.assert_failed(2, "lockstep bundle: ");
    }
    let ran = bundle(&program, work.path(), &["--help"]);
    assert_eq!(ran.code, Some(0));
    assert!(ran.stdout.contains("Usage: lockstep bundle"), "{ran:?}");
    assert_eq!(listing(work.path()), ["lockstep"]);
}
