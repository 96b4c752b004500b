//! The binaries' command lines.

use std::process::Command;

use lockstep_tests::binary;

fn run(package: &str, bin: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary(package, bin))
        .args(args)
        .output()
        .expect("run the binary");
    (
        output.status.code().expect("exit code"),
        String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    )
}

#[test]
fn test_lockstep_help_and_version() {
    let (code, out, err) = run("lockstep", "lockstep", &["--help"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("lockstep — "), "{out}");
    assert!(out.contains("Usage: lockstep"), "{out}");
    assert!(err.is_empty());
    let (code, out, _) = run("lockstep", "lockstep", &["--version"]);
    assert_eq!(
        (code, out.trim()),
        (0, concat!("lockstep ", env!("CARGO_PKG_VERSION")))
    );
}

#[test]
fn test_lockstep_refuses_unknown_command() {
    let (code, out, err) = run("lockstep", "lockstep", &["frobnicate"]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(
        err.contains("unknown command or option `frobnicate`"),
        "{err}"
    );
}

#[test]
fn test_minimal_help_and_unknown_option() {
    let (code, out, _) = run("lockstep-minimal", "lockstep-minimal", &["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("Usage: lockstep-minimal"), "{out}");
    let (code, _, err) = run("lockstep-minimal", "lockstep-minimal", &["--frob"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown option `--frob`"), "{err}");
}
