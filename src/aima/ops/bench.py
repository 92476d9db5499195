"""Benchmark operations: measure a model aima serves, keep the results, compare them, sweep configs.

``bench.run`` measures one served model by its kind (``bench_load`` holds the load and the figures):

- chat (llm): streamed chat completions of ``prompt_tokens`` in and ``output_tokens`` out, per concurrency:
  TTFT p50/p99, time per output token, output tokens/s, requests/s, latency, errors;
- embeddings: batches of ``batch`` texts, per batch size and concurrency: embeddings/s and latency;
- speech to text / text to speech: clips (or texts) of ``audio_s`` seconds: real-time factor (processing time
  / audio length) and latency per audio length; speech to text hears audio a text-to-speech model served
  here makes, unless a ``dataset`` gives the audio.

Through the gateway (the daemon's own ``/v1``, as any client), and with ``direct`` the same load also on
the engine's own port, level by level in alternating order, so the two compare in one run. Each result is
kept in SQLite with the hardware, engine, engine version, config and aima version it ran with;
``bench.list``, ``bench.show`` and ``bench.compare`` read them back. ``bench.sweep`` starts a service per
combination of config values, measures each, and with ``apply`` writes the best as a catalog overlay whose
values the resolver shows with the provenance ``benchmark``.

Progress is published as ``bench.progress`` events (``{request, model, done, total, unit, level}``) for
the CLI's progress bar.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import random
import secrets
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from pydantic import Field

from aima import __version__
from aima.catalog.resolver import Plan
from aima.errors import AimaError, Conflict, EngineError, InvalidInput, NotFound
from aima.ops import bench_load as load
from aima.ops.context import Context
from aima.ops.models import Input, Output
from aima.ops.registry import operation
from aima.store.bench import BenchResults
from aima.store.tables import BenchResultRow

KINDS = ("llm", "embedding", "asr", "tts")
PLAIN = r"^[^\x00-\x1f\x7f-\x9f]*$"  # text without control characters
AUDIO_EXT = (".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a", ".webm")
# Which options go with which kind of model (anything else given is refused, naming the option).
OPTION_KINDS = {"prompt_tokens": ("llm", "embedding"), "output_tokens": ("llm",), "batch": ("embedding",),
                "audio_s": ("asr", "tts"), "voice": ("asr",)}
PROMPT_TOKENS = {"llm": 128, "embedding": 32}  # the defaults
OUTPUT_TOKENS = 64
BATCH = [1, 8, 32]
AUDIO_S = [5.0, 15.0]

Concurrency = Annotated[int, Field(ge=1, le=1024)]


# ---------------------------------------------------------------------------- shapes
class _LoadFields(Input):
    concurrency: list[Concurrency] = Field([1], min_length=1, max_length=16,
                                           description="requests in flight at once, one level each (e.g. 1,4,16)")
    requests: int | None = Field(None, ge=1, le=100_000,
                                 description="requests per level (default: 2 x concurrency, at least 8)")
    duration_s: float | None = Field(None, gt=0, le=3600,
                                     description="seconds per level instead of a number of requests",
                                     json_schema_extra={"x-cli-name": "duration"})
    prompt_tokens: int | None = Field(None, ge=1, le=131_072,
                                      description="tokens per prompt (chat: 128) or per text (embeddings: 32)")
    output_tokens: int | None = Field(None, ge=1, le=131_072, description="tokens per answer (chat: 64)")
    batch: list[Annotated[int, Field(ge=1, le=2048)]] | None = Field(
        None, min_length=1, max_length=16, description="texts per embeddings request, one level each (1,8,32)")
    audio_s: list[Annotated[float, Field(gt=0, le=600)]] | None = Field(
        None, min_length=1, max_length=16, description="seconds of audio per request, one level each (5,15)")
    dataset: str | None = Field(None, min_length=1, max_length=4096, pattern=PLAIN,
                                description="a file on the daemon's machine: prompts or texts (.txt a line each, "
                                            ".jsonl or .json: strings, {prompt|text|input}, {messages} or ShareGPT "
                                            "{conversations}); for speech to text an audio file or a folder of them")
    voice: str | None = Field(None, min_length=1, max_length=200,
                              description="speech to text: the text-to-speech model that makes the audio "
                                          "(default: one served here)")
    warmup: int = Field(1, ge=0, le=100, description="requests before each level, not counted")


class BenchRunInput(_LoadFields):
    model: str = Field(min_length=1, max_length=200, pattern=PLAIN,
                       description="a served model's name or alias, or a service name")
    direct: bool = Field(False, description="also measure the engine's own port (beside the gateway, same run)")
    label: str | None = Field(None, max_length=200, pattern=PLAIN, description="a name for the result")


class BenchLevel(Output):
    door: Literal["gateway", "direct"]
    concurrency: int
    batch: int | None = None
    audio_s: float | None = Field(None, description="the audio length asked for (speech)")
    requests: int = Field(description="requests answered")
    errors: int
    duration_s: float
    figures: dict[str, float | None]
    error: str | None = Field(None, description="the first error, if any")


class BenchResult(Output):
    id: int
    time: str
    created_at: float
    model: str
    service: str | None
    kind: str
    engine: str | None
    engine_version: str | None
    runtime: str | None
    config: dict[str, Any]
    hardware: dict[str, Any]
    aima_version: str
    label: str | None
    sweep: str | None
    params: dict[str, Any] = Field(description="what was asked: concurrency, requests or duration, sizes, doors")
    levels: list[BenchLevel]
    notes: list[str]
    elapsed_s: float


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _view(row: BenchResultRow) -> BenchResult:
    params = dict(row.params or {})
    notes = list(params.pop("notes", []) or [])
    return BenchResult(id=row.id, time=_when(row.created_at), created_at=row.created_at, model=row.model,
                  service=row.service, kind=row.kind, engine=row.engine, engine_version=row.engine_version,
                  runtime=row.runtime, config=dict(row.config or {}), hardware=dict(row.hardware or {}),
                  aima_version=row.aima_version, label=row.label, sweep=row.sweep, params=params,
                  levels=[BenchLevel(**lv) for lv in row.levels or []], notes=notes, elapsed_s=row.elapsed_s)


# ---------------------------------------------------------------------------- progress
class Progress:
    """``bench.progress`` events, at most a few a second (each is a database row)."""

    def __init__(self, ctx: Context, request: str, total: float, unit: str, sweep: str | None = None):
        self.ctx, self.request, self.total, self.unit, self.sweep = ctx, request, total, unit, sweep
        self.done = 0.0
        self.base = 0.0  # the part of ``done`` before the current level (duration mode)
        self.level = ""
        self._last = 0.0

    def say(self, level: str, *, force: bool = False) -> None:
        self.level = level
        self.publish(force=force)

    def publish(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.25:
            return
        self._last = now
        done = round(min(self.done, self.total), 2)
        self.ctx.bus.publish("bench.progress", f"bench {self.request}: {self.level} ({done:g}/{self.total:g} "
                                               f"{self.unit})", request=self.request, done=done, total=self.total,
                             unit=self.unit, level=self.level, sweep=self.sweep)


# ---------------------------------------------------------------------------- what is measured
def _facts_summary(ctx: Context, node: str | None) -> dict[str, Any]:
    from aima import hardware
    from aima.catalog.resolver import hardware_tag

    f = hardware.detect(ctx.settings.home)
    return {"tag": hardware_tag(f), "cpu": f.cpu.model, "arch": f.platform.arch, "os": f.platform.os,
            "cores": f.effective.cpu_cores or f.cpu.cores_logical,
            "memory_bytes": f.effective.memory_total_bytes or f.memory.total_bytes,
            "gpus": [{"name": g.name, "vendor": g.vendor, "memory_bytes": g.memory_total_bytes} for g in f.gpus],
            "node": node}


def _engine_version(engine: str | None, handle: dict[str, Any] | None) -> str | None:
    """The container image it runs in, else the engine's Python distributions as installed here."""
    image = ((handle or {}).get("data") or {}).get("image")
    if image:
        return str(image)
    if not engine:
        return None
    from importlib.metadata import PackageNotFoundError, version

    from aima import catalog

    try:
        eng = catalog.load().engine(engine)
    except AimaError:
        return None
    parts = []
    for req in eng.install.pip if eng is not None else []:
        name = req.split("[", 1)[0].split(";", 1)[0]
        for sep in ("==", ">=", "<=", "~=", "<", ">", "!="):
            name = name.split(sep, 1)[0]
        name = name.strip()
        try:
            parts.append(f"{name} {version(name)}")
        except (PackageNotFoundError, ValueError):
            continue
    return ", ".join(parts) or None


def _kind_of(route: Any) -> str:
    return route.kind if route.kind in KINDS else "llm"


def _check_options(kind: str, inp: _LoadFields, what: str) -> None:
    for name, kinds in OPTION_KINDS.items():
        if getattr(inp, name) is not None and kind not in kinds:
            nice = " or ".join({"llm": "chat", "embedding": "embedding", "asr": "speech-to-text",
                                "tts": "text-to-speech"}[k] for k in kinds)
            raise InvalidInput(f"{name} is for {nice} models; {what} is {_a(kind)} model", field=name)
    if inp.requests is not None and inp.duration_s is not None:
        raise InvalidInput("give requests or duration_s, not both", field="duration_s")


def _a(kind: str) -> str:
    return {"llm": "a chat (llm)", "embedding": "an embedding", "asr": "a speech-to-text (asr)",
            "tts": "a text-to-speech (tts)"}[kind]


def _read_texts(path: Path) -> list[str]:
    """Prompts or texts from a file: .jsonl / .json (strings, {prompt|text|input|question}, {messages}, ShareGPT
    {conversations}), else one a line."""
    try:
        raw = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise InvalidInput(f"dataset {path} cannot be read: {e.strerror or e}", field="dataset") from None
    items: list[Any]
    if path.suffix == ".jsonl":
        items = []
        for n, line in enumerate(raw.splitlines(), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except ValueError:
                    raise InvalidInput(f"dataset {path}: line {n} is not JSON", field="dataset") from None
    elif path.suffix == ".json":
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise InvalidInput(f"dataset {path} is not JSON: {e}", field="dataset") from None
        items = data if isinstance(data, list) else [data]
    else:
        items = [ln for ln in raw.splitlines() if ln.strip()]
    out = []
    for it in items:
        text = _text_of(it)
        if text:
            out.append(text)
    if not out:
        raise InvalidInput(f"dataset {path} holds no prompt or text", field="dataset")
    return out


def _text_of(it: Any) -> str | None:
    if isinstance(it, str):
        return it.strip() or None
    if not isinstance(it, dict):
        return None
    for k in ("prompt", "text", "input", "question"):
        if isinstance(it.get(k), str) and it[k].strip():
            return str(it[k]).strip()
    for k, role_key, content_key, users in (("messages", "role", "content", ("user",)),
                                             ("conversations", "from", "value", ("human", "user"))):
        msgs = it.get(k)
        if isinstance(msgs, list):
            for m in msgs:
                if isinstance(m, dict) and m.get(role_key) in users and isinstance(m.get(content_key), str):
                    return str(m[content_key]).strip() or None
    return None


def _read_audio(path: Path) -> list[tuple[str, bytes, float | None]]:
    from aima.ops.inference import wav_facts

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in AUDIO_EXT) if path.is_dir() else [path]
    if not files:
        raise InvalidInput(f"dataset {path} holds no audio file ({', '.join(AUDIO_EXT)})", field="dataset")
    out = []
    for p in files[:16]:
        try:
            data = p.read_bytes()
        except OSError as e:
            raise InvalidInput(f"dataset {p} cannot be read: {e.strerror or e}", field="dataset") from None
        facts = wav_facts(data)
        out.append((p.name, data, facts[3] if facts is not None and facts[3] > 0 else None))
    return out


def _dataset(inp: _LoadFields) -> Path | None:
    if inp.dataset is None:
        return None
    p = Path(inp.dataset).expanduser()
    if not p.exists():
        raise NotFound(f"dataset {inp.dataset!r} does not exist on the daemon's machine (give an absolute path; the "
                       f"CLI sends local paths absolute)", field="dataset")
    return p


# ---------------------------------------------------------------------------- the run
class _Plan:
    """What one run sends: the levels, the request maker per level, and the notes."""

    def __init__(self, kind: str, inp: _LoadFields):
        self.kind = kind
        self.inp = inp
        self.notes: list[str] = []
        self.levels: list[dict[str, Any]] = []  # {concurrency, batch, audio_s, clip}
        self.prompts: list[str] = []
        self.words = 0
        self.min_tokens = True
        self.clips: dict[float, tuple[str, bytes, float | None]] = {}
        self.texts: dict[float, str] = {}


async def _prepare(ctx: Context, kind: str, inp: _LoadFields, door: load.Door, model: str) -> _Plan:
    plan = _Plan(kind, inp)
    data = _dataset(inp)
    conc = list(dict.fromkeys(inp.concurrency))
    if kind == "llm":
        plan.levels = [{"concurrency": c} for c in conc]
        if data is not None:
            plan.prompts = _read_texts(data)
            plan.notes.append(f"prompts from {data} ({len(plan.prompts)})")
        await _calibrate(plan, door, inp.prompt_tokens or PROMPT_TOKENS["llm"])
    elif kind == "embedding":
        batches = list(dict.fromkeys(inp.batch or BATCH))
        plan.levels = [{"concurrency": c, "batch": b} for c in conc for b in batches]
        if data is not None:
            plan.prompts = _read_texts(data)
        plan.words = max(1, round((inp.prompt_tokens or PROMPT_TOKENS["embedding"]) / 1.3))
    elif kind == "tts":
        lengths = list(dict.fromkeys(inp.audio_s or AUDIO_S))
        if data is not None:
            texts = _read_texts(data)
            plan.texts = {float(i + 1): t for i, t in enumerate(texts[:16])}
            plan.levels = [{"concurrency": c, "audio_s": None, "text": k} for c in conc for k in plan.texts]
            plan.notes.append(f"texts from {data} ({len(plan.texts)}), one level each")
        else:
            plan.texts = {s: load.sentences(round(s * load.WORDS_PER_AUDIO_S)) for s in lengths}
            plan.levels = [{"concurrency": c, "audio_s": s, "text": s} for c in conc for s in lengths]
    else:  # asr
        if data is not None:
            clips = _read_audio(data)
            plan.clips = {float(i + 1): c for i, c in enumerate(clips)}
            plan.levels = [{"concurrency": c, "audio_s": clip[2], "clip": k} for c in conc
                           for k, clip in plan.clips.items()]
            plan.notes.append(f"audio from {data}: " + ", ".join(
                f"{n} ({d:.1f} s)" if d else n for n, _b, d in clips))
        else:
            lengths = list(dict.fromkeys(inp.audio_s or AUDIO_S))
            voice = await _voice(ctx, inp.voice, model)
            for s in lengths:
                plan.clips[s] = await _make_audio(ctx, voice, s)
            plan.levels = [{"concurrency": c, "audio_s": s, "clip": s} for c in conc for s in lengths]
            plan.notes.append(f"audio made by {voice}: " + ", ".join(
                f"{s:g} s asked, {plan.clips[s][2] or 0:.1f} s made" for s in lengths))
    return plan


async def _calibrate(plan: _Plan, door: load.Door, tokens: int) -> None:
    """Words per prompt for ``tokens`` prompt tokens: two 1-token answers (a short and a long prompt) give the
    engine's tokens per word; they also check the way to the engine and whether it takes ``min_tokens``."""
    rng = random.Random(7)
    short_w, long_w = 8, max(16, round(tokens / 1.3))
    s1 = await load.chat(door, load.prompt_text(rng, short_w), 1, stream=False)
    if not s1.ok and s1.status in (400, 422) and "min_tokens" in (s1.error or ""):
        plan.min_tokens = False
        plan.notes.append("the engine does not take min_tokens: answers may end before output_tokens")
        s1 = await load.chat(door, load.prompt_text(rng, short_w), 1, stream=False, min_tokens=False)
    if not s1.ok:
        raise _unreachable(door, s1)
    s2 = await load.chat(door, load.prompt_text(rng, long_w), 1, stream=False, min_tokens=plan.min_tokens)
    while not s2.ok and long_w > 2 * short_w:  # too long for the context (a tokenizer of many tokens a word)
        long_w //= 2
        s2 = await load.chat(door, load.prompt_text(rng, long_w), 1, stream=False, min_tokens=plan.min_tokens)
    if s2.ok and s1.prompt_tokens and s2.prompt_tokens and s2.prompt_tokens > s1.prompt_tokens:
        per_word = (s2.prompt_tokens - s1.prompt_tokens) / (long_w - short_w)
        plan.words = max(1, round(tokens / per_word))
    else:
        plan.words = max(1, round(tokens / 1.3))
        plan.notes.append("the engine reports no prompt token counts: prompt length estimated at 1.3 tokens a word")


def _unreachable(door: load.Door, s: load.Sample) -> AimaError:
    if door.name == "gateway" and s.status in (401, 403):
        return EngineError(f"the gateway refused the benchmark's requests ({s.error}); measure the engine alone "
                           f"with direct", field="model")
    return EngineError(f"the model could not be measured: {s.error}", field="model")


async def _voice(ctx: Context, voice: str | None, model: str) -> str:
    if voice is not None:
        routes = ctx.acquirer.candidates(voice, "tts")
        if not routes:
            raise ctx.acquirer.not_served(voice)
        if routes[0].kind not in (None, "tts"):
            raise InvalidInput(f"voice {voice!r} is {_a(routes[0].kind)} model, not a text-to-speech one",
                               field="voice")
        return voice
    tts = [r for r in ctx.routes.services() if r.kind == "tts" and r.endpoints]
    if not tts:
        raise InvalidInput(f"{model} hears audio: give a dataset (an audio file or folder) or serve a text-to-speech "
                           f"model to make it (`aima run piper-en-us-joe -d`)", field="dataset")
    return tts[0].name


async def _make_audio(ctx: Context, voice: str, seconds: float) -> tuple[str, bytes, float | None]:
    from aima.ops import inference

    text = load.sentences(max(1, round(seconds * load.WORDS_PER_AUDIO_S)))
    out = await inference.speak(ctx, inference.SpeakInput(model=voice, text=text[:4096]))
    return f"speech-{seconds:g}s.wav", base64.b64decode(out.audio_b64), out.duration_s


def _maker(plan: _Plan, door: load.Door, level: dict[str, Any], seed: int) -> Any:
    kind, inp = plan.kind, plan.inp
    if kind == "llm":
        out = inp.output_tokens or OUTPUT_TOKENS
        rng = random.Random(seed)

        def chat(i: int) -> Any:
            prompt = plan.prompts[i % len(plan.prompts)] if plan.prompts else load.prompt_text(rng, plan.words)
            return load.chat(door, prompt, out, min_tokens=plan.min_tokens)
        return chat
    if kind == "embedding":
        rng = random.Random(seed)
        b = level["batch"]

        def emb(i: int) -> Any:
            if plan.prompts:
                texts = [plan.prompts[(i * b + j) % len(plan.prompts)] for j in range(b)]
            else:
                texts = [load.prompt_text(rng, plan.words) for _ in range(b)]
            return load.embed(door, texts)
        return emb
    if kind == "tts":
        text = plan.texts[level["text"]]
        return lambda i: load.speak(door, text)
    name, audio, length = plan.clips[level["clip"]]
    return lambda i: load.transcribe(door, audio, name, length)


def _requests(inp: _LoadFields, concurrency: int) -> int | None:
    if inp.duration_s is not None:
        return None
    return inp.requests or max(8, 2 * concurrency)


def _level_name(kind: str, door: str, lv: dict[str, Any]) -> str:
    parts = [door, f"c={lv['concurrency']}"]
    if lv.get("batch") is not None:
        parts.append(f"batch {lv['batch']}")
    if lv.get("audio_s") is not None:
        parts.append(f"{lv['audio_s']:g} s audio")
    return " ".join(parts)


async def measure(ctx: Context, inp: BenchRunInput, *, sweep: str | None = None, progress: Progress | None = None,
                  request: str | None = None) -> BenchResult:
    """Measure ``inp.model`` as it is served now, store the result and return it."""
    routes = ctx.acquirer.candidates(inp.model)
    if not routes:
        raise ctx.acquirer.not_served(inp.model)
    route = routes[0]
    kind = _kind_of(route)
    _check_options(kind, inp, f"{inp.model} (service {route.name})")
    svc = ctx.services.get(route.service_id)
    t_start = time.time()
    doors_n = 2 if inp.direct else 1
    limit = max(inp.concurrency) * doors_n + 4
    http = httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(900.0, connect=10.0),
                             limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit))
    key = ctx.settings.api_key or ctx.local_key
    try:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        base = ctx.url or f"http://127.0.0.1:{ctx.settings.port}"
        gateway = load.Door("gateway", inp.model, kind, http, gateway=base, headers=headers)
        direct = load.Door("direct", inp.model, kind, http, acquirer=ctx.acquirer)
        doors = [gateway, direct] if inp.direct else [gateway]
        plan = await _prepare(ctx, kind, inp, gateway, inp.model)
        if inp.direct and kind == "llm":
            await _calibrate_door(direct, plan)
        hw = await asyncio.to_thread(_facts_summary, ctx, None)
        levels = _runs(plan, doors)
        unit = "s" if inp.duration_s is not None else "requests"
        total = float(sum((inp.duration_s or _requests(inp, lv["concurrency"]) or 0) for lv, _d in levels))
        if progress is None:  # a sweep's progress spans all its runs
            progress = Progress(ctx, request or inp.model, total, unit, sweep)
        out_levels = []
        for n, (lv, door) in enumerate(levels):
            name = _level_name(kind, door.name, lv)
            make = _maker(plan, door, lv, seed=1000 * n + 1)
            for w in range(inp.warmup):
                await make(10_000_000 + w)
            progress.say(f"{name} ({n + 1}/{len(levels)})", force=True)
            base_done = progress.done
            t0 = time.monotonic()

            def on_done(_s: load.Sample, t0: float = t0, base_done: float = base_done) -> None:
                if unit == "s":
                    progress.done = base_done + min(time.monotonic() - t0, inp.duration_s or 0)
                else:
                    progress.done += 1
                progress.publish()

            samples, duration = await load.run_level(make, lv["concurrency"], _requests(inp, lv["concurrency"]),
                                                     inp.duration_s, on_done)
            if unit == "s":
                progress.done = base_done + (inp.duration_s or 0)
            ok = [s for s in samples if s.ok]
            bad = [s for s in samples if not s.ok]
            if not ok:
                raise _unreachable(door, bad[0]) if bad else EngineError(f"no request was answered at {name}")
            out_levels.append(BenchLevel(door=door.name, concurrency=lv["concurrency"],  # type: ignore[arg-type]
                                    batch=lv.get("batch"), audio_s=lv.get("audio_s"), requests=len(ok), errors=len(bad),
                                    duration_s=round(duration, 4), figures=load.figures(kind, samples, duration),
                                    error=bad[0].error if bad else None))
        progress.say("done", force=True)
    finally:
        await http.aclose()
    instances = ctx.instances.of(svc.id) if svc is not None else []
    first = next((i for i in instances if i.ready), instances[0] if instances else None)
    if first is not None and first.node:
        hw["node"] = first.node
    params = inp.model_dump(exclude={"model", "label"}, exclude_none=True)
    params["doors"] = [d.name for d in doors]
    if kind == "llm":
        params.setdefault("prompt_tokens", PROMPT_TOKENS["llm"])
        params.setdefault("output_tokens", OUTPUT_TOKENS)
        params["prompt_words"] = plan.words
    params["notes"] = plan.notes
    row = BenchResults(ctx.db).add(
        created_at=t_start, model=route.model, service=route.name, kind=kind, engine=svc.engine if svc else None,
        engine_version=_engine_version(svc.engine if svc else None, first.handle if first else None),
        runtime=svc.runtime if svc else None, config=dict(svc.config or {}) if svc else {}, hardware=hw,
        aima_version=__version__, params=params, levels=[lv.model_dump() for lv in out_levels], label=inp.label,
        sweep=sweep, elapsed_s=round(time.time() - t_start, 3))
    ctx.bus.publish("bench.done", f"bench {row.id} of {route.model} ({kind}) stored", id=row.id, model=route.model,
                    request=request or inp.model)
    return _view(row)


async def _calibrate_door(door: load.Door, plan: _Plan) -> None:
    s = await load.chat(door, "hello", 1, stream=False, min_tokens=plan.min_tokens)
    if not s.ok:
        raise _unreachable(door, s)


def _runs(plan: _Plan, doors: list[load.Door]) -> list[tuple[dict[str, Any], load.Door]]:
    """Each level once per door, the doors' order alternating from level to level (a b, b a, ...)."""
    out = []
    for i, lv in enumerate(plan.levels):
        order = doors if i % 2 == 0 else list(reversed(doors))
        out.extend((lv, d) for d in order)
    return out


@operation("bench.run", mutating=True, method="POST", path="/bench/run", cli=None)
async def run(ctx: Context, inp: BenchRunInput) -> BenchResult:
    """Benchmark a served model by its kind, through the gateway (and with direct, on the engine's own port too).

    Chat: TTFT p50/p99, time per output token, output tokens/s, requests/s and errors per concurrency level;
    embeddings: embeddings/s and latency per batch size; speech: real-time factor and latency per audio
    length. The result is kept with the hardware, engine, engine version, config and aima version."""
    return await measure(ctx, inp)


# ---------------------------------------------------------------------------- reading results
class BenchListInput(Input):
    model: str | None = Field(None, max_length=200, pattern=PLAIN, description="only this model's results")
    kind: Literal["llm", "embedding", "asr", "tts"] | None = Field(None, description="only this kind")
    sweep: str | None = Field(None, max_length=32, pattern=PLAIN, description="only this sweep's results")
    limit: int = Field(20, ge=1, le=1000, description="the newest N", json_schema_extra={"x-cli-short": "-n"})


class BenchListRow(Output):
    id: int
    time: str
    model: str
    service: str | None
    kind: str
    engine: str | None
    engine_version: str | None
    label: str | None
    sweep: str | None
    levels: str = Field(description="the levels measured, e.g. c=1,4")
    headline: str | None = Field(description="the main figure at the highest level")


class BenchListOutput(Output):
    results: list[BenchListRow]


def _levels_text(r: BenchResult) -> str:
    conc = ",".join(str(c) for c in dict.fromkeys(lv.concurrency for lv in r.levels))
    text = f"c={conc}"
    batches = [str(b) for b in dict.fromkeys(lv.batch for lv in r.levels) if b is not None]
    if batches:
        text += f" batch={','.join(batches)}"
    audio = [f"{a:g}" for a in dict.fromkeys(lv.audio_s for lv in r.levels) if a is not None]
    if audio:
        text += f" audio={','.join(audio)}s"
    if len({lv.door for lv in r.levels}) > 1:
        text += " +direct"
    return text


def headline(r: BenchResult) -> str | None:
    key = load.OBJECTIVE.get(r.kind)
    fig = load.figure(r.kind, key or "")
    rows = [lv for lv in r.levels if lv.door == "gateway" and lv.figures.get(key or "") is not None] or \
        [lv for lv in r.levels if lv.figures.get(key or "") is not None]
    if fig is None or not rows:
        return None
    lv = rows[-1]
    v = lv.figures[fig.key]
    return f"{fig.label} {v:.3g} at c={lv.concurrency}" + (f" batch {lv.batch}" if lv.batch else "") + \
        (f" {lv.audio_s:g} s" if lv.audio_s else "")


@operation("bench.list", mutating=False, method="GET", path="/bench/results", cli=None)
async def list_(ctx: Context, inp: BenchListInput) -> BenchListOutput:
    """The stored benchmark results, newest first: model, kind, engine and version, levels and the main figure."""
    rows = await asyncio.to_thread(BenchResults(ctx.db).list, model=inp.model, kind=inp.kind, sweep=inp.sweep,
                                   limit=inp.limit)
    out = []
    for row in rows:
        r = _view(row)
        out.append(BenchListRow(id=r.id, time=r.time, model=r.model, service=r.service, kind=r.kind, engine=r.engine,
                           engine_version=r.engine_version, label=r.label, sweep=r.sweep, levels=_levels_text(r),
                           headline=headline(r)))
    return BenchListOutput(results=out)


class BenchShowInput(Input):
    id: int = Field(ge=1, le=2**62, description="the result's id (`aima bench list`)")


def _get(ctx: Context, rid: int, field: str = "id") -> BenchResult:
    row = BenchResults(ctx.db).get(rid)
    if row is None:
        raise NotFound(f"benchmark result {rid} does not exist; `aima bench list` shows the results", field=field)
    return _view(row)


@operation("bench.show", mutating=False, method="GET", path="/bench/results/{id}", cli=None)
async def show(ctx: Context, inp: BenchShowInput) -> BenchResult:
    """One stored benchmark result: every level's figures, with the hardware, engine, engine version, config and
    aima version it ran with."""
    return await asyncio.to_thread(_get, ctx, inp.id)


class BenchCompareInput(Input):
    a: int = Field(ge=1, le=2**62, description="the first result (the baseline)")
    b: int = Field(ge=1, le=2**62, description="the second result")


class BenchRatio(Output):
    door: str
    concurrency: int
    batch: int | None = None
    audio_s: float | None = None
    figure: str
    label: str
    unit: str
    a: float | None
    b: float | None
    ratio: float | None = Field(description="b / a")
    better: Literal["a", "b", "same"] | None = Field(description="which is better by this figure (within 2%: same)")


class BenchCompareOutput(Output):
    a: BenchListRow
    b: BenchListRow
    differences: dict[str, list[Any]] = Field(description="what differs between the two runs: [a, b] per field")
    ratios: list[BenchRatio]


def _row(r: BenchResult) -> BenchListRow:
    return BenchListRow(id=r.id, time=r.time, model=r.model, service=r.service, kind=r.kind, engine=r.engine,
                   engine_version=r.engine_version, label=r.label, sweep=r.sweep, levels=_levels_text(r),
                   headline=headline(r))


def _key(lv: BenchLevel) -> tuple[Any, ...]:
    return lv.door, lv.concurrency, lv.batch, lv.audio_s


def compare_results(a: BenchResult, b: BenchResult) -> BenchCompareOutput:
    if a.kind != b.kind:
        raise InvalidInput(f"result {a.id} measures {_a(a.kind)} model and result {b.id} {_a(b.kind)} model; compare "
                           f"results of one kind", field="b")
    diff: dict[str, list[Any]] = {}
    for name in ("model", "service", "engine", "engine_version", "runtime", "config", "aima_version", "label"):
        va, vb = getattr(a, name), getattr(b, name)
        if va != vb:
            diff[name] = [va, vb]
    if a.hardware.get("tag") != b.hardware.get("tag"):
        diff["hardware"] = [a.hardware.get("tag"), b.hardware.get("tag")]
    for name in ("prompt_tokens", "output_tokens", "requests", "duration_s", "dataset"):
        va, vb = a.params.get(name), b.params.get(name)
        if va != vb:
            diff[name] = [va, vb]
    theirs = {_key(lv): lv for lv in b.levels}
    ratios = []
    for lv in a.levels:
        other = theirs.get(_key(lv))
        if other is None:
            continue
        for fig in load.FIGURES[a.kind]:
            va, vb = lv.figures.get(fig.key), other.figures.get(fig.key)
            ratio = round(vb / va, 4) if va and vb is not None else None
            better: Literal["a", "b", "same"] | None = None
            if ratio is not None and fig.better != "none":
                if abs(ratio - 1) <= 0.02:
                    better = "same"
                else:
                    better = "b" if (ratio > 1) == (fig.better == "higher") else "a"
            ratios.append(BenchRatio(door=lv.door, concurrency=lv.concurrency, batch=lv.batch, audio_s=lv.audio_s,
                                figure=fig.key, label=fig.label, unit=fig.unit, a=va, b=vb, ratio=ratio,
                                better=better))
    if not ratios:
        raise InvalidInput(f"results {a.id} and {b.id} share no level (door, concurrency, batch, audio length) to "
                           f"compare", field="b")
    return BenchCompareOutput(a=_row(a), b=_row(b), differences=diff, ratios=ratios)


@operation("bench.compare", mutating=False, method="GET", path="/bench/compare", cli=None)
async def compare(ctx: Context, inp: BenchCompareInput) -> BenchCompareOutput:
    """Compare two stored results level by level: each figure of A and B and the ratio B/A, which is better, and
    what differs between the runs (engine, version, config, hardware, aima version, sizes)."""
    a = await asyncio.to_thread(_get, ctx, inp.a, "a")
    b = await asyncio.to_thread(_get, ctx, inp.b, "b")
    return compare_results(a, b)


# ---------------------------------------------------------------------------- sweep
class BenchSweepInput(_LoadFields):
    model: str = Field(min_length=1, max_length=200, pattern=PLAIN, description="a catalog model name or alias")
    config: dict[str, str] = Field(min_length=1, max_length=8,
                                   description="engine config key = comma-separated values to try, e.g. "
                                               "n_threads=1,2 (every combination runs)",
                                   json_schema_extra={"propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"},
                                                      "additionalProperties": {"type": "string", "maxLength": 512,
                                                                               "pattern": r"[^\s,]"}})
    engine: str | None = Field(None, max_length=64, pattern=PLAIN,
                               description="catalog engine (default: the best for this hardware)")
    objective: str | None = Field(None, max_length=64, pattern=PLAIN,
                                  description="the figure that decides (default: output_tokens_per_s for chat, "
                                              "embeddings_per_s, rtf_p50 for speech), its mean over the levels")
    apply: bool = Field(False, description="write the best config as a catalog overlay (provenance benchmark)")
    timeout_s: float | None = Field(None, gt=0, le=86400, description="seconds to wait for each service to be ready")


class BenchSweepRow(Output):
    config: dict[str, str]
    result: int | None
    value: float | None = Field(description="the objective's mean over the levels")
    error: str | None = None


class BenchSweepOutput(Output):
    sweep: str
    model: str
    kind: str
    objective: str
    better: str = Field(description="higher or lower")
    rows: list[BenchSweepRow]
    best: BenchSweepRow | None
    applied: str | None = Field(description="the overlay file written (apply)")
    variant: str | None


MAX_COMBINATIONS = 32


def _combinations(config: dict[str, str]) -> list[dict[str, str]]:
    keys, values = [], []
    for k, v in config.items():
        vals = [x.strip() for x in str(v).split(",") if x.strip()]
        if not vals:
            raise InvalidInput(f"config {k} has no value to try; give values like {k}=1,2", field=f"config.{k}")
        keys.append(k)
        values.append(list(dict.fromkeys(vals)))
    combos = [dict(zip(keys, c, strict=True)) for c in itertools.product(*values)]
    if len(combos) > MAX_COMBINATIONS:
        raise InvalidInput(f"{len(combos)} combinations of config values; at most {MAX_COMBINATIONS} run in one sweep",
                           field="config")
    return combos


def _score(r: BenchResult, objective: str) -> float | None:
    vals = [lv.figures.get(objective) for lv in r.levels if lv.door == "gateway"]
    nums = [v for v in vals if v is not None]
    return round(sum(nums) / len(nums), 5) if nums else None


@operation("bench.sweep", mutating=True, method="POST", path="/bench/sweep", cli=None)
async def sweep(ctx: Context, inp: BenchSweepInput) -> BenchSweepOutput:
    """Benchmark every combination of config values: each runs as a service of its own (started, measured,
    deleted); with apply, the best is written as a catalog overlay whose values `aima resolve` shows with the
    provenance `benchmark`."""
    from aima.controller.routes import catalog_kind

    combos = _combinations(inp.config)
    plans: list[Plan] = []
    for combo in combos:  # every combination is checked before anything starts
        args = {"model": inp.model, "config": combo, **({"engine": inp.engine} if inp.engine else {})}
        plan = await ctx.call("catalog.resolve", args)
        assert isinstance(plan, Plan)
        plans.append(plan)
    first = plans[0]
    kind = catalog_kind(first.model, first.engine, dict(combos[0])) or first.model_type
    _check_options(kind, inp, f"{first.model} ({first.engine})")
    objective = inp.objective or load.OBJECTIVE[kind]
    fig = load.figure(kind, objective)
    if fig is None or fig.better == "none":
        names = ", ".join(f.key for f in load.FIGURES[kind] if f.better != "none")
        raise InvalidInput(f"objective {objective!r} is not a figure of {_a(kind)} benchmark; figures: {names}",
                           field="objective")
    sid = "sweep-" + secrets.token_hex(3)
    per_run = float(sum(inp.duration_s or _requests(inp, c) or 0 for c in dict.fromkeys(inp.concurrency)))
    if kind == "embedding":
        per_run *= len(set(inp.batch or BATCH))
    elif kind in ("asr", "tts") and not inp.dataset:
        per_run *= len(set(inp.audio_s or AUDIO_S))
    progress = Progress(ctx, inp.model, per_run * len(combos), "s" if inp.duration_s else "requests", sid)
    rows: list[BenchSweepRow] = []
    results: list[BenchResult] = []
    fields = {k: getattr(inp, k) for k in _LoadFields.model_fields}
    for i, combo in enumerate(combos):
        label = " ".join(f"{k}={v}" for k, v in combo.items())
        name = f"{sid}-{i + 1}"
        progress.say(f"{label}: starting ({i + 1}/{len(combos)})", force=True)
        start_done = progress.done
        try:
            args: dict[str, Any] = {"model": inp.model, "name": name, "config": combo}
            if inp.engine:
                args["engine"] = inp.engine
            if inp.timeout_s:
                args["timeout_s"] = inp.timeout_s
            started = (await ctx.call("service.run", args)).model_dump()
            if started["outcome"] != "ready":
                raise EngineError(f"service {name} is {started['outcome']}: {started.get('message')}")
            run_inp = BenchRunInput(model=name, label=label, **fields)
            r = await measure(ctx, run_inp, sweep=sid, progress=progress, request=inp.model)
            results.append(r)
            rows.append(BenchSweepRow(config=combo, result=r.id, value=_score(r, objective)))
        except AimaError as e:
            rows.append(BenchSweepRow(config=combo, result=None, value=None, error=e.message))
            progress.done = start_done + per_run
        finally:
            try:
                await ctx.call("service.delete", {"service": name})
            except AimaError:
                pass
    scored = [r for r in rows if r.value is not None]
    best = None
    if scored:
        best = (max if fig.better == "higher" else min)(scored, key=lambda r: r.value or 0.0)
    applied = None
    variant = plans[rows.index(best)].variant if best is not None else first.variant
    if inp.apply:
        if best is None:
            raise EngineError("no combination could be measured, so there is nothing to apply: "
                              + "; ".join(f"{' '.join(f'{k}={v}' for k, v in r.config.items())}: {r.error}"
                                          for r in rows))
        result = next(r for r in results if r.id == best.result)
        applied = await asyncio.to_thread(write_overlay, ctx, first.model, variant, best, objective, result)
    return BenchSweepOutput(sweep=sid, model=first.model, kind=kind, objective=objective, better=fig.better, rows=rows,
                       best=best, applied=applied, variant=variant)


def write_overlay(ctx: Context, model: str, variant: str | None, best: BenchSweepRow, objective: str,
                  result: BenchResult) -> str:
    """``AIMA_HOME/catalog/models/<model>.benchmark.yaml``: the variant's ``benchmark`` block, merged onto the
    catalog's model by the overlay loader. Checked by loading the catalog again; a bad file is removed."""
    import yaml

    from aima.catalog import loader

    folder = loader.overlay_dir(ctx.settings.home) / "models"
    path = folder / f"{model}.benchmark.yaml"
    cat = loader.load_catalog(ctx.settings.home)
    entry = cat.models.get(model)
    others = [f for f in (entry.files if entry else []) if f != str(path) and f.startswith(str(folder.parent))]
    if others:
        raise Conflict(f"the overlay file {others[0]} defines {model} already, so the benchmark's values cannot go in "
                       f"a file of their own; add to its variant {variant}: benchmark: {{config: "
                       f"{json.dumps(best.config)}}}", field="apply")
    block = {"config": {k: _yaml_value(v) for k, v in best.config.items()}, "result": result.id,
             "objective": objective, "value": best.value, "hardware": result.hardware.get("tag"),
             "measured_at": result.time}
    doc = {"name": model, "variants": [{"name": variant, "benchmark": block}]}
    head = (f"# Written by `aima bench sweep {model} --apply` ({result.sweep}): the best of the configurations it "
            f"measured\n# by {objective} (result {result.id}). `aima resolve {model}` shows these values with the "
            f"provenance\n# benchmark; delete this file to drop them.\n")
    folder.mkdir(parents=True, exist_ok=True)
    old = path.read_bytes() if path.exists() else None
    path.write_text(head + yaml.safe_dump(doc, sort_keys=False))
    problems = [p for p in loader.load_catalog(ctx.settings.home).problems if p.file == str(path)]
    if problems:
        if old is None:
            path.unlink()
        else:
            path.write_bytes(old)
        raise InvalidInput(f"the benchmark overlay would not load: {problems[0]}", field="apply")
    ctx.bus.publish("bench.applied", f"benchmark config for {model} ({variant}) written to {path}", model=model,
                    path=str(path), config=best.config)
    return str(path)


def _yaml_value(v: str) -> Any:
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            continue
    return v

