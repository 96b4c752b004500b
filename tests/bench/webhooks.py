#!/usr/bin/env python3
"""The request path side by side, in ONE invocation and under the same load (wrk: 1 thread,
8 connections, loopback):

  noop      the ceiling: tests/bench/noop.rs, a thread-per-connection server that reads each
            request and answers 202 (built here with rustc -O)
  webhook   adnanh/webhook (Debian's `webhook`) verifying a body HMAC-SHA256: its reject path
            (bad signature, 403) and its accept path (good signature; runs /bin/true)
  serve     `lockstep serve` (dist build), against a sandbox
  minimal   `lockstep-minimal` (dist build), against a sandbox of its own

lockstep's paths: reject (a bad X-Lockstep-Signature over the body: 401/403), redelivery (the
version whose deployment is in flight, Bintray-signed: 202, the same id) and fresh (each request
a different version, Bintray-signed: 202 until --max-in-flight, then 503). Each kept alive and
with one connection per request (`Connection: close`). The share of a core the server and wrk
used in each run (which of the two was the limit), RSS after each run (and the growth since
the start), then RSS before and after all runs, binary sizes,
and the deployer and agent's own overhead: a scale-10 deployment on the sandbox with zero start
and stop delays, wall time per lock-step step.

The machine is shared and noisy: every figure is a median of REPEATS runs (default 3) taken in
this one invocation, and the ratios are what to read.

    python3 tests/bench/webhooks.py                 # REPEATS=3 DURATION=5s
    REPEATS=1 DURATION=2s python3 tests/bench/webhooks.py
    ONLY=webhook,serve python3 tests/bench/webhooks.py   # only these servers' cases
"""
import base64
import hashlib
import hmac
import json
import os
import pathlib
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "target" / "bench"
REPEATS = int(os.environ.get("REPEATS", "3"))
DURATION = os.environ.get("DURATION", "5s")
CONNECTIONS = 8
SECRET = "bench-secret"
WEBHOOK_PATH = "/deployments/typesafe/bundle/typesafe"


def need(program, package):
    if shutil.which(program):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", package], check=False,
                       stdout=subprocess.DEVNULL)
        if not shutil.which(program):
            subprocess.run(["apt-get", "update", "-q"], check=False, stdout=subprocess.DEVNULL)
            subprocess.run(["apt-get", "install", "-y", "-q", package], check=True,
                           stdout=subprocess.DEVNULL)
    if not shutil.which(program):
        sys.exit(f"the benchmark needs {program}: apt-get install {package}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0])


class Server:
    """A process started for the benchmark; `addr` is where it listens."""

    def __init__(self, name, argv, env=None, addr=None, stdout_lines=0):
        self.name = name
        self.proc = subprocess.Popen(argv, env=dict(os.environ, **(env or {})),
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        self.lines = []
        if addr is None:
            line = self.proc.stdout.readline()
            m = re.match(r"listening on http://(\S+)", line)
            if not m:
                sys.exit(f"{name} did not start: {line!r}")
            addr = m.group(1)
        for _ in range(stdout_lines):
            self.lines.append(self.proc.stdout.readline().strip())
        self.addr = addr
        self.wait_answers()

    def wait_answers(self):
        host, port = self.addr.rsplit(":", 1)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        sys.exit(f"{self.name} does not answer at {self.addr}")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def cpu_ticks(pid):
    """The CPU time of a process and of its waited-for children, in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15])
    except OSError:
        return 0


def settle(servers, quiet=0.3, limit=60):
    """Waits until no server has used CPU for `quiet` seconds (at most `limit`): webhook's accept
    path leaves a backlog of /bin/true runs that would otherwise steal the next case's CPU."""
    deadline = time.time() + limit
    last = None
    while time.time() < deadline:
        now = [cpu_ticks(s.proc.pid) for s in servers.values()]
        if now == last:
            return
        last = now
        time.sleep(quiet)


def request(addr, method, path, body=b"", headers=None):
    req = urllib.request.Request(f"http://{addr}{path}", data=body or None, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def lua_static(path, body, headers):
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body)}"]
    for k, v in headers.items():
        lines.append(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}")
    lines.append(f'wrk.path = "{WEBHOOK_PATH}"')
    path.write_text("\n".join(lines) + "\n")


def lua_fresh(path, headers, offset):
    """Each request a different version of visualizer (the Bintray scheme signs the package
    only, so one header signs them all)."""
    lines = ['wrk.method = "POST"', f'wrk.path = "{WEBHOOK_PATH}"']
    for k, v in headers.items():
        lines.append(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}")
    lines += [
        f"local n = {offset}",
        "request = function()",
        "  n = n + 1",
        "  local body = string.format('{\"package\":\"visualizer\",\"version\":\"9.9.9-%016x"
        + "0" * 48 + "\"}', n)",
        "  return wrk.format(nil, nil, nil, body)",
        "end",
    ]
    path.write_text("\n".join(lines) + "\n")


def wrk(addr, script, close, server_pid):
    """One wrk run; with the share of a core that the server and wrk itself used during it (which
    of the two is the limit)."""
    argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION}", "--latency", "-s", str(script)]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"http://{addr}{WEBHOOK_PATH}")
    server_before = cpu_ticks(server_pid)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    wall = time.monotonic() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (children.ru_utime - children_before.ru_utime
               + children.ru_stime - children_before.ru_stime)
    server_cpu = (cpu_ticks(server_pid) - server_before) / os.sysconf("SC_CLK_TCK")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    non2xx = int(m.group(1)) if m else 0
    m = re.search(r"(\d+) requests in", out)
    total = int(m.group(1)) if m else 0
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p99": p99_ms, "non2xx": non2xx, "total": total,
            "errors": errors.group(1) if errors else "",
            "cpu": f"cpu server {server_cpu / wall:.0%} wrk {wrk_cpu / wall:.0%}"}


def lockstep_signature(body, t, good):
    mac = hmac.new(SECRET.encode(), f"{t}.".encode() + body.encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac if good else '0' * 64}"


def bintray_signature(package):
    return base64.b64encode(hmac.new(SECRET.encode(), package.encode(),
                                     hashlib.sha256).digest()).decode()


def deployer_overhead(lockstep, work):
    """Wall time per lock-step step of a scale-10 deployment with zero start and stop delays."""
    sandbox = Server("sandbox", [lockstep, "sandbox", "--listen", "127.0.0.1:0", "--demo",
                                 "--start-delay", "0ms", "--stop-delay", "0ms",
                                 "--data-dir", str(work / "overhead-sandbox")], stdout_lines=5)
    versions = [l.split()[1] for l in sandbox.lines if l.startswith("version ")]
    running = versions[0].split(":", 1)[1].rsplit("-", 1)[1]
    new = versions[1].split(":", 1)[1]
    status, _ = request(sandbox.addr, "PUT", f"/v2/bundles/{running[:32]}?scale=10")
    assert status == 200, status
    deadline = time.time() + 20
    while time.time() < deadline:
        _, body = request(sandbox.addr, "GET", "/v2/bundles")
        if sum(1 for e in json.loads(body)[0]["bundleExecutions"] if e["isStarted"]) == 10:
            break
        time.sleep(0.02)
    serve = Server("serve", [lockstep, "serve", "--listen", "127.0.0.1:0",
                             "--conductr", f"http://{sandbox.addr}",
                             "--repository", f"http://{sandbox.addr}/repository",
                             "--data-dir", str(work / "overhead-serve"),
                             "--poll-interval", "10ms", "--log-level", "warn"],
                   env={"BINTRAY_WEBHOOK_SECRET": SECRET})
    body = json.dumps({"package": "visualizer", "version": new})
    started = time.time()
    status, answer = request(serve.addr, "POST", WEBHOOK_PATH, body.encode(),
                             {"Content-Type": "application/json",
                              "X-Bintray-Hook-Hmac": bintray_signature("visualizer")})
    assert status == 202, (status, answer)
    dep = answer.decode().strip()
    while True:
        _, events = request(serve.addr, "GET", f"/deployments/{dep}")
        types = [e["eventType"] for e in json.loads(events)]
        if types and types[-1] in ("deploymentSuccess", "deploymentFailure"):
            break
        time.sleep(0.005)
    elapsed = time.time() - started
    steps = sum(1 for t in types if t == "deploy") - 1
    serve.stop()
    sandbox.stop()
    assert types[-1] == "deploymentSuccess", types
    return elapsed, steps


def main():
    need("wrk", "wrk")
    need("webhook", "webhook")
    OUT.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cargo", "build", "-q", "--profile", "dist", "-p", "lockstep",
                    "-p", "lockstep-minimal"], cwd=ROOT, check=True)
    noop_bin = OUT / "noop"
    subprocess.run(["rustc", "-O", "--edition", "2024", "-o", str(noop_bin),
                    str(ROOT / "tests" / "bench" / "noop.rs")], check=True)
    lockstep = str(ROOT / "target" / "dist" / "lockstep")
    minimal = str(ROOT / "target" / "dist" / "lockstep-minimal")
    work = pathlib.Path(tempfile.mkdtemp(prefix="lockstep-bench-"))

    # One sandbox per lockstep server: a cluster runs one deployment of a version, and a
    # second server notified of it would find it already loaded and fail (409, rule 11), so
    # its "redelivery" runs would measure a refusal.
    sandboxes = {}
    for name in ("serve", "minimal"):
        sandboxes[name] = Server(f"sandbox-{name}",
                                 [lockstep, "sandbox", "--listen", "127.0.0.1:0", "--demo",
                                  "--data-dir", str(work / f"sandbox-{name}")], stdout_lines=5)
    lines = sandboxes["serve"].lines
    in_flight = next(l.split()[1].split(":", 1)[1] for l in lines if l.endswith(" compatible"))
    digest = in_flight.rsplit("-", 1)[1]
    # The redelivered version's deployment never ends: its instances never start.
    for sandbox in sandboxes.values():
        status, _ = request(sandbox.addr, "POST", "/sandbox/faults",
                            json.dumps({"bundles": [{"match": digest[:12], "neverStart": True}]})
                            .encode())
        assert status == 200

    hooks = work / "hooks.json"
    hooks.write_text(json.dumps([{
        "id": "deploy", "execute-command": "/bin/true",
        "trigger-rule-mismatch-http-response-code": 403,
        "trigger-rule": {"match": {"type": "payload-hmac-sha256", "secret": SECRET,
                                   "parameter": {"source": "header",
                                                 "name": "X-Hub-Signature-256"}}}}]))
    webhook_port = free_port()
    env = {"BINTRAY_WEBHOOK_SECRET": SECRET}
    def common(name):
        addr = sandboxes[name].addr
        return ["--listen", "127.0.0.1:0", "--conductr", f"http://{addr}",
                "--repository", f"http://{addr}/repository", "--step-deadline", "1h"]
    servers = {
        "noop": Server("noop", [str(noop_bin)]),
        "webhook": Server("webhook", ["webhook", "-hooks", str(hooks), "-ip", "127.0.0.1",
                                      "-port", str(webhook_port), "-urlprefix", "deployments",
                                      "-template=false"],
                          addr=f"127.0.0.1:{webhook_port}"),
        "serve": Server("serve", [lockstep, "serve", *common("serve"),
                                  "--data-dir", str(work / "serve")], env=env),
        "minimal": Server("minimal", [minimal, *common("minimal"),
                                      "--data-dir", str(work / "minimal")], env=env),
    }
    body = json.dumps({"package": "visualizer", "version": in_flight}, separators=(",", ":"))
    bintray = {"Content-Type": "application/json",
               "X-Bintray-Hook-Hmac": bintray_signature("visualizer")}
    for name in ("serve", "minimal"):
        status, answer = request(servers[name].addr, "POST", WEBHOOK_PATH, body.encode(), bintray)
        assert status == 202, (name, status, answer)

    scripts = work / "scripts"
    scripts.mkdir()
    t = int(time.time())
    lua_static(scripts / "reject.lua", body,
               {"Content-Type": "application/json",
                "X-Lockstep-Signature": lockstep_signature(body, t, good=False)})
    lua_static(scripts / "redelivery.lua", body, bintray)
    good_hub = "sha256=" + hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
    lua_static(scripts / "webhook-reject.lua", body,
               {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + "0" * 64})
    lua_static(scripts / "webhook-accept.lua", body,
               {"Content-Type": "application/json", "X-Hub-Signature-256": good_hub})
    lua_static(scripts / "noop.lua", body, {"Content-Type": "application/json"})

    # webhook serves its hook at /deployments/deploy: point its scripts there.
    for s in ("webhook-reject.lua", "webhook-accept.lua"):
        text = (scripts / s).read_text().replace(WEBHOOK_PATH, "/deployments/deploy")
        (scripts / s).write_text(text)

    cases = [("noop", "ceiling", "noop.lua"),
             ("webhook", "reject", "webhook-reject.lua"),
             ("webhook", "accept", "webhook-accept.lua")]
    for name in ("serve", "minimal"):
        cases += [(name, "reject", "reject.lua"), (name, "redelivery", "redelivery.lua"),
                  (name, "fresh", None)]
    only = os.environ.get("ONLY")
    if only:
        cases = [c for c in cases if c[0] in only.split(",")]
    rss_before = {n: rss_kib(s.proc.pid) for n, s in servers.items()}
    results = {}
    wrong_paths = []
    fresh_offset = 0
    # All kept-alive runs first: the one-connection-per-request runs leave tens of thousands of
    # sockets in TIME_WAIT, which slow the kernel's connection handling for a minute after.
    for close in (False, True):
        for repeat in range(REPEATS):
            for name, path, script in cases:
                if script is None:
                    fresh_offset += 10_000_000
                    script_path = scripts / f"fresh-{fresh_offset}.lua"
                    lua_fresh(script_path, bintray, fresh_offset)
                else:
                    script_path = scripts / script
                settle(servers)
                r = wrk(servers[name].addr, script_path, close, servers[name].proc.pid)
                results.setdefault((name, path, close), []).append(r)
                mode = "close" if close else "keep-alive"
                # RSS after each run: which path grows a server, and by how much.
                rss = rss_kib(servers[name].proc.pid)
                print(f"run {repeat + 1}/{REPEATS} {mode:10} {name:8} {path:10} "
                      f"{r['rps']:>9.0f} req/s  p99 {r['p99']:6.2f} ms  "
                      f"non-2xx {r['non2xx']}/{r['total']}  {r['errors']}  {r['cpu']}  "
                      f"rss {rss} KiB (+{rss - rss_before[name]})", flush=True)
                # A run that measured another path than its name says is no measurement.
                wrong = {"redelivery": r["non2xx"] > 0, "reject": r["non2xx"] < r["total"]}
                if name in ("serve", "minimal") and wrong.get(path):
                    wrong_paths.append(f"{name} {path} (run {repeat + 1}, {mode}): "
                                       f"{r['non2xx']} of {r['total']} answers were refusals")
    rss_after = {n: rss_kib(s.proc.pid) for n, s in servers.items()}
    for s in servers.values():
        s.stop()
    for sandbox in sandboxes.values():
        sandbox.stop()

    def med(name, path, close, key="rps"):
        return statistics.median(r[key] for r in results[(name, path, close)])

    print()
    print(f"medians of {REPEATS} runs, {DURATION} each, wrk -t1 -c{CONNECTIONS}, "
          f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores")
    print(f"{'':10} {'server':8} {'path':10} {'req/s':>9} {'p99 ms':>7} "
          f"{'x ceiling':>9} {'x webhook':>9} {'p99 x webhook':>13}")
    for close in (False, True):
        mode = "close" if close else "keep-alive"
        ceiling = med("noop", "ceiling", close)
        for name, path, _ in cases:
            rps = med(name, path, close)
            p99 = med(name, path, close, "p99")
            peer = "accept" if path in ("redelivery", "fresh", "accept") else "reject"
            if name in ("noop",):
                peer_rps = peer_p99 = float("nan")
            else:
                peer_rps = med("webhook", peer, close)
                peer_p99 = med("webhook", peer, close, "p99")
            print(f"{mode:10} {name:8} {path:10} {rps:>9.0f} {p99:>7.2f} {rps / ceiling:>9.2f} "
                  f"{rps / peer_rps:>9.2f} {p99 / peer_p99:>13.2f}")
    print()
    print("RSS (KiB) before and after the runs:")
    for n in servers:
        ratio = rss_after[n] / rss_after["webhook"]
        print(f"  {n:8} {rss_before[n]:>7} -> {rss_after[n]:>7}  (+{rss_after[n] - rss_before[n]}"
              f" KiB; {ratio:.2f}x webhook's)")
    print("binary sizes (bytes):")
    for label, path in (("lockstep", lockstep), ("lockstep-minimal", minimal),
                        ("webhook", shutil.which("webhook"))):
        print(f"  {label:17} {os.path.getsize(path):>10}")
    elapsed, steps = deployer_overhead(lockstep, work)
    print(f"deployer + agent: a scale-10 deployment, zero start and stop delays: {elapsed * 1000:.0f}"
          f" ms for {steps} lock-step steps = {elapsed * 1000 / steps:.2f} ms per step")
    shutil.rmtree(work, ignore_errors=True)
    if wrong_paths:
        sys.exit("not measured as named:\n  " + "\n  ".join(wrong_paths))


if __name__ == "__main__":
    main()
