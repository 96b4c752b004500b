#!/usr/bin/env bash
# The official ConductR client (conductr-cli 1.2.25, from PyPI) against lockstep: `conduct info`,
# `load`, `run`, `stop` and `unload` with --api-version 2 against `lockstep sandbox`, then
# `conduct deploy --webhook bintray` against `lockstep serve`: it sends its webhook and follows
# the deployment to its end (tests/conductr_deploy.py stands in for Bintray's API only); then
# the same with --port a sandbox's, which forwards the deployments endpoints to lockstep serve
# (`lockstep sandbox --deployments`), as ConductR's control API did.
# Run by .ci/run after the test suite; it installs the client into a virtualenv of its own
# (target/conductr-cli-venv) the first time. conductr-cli 1.2 predates Python 3.10, which
# removed the `collections.Mapping` family of aliases: a sitecustomize puts them back.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/target/conductr-cli-venv"
if [ ! -x "$venv/bin/conduct" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'conductr-cli==1.2.25'
fi
shim=$(mktemp -d)
work=$(mktemp -d)
sandbox_pid=
serve_pid=
forwarder_pid=
cleanup() {
  [ -n "$sandbox_pid" ] && kill "$sandbox_pid" 2>/dev/null || true
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null || true
  [ -n "$forwarder_pid" ] && kill "$forwarder_pid" 2>/dev/null || true
  rm -rf "$shim" "$work"
}
trap cleanup EXIT
cat >"$shim/sitecustomize.py" <<'PY'
import collections, collections.abc
for name in ("Mapping", "MutableMapping", "Sequence", "MutableSequence", "Iterable",
             "Callable", "Set", "MutableSet", "Hashable"):
    if not hasattr(collections, name):
        setattr(collections, name, getattr(collections.abc, name))
PY

cargo build --quiet -p lockstep --bin lockstep
"$root/target/debug/lockstep" sandbox --listen 127.0.0.1:0 --demo --data-dir "$work/data" \
  --start-delay 200ms --heartbeat 200ms >"$work/out" 2>"$work/err" &
sandbox_pid=$!
for _ in $(seq 1 200); do
  [ "$(wc -l <"$work/out")" -ge 6 ] && break
  sleep 0.05
done
port=$(sed -n 's#^listening on http://127.0.0.1:##p' "$work/out")
[ -n "$port" ] || { echo "FAIL: the sandbox did not start:"; cat "$work/err"; exit 1; }
compatible=$(sed -n 's/^version visualizer:\(.*\) compatible$/\1/p' "$work/out" | head -n 1)
zip="$work/data/repository/typesafe/bundle/typesafe/visualizer/$compatible/visualizer-$compatible.zip"

conduct() {
  HOME="$work" PYTHONPATH="$shim" timeout 60 "$venv/bin/conduct" "$@" \
    --api-version 2 --ip 127.0.0.1 --port "$port"
}
expect() {
  local what=$1 pattern=$2 output=$3
  if ! grep -q -- "$pattern" <<<"$output"; then
    echo "FAIL: $what: expected \"$pattern\" in:"; echo "$output"; exit 1
  fi
  echo "ok: $what"
}

expect "conduct info lists the running demo bundle" "visualizer  1.0.0     1     0     3" "$(conduct info 2>&1)"
out=$(conduct load "$zip" 2>&1)
expect "conduct load" "Bundle loaded." "$out"
id=$(sed -n 's/^Start bundle with:.* \([0-9a-f]\{7\}\)$/\1/p' <<<"$out")
expect "conduct run" "expected scale 1 is met" "$(conduct run "$id" 2>&1)"
expect "conduct info shows it running" "$id .*visualizer  1.1.0     1     0     1" "$(conduct info 2>&1)"
expect "conduct stop" "expected scale 0 is met" "$(conduct stop "$id" 2>&1)"
expect "conduct unload" "is uninstalled" "$(conduct unload "$id" 2>&1)"
out=$(conduct info 2>&1)
if grep -q "1.1.0" <<<"$out"; then echo "FAIL: still listed after unload:"; echo "$out"; exit 1; fi
echo "ok: conduct info no longer lists it"

# conduct deploy --webhook bintray, against lockstep serve.
BINTRAY_WEBHOOK_SECRET=cd-secret "$root/target/debug/lockstep" serve --listen 127.0.0.1:0 \
  --conductr "http://127.0.0.1:$port" --repository "http://127.0.0.1:$port/repository" \
  --data-dir "$work/serve" --poll-interval 200ms >"$work/serve.out" 2>"$work/serve.err" &
serve_pid=$!
for _ in $(seq 1 200); do
  [ -s "$work/serve.out" ] && break
  sleep 0.05
done
serve_port=$(sed -n 's#^listening on http://127.0.0.1:##p' "$work/serve.out")
[ -n "$serve_port" ] || { echo "FAIL: lockstep serve did not start:"; cat "$work/serve.err"; exit 1; }
mkdir -p "$work/.conductr"
cat >"$work/.conductr/settings.conf" <<'HOCON'
conductr {
  continuous-delivery {
    bintray-webhook-secret = cd-secret
  }
}
HOCON
deploy_at() {
  local at_port=$1
  shift
  HOME="$work" PYTHONPATH="$shim" timeout 120 "$venv/bin/python" "$root/tests/conductr_deploy.py" \
    127.0.0.1 "$at_port" "$@"
}
deploy() {
  deploy_at "$serve_port" "$@"
}
# The demo publishes 1.0.0 (running), 1.1.0, 1.2.0 (compatible), then 2.0.0, in that order: each
# deployment below goes to a version published after the running one (DESIGN.md rule 12).
first=$(sed -n 's/^version visualizer:\(.*\) compatible$/\1/p' "$work/out" | head -n 1)
version=$(sed -n 's/^version visualizer:\(.*\) compatible$/\1/p' "$work/out" | tail -n 1)
out=$(deploy "${first%-*}" "${first##*-}" 2>&1) || { echo "FAIL: conduct deploy:"; echo "$out"; exit 1; }
expect "conduct deploy sends the webhook" "Deployment id: " "$out"
listing=$(curl -s "http://127.0.0.1:$serve_port/deployments" 2>/dev/null || python3 -c "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:$serve_port/deployments').read().decode())")
expect "conduct deploy followed it to its success" '"state":"succeeded"' "$listing"
incompatible=$(sed -n 's/^version visualizer:\(.*\) incompatible$/\1/p' "$work/out")
if out=$(deploy "${incompatible%-*}" "${incompatible##*-}" 2>&1); then
  echo "FAIL: conduct deploy of an incompatible version succeeded:"; echo "$out"; exit 1
fi
expect "conduct deploy reports the failure" "Failure: no running bundle with compatibilityVersion 2" "$out"

# lockstep's own bundle (`lockstep bundle`) and a configuration of a folder (`lockstep bundle
# --configuration`), loaded and run as an operator installs lockstep.
mkdir -p "$work/lockstep-conf"
printf 'export BINTRAY_WEBHOOK_SECRET=cd-secret\nexport LOCKSTEP_REPOSITORY=http://127.0.0.1:%s/repository\n' \
  "$port" >"$work/lockstep-conf/runtime-config.sh"
own_bundle=$("$root/target/debug/lockstep" bundle --output "$work" | head -n 1)
own_config=$("$root/target/debug/lockstep" bundle --configuration "$work/lockstep-conf" --output "$work" | head -n 1)
expect "conduct load of lockstep's bundle and configuration" "Bundle loaded." \
  "$(conduct load "$own_bundle" "$own_config" 2>&1)"
expect "conduct run lockstep" "expected scale 1 is met" "$(conduct run lockstep 2>&1)"
expect "conduct info shows lockstep running" "lockstep  *[0-9.]*  *1  *0  *1  *web" "$(conduct info 2>&1)"

# conduct deploy --webhook bintray --port <a sandbox's port>: the webhook, the deployment's
# events and the event stream go through the sandbox's control API to lockstep serve. Each of
# the two must know the other's port when it starts, so the forwarding sandbox is a second one
# (`lockstep demo` wires one sandbox both ways, in one process).
: >"$work/forwarder.out"
"$root/target/debug/lockstep" sandbox --listen 127.0.0.1:0 --data-dir "$work/forwarder" \
  --deployments "http://127.0.0.1:$serve_port" >"$work/forwarder.out" 2>"$work/forwarder.err" &
forwarder_pid=$!
for _ in $(seq 1 200); do
  [ "$(wc -l <"$work/forwarder.out")" -ge 3 ] && break
  sleep 0.05
done
forwarder_port=$(sed -n 's#^listening on http://127.0.0.1:##p' "$work/forwarder.out")
[ -n "$forwarder_port" ] || { echo "FAIL: the forwarding sandbox did not start:"; cat "$work/forwarder.err"; exit 1; }
expect "the sandbox says where it forwards" "^deployments forwarded to http://127.0.0.1:$serve_port$" \
  "$(cat "$work/forwarder.out")"
out=$(deploy_at "$forwarder_port" "${version%-*}" "${version##*-}" 2>&1) \
  || { echo "FAIL: conduct deploy through the sandbox:"; echo "$out"; exit 1; }
expect "conduct deploy through the sandbox sends the webhook" "Deployment id: " "$out"
id=$(sed -n 's/^Deployment id: //p' <<<"$out" | tr -d '[:space:]')
# It exits 0 once it saw the deployment succeed; the events say so too.
events=$(python3 -c "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:$forwarder_port/v2/deployments/$id').read().decode())")
expect "its events read through the sandbox end in success" '"eventType":"deploymentSuccess"' "$events"
# --api-version 1: the paths without /v2, forwarded as well. The version now running is
# deployed again (nothing to replace: it succeeds at once) and followed to its end.
out=$(deploy_at "$forwarder_port" "${version%-*}" "${version##*-}" --api-version 1 2>&1) \
  || { echo "FAIL: conduct deploy --api-version 1 through the sandbox:"; echo "$out"; exit 1; }
id=$(sed -n 's/^Deployment id: //p' <<<"$out" | tr -d '[:space:]')
events=$(python3 -c "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:$forwarder_port/deployments/$id').read().decode())")
expect "conduct deploy --api-version 1 through the sandbox follows it to its success" \
  '"eventType":"deploymentSuccess"' "$events"
# The incompatible version failed above: lockstep refuses it again (409, DESIGN.md rule 11), and
# the official client shows lockstep's line.
if out=$(deploy_at "$forwarder_port" "${incompatible%-*}" "${incompatible##*-}" --api-version 1 2>&1); then
  echo "FAIL: conduct deploy of a version that failed was accepted:"; echo "$out"; exit 1
fi
expect "conduct deploy of a version that failed shows lockstep's 409 line" \
  "version ${incompatible%-*} failed .*lockstep deploy --retry" "$out"
# A version published before the running one: the deployment refuses the downgrade before it
# loads anything, and the official client shows why.
if out=$(deploy_at "$forwarder_port" "${first%-*}" "${first##*-}" 2>&1); then
  echo "FAIL: conduct deploy of an older version succeeded:"; echo "$out"; exit 1
fi
expect "conduct deploy of an older version shows the refused downgrade" \
  "refused a downgrade: the repository published this version before the running ${version%-*}" "$out"
