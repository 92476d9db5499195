"""Operator-agent evaluation: operator tasks against a fresh daemon, each judged by its effect on aima's state.

Run it with the project's interpreter and the engines installed (``.venv/bin/python bench/agent_eval.py``).
For each model it starts a fresh daemon in a temporary home, whose services run the in-package echo engine
(``python -m aima.engines.echo``: it starts in milliseconds, so the figures are the agent's), sets each task's
services up, asks the real ``aima -o json ask PROMPT`` (no terminal, no ``--yes``: destructive calls are
denied), and checks what is true afterwards — never the answer's wording. It prints, per task and in all:
success, rounds (model answers), seconds, tokens.

Models: the default offline one (``aima ask`` with nothing set: the catalog's small tool-capable model, pulled
through aima's model store and served by aima itself), and, when ``AIMA_AGENT_BASE_URL`` is set (with
``AIMA_AGENT_MODEL``, ``AIMA_AGENT_API_KEY``), that endpoint's model too. ``--only default|remote`` picks
one; ``--tasks N`` runs the first N tasks. Never asserts; exits 0 when it could measure.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import PY, Daemon, echo_cmd, grid, header, no_aima_env, say

DEFAULT_MODEL = "qwen2.5-coder-1.5b-instruct"
Check = Callable[["Env"], tuple[bool, str]]


@dataclass
class Env:
    d: Daemon
    tmp: Path
    out: dict[str, Any] = field(default_factory=dict)

    def state(self, name: str) -> str:
        try:
            return str(self.d.get(name)["state"])
        except Exception:  # noqa: BLE001 - a deleted service reads as gone
            return "gone"

    def svc(self, name: str, *, model: str | None = None, state: str = "running", **kw: Any) -> None:
        self.d.create(model or name, name=name, **kw)
        if state == "running":
            self.d.op("service.start", service=name)

    def audit(self) -> list[dict[str, Any]]:
        return self.d.cli_json("agent", "log", "-n", "500")["entries"]


@dataclass
class Task:
    name: str
    prompt: str
    setup: Callable[[Env], None]
    check: Check
    profile: str = "operator"


def states(**want: str) -> Check:
    def check(e: Env) -> tuple[bool, str]:
        got = {n: e.state(n) for n in want}
        return got == want, ", ".join(f"{n}={s}" for n, s in got.items())
    return check


def _flaky(e: Env) -> None:
    flag = e.tmp / "recover.ok"
    flag.unlink(missing_ok=True)
    cmd = (f"sh -c 'test -f {shlex.quote(str(flag))} || {{ echo \"error: license file missing\"; exit 3; }}; "
           f"exec {shlex.quote(PY)} -m aima.engines.echo --port {{port}} --model {{model}}'")
    e.d.op("service.create", model="recover", name="recover", command=cmd, restart="never")
    e.d.op("service.start", service="recover")
    flag.write_text("ok")  # the cause is gone now


def _created_with(name: str, **want: Any) -> Check:
    def check(e: Env) -> tuple[bool, str]:
        try:
            v = e.d.get(name)
        except Exception:  # noqa: BLE001
            return False, f"{name} does not exist"
        bad = {k: v.get(k) for k, w in want.items() if not (w(v.get(k)) if callable(w) else v.get(k) == w)}
        return not bad, f"{name}: {v['state']}" + (f", wrong {bad}" if bad else "")
    return check


def _denied(tool: str, name: str, still: str) -> Check:
    def check(e: Env) -> tuple[bool, str]:
        denied = [a for a in e.audit() if a["tool"] == tool and a["arguments"].get("service") == name
                  and a["outcome"] == "denied"]
        s = e.state(name)
        return bool(denied) and s == still, f"{name}={s}, {len(denied)} denied call(s)"
    return check


def _model_pulled(name: str) -> Check:
    def check(e: Env) -> tuple[bool, str]:
        names = [m["name"] for m in e.d.op("model.list")["models"] if m["present"]]
        return name in names, f"models: {', '.join(names)}"
    return check


def tasks(echo: str) -> list[Task]:
    def use(e: Env, name: str) -> None:
        e.d.op("inference.chat", model=name, prompt="busy")

    return [
        Task("start", "Start the service web.", lambda e: e.svc("web", state="created"), states(web="running")),
        Task("stop", "Stop the service api.", lambda e: e.svc("api"), states(api="stopped")),
        Task("restart", "Restart the service api.",
             lambda e: (e.svc("api"), e.out.update(pid=e.d.get("api")["instances"][0]["pid"])),
             lambda e: (e.state("api") == "running" and e.d.get("api")["instances"][0]["pid"] != e.out["pid"],
                        f"api={e.state('api')}")),
        Task("start-by-kind", "Start the embedding service.",
             lambda e: (e.svc("embeddings", model="all-minilm-l6-v2", state="created"),
                        e.svc("chat", model="smollm2-135m", state="created")),
             states(embeddings="running", chat="created")),
        Task("stop-idle", "Stop every service that is idle.",
             lambda e: (e.svc("idle-a"), e.svc("idle-b"), e.svc("busy"), use(e, "busy")),
             states(**{"idle-a": "stopped", "idle-b": "stopped", "busy": "running"})),
        Task("start-stopped", "Start every service that is stopped.",
             lambda e: (e.svc("a1"), e.svc("b1"), e.d.op("service.stop", service="a1"),
                        e.d.op("service.stop", service="b1"), e.svc("c1")),
             states(a1="running", b1="running", c1="running")),
        Task("stop-by-model", "Stop the service that serves the model llama-echo.",
             lambda e: (e.svc("first", model="llama-echo"), e.svc("second", model="other-echo")),
             states(first="stopped", second="running")),
        Task("two-actions", "Start the service web and stop the service api.",
             lambda e: (e.svc("web", state="created"), e.svc("api")), states(web="running", api="stopped")),
        Task("create", f"Create a service named notes for the model notes-model with the command: {echo}",
             lambda e: None, _created_with("notes", model="notes-model",
                                           command=lambda c: "aima.engines.echo" in (c or ""))),
        Task("create-start", f"Create a service named quick for the model quick-model with the command {echo} "
                             f"and start it.", lambda e: None, _created_with("quick", state="running")),
        Task("idle-ttl", f"Create a service named lazy for the model lazy-model with the command {echo} that stops "
                         f"itself after 600 idle seconds.", lambda e: None, _created_with("lazy", idle_ttl_s=600.0)),
        Task("recover", "The service recover failed earlier; its problem is fixed now. Start it again.", _flaky,
             states(recover="running")),
        Task("ready-or-start", "Is the service web ready? If it is not, start it.",
             lambda e: e.svc("web", state="created"), states(web="running")),
        Task("delete-denied", "Delete the service old.", lambda e: e.svc("old", state="created"),
             _denied("service.delete", "old", "created"), profile="admin"),
        Task("pinned-denied", "Stop the service keeper.", lambda e: e.svc("keeper", pinned=True),
             _denied("service.stop", "keeper", "running")),
        Task("pull", "Download the model smollm2-135m onto this machine.", lambda e: None,
             _model_pulled("smollm2-135m")),
        Task("stop-one-keep-other", "Stop the service api, but leave web running.",
             lambda e: (e.svc("api"), e.svc("web")), states(api="stopped", web="running")),
    ]


@dataclass
class Result:
    task: str
    ok: bool
    rounds: int | None
    seconds: float
    tokens: int | None
    saw: str


def reset(d: Daemon, keep: set[str]) -> None:
    for s in d.op("service.list")["services"]:
        if s["name"] not in keep:
            d.op("service.delete", service=s["name"])
    for m in d.op("model.list")["models"]:
        if m["name"] == "smollm2-135m":
            d.op("model.rm", model=m["name"], force=True)


def run_model(label: str, env: dict[str, str], todo: list[Task], tmp: Path) -> list[Result]:
    d = Daemon(tmp / f"home-{label}", env)
    d.start()
    results: list[Result] = []
    try:
        if not env.get("AIMA_AGENT_BASE_URL"):
            say(f"[{label}] pulling {DEFAULT_MODEL} through aima's model store (once)")
            r = d.cli("model", "pull", DEFAULT_MODEL, timeout=3600)
            if r.returncode != 0:
                say(f"[{label}] cannot pull the model: {r.stderr.strip()}")
                return results
            say(f"[{label}] warming up: the first ask starts the agent's model")
            t0 = time.monotonic()
            w = d.cli("-o", "json", "ask", "What is the daemon's status?", timeout=1800)
            say(f"[{label}] warm-up: exit {w.returncode} in {time.monotonic() - t0:.0f}s")
        keep = {s["name"] for s in d.op("service.list")["services"]}
        for t in todo:
            reset(d, keep)
            e = Env(d, tmp)
            t.setup(e)
            t0 = time.monotonic()
            r = d.cli("-o", "json", "ask", "--profile", t.profile, t.prompt, timeout=1800)
            secs = time.monotonic() - t0
            out: dict[str, Any] = {}
            if r.returncode == 0:
                out = json.loads(r.stdout)
            time.sleep(0.2)
            ok, saw = t.check(e)
            usage = out.get("usage") or {}
            tokens = (usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0) if usage else None
            if r.returncode != 0:
                saw = f"exit {r.returncode}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ''}; {saw}"
            results.append(Result(t.name, ok, out.get("rounds"), secs, tokens, saw))
            steps = " ".join(f"{s['tool']}{json.dumps(s['arguments'])}:{s['outcome']}" for s in out.get("steps", []))
            say(f"[{label}] {t.name}: {'ok' if ok else 'FAILED'} in {secs:.0f}s — {saw} — {steps[:300]}")
    finally:
        d.cleanup()
    return results


def report(label: str, results: list[Result]) -> None:
    if not results:
        print(f"\n{label}: no results")
        return
    body = [[r.task, "yes" if r.ok else "no", str(r.rounds or "-"), f"{r.seconds:.1f}",
             str(r.tokens if r.tokens is not None else "-"), r.saw[:70]] for r in results]
    print(f"\n{label}")
    print(grid(["task", "success", "rounds", "seconds", "tokens", "state afterwards"], body))
    n = len(results)
    won = sum(r.ok for r in results)
    rounds = [r.rounds for r in results if r.rounds]
    secs = [r.seconds for r in results]
    print(f"  success {won}/{n} = {100 * won / n:.0f}% (goal ≥ 60%); rounds mean "
          f"{statistics.mean(rounds) if rounds else 0:.1f}; seconds per task median {statistics.median(secs):.1f}, "
          f"mean {statistics.mean(secs):.1f}; tokens {sum(r.tokens or 0 for r in results):,} in all")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["default", "remote"], help="evaluate one model only")
    ap.add_argument("--tasks", type=int, help="run only the first N tasks")
    args = ap.parse_args()
    header("aima operator-agent evaluation (bench/agent_eval.py)")
    echo = echo_cmd()
    todo = tasks(echo)[: args.tasks or None]
    print(f"  tasks:   {len(todo)}, judged by aima's state afterwards; engine: {echo.split(' -m ')[1].split()[0]}")
    base = {**no_aima_env(), "AIMA_PORT_RANGE": "20000-29999"}
    remote = {k: os.environ[k] for k in ("AIMA_AGENT_BASE_URL", "AIMA_AGENT_MODEL", "AIMA_AGENT_API_KEY")
              if os.environ.get(k)}
    runs: list[tuple[str, dict[str, str]]] = []
    if args.only != "remote":
        runs.append((f"default offline model ({DEFAULT_MODEL}, served by aima)", base))
    if args.only != "default" and remote.get("AIMA_AGENT_BASE_URL"):
        runs.append((f"AIMA_AGENT_BASE_URL {remote['AIMA_AGENT_BASE_URL']} "
                     f"({remote.get('AIMA_AGENT_MODEL', 'its first model')})", {**base, **remote}))
    elif args.only == "remote":
        print("  AIMA_AGENT_BASE_URL is not set: no remote model to evaluate")
    reports = []
    with tempfile.TemporaryDirectory(prefix="aima-agent-eval-") as tmp:
        for i, (label, env) in enumerate(runs):
            reports.append((label, run_model(f"m{i}", env, todo, Path(tmp))))
    for label, results in reports:
        report(label, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
