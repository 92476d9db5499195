"""The load ``bench.run`` puts on a served model, and the figures it reads off the answers.

A level is a closed loop: ``concurrency`` workers each send a request as soon as their last one is answered,
until ``requests`` have been sent (or ``duration_s`` has passed; requests in flight then finish and count).
Its duration runs from the first request's start to the last answer's end, the way NVIDIA's aiperf and
vLLM's ``benchmark_serving`` count it, so the rates (output tokens/s, requests/s, embeddings/s, seconds of
audio per second) are totals over that duration and the latencies are percentiles over the requests
(linear interpolation, as numpy's default).

A door is the way to the engine: ``gateway`` (HTTP to this daemon's own ``/v1``, as any client) or
``direct`` (the instance's own port, reached through ``controller.acquire`` like every inference
operation, so the request is counted as use and balanced over replicas).

Chat is streamed: time to first token (TTFT) is the first piece of content, time per output token the rest
of the answer over the tokens after the first. Output tokens are the engine's own count (``usage`` of the
stream, asked for with ``stream_options.include_usage``), else the pieces received. ``min_tokens`` equal to
``max_tokens`` asks the engine for answers of exactly that length (llama.cpp, vLLM and SGLang take it; an
engine that refuses it is asked without, and the result says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import httpx

from aima.errors import AimaError


# ---------------------------------------------------------------------------- figures, as data
class Figure(NamedTuple):
    key: str
    label: str
    unit: str
    better: str  # "higher" or "lower"


FIGURES: dict[str, tuple[Figure, ...]] = {
    "llm": (
        Figure("ttft_p50_s", "TTFT p50", "s", "lower"),
        Figure("ttft_p99_s", "TTFT p99", "s", "lower"),
        Figure("tpot_p50_s", "time per output token p50", "s", "lower"),
        Figure("output_tokens_per_s", "output tokens/s", "tok/s", "higher"),
        Figure("requests_per_s", "requests/s", "req/s", "higher"),
        Figure("latency_p50_s", "latency p50", "s", "lower"),
        Figure("latency_p99_s", "latency p99", "s", "lower"),
        Figure("prompt_tokens_mean", "prompt tokens (mean)", "tok", "none"),
        Figure("output_tokens_mean", "output tokens (mean)", "tok", "none"),
    ),
    "embedding": (
        Figure("embeddings_per_s", "embeddings/s", "emb/s", "higher"),
        Figure("latency_p50_s", "latency p50", "s", "lower"),
        Figure("latency_p99_s", "latency p99", "s", "lower"),
        Figure("requests_per_s", "requests/s", "req/s", "higher"),
        Figure("prompt_tokens_mean", "tokens per text (mean)", "tok", "none"),
    ),
    "asr": (
        Figure("rtf_p50", "real-time factor p50", "", "lower"),
        Figure("rtf_p99", "real-time factor p99", "", "lower"),
        Figure("latency_p50_s", "latency p50", "s", "lower"),
        Figure("latency_p99_s", "latency p99", "s", "lower"),
        Figure("audio_s_per_s", "audio seconds per second", "x", "higher"),
        Figure("requests_per_s", "requests/s", "req/s", "higher"),
        Figure("audio_s_mean", "audio length (mean)", "s", "none"),
    ),
}
FIGURES["tts"] = FIGURES["asr"]
# The two figures a plot draws per kind (throughput, latency) and the one a sweep maximises or minimises.
PLOT = {"llm": ("output_tokens_per_s", "ttft_p50_s"), "embedding": ("embeddings_per_s", "latency_p50_s"),
        "asr": ("rtf_p50", "latency_p50_s"), "tts": ("rtf_p50", "latency_p50_s")}
OBJECTIVE = {"llm": "output_tokens_per_s", "embedding": "embeddings_per_s", "asr": "rtf_p50", "tts": "rtf_p50"}


def figure(kind: str, key: str) -> Figure | None:
    return next((f for f in FIGURES.get(kind, ()) if f.key == key), None)


def percentile(xs: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between the closest ranks (numpy's default)."""
    if not xs:
        return None
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _r(x: float | None, digits: int = 5) -> float | None:
    return None if x is None else round(x, digits)


# ---------------------------------------------------------------------------- text
# Plain English to cut prompts, texts and sentences from (written for aima; no data set is fetched).
TEXT = (
    "The river runs past the old mill where the town keeps its records of every harvest since the bridge was "
    "built. Each spring the farmers bring their grain to be weighed and the miller writes the numbers in a "
    "long green book. Children walk along the bank to watch the wheel turn and count the boats that carry "
    "wood and wool down to the sea. In the evening the light falls slowly over the fields, the bells ring from "
    "the square, and people sit outside to talk about the weather, the markets and the news from the city. "
    "A traveller who stops at the inn will hear stories of storms and floods, of the winter the river froze "
    "so hard that carts crossed it, and of the summer when the wheel stood still for lack of water. Nobody "
    "remembers who planted the tall trees by the road, but everyone agrees that the town would not be the "
    "same without them, nor without the mill, the bridge and the quiet patience of the people who live there."
)
WORDS = TEXT.replace(",", "").replace(".", "").lower().split()
SENTENCE_WORDS = TEXT.split()
WORDS_PER_AUDIO_S = 2.6  # words of plain English read aloud per second (a TTS voice at its own pace)


def prompt_text(rng: random.Random, n_words: int) -> str:
    """Words in random order: every prompt differs from its first word, so no engine reuses a cached prefix."""
    return " ".join(rng.choice(WORDS) for _ in range(max(1, n_words)))


def sentences(n_words: int, start: int = 0) -> str:
    """``n_words`` of the text from word ``start`` on (wrapping), ending with a full stop."""
    words = [SENTENCE_WORDS[(start + i) % len(SENTENCE_WORDS)] for i in range(max(1, n_words))]
    out = " ".join(words).rstrip(",.")
    return out[0].upper() + out[1:] + "."


# ---------------------------------------------------------------------------- one request
@dataclass
class Sample:
    ok: bool = False
    start: float = 0.0
    end: float = 0.0
    ttft: float | None = None
    tokens: int = 0  # output tokens (chat)
    prompt_tokens: int | None = None
    items: int = 0  # embeddings answered
    audio_s: float | None = None
    status: int | None = None
    error: str | None = None

    @property
    def latency(self) -> float:
        return self.end - self.start


def _message(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return raw[:300].decode(errors="replace").strip() or "(no body)"
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
        if isinstance(err, str):
            return err[:300]
        if body.get("detail"):
            return str(body["detail"])[:300]
    return json.dumps(body)[:300]


@dataclass
class Door:
    """A way to the engine: ``gateway`` (this daemon's /v1) or ``direct`` (the instance, through acquire)."""

    name: str
    model: str  # the name asked for
    kind: str
    http: httpx.AsyncClient
    gateway: str | None = None  # the daemon's URL (gateway door)
    headers: dict[str, str] = field(default_factory=dict)
    acquirer: Any = None  # controller.acquire.Acquirer (direct door)

    @contextlib.asynccontextmanager
    async def target(self, path: str) -> AsyncIterator[tuple[str, str, Any]]:
        """(URL, the model name to send, the lease to set the answer's status on or None)."""
        if self.name == "gateway":
            yield (self.gateway or "") + path, self.model, None
            return
        async with self.acquirer.lease(self.model, self.kind, path) as lease:
            yield lease.target.url + path, lease.target.model, lease


async def _guard(door: Door, make: Callable[[], Awaitable[Sample]]) -> Sample:
    t0 = time.perf_counter()
    try:
        return await make()
    except httpx.TimeoutException as e:
        return Sample(start=t0, end=time.perf_counter(), error=f"{door.name}: timed out ({type(e).__name__})")
    except httpx.HTTPError as e:
        return Sample(start=t0, end=time.perf_counter(), error=f"{door.name}: {type(e).__name__}: {e}")
    except AimaError as e:
        return Sample(start=t0, end=time.perf_counter(), status=e.status, error=f"{door.name}: {e.message}")


async def chat(door: Door, prompt: str, out_tokens: int, *, min_tokens: bool = True, stream: bool = True) -> Sample:
    """One streamed chat completion."""
    async def go() -> Sample:
        async with door.target("/v1/chat/completions") as (url, name, lease):
            body: dict[str, Any] = {"model": name, "messages": [{"role": "user", "content": prompt}],
                                    "max_tokens": out_tokens, "stream": stream}
            if min_tokens:
                body["min_tokens"] = out_tokens
            if stream:
                body["stream_options"] = {"include_usage": True}
            s = Sample(start=time.perf_counter())
            async with door.http.stream("POST", url, json=body, headers=door.headers) as r:
                s.status = r.status_code
                if lease is not None:
                    lease.status = r.status_code
                if r.status_code >= 400:
                    raw = await r.aread()
                    s.end, s.error = time.perf_counter(), f"{door.name}: HTTP {r.status_code}: {_message(raw)}"
                    return s
                if "json" in r.headers.get("content-type", ""):  # not streamed
                    reply = json.loads(await r.aread())
                    s.end = time.perf_counter()
                    usage = reply.get("usage") or {}
                    s.tokens = int(usage.get("completion_tokens") or 0)
                    s.prompt_tokens = usage.get("prompt_tokens")
                    s.ok = True
                    return s
                pieces, usage, finish = 0, None, None
                async for line in r.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        continue
                    if not isinstance(chunk, dict):
                        continue
                    if chunk.get("error"):
                        s.end, s.error = time.perf_counter(), f"{door.name}: {_message(data.encode())}"
                        return s
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    for choice in chunk.get("choices") or []:
                        if (choice.get("delta") or {}).get("content"):
                            pieces += 1
                            if s.ttft is None:
                                s.ttft = time.perf_counter() - s.start
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
                s.end = time.perf_counter()
            if finish is None:
                s.error = f"{door.name}: the stream ended before the answer was complete ({pieces} pieces)"
                return s
            u = usage if isinstance(usage, dict) else {}
            count = u.get("completion_tokens")
            s.tokens = int(count) if isinstance(count, int) and count > 0 else pieces
            s.prompt_tokens = u.get("prompt_tokens") if isinstance(u.get("prompt_tokens"), int) else None
            s.ok = True
            return s
    return await _guard(door, go)


async def embed(door: Door, texts: list[str]) -> Sample:
    async def go() -> Sample:
        async with door.target("/v1/embeddings") as (url, name, lease):
            s = Sample(start=time.perf_counter())
            r = await door.http.post(url, json={"model": name, "input": texts}, headers=door.headers)
            s.end, s.status = time.perf_counter(), r.status_code
            if lease is not None:
                lease.status = r.status_code
        if r.status_code >= 400:
            s.error = f"{door.name}: HTTP {r.status_code}: {_message(r.content)}"
            return s
        body = r.json()
        rows = body.get("data") if isinstance(body, dict) else None
        if not isinstance(rows, list) or len(rows) != len(texts):
            s.error = f"{door.name}: {len(rows) if isinstance(rows, list) else 'no'} embeddings for {len(texts)} texts"
            return s
        usage = body.get("usage") or {}
        pt = usage.get("prompt_tokens")
        s.prompt_tokens = round(pt / len(texts)) if isinstance(pt, int) and texts else None
        s.items, s.ok = len(texts), True
        return s
    return await _guard(door, go)


async def speak(door: Door, text: str) -> Sample:
    async def go() -> Sample:
        from aima.ops.inference import wav_facts

        async with door.target("/v1/audio/speech") as (url, name, lease):
            s = Sample(start=time.perf_counter())
            r = await door.http.post(url, json={"model": name, "input": text, "voice": name, "response_format": "wav"},
                                     headers=door.headers)
            s.end, s.status = time.perf_counter(), r.status_code
            if lease is not None:
                lease.status = r.status_code
        if r.status_code >= 400:
            s.error = f"{door.name}: HTTP {r.status_code}: {_message(r.content)}"
            return s
        facts = wav_facts(r.content)
        if facts is None or facts[3] <= 0:
            s.error = f"{door.name}: the answer ({len(r.content)} bytes) is not a WAV file with audio"
            return s
        s.audio_s, s.ok = facts[3], True
        return s
    return await _guard(door, go)


async def transcribe(door: Door, audio: bytes, filename: str, audio_s: float | None) -> Sample:
    async def go() -> Sample:
        async with door.target("/v1/audio/transcriptions") as (url, name, lease):
            s = Sample(start=time.perf_counter())
            r = await door.http.post(url, data={"model": name, "response_format": "verbose_json"},
                                     files={"file": (filename, audio, "application/octet-stream")},
                                     headers=door.headers)
            s.end, s.status = time.perf_counter(), r.status_code
            if lease is not None:
                lease.status = r.status_code
        if r.status_code >= 400:
            s.error = f"{door.name}: HTTP {r.status_code}: {_message(r.content)}"
            return s
        body = r.json()
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            s.error = f"{door.name}: the answer has no text: {r.text[:200]!r}"
            return s
        d = body.get("duration")
        s.audio_s = audio_s or (float(d) if isinstance(d, int | float) and d > 0 else None)
        s.ok = True
        return s
    return await _guard(door, go)


# ---------------------------------------------------------------------------- a level
async def run_level(make: Callable[[int], Awaitable[Sample]], concurrency: int, requests: int | None,
                    duration_s: float | None, on_done: Callable[[Sample], None]) -> tuple[list[Sample], float]:
    """``concurrency`` workers in a closed loop; returns the samples and the level's duration."""
    counter = itertools.count()
    samples: list[Sample] = []
    t0 = time.perf_counter()
    deadline = t0 + duration_s if duration_s else None

    async def worker() -> None:
        while True:
            i = next(counter)
            if deadline is None and requests is not None and i >= requests:
                return
            if deadline is not None and time.perf_counter() >= deadline:
                return
            s = await make(i)
            samples.append(s)
            on_done(s)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    ends = [s.end for s in samples if s.end]
    return samples, max((max(ends) if ends else time.perf_counter()) - t0, 1e-9)


def figures(kind: str, samples: list[Sample], duration: float) -> dict[str, float | None]:
    ok = [s for s in samples if s.ok]
    lat = [s.latency for s in ok]
    out: dict[str, float | None] = {"latency_p50_s": _r(percentile(lat, 50)), "latency_p99_s": _r(percentile(lat, 99)),
                                    "requests_per_s": _r(len(ok) / duration, 4)}
    if kind == "llm":
        ttft = [s.ttft for s in ok if s.ttft is not None]
        tpot = [(s.latency - s.ttft) / (s.tokens - 1) for s in ok if s.ttft is not None and s.tokens > 1]
        prompts = [float(s.prompt_tokens) for s in ok if s.prompt_tokens is not None]
        out.update(ttft_p50_s=_r(percentile(ttft, 50)), ttft_p99_s=_r(percentile(ttft, 99)),
                   tpot_p50_s=_r(percentile(tpot, 50), 6),
                   output_tokens_per_s=_r(sum(s.tokens for s in ok) / duration, 3),
                   output_tokens_mean=_r(_mean([float(s.tokens) for s in ok]), 2),
                   prompt_tokens_mean=_r(_mean(prompts), 2))
    elif kind == "embedding":
        prompts = [float(s.prompt_tokens) for s in ok if s.prompt_tokens is not None]
        out.update(embeddings_per_s=_r(sum(s.items for s in ok) / duration, 3),
                   prompt_tokens_mean=_r(_mean(prompts), 2))
    else:
        rtf = [s.latency / s.audio_s for s in ok if s.audio_s]
        audio = [s.audio_s for s in ok if s.audio_s]
        out.update(rtf_p50=_r(percentile(rtf, 50)), rtf_p99=_r(percentile(rtf, 99)),
                   audio_s_per_s=_r(sum(audio) / duration, 4), audio_s_mean=_r(_mean(audio), 3))
    return out
