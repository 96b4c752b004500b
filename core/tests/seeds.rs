//! Replays every committed fuzz seed (`fuzz/seeds/<target>/*`) through the same entry points
//! the fuzz targets call, so that `cargo test` exercises them without libFuzzer.

use std::fs;
use std::path::Path;

fn replay(target: &str, entry: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut count = 0;
    for file in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = file.expect("directory entry").path();
        let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        entry(&data);
        count += 1;
    }
    assert!(count > 0, "no seeds in {}", dir.display());
}

#[test]
fn test_seeds_webhook() {
    replay("webhook", lockstep_core::fuzz::webhook);
}

#[test]
fn test_seeds_signature() {
    replay("signature", lockstep_core::fuzz::signature);
}

#[test]
fn test_seeds_shorthand() {
    replay("shorthand", lockstep_core::fuzz::shorthand);
}

#[test]
fn test_seeds_hocon() {
    replay("hocon", lockstep_core::fuzz::hocon);
}

#[test]
fn test_seeds_archive() {
    replay("archive", lockstep_core::fuzz::archive);
}

#[test]
fn test_seeds_deployer() {
    replay("deployer", lockstep_core::fuzz::deployer);
}

#[test]
fn test_seeds_conductr() {
    replay("conductr", lockstep_core::fuzz::conductr);
}

#[test]
fn test_seeds_record() {
    replay("record", lockstep_core::fuzz::record);
}

#[test]
fn test_seeds_journal() {
    replay("journal", lockstep_core::fuzz::journal);
}

#[test]
fn test_seeds_download() {
    replay("download", lockstep_core::fuzz::download);
}

#[test]
fn test_seeds_index() {
    replay("index", lockstep_core::fuzz::index);
}
