#!/usr/bin/env bash
# The README's HAProxy configuration, checked with a real HAProxy: the `frontend conductr_http`
# and `backend lockstep` blocks are taken from README.md as written (only the two addresses are
# replaced by free loopback ports), put in front of `lockstep demo`, and a deployment is sent,
# followed and read through it, the event stream included.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v haproxy >/dev/null || { echo "FAIL: haproxy is not installed (apt-get install haproxy)" >&2; exit 1; }
command -v curl >/dev/null || { echo "FAIL: curl is not installed" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  # TERM: a background job of a script ignores SIGINT; both lockstep and HAProxy stop on TERM.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Waits up to 60 s for a command to succeed.
wait_for() {
  local what=$1; shift
  for _ in $(seq 600); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "FAIL: timed out waiting for $what" >&2
  exit 1
}

# The README's blocks, from `frontend conductr_http` to the backend's `server` line.
awk '/^    frontend conductr_http$/ {on=1} on {print} on && /^        server lockstep / {exit}' README.md \
  | sed 's/^    //' > "$work/readme.cfg"
grep -q '^backend lockstep$' "$work/readme.cfg" || { echo "FAIL: the README's HAProxy blocks were not found" >&2; exit 1; }

cargo build --quiet --release -p lockstep
./target/release/lockstep demo > "$work/demo.out" 2> "$work/demo.err" &
pids+=($!)
wait_for "lockstep demo to deploy" grep -q '^Ctrl-C to stop.$' "$work/demo.out"
lockstep=$(grep -o 'lockstep          http://[0-9.:]*' "$work/demo.out" | awk '{print $2}' | sed 's|http://||')

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
{
  printf 'global\n    log stderr format short local0\n\n'
  printf 'defaults\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\n'
  sed -e "s|bind :9000|bind 127.0.0.1:$port|" -e "s|127.0.0.1:9010|$lockstep|" "$work/readme.cfg"
} > "$work/haproxy.cfg"
haproxy -c -f "$work/haproxy.cfg"
haproxy -db -f "$work/haproxy.cfg" 2> "$work/haproxy.err" &
pids+=($!)
proxy="http://127.0.0.1:$port"
wait_for "HAProxy to listen" curl -sf "$proxy/deployments"

# Through HAProxy: the listing, then the demo's printed `lockstep deploy` (pointed at the proxy),
# followed to its end; /v2 too; anything else is not routed to lockstep.
curl -sf "$proxy/deployments" | grep -q '"state":"succeeded"'
grep -A2 '# visualizer 1.2.0' "$work/demo.out" | tail -n 2 | sed -e 's/^ *//' -e "s|http://$lockstep|$proxy|" > "$work/deploy.sh"
grep -q -- "--url $proxy " "$work/deploy.sh" || { echo "FAIL: the demo's deploy command names no --url: $(cat "$work/deploy.sh")" >&2; exit 1; }
# `lockstep deploy` through the proxy: the webhook, then the deployment followed over the event
# stream and its reads, all through HAProxy, to its success.
answer=$(sh -e "$work/deploy.sh") || { echo "FAIL: lockstep deploy through HAProxy: $answer" >&2; exit 1; }
grep -q '\] Success$' <<<"$answer" || { echo "FAIL: lockstep deploy through HAProxy did not succeed: $answer" >&2; exit 1; }
id=$(sed -n 's/^Deployment id: //p' <<<"$answer")
wait_for "the deployment to be listed as succeeded through HAProxy" sh -c "curl -sf '$proxy/v2/deployments/$id' | grep -q deploymentSuccess"
events=$(curl -sN --max-time 5 "$proxy/deployments/events" || true)
grep -qx ':' <<<"$events" || { echo "FAIL: no heartbeat through HAProxy: $events" >&2; exit 1; }
status=$(curl -s -o /dev/null -w '%{http_code}' "$proxy/healthz")
[ "$status" = 503 ] || { echo "FAIL: /healthz is not routed to lockstep, yet answered $status" >&2; exit 1; }
echo "ok: the README's HAProxy configuration routes /deployments and /v2/deployments to lockstep"
