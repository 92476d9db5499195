"""Inference operations: one request to a ready service — chat, embed, speak, transcribe.

Each reaches its engine the way every gateway request does (``controller.acquire``): by service name,
model name or alias, to the least busy ready instance, loading a service with an idle TTL on demand, and
counted as use (no idle unload mid-request) and in the metrics. It then calls that engine's OpenAI
endpoint directly (``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/audio/speech``,
``/v1/audio/transcriptions``) through one pooled client, so the figures measured here are the engine's
own: tokens per second, time to the first token, embeddings per second, real-time factor (processing
time / audio duration; below 1 is faster than real time).

Nothing is made up here: an engine that does not answer, answers an error, or breaks off a stream is
an error naming the service and what the engine said.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from aima.controller.acquire import Lease, Target
from aima.errors import EngineError, InvalidInput, TimedOut
from aima.ops.context import Context
from aima.ops.models import Input, Output, cli
from aima.ops.registry import Cli, operation

MAX_AUDIO_B64 = 200_000_000  # about 150 MB of audio
BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


# ---------------------------------------------------------------------------- reaching the engine
@dataclass
class Engine:
    """One request to the engine of a ready service, on the pooled client."""

    lease: Lease
    http: httpx.AsyncClient
    path: str

    @property
    def t(self) -> Target:
        return self.lease.target

    @property
    def name(self) -> str:
        return self.t.name

    @property
    def model(self) -> str:
        return self.t.model

    def where(self) -> str:
        return f"the engine of service {self.name} ({self.t.url})"

    async def post(self, **kw: Any) -> httpx.Response:
        r = await self.http.post(self.t.url + self.path, **kw)
        self.lease.answered(r.status_code, r.content if "json" in r.headers.get("content-type", "") else None)
        return r

    def stream(self, **kw: Any) -> Any:
        return self.http.stream("POST", self.t.url + self.path, **kw)


@contextlib.asynccontextmanager
async def engine(ctx: Context, model: str, kind: str, path: str) -> AsyncIterator[Engine]:
    """A ready service of ``kind`` for ``model`` (loaded on demand), counted while the block runs; transport
    failures become errors that name the service."""
    routes = ctx.acquirer.candidates(model, kind)
    wrong = [r for r in routes if r.kind is not None and r.kind != kind]
    if routes and len(wrong) == len(routes):
        r = wrong[0]
        raise InvalidInput(f"service {r.name} serves {r.model}, a {r.kind} model; this request needs a {kind} model",
                           field="model")
    async with ctx.acquirer.lease(model, kind, path) as lease:
        e = Engine(lease, ctx.acquirer.http, path)
        try:
            yield e
        except httpx.TimeoutException as x:
            lease.status = 504
            raise TimedOut(f"{e.where()} did not answer in time ({type(x).__name__}); "
                           f"`aima service logs {e.name}` shows what it is doing") from None
        except httpx.HTTPError as x:
            lease.status = 502
            ctx.acquirer.recheck(lease.target.endpoint.instance_id)
            raise EngineError(f"{e.where()} broke off the request: {type(x).__name__}: {x or 'connection lost'}; "
                              f"`aima service status {e.name}` shows what happened to it") from None


def _engine_message(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return raw[:500].decode(errors="replace").strip() or "(no body)"
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:500]
        if isinstance(err, str):
            return err[:500]
        if body.get("detail"):
            return str(body["detail"])[:500]
    return json.dumps(body)[:500]


def _raise_for(t: Engine, r: httpx.Response) -> None:
    if r.status_code >= 400:
        raise EngineError(f"{t.where()} answered HTTP {r.status_code}: {_engine_message(r.content)}",
                          details={"service": t.name, "status": r.status_code})


def _json(t: Engine, r: httpx.Response) -> dict[str, Any]:
    _raise_for(t, r)
    try:
        body = r.json()
    except ValueError:
        raise EngineError(f"{t.where()} answered with something that is not JSON: {r.text[:200]!r}") from None
    if not isinstance(body, dict):
        raise EngineError(f"{t.where()} answered a JSON {type(body).__name__}, not an object")
    return body


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


# ---------------------------------------------------------------------------- chat
class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str = Field(max_length=1_000_000)


class ChatInput(Input):
    # a prompt or messages, exactly one (said in JSON Schema too, so a client can know it)
    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
        {"required": ["messages"], "properties": {"messages": {"type": "array"}}}]})

    model: str = Field(min_length=1, max_length=200, description="model name or alias, or a service name")
    prompt: str | None = Field(None, max_length=1_000_000, description="the user's message")
    messages: list[Message] | None = Field(None, min_length=1, max_length=10_000,
                                           description="the whole conversation (instead of a prompt)",
                                           json_schema_extra=cli(hidden=True))
    max_tokens: int = Field(256, ge=1, le=131072, description="at most this many tokens in the answer")
    temperature: float | None = Field(None, ge=0, le=2, description="sampling temperature (default: the engine's)")
    stream: bool = Field(False, description="stream the answer from the engine (measures time to first token)")
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = Field(
        None, max_length=1000, description="token id -> bias from -100 (never) to 100 (always), as in OpenAI's API",
        json_schema_extra=cli(hidden=True))

    @model_validator(mode="after")
    def _prompt_or_messages(self) -> ChatInput:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give either prompt or messages (exactly one of them)")
        if self.messages is not None and not self.messages:
            raise ValueError("messages must not be empty")
        return self


class Usage(Output):
    prompt_tokens: int | None
    completion_tokens: int
    total_tokens: int | None


class ChatOutput(Output):
    model: str
    service: str
    text: str
    finish_reason: str | None
    usage: Usage = Field(description="the engine's counts; streaming from an engine that reports none, "
                                     "completion_tokens is the pieces received (about one token each)")
    tokens_per_s: float | None = Field(description="answer tokens per second (streaming: after the first one)")
    ttft_s: float | None = Field(description="seconds to the first token (streaming only)")
    elapsed_s: float


def _usage(u: Any, counted: int) -> Usage:
    u = u if isinstance(u, dict) else {}
    completion = u.get("completion_tokens")
    return Usage(prompt_tokens=u.get("prompt_tokens"),
                 completion_tokens=int(completion) if isinstance(completion, int) else counted,
                 total_tokens=u.get("total_tokens"))


@operation("inference.chat", mutating=False, method="POST", path="/inference/chat",
           cli=Cli(None, "chat", args=("model", "prompt")))
async def chat(ctx: Context, inp: ChatInput) -> ChatOutput:
    """Ask a ready LLM service one question (or send a whole conversation) and get its answer.

    With the figures: tokens per second and, when streaming, the time to the first token."""
    messages = [m.model_dump() for m in inp.messages] if inp.messages is not None else \
        [{"role": "user", "content": inp.prompt}]
    async with engine(ctx, inp.model, "llm", "/v1/chat/completions") as t:
        body: dict[str, Any] = {"model": t.model, "messages": messages, "max_tokens": inp.max_tokens,
                                "stream": inp.stream}
        if inp.temperature is not None:
            body["temperature"] = inp.temperature
        if inp.logit_bias:
            body["logit_bias"] = inp.logit_bias
        t0 = time.monotonic()
        if not inp.stream:
            reply = _json(t, await t.post(json=body))
            return _chat_reply(t, reply, time.monotonic() - t0)
        body["stream_options"] = {"include_usage": True}  # engines that cannot count usage in a stream ignore it
        return await _stream_chat(t, body, t0)


def _chat_reply(t: Engine, reply: dict[str, Any], elapsed: float) -> ChatOutput:
    """A whole (not streamed) chat completion."""
    try:
        choice = reply["choices"][0]
        text = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise EngineError(f"{t.where()} answered without a choice: {json.dumps(reply)[:300]}") from None
    usage = _usage(reply.get("usage"), 0)
    tps = usage.completion_tokens / elapsed if usage.completion_tokens and elapsed > 0 else None
    return ChatOutput(model=t.model, service=t.name, text=text, finish_reason=choice.get("finish_reason"),
                      usage=usage, tokens_per_s=_r(tps, 2), ttft_s=None, elapsed_s=round(elapsed, 4))


async def _stream_chat(t: Engine, body: dict[str, Any], t0: float) -> ChatOutput:
    parts: list[str] = []
    first = last = None
    finish: str | None = None
    usage_raw: Any = None
    done = False
    async with t.stream(json=body) as r:
        t.lease.status = r.status_code
        if r.status_code >= 400:
            await r.aread()
            _raise_for(t, r)
        if "json" in r.headers.get("content-type", ""):  # an engine that does not stream answers at once
            await r.aread()
            return _chat_reply(t, _json(t, r), time.monotonic() - t0)
        async for line in r.aiter_lines():
            line = line.strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                continue
            if not isinstance(chunk, dict):
                continue
            if chunk.get("error"):
                raise EngineError(f"{t.where()} stopped with an error: {_engine_message(data.encode())}")
            if chunk.get("usage"):
                usage_raw = chunk["usage"]
                t.lease.answered(r.status_code, data.encode())
            for choice in chunk.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    last = time.monotonic()
                    first = first or last
                    parts.append(text)
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
    elapsed = time.monotonic() - t0
    if finish is None:  # an OpenAI stream's last piece says why it ended; without it the answer was cut
        how = "said it was done" if done else "closed the stream"
        raise EngineError(f"{t.where()} {how} before the answer was complete ({len(parts)} pieces received, "
                          f"no finish reason); `aima service status {t.name}` shows what happened")
    usage = _usage(usage_raw, len(parts))
    if first is not None and last is not None and len(parts) > 1 and last > first:
        tps: float | None = (len(parts) - 1) / (last - first)
    else:
        tps = usage.completion_tokens / elapsed if usage.completion_tokens and elapsed > 0 else None
    return ChatOutput(model=t.model, service=t.name, text="".join(parts), finish_reason=finish, usage=usage,
                      tokens_per_s=_r(tps, 2), ttft_s=_r(first - t0 if first is not None else None),
                      elapsed_s=round(elapsed, 4))


# ---------------------------------------------------------------------------- embed
class EmbedInput(Input):
    model: str = Field(min_length=1, max_length=200, description="model name or alias, or a service name")
    inputs: list[str] = Field(min_length=1, max_length=2048, description="the texts to embed")


class EmbeddingRow(Output):
    index: int
    text: str
    embedding: list[float]


class EmbedOutput(Output):
    model: str
    service: str
    dims: int = Field(description="dimensions of each vector")
    data: list[EmbeddingRow]
    prompt_tokens: int | None
    elapsed_s: float
    embeddings_per_s: float | None


@operation("inference.embed", mutating=False, method="POST", path="/inference/embed",
           cli=Cli(None, "embed", args=("model", "inputs"), table="data", columns=("index", "text", "embedding")))
async def embed(ctx: Context, inp: EmbedInput) -> EmbedOutput:
    """Embed texts with a ready embedding service: one vector per text, with the embeddings per second."""
    async with engine(ctx, inp.model, "embedding", "/v1/embeddings") as t:
        t0 = time.monotonic()
        reply = _json(t, await t.post(json={"model": t.model, "input": inp.inputs}))
    elapsed = time.monotonic() - t0
    rows = reply.get("data")
    if not isinstance(rows, list) or len(rows) != len(inp.inputs):
        raise EngineError(f"{t.where()} answered {len(rows) if isinstance(rows, list) else 'no'} embeddings "
                          f"for {len(inp.inputs)} inputs")
    vectors: dict[int, list[float]] = {}
    for pos, row in enumerate(rows):
        vec = row.get("embedding") if isinstance(row, dict) else None
        if not isinstance(vec, list) or not vec or not all(isinstance(x, int | float) for x in vec):
            raise EngineError(f"{t.where()} answered an embedding that is not a list of numbers (item {pos})")
        idx = row.get("index", pos)
        vectors[idx if isinstance(idx, int) else pos] = [float(x) for x in vec]
    if sorted(vectors) != list(range(len(inp.inputs))):
        raise EngineError(f"{t.where()} answered embeddings with indexes {sorted(vectors)[:10]}")
    dims = {len(v) for v in vectors.values()}
    if len(dims) != 1:
        raise EngineError(f"{t.where()} answered vectors of different sizes {sorted(dims)}")
    usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
    return EmbedOutput(model=t.model, service=t.name, dims=dims.pop(),
                       data=[EmbeddingRow(index=i, text=inp.inputs[i], embedding=vectors[i]) for i in sorted(vectors)],
                       prompt_tokens=usage.get("prompt_tokens"), elapsed_s=round(elapsed, 4),
                       embeddings_per_s=_r(len(inp.inputs) / elapsed if elapsed > 0 else None, 2))


# ---------------------------------------------------------------------------- speak
class SpeakInput(Input):
    model: str = Field(min_length=1, max_length=200, description="voice model name or alias, or a service name")
    text: str = Field(min_length=1, max_length=4096, description="what to say")
    voice: str | None = Field(None, max_length=200, description="speaker of a multi-speaker voice")
    format: Literal["wav", "pcm"] = Field("wav", description="wav, or pcm (raw 16-bit mono samples)")
    speed: float | None = Field(None, ge=0.25, le=4.0, description="speaking speed (1 is normal)")


class SpeakOutput(Output):
    model: str
    service: str
    format: str
    audio_b64: str = Field(description="the audio, base64")
    bytes: int
    sample_rate: int
    channels: int
    duration_s: float
    elapsed_s: float
    rtf: float | None = Field(description="real-time factor: synthesis time / audio duration")


def wav_facts(data: bytes) -> tuple[int, int, int, float, bytes] | None:
    """(sample rate, channels, sample width, duration, frames) of a WAV file; None if it is not one."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            rate, channels, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
            frames = w.readframes(n)
    except (wave.Error, EOFError, ValueError):
        return None
    return rate, channels, width, (n / rate if rate else 0.0), frames


@operation("inference.speak", mutating=False, method="POST", path="/inference/speak",
           cli=Cli(None, "speak", args=("model", "text")))
async def speak(ctx: Context, inp: SpeakInput) -> SpeakOutput:
    """Say a text with a ready text-to-speech service and get the audio.

    The audio comes base64 (WAV, or raw 16-bit PCM), with its duration and the synthesis' real-time factor."""
    async with engine(ctx, inp.model, "tts", "/v1/audio/speech") as t:
        body: dict[str, Any] = {"model": t.model, "input": inp.text, "voice": inp.voice or t.model,
                                "response_format": "wav"}
        if inp.speed is not None:
            body["speed"] = inp.speed
        t0 = time.monotonic()
        r = await t.post(json=body)
    elapsed = time.monotonic() - t0
    _raise_for(t, r)
    facts = wav_facts(r.content)
    if facts is None:
        raise EngineError(f"{t.where()} answered {len(r.content)} bytes of {r.headers.get('content-type')!r} "
                          f"that are not a WAV file")
    rate, channels, _width, duration, frames = facts
    if duration <= 0:
        raise EngineError(f"{t.where()} answered an empty WAV file for {len(inp.text)} characters of text")
    audio = r.content if inp.format == "wav" else frames
    return SpeakOutput(model=t.model, service=t.name, format=inp.format, audio_b64=base64.b64encode(audio).decode(),
                       bytes=len(audio), sample_rate=rate, channels=channels, duration_s=round(duration, 4),
                       elapsed_s=round(elapsed, 4), rtf=_r(elapsed / duration))


# ---------------------------------------------------------------------------- transcribe
class TranscribeInput(Input):
    model: str = Field(min_length=1, max_length=200, description="speech model name or alias, or a service name")
    audio: str = Field(min_length=4, max_length=MAX_AUDIO_B64, pattern=BASE64,
                       description="the audio file (wav, mp3, ...), base64")
    filename: str = Field("audio.wav", min_length=1, max_length=255, description="the audio file's name")
    language: str | None = Field(None, min_length=2, max_length=16, description="language code (default: detect)")


class TranscribeOutput(Output):
    model: str
    service: str
    text: str
    language: str | None
    duration_s: float | None = Field(description="audio duration in seconds")
    elapsed_s: float
    rtf: float | None = Field(description="real-time factor: transcription time / audio duration")


def _mime(filename: str) -> str:
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac", "ogg": "audio/ogg", "opus": "audio/ogg",
            "webm": "audio/webm", "m4a": "audio/mp4"}.get(ext, "application/octet-stream")


@operation("inference.transcribe", mutating=False, method="POST", path="/inference/transcribe",
           cli=Cli(None, "transcribe", args=("model",)))
async def transcribe(ctx: Context, inp: TranscribeInput) -> TranscribeOutput:
    """Turn speech into text with a ready speech-recognition service.

    Returns the text, the language and the real-time factor of the transcription."""
    try:
        audio = base64.b64decode(inp.audio, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("audio is not valid base64", field="audio") from None
    if not audio:
        raise InvalidInput("audio is empty", field="audio")
    name = inp.filename.replace("/", "_").replace("\\", "_")
    async with engine(ctx, inp.model, "asr", "/v1/audio/transcriptions") as t:
        form = {"model": t.model, "response_format": "verbose_json"}
        if inp.language:
            form["language"] = inp.language
        t0 = time.monotonic()
        r = await t.post(data=form, files={"file": (name, audio, _mime(name))})
    elapsed = time.monotonic() - t0
    reply = _json(t, r)
    text = reply.get("text")
    if not isinstance(text, str):
        raise EngineError(f"{t.where()} answered without a text: {json.dumps(reply)[:300]}")
    duration = reply.get("duration")
    if not isinstance(duration, int | float) or duration <= 0:
        facts = wav_facts(audio)
        duration = facts[3] if facts is not None and facts[3] > 0 else None
    return TranscribeOutput(model=t.model, service=t.name, text=text.strip(), language=reply.get("language"),
                            duration_s=_r(duration), elapsed_s=round(elapsed, 4),
                            rtf=_r(elapsed / duration) if duration else None)

