"""Default chat model: SmolLM2-135M vs Qwen2.5-Coder-1.5B-Instruct on the same plain questions, through aima.

Run it with the project's interpreter and the engines installed (``.venv/bin/python bench/chat_models.py``).
A fresh daemon in a temporary home pulls both catalog models through aima's model store, serves one at a
time with llama.cpp as the catalog renders it for this machine (``service.run``), and asks each the same ten
plain questions (temperature 0, at most 64 tokens, streamed), judged by whether the answer holds the expected
word. Figures: right answers, decode tokens/s, time to first token, seconds per answer, the engine's memory.
``--settings`` also times Qwen's answer to an agent-sized prompt (the operator tools, ~3k tokens) under a few
llama.cpp settings, to pick the ones that serve it best. Never asserts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchlib import Daemon, grid, header, no_aima_env, say

QUESTIONS = [
    ("What is the capital of France? Answer in one short sentence.", "paris"),
    ("What is 12 times 7? Answer with the number.", "84"),
    ("Which planet is the largest in our solar system?", "jupiter"),
    ("Who wrote Romeo and Juliet?", "shakespeare"),
    ("At what temperature in Celsius does water boil at sea level?", "100"),
    ("What is the chemical symbol for gold?", "au"),
    ("How many days are in a leap year?", "366"),
    ("Translate 'thank you' into Spanish.", "gracias"),
    ("What is the opposite of 'hot'?", "cold"),
    ("What is the capital of Japan?", "tokyo"),
]
MODELS = ("smollm2-135m", "qwen2.5-coder-1.5b-instruct")


def rss(d: Daemon, name: str) -> float | None:
    pid = d.get(name)["instances"][0]["pid"]
    try:
        p = psutil.Process(pid)
        return sum(c.memory_info().rss for c in [p, *p.children(recursive=True)]) / 2**30
    except psutil.Error:
        return None


def plain(d: Daemon, name: str) -> dict[str, Any]:
    right, tps, ttft, secs, rows = 0, [], [], [], []
    for q, want in QUESTIONS:
        t0 = time.monotonic()
        out = d.op("inference.chat", model=name, prompt=q, max_tokens=64, temperature=0, stream=True)
        secs.append(time.monotonic() - t0)
        ok = want in out["text"].lower()
        right += ok
        if out.get("tokens_per_s"):
            tps.append(out["tokens_per_s"])
        if out.get("ttft_s"):
            ttft.append(out["ttft_s"])
        rows.append((ok, " ".join(out["text"].split())[:70]))
    return {"right": right, "tps": statistics.median(tps) if tps else None,
            "ttft": statistics.median(ttft) if ttft else None, "secs": statistics.mean(secs), "rows": rows}


def agent_prompt_seconds(d: Daemon, name: str) -> tuple[float, float]:
    """Seconds for one agent-shaped request (operator tools + system prompt, cold), then again (prefix cached)."""
    from aima.agent.prompt import system_prompt
    from aima.agent.tools import openai_tools, toolset
    from aima.ops.registry import load_all

    body = {"model": name, "temperature": 0, "max_tokens": 48, "tools": openai_tools(toolset("operator", load_all())),
            "tool_choice": "auto", "messages": [{"role": "system", "content": system_prompt("operator")},
                                                {"role": "user", "content": "Which services are running?"}]}
    out = []
    with httpx.Client(base_url=d.url, timeout=900, trust_env=False) as c:
        for i in range(2):
            body["messages"][1]["content"] = f"Which services are running? ({i})"
            t0 = time.monotonic()
            r = c.post("/v1/chat/completions", json=body)
            r.raise_for_status()
            out.append(time.monotonic() - t0)
    return out[0], out[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settings", action="store_true", help="also time Qwen's agent prompt under a few settings")
    args = ap.parse_args()
    header("Default chat model: SmolLM2-135M vs Qwen2.5-Coder-1.5B (bench/chat_models.py)")
    results: dict[str, dict[str, Any]] = {}
    timing: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="aima-chat-models-") as tmp:
        d = Daemon(Path(tmp) / "home", no_aima_env())
        d.start()
        try:
            for m in MODELS:
                say(f"pulling {m} through aima's model store")
                r = d.cli("model", "pull", m, timeout=3600)
                if r.returncode != 0:
                    say(f"cannot pull {m}: {r.stderr.strip()}")
                    return 0
            for m in MODELS:
                t0 = time.monotonic()
                run = d.op("service.run", model=m)
                if run["outcome"] != "ready":
                    say(f"{m}: {run['outcome']} {run['message']}")
                    continue
                say(f"{m} ready in {time.monotonic() - t0:.1f}s: {run['service']['command']}")
                results[m] = {**plain(d, m), "rss": rss(d, m)}
                if args.settings and m.startswith("qwen"):
                    for label, cfg in (("catalog (n_ctx 8192, n_batch 512)", {}),
                                       ("n_batch 1024", {"n_batch": "1024"}), ("n_batch 256", {"n_batch": "256"})):
                        name = f"q-{len(timing)}"
                        if cfg:
                            d.op("service.stop", service=m)
                            out = d.op("service.run", model=m, name=name, config=cfg)
                            if out["outcome"] != "ready":
                                continue
                        else:
                            name = m
                        cold, warm = agent_prompt_seconds(d, name)
                        timing.append([label, f"{cold:.1f}", f"{warm:.1f}"])
                        if cfg:
                            d.op("service.delete", service=name)
                d.op("service.stop", service=m)
        finally:
            d.cleanup()
    body = []
    for m, r in results.items():
        body.append([m, f"{r['right']}/{len(QUESTIONS)}", f"{r['tps']:.1f}" if r["tps"] else "-",
                     f"{r['ttft']:.2f}" if r["ttft"] else "-", f"{r['secs']:.2f}",
                     f"{r['rss']:.2f}" if r["rss"] else "-"])
    print()
    print(grid(["model", "right", "decode tok/s (median)", "first token s (median)", "s per answer", "engine GiB"],
               body))
    for m, r in results.items():
        print(f"\n{m}:")
        for (q, _), (ok, text) in zip(QUESTIONS, r["rows"], strict=True):
            print(f"  {'ok ' if ok else 'BAD'} {q[:45]:45}  {text}")
    if timing:
        print()
        print(grid(["Qwen settings", "agent prompt cold s", "again, prefix cached s"], timing))
    print(json.dumps({m: {k: v for k, v in r.items() if k != "rows"} for m, r in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
