"""The voice endpoint: time from the end of the input audio to the reply's first audio byte through ``POST /v1/voice``
(streamed: the reply spoken sentence by sentence while the LLM writes), beside the sum of the same three stages
called one after another (transcribe, chat, speak the whole reply) on the same services in the same run.

Target (issue 14): first audio at < 60% of that sum on the default stack. Usage::

    .venv/bin/python bench/voice.py                  # a fresh daemon with the default stack's three speech-path models
    .venv/bin/python bench/voice.py --url URL        # a running daemon whose stack is up
    .venv/bin/python bench/voice.py --runs 5 --asr whisper-base

Each run asks the same spoken questions (Piper speaks them first) at temperature 0, so the sequential and the
streamed turn produce the same reply. Prints the medians; asserts nothing; exits 0 when it could measure.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

import benchlib
from benchlib import BenchDaemon, Row, header, say, table

QUESTIONS = ["What are three things to see in Paris?", "How do plants make their food?",
             "Why is the sky blue?"]
CHAT = "qwen2.5-coder-1.5b-instruct"
TTS = "piper-en-us-joe"


def op(c: httpx.Client, name: str, **data: Any) -> Any:
    r = c.post(f"/api/v1/ops/{name}", json=data)
    if r.status_code >= 400:
        raise RuntimeError(f"{name}: HTTP {r.status_code} {r.text[:300]}")
    return r.json()


def sequential(c: httpx.Client, audio: bytes, asr: str, max_tokens: int) -> dict[str, float]:
    """The three stages one after another, each waited for: what a client without /v1/voice does."""
    from aima.ops.voice import DEFAULT_SYSTEM

    t0 = time.perf_counter()
    heard = op(c, "inference.transcribe", model=asr, audio=base64.b64encode(audio).decode(), filename="q.wav")
    t1 = time.perf_counter()
    reply = op(c, "inference.chat", model=CHAT, max_tokens=max_tokens, temperature=0,
               messages=[{"role": "system", "content": DEFAULT_SYSTEM}, {"role": "user", "content": heard["text"]}])
    t2 = time.perf_counter()
    op(c, "inference.speak", model=TTS, text=reply["text"][:4096] or "nothing")
    t3 = time.perf_counter()
    return {"asr": t1 - t0, "chat": t2 - t1, "tts": t3 - t2, "sum": t3 - t0, "reply": len(reply["text"])}


def streamed(c: httpx.Client, audio: bytes, asr: str, max_tokens: int) -> dict[str, float]:
    """/v1/voice with stream=true: the clock starts when the whole input audio has been sent."""
    form = {"model": CHAT, "transcription_model": asr, "speech_model": TTS, "stream": "true", "temperature": "0",
            "max_tokens": str(max_tokens)}
    first = None
    done: dict[str, Any] = {}
    t0 = time.perf_counter()
    with c.stream("POST", "/v1/voice", data=form, files={"file": ("q.wav", audio, "audio/wav")}) as r:
        if r.status_code >= 400:
            r.read()
            raise RuntimeError(f"/v1/voice: HTTP {r.status_code} {r.text[:300]}")
        for line in r.iter_lines():
            if not line.startswith("data:"):
                continue
            ev = json.loads(line[5:])
            if ev["type"] == "audio" and first is None:
                first = time.perf_counter() - t0
            if ev["type"] == "done":
                done = ev
    total = time.perf_counter() - t0
    return {"first_audio": first if first is not None else total, "total": total,
            "server_first_audio": done.get("timings", {}).get("first_audio_s") or total}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a running daemon with the three models up (default: start one)")
    ap.add_argument("--asr", default="whisper-tiny-en", help="the speech-recognition model")
    ap.add_argument("--runs", type=int, default=3, help="rounds over the questions")
    ap.add_argument("--max-tokens", type=int, default=120)
    args = ap.parse_args()
    header("voice: first audio of /v1/voice vs the three stages one after another")
    benchlib.install_signal_unwind()
    daemon = None
    root = Path(tempfile.mkdtemp(prefix="aima-bench-voice-"))
    try:
        url = args.url
        if url is None:
            daemon = BenchDaemon(root, "home")
            daemon.start()
            url = daemon.url
            say(f"bringing up {CHAT}, {args.asr}, {TTS} (pulled from the package index on first use)")
            r = daemon.cli("-o", "json", "up", "--no-check", "-m", CHAT, "-m", args.asr, "-m", TTS, timeout=1800)
            if r.returncode != 0:
                say(f"aima up failed: {r.stderr.strip()[-500:]}")
                return 1
        with httpx.Client(base_url=url, timeout=600, trust_env=False) as c:
            audios = [base64.b64decode(op(c, "inference.speak", model=TTS, text=q)["audio_b64"]) for q in QUESTIONS]
            streamed(c, audios[0], args.asr, args.max_tokens)  # warm every engine (prompt caches included) once
            seq, stm = [], []
            for n in range(args.runs):
                for q, a in zip(QUESTIONS, audios, strict=True):
                    s = sequential(c, a, args.asr, args.max_tokens)
                    v = streamed(c, a, args.asr, args.max_tokens)
                    seq.append(s)
                    stm.append(v)
                    say(f"run {n + 1} {q!r}: stages {s['asr']:.2f} + {s['chat']:.2f} + {s['tts']:.2f} = "
                        f"{s['sum']:.2f} s; /v1/voice first audio {v['first_audio']:.2f} s, all {v['total']:.2f} s")
        med = {k: statistics.median(x[k] for x in seq) for k in ("asr", "chat", "tts", "sum")}
        first = statistics.median(x["first_audio"] for x in stm)
        total = statistics.median(x["total"] for x in stm)
        ratios = [v["first_audio"] / s["sum"] for s, v in zip(seq, stm, strict=True)]
        paired = statistics.median(ratios)
        rows = [
            Row("first audio byte after the input (/v1/voice, streamed)", first, "s", med["sum"],
                "transcribe + chat + speak, one after another", target="< 60% of the sum", verdict=paired < 0.6,
                paired=paired),
            Row("whole voice turn (/v1/voice, streamed)", total, "s", med["sum"], "the same sum"),
            Row("  stage: transcription", med["asr"], "s"),
            Row("  stage: chat (whole reply)", med["chat"], "s"),
            Row("  stage: speech (whole reply)", med["tts"], "s"),
        ]
        print()
        print(table(rows))
        print(f"\n{len(seq)} turns ({args.runs} rounds x {len(QUESTIONS)} questions), medians; ratio 'p' = median of "
              f"the per-turn ratios; asr {args.asr}, chat {CHAT}, tts {TTS}; {benchlib.loadavg()}")
        return 0
    finally:
        if daemon is not None:
            daemon.cleanup()


if __name__ == "__main__":
    sys.exit(main())
