//! The README's pipeline section, run as written: its shell block starts a sandbox and `lockstep
//! serve`, publishes two builds (notifying the service of the first), and deploys by hand. Only
//! its ports (OS-chosen here) and its directory (a temporary one) are replaced.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use lockstep_tests::stack::exit_within;
use lockstep_tests::{TempDir, binary};

/// How long the whole block may take.
const DEADLINE: Duration = Duration::from_secs(120);

/// The shell block after the README's `<!-- pipeline: ... -->` marker.
fn pipeline_block() -> String {
    let readme = include_str!("../../README.md");
    let after = readme
        .split_once("<!-- pipeline: tests/tests/readme.rs runs this block -->")
        .expect("the README's pipeline marker")
        .1;
    let block = after
        .split_once("```sh\n")
        .expect("a sh block after the marker")
        .1;
    block
        .split_once("```")
        .expect("the block's end")
        .0
        .to_owned()
}

/// A port the OS had free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn test_readme_pipeline_runs_as_written() {
    let block = pipeline_block();
    for needed in ["127.0.0.1:9005", "127.0.0.1:9000", "/tmp/pipeline"] {
        assert!(block.contains(needed), "the block no longer uses {needed}");
    }
    let dir = TempDir::new("lockstep-readme-pipeline");
    let root = dir.path().join("pipeline");
    let (sandbox, service) = (free_port(), free_port());
    let script = block
        .replace("127.0.0.1:9005", &format!("127.0.0.1:{sandbox}"))
        .replace("127.0.0.1:9000", &format!("127.0.0.1:{service}"))
        .replace("/tmp/pipeline", root.to_str().expect("UTF-8"));
    let lockstep = binary("lockstep", "lockstep");
    let bin = lockstep.parent().expect("the binary's directory");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The background jobs end with the script, whatever happens.
    let wrapped = format!("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n{script}");
    let mut command = Command::new("bash");
    command.args(["-c", &wrapped]);
    for (name, _) in std::env::vars() {
        if name.starts_with("LOCKSTEP_") || name == "BINTRAY_WEBHOOK_SECRET" {
            command.env_remove(name);
        }
    }
    let out = dir.path().join("stdout");
    let err = dir.path().join("stderr");
    let mut child = command
        .env("PATH", path)
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("bash");
    let status = exit_within(&mut child, DEADLINE, "the README's pipeline");
    let stdout = std::fs::read_to_string(&out).expect("stdout");
    let stderr = std::fs::read_to_string(&err).expect("stderr");
    assert!(status.success(), "{status}\n{stdout}\n{stderr}");

    let notified =
        format!("notified http://127.0.0.1:{service}/deployments/typesafe/bundle/typesafe: 202 ");
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&notified))
        .unwrap_or_else(|| panic!("no notification in {stdout}"));
    assert!(stdout.contains("published visualizer:1.1.0-"), "{stdout}");
    assert!(stdout.contains("published visualizer:1.2.0-"), "{stdout}");
    // `lockstep deploy visualizer:1.1.0` followed the notified deployment itself.
    assert!(
        stdout.contains(&format!("Deployment id: {id}\n")),
        "{stdout}"
    );
    assert!(stdout.contains("Deploying visualizer:1.2.0-"), "{stdout}");
    assert_eq!(stdout.matches("] Success\n").count(), 2, "{stdout}");
}
