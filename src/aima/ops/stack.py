"""The default stack: what `aima up` brings up on this machine, and proves live.

``DEFAULT_STACK`` names one catalog model per type; the catalog picks each one's variant and engine
for this hardware (a bigger variant on a bigger machine). ``stack.up`` takes every model through the
same path as ``service.run`` (resolve → pull → create or reuse → start → wait), all at once,
publishing ``stack.progress`` events (data ``{model, step, ...}``) as it goes, then proves each ready
service live, one at a time so the figures are not disturbed, with the inference operations:

- an LLM answers a simple factual question (figure: tokens per second);
- an embedding model puts a paraphrase closer than an unrelated sentence (figure: embeddings per second);
- a voice speaks a sentence and the speech model hears it back word for word (figure: real-time factor).

Running it again changes nothing that is already right: ready services are reused as they are.
``stack.down`` stops what ``stack.up`` brought up (recorded in ``AIMA_HOME/stack.json``) and the
default stack's services.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from aima.errors import AimaError, NotFound
from aima.ops import inference
from aima.ops import service as service_ops
from aima.ops.catalog import catalog_model
from aima.ops.context import Context
from aima.ops.models import Input, Output, cli
from aima.ops.registry import Cli, operation

# The default stack, one model per type (catalog names). The only place it is written down.
# The chat model is the operator agent's too (`aima ask`): one LLM loaded for both. Qwen2.5-Coder-1.5B answered 10 of
# 10 plain questions where SmolLM2-135M (still in the catalog) answered 7, at ~12 tokens/s on 2 cores
# (bench/chat_models.py).
DEFAULT_STACK: tuple[str, ...] = ("qwen2.5-coder-1.5b-instruct", "all-minilm-l6-v2", "whisper-tiny-en",
                                  "piper-en-us-joe")
# The stack per spoken language (`aima up --lang zh`, or `stack_lang: zh` / AIMA_STACK_LANG): Chinese speakers get
# the multilingual Whisper base (Chinese and English; simplified characters through its catalog prompt) in place
# of the English-only tiny.en.
LANG_STACKS: dict[str, tuple[str, ...]] = {
    "en": DEFAULT_STACK,
    "zh": ("qwen2.5-coder-1.5b-instruct", "all-minilm-l6-v2", "whisper-base", "piper-en-us-joe"),
}
ALL_STACK_MODELS = tuple(dict.fromkeys(m for models in LANG_STACKS.values() for m in models))

EVENT = "stack.progress"
STATE_FILE = "stack.json"

# The live checks: what is asked, and what a working model must give back.
CHAT_PROMPT = "What is the capital of France? Answer in one short sentence."
CHAT_EXPECT = "paris"
EMBED_ANCHOR, EMBED_NEAR, EMBED_FAR = "a cat sat on the mat", "a feline rested on the rug", "quarterly revenue grew"
SPEECH = "The quick brown fox jumps over the lazy dog."

ModelRef = Annotated[str, Field(min_length=1, max_length=200)]


class UpInput(Input):
    models: list[ModelRef] = Field(default_factory=list, max_length=32,
                                   description="bring up these models instead of the default stack (repeatable)",
                                   json_schema_extra=cli("model"))
    lang: Literal["en", "zh"] | None = Field(
        None, description="the language its users speak: zh brings up the multilingual Whisper base (Chinese in "
                          "simplified characters, and English) for speech to text (default: stack_lang, en)")
    check: bool = Field(True, description="prove each service live with a real request")
    timeout_s: float = Field(600, gt=0, le=86400, description="seconds to wait for each service to be ready",
                             json_schema_extra=cli("timeout"))


class StackEntry(Output):
    model: str
    requested: str = Field(description="the model as asked for (a name or an alias)")
    type: str | None = Field(description="llm, embedding, asr or tts (None when the model did not resolve)")
    name: str | None = Field(description="the service")
    engine: str | None
    endpoint: str | None
    state: str = Field(description="the service's state (running, failed, ...)")
    outcome: str = Field(description="ready | failed | timeout | starting | stopped")
    message: str
    pulled: bool = False
    reused: bool = False
    check: Literal["passed", "failed", "skipped"] = "skipped"
    saw: str = Field("", description="what the live check saw (or why the service is not ready)")
    figure: str | None = Field(None, description="the check's figure: tokens/s, embeddings/s or real-time factor")
    figure_value: float | None = None
    figure_unit: str | None = None


class StackOutput(Output):
    services: list[StackEntry]
    ok: bool = Field(description="every service is ready and no check failed")
    elapsed_s: float


# ---------------------------------------------------------------------------- up
@dataclass
class _Item:
    model: str
    type: str | None = None
    engine: str | None = None
    run: service_ops.RunOutput | None = None
    error: str | None = None
    entry: StackEntry | None = field(default=None)


def _publish(ctx: Context, model: str, step: str, message: str, /, **data: Any) -> None:
    """A ``stack.progress`` event for one model of the stack (``model`` as asked for)."""
    sid = data.pop("service_id", None)
    data.pop("model", None)  # service.run's canonical name; the stack speaks of the model as asked for
    data.pop("step", None)
    ctx.bus.publish(EVENT, f"{model}: {message}", service_id=sid, model=model, step=step, **data)


async def _bring_up(ctx: Context, item: _Item, timeout_s: float) -> None:
    def on_step(step: str, message: str, **data: Any) -> None:
        if step == "resolved":
            item.type, item.engine = data.get("model_type"), data.get("engine")
        _publish(ctx, item.model, step, message, **data)

    _publish(ctx, item.model, "resolve", "resolving for this hardware")
    try:
        item.run = await service_ops.run_steps(ctx, service_ops.RunInput(model=item.model, timeout_s=timeout_s),
                                               on_step=on_step)
    except AimaError as e:
        item.error = e.message
        _publish(ctx, item.model, "failed", e.message)
        return
    except Exception as e:  # noqa: BLE001 - one model's surprise must not hide the others' results
        item.error = f"{type(e).__name__}: {e}"
        _publish(ctx, item.model, "failed", item.error)
        return
    svc = item.run.service
    item.engine = svc.engine
    if item.type is None:
        entry = catalog_model(ctx, svc.model)
        item.type = entry.type if entry is not None else None
    where = f" at {svc.endpoint}" if svc.endpoint else ""
    _publish(ctx, item.model, item.run.outcome, f"{item.run.outcome}{where}" +
             (f": {item.run.message}" if item.run.message else ""), service=svc.name, service_id=svc.id)


def _entry(item: _Item) -> StackEntry:
    if item.run is None:
        return StackEntry(model=item.model, requested=item.model, type=item.type, name=None, engine=item.engine,
                          endpoint=None, state="failed", outcome="failed", message=item.error or "",
                          saw=item.error or "")
    svc = item.run.service
    ready = item.run.outcome == "ready"
    return StackEntry(model=svc.model, requested=item.model, type=item.type, name=svc.name, engine=svc.engine,
                      endpoint=svc.endpoint, state=svc.state, outcome=item.run.outcome, message=item.run.message,
                      pulled=item.run.pulled, reused=item.run.reused,
                      saw="" if ready else (item.run.message or svc.message or item.run.outcome))


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def _figure(e: StackEntry, value: float | None, unit: str, text: str) -> None:
    if value is not None:
        e.figure, e.figure_value, e.figure_unit = text, value, unit


def _quote(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


async def _check_chat(ctx: Context, e: StackEntry) -> None:
    out = await inference.chat(ctx, inference.ChatInput(model=e.name or e.model, prompt=CHAT_PROMPT, max_tokens=48,
                                                        temperature=0, stream=True))
    e.check = "passed" if CHAT_EXPECT in out.text.lower() else "failed"
    e.saw = f"answered {_quote(out.text)}" + (f" (first token after {out.ttft_s:.2f}s)" if out.ttft_s else "")
    if e.check == "failed":
        e.saw += f"; expected it to name {CHAT_EXPECT.title()}"
    _figure(e, out.tokens_per_s, "tokens/s", f"{out.tokens_per_s:.0f} tok/s" if out.tokens_per_s else "")


async def _check_embed(ctx: Context, e: StackEntry) -> None:
    out = await inference.embed(ctx, inference.EmbedInput(model=e.name or e.model,
                                                          inputs=[EMBED_ANCHOR, EMBED_NEAR, EMBED_FAR]))
    v = [row.embedding for row in out.data]
    near, far = _cosine(v[0], v[1]), _cosine(v[0], v[2])
    e.check = "passed" if near > far else "failed"
    e.saw = (f"{out.dims} dims; cos(cat, feline) {near:.2f} {'>' if near > far else '<='} "
             f"cos(cat, revenue) {far:.2f}")
    _figure(e, out.embeddings_per_s, "embeddings/s",
            f"{out.embeddings_per_s:.0f} emb/s" if out.embeddings_per_s else "")


async def _check_speech(ctx: Context, voices: list[StackEntry], ears: list[StackEntry]) -> None:
    """Each voice speaks SPEECH and the first speech model hears it; each speech model hears the first voice."""
    heard: dict[str, inference.TranscribeOutput | str] = {}  # speech-model service name -> result or error

    async def hear(ear: StackEntry, audio: inference.SpeakOutput) -> inference.TranscribeOutput:
        out = await inference.transcribe(ctx, inference.TranscribeInput(model=ear.name or ear.model,
                                                                        audio=audio.audio_b64, filename="check.wav"))
        _figure(ear, out.rtf, "rtf", f"RTF {out.rtf:.3f}" if out.rtf is not None else "")
        return out

    first_audio: inference.SpeakOutput | None = None
    for voice in voices:
        try:
            audio = await inference.speak(ctx, inference.SpeakInput(model=voice.name or voice.model, text=SPEECH))
        except AimaError as err:
            voice.check, voice.saw = "failed", err.message
            continue
        first_audio = first_audio or audio
        _figure(voice, audio.rtf, "rtf", f"RTF {audio.rtf:.3f}" if audio.rtf is not None else "")
        spoke = f"spoke {audio.duration_s:.1f}s of audio"
        if not ears:
            voice.check = "passed"
            voice.saw = f"{spoke} (not heard back: no speech-recognition service is ready)"
            continue
        ear = ears[0]
        try:
            out = await hear(ear, audio)
        except AimaError as err:
            heard.setdefault(ear.name or ear.model, err.message)
            voice.check, voice.saw = "failed", f"{spoke}, but {ear.model} could not hear it: {err.message}"
            continue
        heard.setdefault(ear.name or ear.model, out)
        same = _words(out.text) == _words(SPEECH)
        voice.check = "passed" if same else "failed"
        voice.saw = f"{spoke}; {ear.model} heard {_quote(out.text)}" + ("" if same else f", not {_quote(SPEECH)}")
    for ear in ears:
        key = ear.name or ear.model
        if key not in heard:
            if first_audio is None:
                ear.check, ear.saw = "skipped", "no speech to transcribe: no text-to-speech service is ready"
                continue
            try:
                heard[key] = await hear(ear, first_audio)
            except AimaError as err:
                heard[key] = err.message
        got = heard[key]
        if isinstance(got, str):
            ear.check, ear.saw = "failed", got
            continue
        same = _words(got.text) == _words(SPEECH)
        ear.check = "passed" if same else "failed"
        ear.saw = f"heard {_quote(got.text)}" + ("" if same else f", not {_quote(SPEECH)}")


async def _checks(ctx: Context, items: list[_Item]) -> None:
    ready = [i.entry for i in items if i.entry is not None and i.entry.outcome == "ready"]
    for e in ready:
        if e.type not in ("llm", "embedding", "tts", "asr"):
            e.saw = f"no live check for a {e.type or 'model of unknown type'}"
            continue
        if e.type in ("tts", "asr"):
            continue
        _publish(ctx, e.model, "check", "checking it live")
        try:
            await (_check_chat(ctx, e) if e.type == "llm" else _check_embed(ctx, e))
        except AimaError as err:
            e.check, e.saw = "failed", err.message
        _publish(ctx, e.model, f"check.{e.check}", f"check {e.check}: {e.saw}")
    voices = [e for e in ready if e.type == "tts"]
    ears = [e for e in ready if e.type == "asr"]
    for e in voices + ears:
        _publish(ctx, e.model, "check", "checking it live (speech round trip)")
    await _check_speech(ctx, voices, ears)
    for e in voices + ears:
        _publish(ctx, e.model, f"check.{e.check}", f"check {e.check}: {e.saw}")


@operation("stack.up", mutating=True, method="POST", path="/stack/up",
           cli=Cli("stack", "up", table="services",
                   columns=("model", "engine", "endpoint", "state", "check", "figure", "saw")))
async def up(ctx: Context, inp: UpInput) -> StackOutput:
    """Bring up the default stack for this hardware (or the models given) and prove each service live.

    Resolves, pulls what is missing, starts every service and waits until ready, then checks each one
    with a real request — a chat answer, an embedding similarity, a sentence spoken and heard back — and
    reports its figure (tokens/s, embeddings/s, real-time factor). Running it again changes nothing
    that is already right."""
    t0 = time.monotonic()
    items: dict[str, _Item] = {}  # by canonical name: an alias and its model are one service
    lang = inp.lang or ctx.settings.stack_lang
    for m in inp.models or LANG_STACKS[lang]:
        entry = catalog_model(ctx, m)
        items.setdefault(entry.name if entry is not None else m, _Item(m))
    await asyncio.gather(*(_bring_up(ctx, i, inp.timeout_s) for i in items.values()))
    for i in items.values():
        i.entry = _entry(i)
    _remember(ctx, [i.run.service.id for i in items.values() if i.run is not None])
    if inp.check:
        await _checks(ctx, list(items.values()))
    entries = [i.entry for i in items.values() if i.entry is not None]
    ok = all(e.outcome == "ready" for e in entries) and not any(e.check == "failed" for e in entries)
    return StackOutput(services=entries, ok=ok, elapsed_s=round(time.monotonic() - t0, 3))


# ---------------------------------------------------------------------------- what `up` brought up
def _state_path(ctx: Context) -> Path:
    return Path(ctx.settings.home) / STATE_FILE


def _recorded(ctx: Context) -> list[str]:
    try:
        data = json.loads(_state_path(ctx).read_text())
    except (OSError, ValueError):
        return []
    ids = data.get("services") if isinstance(data, dict) else None
    return [s for s in ids if isinstance(s, str)] if isinstance(ids, list) else []


def _remember(ctx: Context, service_ids: list[str]) -> None:
    ids = list(dict.fromkeys(_recorded(ctx) + service_ids))
    path = _state_path(ctx)
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps({"services": ids}))
        os.replace(tmp, path)


# ---------------------------------------------------------------------------- down
class DownInput(Input):
    pass


@operation("stack.down", mutating=True, method="POST", path="/stack/down",
           cli=Cli("stack", "down", table="services", columns=("name", "model", "engine", "state", "message")))
async def down(ctx: Context, inp: DownInput) -> StackOutput:
    """Stop what `stack.up` brought up and every service of the default stack (their records stay)."""
    t0 = time.monotonic()
    recorded = _recorded(ctx)
    targets = [r.id for r in ctx.services.list() if r.id in recorded or r.model in ALL_STACK_MODELS]

    async def stop(sid: str) -> None:
        with contextlib.suppress(NotFound):  # deleted meanwhile: nothing left to stop
            await ctx.reconciler.ensure_stopped(sid)

    await asyncio.gather(*(stop(sid) for sid in targets))
    with contextlib.suppress(OSError):
        _state_path(ctx).unlink()
    out = []
    for sid in targets:
        try:
            view = service_ops.load_view(ctx, sid)
        except NotFound:
            continue
        out.append(StackEntry(model=view.model, requested=view.model, type=None, name=view.name,
                              engine=view.engine, endpoint=None, state=view.state, outcome="stopped",
                              message=view.message or ""))
    return StackOutput(services=out, ok=all(e.state == "stopped" for e in out),
                       elapsed_s=round(time.monotonic() - t0, 3))
