"""OpenAI front-door benchmark: aima's /v1 gateway vs the engine called directly vs the LiteLLM proxy; never asserts.

Run it with the project's interpreter (``make bench`` or ``.venv/bin/python bench/gateway.py``). It needs
``wrk`` (Debian: ``apt-get install -y wrk``) as the load generator, so that the client is not the bottleneck,
and LiteLLM's proxy in its own virtual environment, ``bench/.venv-litellm`` (made on first use with
``pip install 'litellm[proxy]'``; ``--no-litellm`` skips it), so that aima's environment stays clean.

Two upstreams, each behind the three front doors, streamed and not, at concurrency 1, 16 and 64, each run
bounded (``--duration`` seconds):

  (a) a stub engine (bench/stub_upstream.py) that answers at once: what the front door itself costs;
  (b) the real SmolLM2 135M engine (llama.cpp), ``--max-tokens`` tokens an answer: what that cost means.

Figures: requests/s, p50 and p99 latency; added latency = front door p50/p99 minus direct. Targets from
the issue, printed beside them: added p50 < 1 ms and p99 < 5 ms at c=1; real engine through aima >= 95% of
direct throughput at c=16 and 64; stub through aima >= 0.5x direct requests/s at c=64.

Every process and file it made is removed when it ends (also on Ctrl-C). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchlib import (
    AIMA,
    PY,
    BenchDaemon,
    Quiet,
    fmt,
    free_port,
    grid,
    header,
    install_signal_unwind,
    no_aima_env,
    say,
    start_process,
    stop_group,
)

HERE = Path(__file__).resolve().parent
STUB = HERE / "stub_upstream.py"
LITELLM_VENV = HERE / ".venv-litellm"
NEVER_STOP = {"0": -100, "2": -100}  # SmolLM2's <|endoftext|> and <|im_end|>: every answer has max_tokens tokens
# floor: bench/relay_floor.py, a bare byte relay; haproxy: HAProxy routing on the JSON "model" (when installed).
# Both in front of the stub only, at the highest concurrency only: references, not doors users would take.
DOORS = ("direct", "aima", "litellm", "floor", "haproxy")
REFERENCES = ("floor", "haproxy")
HAPROXY_CFG = """global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-buffer-request
frontend openai
  bind 127.0.0.1:{port}
  http-request set-var(txn.model) req.body,json_query('$.model')
  use_backend stub if {{ var(txn.model) -m str {model} }}
  default_backend unknown
backend stub
  http-reuse always
  server s1 {upstream}
backend unknown
  http-request return status 404 content-type application/json string '{{"error":{{"code":"model_not_found"}}}}'
"""
PROMPT = "Write one sentence about the sea."

LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[__BODY__]==]
answers = 0
pieces = 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
__RESPONSE__
function done(summary, latency, requests)
  local a, p = 0, 0
  for _, t in ipairs(threads) do
    a = a + (t:get("answers") or 0)
    p = p + (t:get("pieces") or 0)
  end
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50":%.1f,"p99":%.1f,"max":%.1f,"answers":%d,"pieces":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, a, p))
end
"""
# Counting tokens needs the body in Lua: only for the real engine (a few requests a second).
LUA_COUNT = r"""
function response(status, headers, body)
  answers = answers + 1
  local n = tonumber(string.match(body, '"completion_tokens"%s*:%s*(%d+)'))
  if n == nil then
    local _, k = string.gsub(body, '"content"%s*:%s*"[^"]', "")
    n = k
  end
  pieces = pieces + n
end
"""


def need_wrk() -> str:
    exe = shutil.which("wrk")
    if exe is None:
        sys.exit("bench: `wrk` (the HTTP load generator) is not installed; on Debian or Ubuntu: "
                 "apt-get install -y wrk  (or run without it: nothing else here can drive 64 connections fast "
                 "enough)")
    return exe


def litellm_exe(install: bool) -> Path | None:
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists() or not install:
        return exe if exe.exists() else None
    print(f"  .. installing litellm[proxy] into {LITELLM_VENV} (once; about a minute on 2 cores)", flush=True)
    t0 = time.monotonic()
    base = getattr(sys, "_base_executable", PY)
    subprocess.run([base, "-m", "venv", str(LITELLM_VENV)], check=True)
    r = subprocess.run([str(LITELLM_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "litellm[proxy]"],
                       capture_output=True, text=True)
    if r.returncode != 0 or not exe.exists():
        print(f"  !! pip install litellm[proxy] failed ({r.returncode}); LiteLLM is left out:\n{r.stderr[-1500:]}")
        return None
    say(f"installed LiteLLM in {time.monotonic() - t0:.0f} s")
    return exe


# ----------------------------------------------------------------------------- the front doors
class LiteLLM:
    """``litellm --config cfg.yaml --port P``: one process, a model_list entry per upstream (OpenAI-compatible),
    no master key (aima runs without one too), no database."""

    def __init__(self, exe: Path, root: Path, upstreams: dict[str, str]):
        self.exe = exe
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cfg = root / "litellm.yaml"
        lines = ["model_list:"]
        for name, base in upstreams.items():
            lines += [f"  - model_name: {name}", "    litellm_params:", f"      model: openai/{name}",
                      f"      api_base: {base}/v1", "      api_key: none"]
        lines += ["litellm_settings:", "  telemetry: false", "general_settings:",
                  "  dangerously_permit_weak_or_unset_master_key: true"]
        self.cfg.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "litellm.log"

    def start(self, timeout: float = 240) -> float:
        env = {**no_aima_env(), "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
        t0 = time.monotonic()
        self.proc = start_process([str(self.exe), "--config", str(self.cfg), "--host", "127.0.0.1", "--port",
                                   str(self.port)], env, self.log)
        with httpx.Client(timeout=2, trust_env=False) as c:
            while time.monotonic() - t0 < timeout:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"litellm exited {self.proc.returncode}: {self.tail()}")
                try:
                    if c.get(self.url + "/health/liveliness").status_code == 200:
                        return time.monotonic() - t0
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        raise RuntimeError(f"litellm did not come up within {timeout:g} s: {self.tail()}")

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:]) if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)


@dataclass
class Upstream:
    label: str
    model: str
    direct: str  # the engine's own URL
    real: bool
    max_tokens: int
    duration: float  # seconds of each wrk run
    doors: dict[str, str] = field(default_factory=dict)  # door -> base URL
    pids: dict[str, int] = field(default_factory=dict)  # door -> the process that serves it (its CPU is shown)
    rounds: int = 1  # runs of each door per case (alternating order)
    idle_s: float = 0.0  # a 1-token answer of the idle engine
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- wrk
@dataclass
class Result:
    rps: float  # answers with a 2xx status per second
    p50_ms: float
    p99_ms: float
    requests: int  # answers of any status
    errors: int  # non-2xx answers, connect/read/write errors, timeouts
    pieces_per_answer: float | None
    cpu: float | None = None  # CPU of the door's process over the run, in cores (1.0 = one core all the time)
    secs: float = 0.0
    good: int = 0
    rounds: list[float] = field(default_factory=list)  # requests/s of each run merged into this one

    def err_text(self) -> str:
        return str(self.errors) if self.errors else "0"

    def bad(self) -> bool:
        """More than 1% of the answers went wrong: its throughput and latency say little."""
        return self.errors > 0.01 * max(self.requests, 1)


def merge(rs: list[Result]) -> Result:
    """Several runs of one door as one: answers over the summed time; latency percentiles averaged."""
    if len(rs) == 1:
        return rs[0]
    secs = sum(r.secs for r in rs)
    good = sum(r.good for r in rs)
    pieces = [r.pieces_per_answer * r.requests for r in rs if r.pieces_per_answer is not None]
    cpus = [r.cpu for r in rs if r.cpu is not None]
    requests = sum(r.requests for r in rs)
    return Result(good / secs if secs else 0.0, statistics.mean(r.p50_ms for r in rs),
                  statistics.mean(r.p99_ms for r in rs), requests, sum(r.errors for r in rs),
                  sum(pieces) / requests if pieces and requests else None,
                  statistics.mean(cpus) if cpus else None, secs, good, [r.rps for r in rs])


def body_for(up: Upstream, stream: bool) -> str:
    b: dict[str, Any] = {"model": up.model, "messages": [{"role": "user", "content": PROMPT}],
                         "max_tokens": up.max_tokens, "temperature": 0, "stream": stream}
    if up.real:
        b["logit_bias"] = NEVER_STOP
    return json.dumps(b)


def run_wrk(wrk: str, root: Path, url: str, body: str, conns: int, duration: float, timeout: float,
            count: bool) -> Result:
    script = root / f"post-{os.getpid()}-{count}.lua"
    script.write_text(LUA.replace("__BODY__", body).replace("__RESPONSE__", LUA_COUNT if count else ""))
    argv = [wrk, "-t1", f"-c{conns}", f"-d{duration:g}s", f"--timeout={timeout:g}s", "-s", str(script), url]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=duration + timeout + 30)
    m = re.search(r"^WRKJSON (\{.*\})$", r.stdout, re.M)
    if r.returncode != 0 or m is None:
        raise RuntimeError(f"wrk failed ({r.returncode}): {r.stdout[-800:]} {r.stderr[-800:]}")
    d = json.loads(m.group(1))
    errors = d["connect"] + d["read"] + d["write"] + d["status"] + d["timeout"]
    per = d["pieces"] / d["answers"] if count and d["answers"] else None
    secs = d["duration_us"] / 1e6
    good = d["requests"] - d["status"]
    return Result(good / secs, d["p50"] / 1000, d["p99"] / 1000, d["requests"], errors, per, secs=secs, good=good)


def settle(limit: float = 30, below: float = 25) -> float:
    """Wait until the machine is idle again (a door that queued work goes on after the client stopped)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit and psutil.cpu_percent(interval=0.5) > below:
        pass
    return time.monotonic() - t0


def wait_ready(d: BenchDaemon, service: str, limit: float = 60) -> float | None:
    """None when aima holds the service ready; else the seconds it took to say ready again (bounded)."""
    t0 = time.monotonic()
    if d.op("service.get", service=service).get("ready"):
        return None
    while time.monotonic() - t0 < limit:
        time.sleep(0.25)
        if d.op("service.get", service=service).get("ready"):
            break
    return time.monotonic() - t0


def cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return t.user + t.system


def overhead_stats(d: BenchDaemon) -> tuple[float, int]:
    """The gateway's own ``aima_gateway_overhead_seconds`` (sum, count) over all routes."""
    text = d.http.get("/metrics").text
    s = sum(float(x) for x in re.findall(r"^aima_gateway_overhead_seconds_sum\{[^}]*\} (\S+)$", text, re.M))
    n = sum(float(x) for x in re.findall(r"^aima_gateway_overhead_seconds_count\{[^}]*\} (\S+)$", text, re.M))
    return s, int(n)


def drain(up: Upstream, idle_s: float, limit: float = 120) -> float:
    """Wait until the real engine has worked off what a run left queued (a probe answers as fast as when idle)."""
    t0 = time.monotonic()
    body = {"model": up.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    with httpx.Client(timeout=limit, trust_env=False) as c:
        while time.monotonic() - t0 < limit:
            t = time.perf_counter()
            c.post(up.direct + "/v1/chat/completions", json=body)
            if time.perf_counter() - t < max(3 * idle_s, 0.3):
                break
    return time.monotonic() - t0


def probe_s(up: Upstream) -> float:
    body = {"model": up.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    with httpx.Client(timeout=60, trust_env=False) as c:
        c.post(up.direct + "/v1/chat/completions", json=body)
        xs = []
        for _ in range(3):
            t = time.perf_counter()
            c.post(up.direct + "/v1/chat/completions", json=body).raise_for_status()
            xs.append(time.perf_counter() - t)
    return statistics.median(xs)


def custom_service(d: BenchDaemon, model: str, command: str, health: str) -> dict[str, Any]:
    """A service of ``model`` running ``command`` ({port} and {host} filled by aima), started and ready."""
    svc = d.op("service.create", model=model, command=command, health=health)
    out = d.op("service.start", service=svc["id"], wait=True, timeout_s=300)
    d.note_engines(out["service"])
    if out["outcome"] != "ready":
        raise RuntimeError(f"{model} did not become ready: {out['outcome']} {out.get('message')}")
    return out["service"]


def profile_top(raw: Path, n: int = 14) -> str:
    """py-spy's raw stacks as the functions with the most samples on top of the stack (self time)."""
    own: dict[str, int] = {}
    total = 0
    try:
        lines = raw.read_text().splitlines()
    except OSError as e:
        return f"    (no profile: {e})"
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or not stack:
            continue
        total += int(count)
        top = stack.split(";")[-1]
        m = re.match(r"(.*) \((.*?)(?::\d+)?\)$", top)
        key = f"{m.group(1)} ({m.group(2).split('site-packages/')[-1].split('/src/')[-1]})" if m else top
        own[key] = own.get(key, 0) + int(count)
    out = [f"    py-spy, the daemon during that run ({total} samples, self time, top {n}):"]
    for key, v in sorted(own.items(), key=lambda kv: -kv[1])[:n]:
        out.append(f"      {100 * v / max(total, 1):5.1f}%  {key}")
    return "\n".join(out)


def wait_listening(proc: subprocess.Popen[bytes], port: int, what: str, log: Path, timeout: float = 60) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode}: {log.read_text(errors='replace')[-800:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    stop_group(proc)
    raise RuntimeError(f"{what} did not come up in {timeout:g} s")


def start_floor(root: Path, upstream: str) -> tuple[subprocess.Popen[bytes], int]:
    """bench/relay_floor.py in front of ``upstream`` (host:port): the least a Python proxy does per request."""
    port = free_port()
    proc = start_process([PY, str(HERE / "relay_floor.py"), "--port", str(port), "--upstream", upstream],
                         no_aima_env(), root / "floor.log")
    wait_listening(proc, port, "the relay floor", root / "floor.log")
    return proc, port


def start_haproxy(root: Path, upstream: str, model: str) -> tuple[subprocess.Popen[bytes], int] | None:
    """HAProxy (C, one thread) in front of ``upstream``, choosing its backend by the body's ``model`` as aima
    does: how far a native data plane gets on this machine. None when haproxy is not installed."""
    exe = shutil.which("haproxy")
    if exe is None:
        say("haproxy is not installed (apt-get install -y haproxy): its reference figures are left out")
        return None
    port = free_port()
    cfg = root / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(port=port, upstream=upstream, model=model))
    proc = start_process([exe, "-db", "-f", str(cfg)], no_aima_env(), root / "haproxy.log")
    wait_listening(proc, port, "haproxy", root / "haproxy.log")
    return proc, port


def check_doors(up: Upstream) -> None:
    """One request per door and mode, so that a misconfigured door fails before the timed runs."""
    with httpx.Client(timeout=120, trust_env=False) as c:
        for door, base in up.doors.items():
            for stream in (False, True):
                r = c.post(base + "/v1/chat/completions", content=body_for(up, stream),
                           headers={"content-type": "application/json"})
                if r.status_code != 200 or (stream and b"data:" not in r.content):
                    raise RuntimeError(f"{door} ({base}) answered {r.status_code}: {r.text[:400]}")


# ----------------------------------------------------------------------------- the runs
@dataclass
class Case:
    up: Upstream
    stream: bool
    conns: int
    results: dict[str, Result] = field(default_factory=dict)
    overhead_us: float | None = None


def rotate(doors: list[str], i: int) -> Iterator[str]:
    for k in range(len(doors)):
        yield doors[(i + k) % len(doors)]


def run_upstream(up: Upstream, d: BenchDaemon, wrk: str, root: Path, quiet: Quiet, conc: list[int],
                 pyspy: str | None) -> list[Case]:
    cases: list[Case] = []
    doors = [x for x in DOORS if x in up.doors]
    if up.real:
        up.idle_s = probe_s(up)
        say(f"idle probe (1 token, direct): {up.idle_s * 1000:.0f} ms")
    i = 0
    for stream in (False, True):
        for conns in conc:
            case = Case(up, stream, conns)
            quiet.wait(f"{up.label} {'stream' if stream else 'json'} c={conns}")
            runs: dict[str, list[Result]] = {}
            order = [x for x in rotate(doors, i) if x not in REFERENCES or conns == max(conc)]  # references: top c
            for rnd in range(up.rounds):
                for door in (order if rnd % 2 == 0 else order[::-1]):
                    runs.setdefault(door, []).append(one_run(up, d, wrk, root, case, door, pyspy if rnd == 0 else None,
                                                             conc))
            for door, rs in runs.items():
                case.results[door] = merge(rs)
            if up.rounds > 1:
                say(f"{up.label:7} {'stream' if stream else 'json  '} c={conns:<3} over {up.rounds} rounds: "
                    + ", ".join(f"{door} {r.rps:.2f} req/s ({r.good} answers)" for door, r in case.results.items()))
            i += 1
            cases.append(case)
    return cases


def one_run(up: Upstream, d: BenchDaemon, wrk: str, root: Path, case: Case, door: str, pyspy: str | None,
            conc: list[int]) -> Result:
    duration = up.duration
    stream, conns = case.stream, case.conns
    url = up.doors[door] + "/v1/chat/completions"
    body = body_for(up, stream)
    timeout = duration + 10 if up.real else 10
    if not up.real:  # a short warm-up at the same concurrency: connections and pools are open
        run_wrk(wrk, root, url, body, conns, 1, timeout, False)
    before = overhead_stats(d) if door == "aima" else None
    spy: Path | None = None
    prof: subprocess.Popen[bytes] | None = None
    if pyspy and door == "aima" and not up.real and not stream and conns == max(conc):
        spy = root / "py-spy.raw"
        prof = subprocess.Popen([pyspy, "record", "-p", str(up.pids["aima"]), "-d", f"{duration - 1:g}",
                                 "-r", "200", "-f", "raw", "--nonblocking", "-o", str(spy)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cpu0, t_run = cpu_seconds(up.pids.get(door)), time.monotonic()
    res = run_wrk(wrk, root, url, body, conns, duration, timeout, up.real)
    cpu1 = cpu_seconds(up.pids.get(door))
    if cpu0 is not None and cpu1 is not None:
        res.cpu = (cpu1 - cpu0) / (time.monotonic() - t_run)
    if before is not None:
        after = overhead_stats(d)
        if after[1] > before[1]:
            ov = (after[0] - before[0]) / (after[1] - before[1]) * 1e6
            case.overhead_us = ov if case.overhead_us is None else (case.overhead_us + ov) / 2
    extra = f", {res.pieces_per_answer:.1f} tokens/answer" if res.pieces_per_answer is not None else ""
    cpu = f", its process {res.cpu:.2f} cores" if res.cpu is not None else ""
    say(f"{up.label:7} {'stream' if stream else 'json  '} c={conns:<3} {door:8} {res.rps:9.1f} req/s  "
        f"p50 {fmt(res.p50_ms, 'ms'):>9}  p99 {fmt(res.p99_ms, 'ms'):>9}  {res.requests} answers"
        + (f", {res.errors} errors" if res.errors else "") + extra + cpu)
    if spy is not None and prof is not None:
        prof.wait(30)
        print(profile_top(spy), flush=True)
    if up.real:
        took = drain(up, idle_s=up.idle_s)
        if took > 1:
            say(f"        (the engine worked off what the run left queued in {took:.0f} s)")
        back = wait_ready(d, up.model)
        if back is not None:
            note = (f"after the {door} run ({'stream' if stream else 'json'}, c={conns}) aima held {up.model} not "
                    f"ready (its health probe, GET /v1/models, waits behind the engine's queue and timed out); "
                    f"ready again {back:.1f} s later")
            say("        !! " + note)
            up.notes.append(note)
    took = settle()
    if took > 2:
        say(f"        (waited {took:.0f} s for the CPUs to go idle: a door's queued work, or other work here)")
    return res


# ----------------------------------------------------------------------------- report
def ratio(a: float | None, b: float | None) -> str:
    return f"x{a / b:.2f}" if a is not None and b else "-"


def ms(v: float | None) -> str:
    return "-" if v is None else fmt(v, "ms")


def added(door: Result | None, direct: Result | None, which: str) -> float | None:
    if door is None or direct is None:
        return None
    return getattr(door, which) - getattr(direct, which)


def tables(cases: list[Case]) -> str:
    out = []
    head = ["mode", "c", "direct req/s", "aima req/s", "aima/direct", "litellm req/s", "litellm/direct",
            "relay floor req/s", "haproxy req/s", "CPU direct/aima/litellm", "errors direct/aima/litellm"]
    body = []

    def cores(v: Result | None) -> str:
        return "-" if v is None or v.cpu is None else f"{v.cpu:.2f}"

    for c in cases:
        r = c.results
        g = {k: r.get(k) for k in DOORS}
        floor, hap = g.pop("floor"), g.pop("haproxy")
        errs = "/".join(v.err_text() if v else "-" for v in g.values())
        body.append(["stream" if c.stream else "json", str(c.conns)]
                    + [f"{g['direct'].rps:.1f}" if g["direct"] else "-", f"{g['aima'].rps:.1f}" if g["aima"] else "-",
                       ratio(g["aima"].rps if g["aima"] else None, g["direct"].rps if g["direct"] else None),
                       f"{g['litellm'].rps:.1f}" if g["litellm"] else "-",
                       ratio(g["litellm"].rps if g["litellm"] else None, g["direct"].rps if g["direct"] else None),
                       f"{floor.rps:.1f}" if floor else "-", f"{hap.rps:.1f}" if hap else "-",
                       "/".join(cores(v) for v in g.values()), errs])
    out.append(grid(head, body))
    out.append("")
    head = ["mode", "c", "direct p50", "aima p50", "added", "litellm p50", "added", "direct p99", "aima p99", "added",
            "litellm p99", "added", "aima's own overhead"]
    body = []
    for c in cases:
        r = c.results
        d, a, lt = r.get("direct"), r.get("aima"), r.get("litellm")
        body.append(["stream" if c.stream else "json", str(c.conns),
                     ms(d.p50_ms if d else None), ms(a.p50_ms if a else None), ms(added(a, d, "p50_ms")),
                     ms(lt.p50_ms if lt else None), ms(added(lt, d, "p50_ms")),
                     ms(d.p99_ms if d else None), ms(a.p99_ms if a else None), ms(added(a, d, "p99_ms")),
                     ms(lt.p99_ms if lt else None), ms(added(lt, d, "p99_ms")),
                     f"{c.overhead_us:.0f} us mean" if c.overhead_us is not None else "-"])
    out.append(grid(head, body))
    return "\n".join(out)


def targets(stub: list[Case], real: list[Case]) -> str:
    head = ["target", "mode", "aima", "result", "litellm (same figure)", "to read it"]
    body = []

    def verdict(ok: bool | None) -> str:
        return "-" if ok is None else ("pass" if ok else "MISS")

    def x(door: Result | None, direct: Result | None) -> float | None:
        return door.rps / direct.rps if door and direct and direct.rps else None

    def xs(v: float | None, r: Result | None = None) -> str:
        if r is not None and r.bad():
            return f"{r.errors} errors"
        return "-" if v is None else f"x{v:.2f}"

    for label, cases in (("stub", stub), ("smollm2", real)):
        for c in cases:
            d, a, lt, fl, hp = (c.results.get(k) for k in DOORS)
            mode = "stream" if c.stream else "json"
            broken = [f"{k} {v.errors} errors of {v.requests}" for k, v in (("direct", d), ("aima", a))
                      if v and v.bad()]
            if c.conns == 1:
                p50, p99 = added(a, d, "p50_ms"), added(a, d, "p99_ms")
                note = "; ".join(broken)
                if label == "smollm2" and d is not None and not broken:
                    own = f"{c.overhead_us:.0f} us" if c.overhead_us is not None else "-"
                    note = (f"aima's own overhead metric {own}; the engine alone varies by "
                            f"{fmt(d.p99_ms - d.p50_ms, 'ms')} (direct p99 - p50)")
                ok50 = None if p50 is None or broken else p50 < 1
                ok99 = None if p99 is None or broken else p99 < 5
                body.append([f"{label} c=1: added p50 < 1 ms", mode, ms(p50), verdict(ok50),
                             ms(added(lt, d, "p50_ms")), note])
                body.append([f"{label} c=1: added p99 < 5 ms", mode, ms(p99), verdict(ok99),
                             ms(added(lt, d, "p99_ms")), ""])
            if label == "smollm2" and c.conns in (16, 64):
                r = x(a, d)
                n = min(v.good for v in (a, d) if v is not None) if a and d else 0
                drift = [(max(v.rounds) - min(v.rounds)) / statistics.mean(v.rounds) for v in (a, d)
                         if v is not None and len(v.rounds) > 1 and statistics.mean(v.rounds)]
                note = "; ".join(broken) or (
                    f"{n} answers a door; " + (f"one door's runs differ by up to {100 * max(drift):.0f}%" if drift
                                              else f"+-{100 / n:.0f}% from counting alone") if n else "")
                body.append([f"{label} c={c.conns}: >= 0.95x direct req/s", mode, xs(r, a),
                             verdict(None if r is None or broken else r >= 0.95), xs(x(lt, d), lt), note])
            if label == "stub" and c.conns == 64:
                r = x(a, d)
                refs = [f"a bare byte relay in Python: {xs(x(fl, d))}" if fl is not None else "",
                        f"HAProxy (C) routing on the model: {xs(x(hp, d))}" if hp is not None else ""]
                note = "; ".join(broken) or "; ".join(r for r in refs if r)
                body.append([f"{label} c=64: >= 0.5x direct req/s", mode, xs(r, a),
                             verdict(None if r is None or broken else r >= 0.5), xs(x(lt, d), lt), note])
    return grid(head, body)


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=10, help="seconds of each wrk run on the stub")
    p.add_argument("--real-duration", type=float, default=8, help="seconds of each wrk run on the real engine")
    p.add_argument("--rounds", type=int, default=2,
                   help="runs of each door per case on the real engine, in alternating order (the engine's own "
                        "speed drifts: one run each would be compared at different moments)")
    p.add_argument("--concurrency", default="1,16,64", help="connections, comma-separated")
    p.add_argument("--max-tokens", type=int, default=16, help="tokens per answer of the real engine")
    p.add_argument("--only", choices=("stub", "real"), action="append", help="one upstream only (repeatable)")
    p.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out (and do not install it)")
    p.add_argument("--py-spy", metavar="PATH", help="a py-spy binary: profile the daemon during the stub's "
                                                    "json run at the highest concurrency and print where the time goes")
    p.add_argument("--max-wait", type=float, default=60, help="seconds to wait for a busy machine, each time")
    args = p.parse_args(argv)
    only = set(args.only or ("stub", "real"))
    conc = [int(x) for x in args.concurrency.split(",") if x.strip()]
    wrk = need_wrk()
    install_signal_unwind()

    header("aima OpenAI front-door benchmark")
    print(f"  client:  {subprocess.run([wrk, '-v'], capture_output=True, text=True).stdout.splitlines()[0][:60]}, "
          f"1 thread; {args.duration:g} s per run")
    quiet = Quiet(max_wait=args.max_wait)
    quiet.report("at the start")
    litellm = None if args.no_litellm else litellm_exe(install=True)
    if litellm is not None:
        version = subprocess.run([str(LITELLM_VENV / "bin" / "python"), "-c",
                                  "import importlib.metadata as m; print(m.version('litellm'))"],
                                 capture_output=True, text=True).stdout.strip()
        print(f"  litellm: {version} ({litellm})")
    t0 = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="aima-bench-gateway-"))
    d = BenchDaemon(root, "home")
    proxy: LiteLLM | None = None
    extra_procs: list[subprocess.Popen[bytes]] = []
    results: dict[str, list[Case]] = {"stub": [], "real": []}
    ups: list[Upstream] = []
    try:
        d.start()
        if "stub" in only:
            view = custom_service(d, "stub", f"{PY} {STUB} --port {{port}} --model {{model}}", "/health")
            ups.append(Upstream("stub", "stub", view["endpoint"], False, 16, args.duration))
            ups[-1].pids["direct"] = view["instances"][0]["pid"]
            floor = start_floor(root, view["endpoint"].removeprefix("http://"))
            ups[-1].doors["floor"], ups[-1].pids["floor"] = f"http://127.0.0.1:{floor[1]}", floor[0].pid
            extra_procs.append(floor[0])
            hap = start_haproxy(root, view["endpoint"].removeprefix("http://"), "stub")
            if hap is not None:
                ups[-1].doors["haproxy"], ups[-1].pids["haproxy"] = f"http://127.0.0.1:{hap[1]}", hap[0].pid
                extra_procs.append(hap[0])
        if "real" in only:
            t = time.monotonic()
            r = subprocess.run([AIMA, "-o", "json", "run", "smollm2-135m", "--detach"], env=d.env,
                               capture_output=True, text=True, timeout=900)
            if r.returncode != 0:
                raise RuntimeError(f"aima run smollm2-135m exited {r.returncode}: {r.stdout[-800:]} {r.stderr[-800:]}")
            view = d.op("service.get", service="smollm2-135m")
            d.note_engines(view)
            say(f"`aima run smollm2-135m --detach` (pull + start) took {time.monotonic() - t:.1f} s")
            say(f"engine: {view['command']}")
            ups.append(Upstream("smollm2", "smollm2-135m", view["endpoint"], True, args.max_tokens,
                                args.real_duration, rounds=max(1, args.rounds)))
            ups[-1].pids["direct"] = view["instances"][0]["pid"]
        assert d.proc is not None
        for up in ups:
            up.doors.update({"direct": up.direct, "aima": d.url})
            up.pids["aima"] = d.proc.pid
        if litellm is not None:
            proxy = LiteLLM(litellm, root, {u.model: u.direct for u in ups})
            say(f"litellm proxy up in {proxy.start():.1f} s at {proxy.url}")
            for up in ups:
                up.doors["litellm"] = proxy.url
                if proxy.proc is not None:
                    up.pids["litellm"] = proxy.proc.pid
        for up in ups:
            check_doors(up)
            print(f"\n[{up.label}] {up.model} at {up.direct}: " + ", ".join(f"{k} {v}" for k, v in up.doors.items())
                  + (f"; {up.max_tokens} tokens an answer (end-of-text suppressed)" if up.real else
                     "; a fixed answer, at once"))
            results["real" if up.real else "stub"] = run_upstream(up, d, wrk, root, quiet, conc, args.py_spy)
    except KeyboardInterrupt:
        print("\nbench: interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        if proxy is not None:
            proxy.stop()
        for proc in extra_procs:
            stop_group(proc)
        d.cleanup()
        shutil.rmtree(root, ignore_errors=True)

    print(f"\nsummary ({time.monotonic() - t0:.0f} s; wrk, 1 thread, {args.duration:g} s a run on the stub, "
          f"{args.rounds} x {args.real_duration:g} s on the engine; added = door minus direct, measured in the same "
          f"run; CPU = cores the door's own process used; printed, never asserted)")
    for key, title in (("stub", "(a) stub upstream (answers at once)"),
                       ("real", f"(b) SmolLM2 135M on llama.cpp, {args.max_tokens} tokens an answer")):
        if results[key]:
            print(f"\n{title}; errors = direct/aima/litellm\n{tables(results[key])}")
    print("\ntargets (from the issue)")
    print(targets(results["stub"], results["real"]))
    for up in ups:
        for note in up.notes:
            print(f"note: {note}")
    for note in quiet.notes:
        print(f"note: {note}")
    quiet.report("at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
