//! Helpers of lockstep's end-to-end suites: they run the real binaries.
//!
//! [`binary`] builds a binary of the workspace with cargo (once per test process) and returns
//! its path. It never skips: a binary that cannot be built fails the test that asked for it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The path of `bin` from package `package`, built now with the test's own profile if needed.
///
/// # Panics
/// When cargo cannot build it: the test cannot run without it, and must not pass silently.
pub fn binary(package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = built.get(bin) {
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
    built.insert(bin.to_owned(), path.clone());
    path
}

/// Whether this test binary was built with `--release` (its directory is `.../release/deps`).
fn test_profile_is_release() -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent()?.file_name().map(|n| n == "release"))
        .unwrap_or(false)
}
