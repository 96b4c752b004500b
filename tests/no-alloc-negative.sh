#!/usr/bin/env bash
# The no-alloc proof must be able to fail. In a temporary copy of the workspace, make core use
# `alloc` (then, separately, `std`) and expect core/nostd-check to refuse to build, with the
# error that names the reason. Run by .ci/run after the proof itself.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export CARGO_TARGET_DIR="$tmp/target"

copy_workspace() {
  rm -rf "$tmp/ws"
  mkdir -p "$tmp/ws"
  # Only what cargo needs to load the workspace: manifests, lock file and sources.
  (cd "$root" && tar --exclude=./target --exclude='*/target' --exclude=./fuzz --exclude=./.git -cf - .) \
    | tar -C "$tmp/ws" -xf -
}

# expect_failure NAME CODE PATTERN: inject CODE into core, build the check, expect PATTERN.
expect_failure() {
  local name=$1 code=$2 pattern=$3
  copy_workspace
  printf '\n%s\n' "$code" >>"$tmp/ws/core/src/lib.rs"
  local log="$tmp/$name.log"
  if cargo build --quiet --manifest-path "$tmp/ws/core/nostd-check/Cargo.toml" >"$log" 2>&1; then
    echo "FAIL: core using $name still built the no_std staticlib: the proof proves nothing" >&2
    exit 1
  fi
  if ! grep -q "$pattern" "$log"; then
    echo "FAIL: core using $name broke the build, but not with \"$pattern\":" >&2
    cat "$log" >&2
    exit 1
  fi
  echo "ok: core using $name fails the no-alloc proof (\"$pattern\")"
}

expect_failure alloc \
  'extern crate alloc; #[doc(hidden)] pub fn injected() -> alloc::vec::Vec<u8> { alloc::vec![1] }' \
  'no global memory allocator found'
expect_failure std \
  'extern crate std; #[doc(hidden)] pub fn injected() { std::println!("leak"); }' \
  'duplicate lang item'
