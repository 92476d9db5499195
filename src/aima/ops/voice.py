"""One spoken turn of a voice assistant: audio in → transcription → chat → speech out (``POST /v1/voice``,
``aima voice FILE``).

Each stage reaches its engine the one way every request does (``inference.engine``: ``controller.acquire``):
by model name, alias or service name, to the least busy ready instance, loading a service on demand, counted
in the metrics. The reply is streamed from the LLM and cut into sentences as it arrives; each sentence is
spoken while the LLM writes the next, so the first audio comes long before the whole answer is written.

``turn(ctx, VoiceTurn)`` yields events (dicts with a ``type``) in the order a client needs them:

- ``transcript`` — what was heard: ``text``, ``language``, ``duration_s`` (of the input), ``elapsed_s``;
- ``reply.delta`` — a piece of the reply's text as the LLM writes it;
- ``audio`` — one sentence spoken: ``index``, ``text``, ``audio`` (WAV, base64), ``sample_rate``,
  ``duration_s``, ``at_s`` (seconds since the input was received);
- ``done`` — the whole turn: both texts, the models used, the session, and the time of each stage.

The models: the request names them (``model`` the LLM, ``transcription_model``, ``speech_model``) or, left out,
the ready service of that kind (the default stack's first when several are). A session keeps the conversation
(the last ``SESSION_TURNS`` turns) in the daemon's memory for ``SESSION_TTL_S``; a restart forgets it.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import time
import uuid
import wave
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aima.errors import EngineError, InvalidInput, NotFound
from aima.ops.context import Context
from aima.ops.inference import _engine_message, _json, _mime, _raise_for, engine, wav_facts

SESSION_TURNS = 20
SESSION_TTL_S = 3600.0
MAX_SESSIONS = 512
DEFAULT_SYSTEM = ("You are a helpful voice assistant. Your answer is spoken aloud: reply in two or three short plain "
                  "sentences, without lists, markdown or code. Answer in the language you are spoken to.")
KIND_FIELDS = {"asr": "transcription_model", "llm": "model", "tts": "speech_model"}
KIND_WORDS = {"asr": "speech-recognition", "llm": "chat", "tts": "text-to-speech"}

# A sentence ends at . ! ? ; (or their CJK forms) followed by a space or a closing quote, at a CJK stop on its own,
# or at a line break.
_END = re.compile(r"(?:[.!?;:]+[\"')\]]*(?=\s)|[。！？；…]+[”’」』）)]*|\n+)")
_MARKUP = re.compile(r"[*_`#>|~]+|\[(?:[^\]]*)\]\((?:[^)]*)\)")
MIN_SENTENCE = 12  # characters: a shorter piece waits for the next one ("Dr.", "1.", "OK.")
# The reply's first words are spoken as soon as a clause is complete (a comma after at least FIRST_CLAUSE
# characters), so the first audio does not wait for a long first sentence.
_CLAUSE = re.compile(r"(?:[,，、—–]|\s-\s)(?=\s|[\u3000-\u9fff])")
FIRST_CLAUSE = 20
# Without a comma, a long first sentence is cut before a joining word once 30 characters are written.
_JOIN = re.compile(r"\s(?=(?:and|but|because|so|which|while|when|where|or|by|with|for)\s)", re.I)
FIRST_JOIN = 30


@dataclass
class VoiceTurn:
    audio: bytes
    filename: str = "audio.wav"
    model: str | None = None
    transcription_model: str | None = None
    speech_model: str | None = None
    voice: str | None = None
    system: str | None = None
    session: str | None = None
    language: str | None = None
    max_tokens: int = 256
    temperature: float | None = None


@dataclass
class _Session:
    messages: list[dict[str, str]] = field(default_factory=list)
    used: float = field(default_factory=time.monotonic)


_sessions: OrderedDict[str, _Session] = OrderedDict()


def _session(sid: str) -> _Session:
    now = time.monotonic()
    for key in [k for k, s in _sessions.items() if now - s.used > SESSION_TTL_S]:
        del _sessions[key]
    s = _sessions.pop(sid, None) or _Session()
    s.used = now
    _sessions[sid] = s
    while len(_sessions) > MAX_SESSIONS:
        _sessions.popitem(last=False)
    return s


def check(req: VoiceTurn) -> None:
    """Bad input is one clear error naming the field, before any engine is asked."""
    if not req.audio:
        raise InvalidInput("file is empty: send the spoken question as the multipart field `file`", field="file")
    for name in ("model", "transcription_model", "speech_model", "voice", "session", "language"):
        v = getattr(req, name)
        if v is not None and (not isinstance(v, str) or not v.strip() or len(v) > 200):
            raise InvalidInput(f"{name} must be a non-empty string of at most 200 characters", field=name)
    if req.system is not None and len(req.system) > 20000:
        raise InvalidInput("system is longer than 20000 characters", field="system")
    if not 1 <= req.max_tokens <= 8192:
        raise InvalidInput("max_tokens must be between 1 and 8192", field="max_tokens")
    if req.temperature is not None and not 0 <= req.temperature <= 2:
        raise InvalidInput("temperature must be between 0 and 2", field="temperature")


def choose(ctx: Context, kind: str, given: str | None) -> str:
    """The model the request names for a stage, else the ready (or loadable) service of that kind."""
    if given:
        return given
    routes = [r for r in ctx.routes.services() if r.kind == kind]
    if not routes:
        raise NotFound(f"no {KIND_WORDS[kind]} service runs here; start one (`aima up`) or name a model in "
                           f"{KIND_FIELDS[kind]}", field=KIND_FIELDS[kind])
    from aima.ops.stack import LANG_STACKS

    preferred = list(LANG_STACKS.get(ctx.settings.stack_lang, ())) + [m for s in LANG_STACKS.values() for m in s]
    rank = {m: i for i, m in enumerate(dict.fromkeys(preferred))}
    routes.sort(key=lambda r: (not r.endpoints, rank.get(r.model, len(rank)), r.name))
    return routes[0].name


def speakable(text: str) -> str:
    """What the voice says of a sentence: no markdown marks, links as their words, spaces tidied."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return " ".join(_MARKUP.sub("", text).split())


def split_sentences(buf: str, final: bool = False, first: bool = False) -> tuple[list[str], str]:
    """Whole sentences at the start of ``buf`` (each at least MIN_SENTENCE characters, shorter ones joined to the
    next) and the rest; ``final`` flushes the rest too. ``first`` (nothing spoken yet): a first clause of at least
    FIRST_CLAUSE characters ending at a comma counts as a sentence."""
    out: list[str] = []
    start = 0
    if first and not _END.search(buf):
        cut = next((m.end() for m in _CLAUSE.finditer(buf) if len(buf[:m.end()].strip()) >= FIRST_CLAUSE), None)
        if cut is None:
            cut = next((m.start() for m in _JOIN.finditer(buf) if len(buf[:m.start()].strip()) >= FIRST_JOIN), None)
        if cut is not None:
            out.append(buf[:cut].strip())
            start = cut
    for m in _END.finditer(buf):
        piece = buf[start:m.end()]
        if len(piece.strip()) >= MIN_SENTENCE or (re.search(r"[\u3000-\u9fff]", piece) and len(piece.strip()) >= 4):
            out.append(piece.strip())
            start = m.end()
    rest = buf[start:]
    if final and rest.strip():
        out.append(rest.strip())
        rest = ""
    return out, rest


def join_wavs(clips: list[bytes]) -> bytes:
    """One WAV of the sentences in order (they come from one voice: one rate, one sample format)."""
    frames = []
    params = None
    for c in clips:
        facts = wav_facts(c)
        if facts is None:
            continue
        rate, channels, width, _d, data = facts
        params = params or (rate, channels, width)
        if (rate, channels, width) == params:
            frames.append(data)
    if params is None:
        return b""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setframerate(params[0])
        w.setnchannels(params[1])
        w.setsampwidth(params[2])
        w.writeframes(b"".join(frames))
    return buf.getvalue()


async def _transcribe(ctx: Context, req: VoiceTurn, model: str) -> dict[str, Any]:
    name = req.filename.replace("/", "_").replace("\\", "_") or "audio.wav"
    async with engine(ctx, model, "asr", "/v1/audio/transcriptions") as t:
        form = {"model": t.model, "response_format": "verbose_json"}
        if req.language:
            form["language"] = req.language
        t0 = time.monotonic()
        reply = _json(t, await t.post(data=form, files={"file": (name, req.audio, _mime(name))}))
        elapsed = time.monotonic() - t0
    text = reply.get("text")
    if not isinstance(text, str):
        raise EngineError(f"{t.where()} answered without a text: {json.dumps(reply)[:300]}")
    duration = reply.get("duration")
    if not isinstance(duration, int | float) or duration <= 0:
        facts = wav_facts(req.audio)
        duration = facts[3] if facts is not None else None
    return {"type": "transcript", "text": text.strip(), "language": reply.get("language"), "model": t.model,
            "service": t.name, "duration_s": round(duration, 3) if duration else None, "elapsed_s": round(elapsed, 4)}


async def _speak(ctx: Context, model: str, voice: str | None, text: str) -> tuple[bytes, str, float]:
    async with engine(ctx, model, "tts", "/v1/audio/speech") as t:
        body = {"model": t.model, "input": text, "voice": voice or t.model, "response_format": "wav"}
        t0 = time.monotonic()
        r = await t.post(json=body)
        elapsed = time.monotonic() - t0
    _raise_for(t, r)
    if wav_facts(r.content) is None:
        raise EngineError(f"{t.where()} answered {len(r.content)} bytes that are not a WAV file")
    return r.content, t.name, elapsed


async def turn(ctx: Context, req: VoiceTurn) -> AsyncIterator[dict[str, Any]]:
    """The events of one voice turn (see the module's doc); errors are raised as AimaError."""
    check(req)
    t0 = time.monotonic()
    asr, llm, tts = (choose(ctx, k, g) for k, g in (("asr", req.transcription_model), ("llm", req.model),
                                                    ("tts", req.speech_model)))
    heard = await _transcribe(ctx, req, asr)
    yield heard
    if not heard["text"]:
        raise InvalidInput(f"no speech was heard in {req.filename} ({asr} transcribed nothing)", field="file")
    sid = req.session or uuid.uuid4().hex[:16]
    sess = _session(sid)
    system = req.system if req.system is not None else DEFAULT_SYSTEM
    messages = ([{"role": "system", "content": system}] if system else []) + sess.messages + \
        [{"role": "user", "content": heard["text"]}]

    events: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()
    sentences: asyncio.Queue[str | None] = asyncio.Queue()
    clips: list[bytes] = []
    figures: dict[str, Any] = {"speech_s": 0.0, "first_audio_s": None, "chat_first_token_s": None}
    reply_parts: list[str] = []
    chat_info: dict[str, Any] = {}

    async def chat() -> None:
        t_chat = time.monotonic()
        buf = ""
        async with engine(ctx, llm, "llm", "/v1/chat/completions") as t:
            chat_info["model"], chat_info["service"] = t.model, t.name
            body: dict[str, Any] = {"model": t.model, "messages": messages, "max_tokens": req.max_tokens,
                                    "stream": True}
            if req.temperature is not None:
                body["temperature"] = req.temperature
            finish = None
            async with t.stream(json=body) as r:
                t.lease.status = r.status_code
                if r.status_code >= 400:
                    await r.aread()
                    _raise_for(t, r)
                async for line in r.aiter_lines():
                    line = line.strip()
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        continue
                    if isinstance(chunk, dict) and chunk.get("error"):
                        raise EngineError(f"{t.where()} stopped with an error: {_engine_message(data.encode())}")
                    for choice in (chunk.get("choices") or []) if isinstance(chunk, dict) else []:
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            if figures["chat_first_token_s"] is None:
                                figures["chat_first_token_s"] = round(time.monotonic() - t_chat, 4)
                            reply_parts.append(piece)
                            await events.put({"type": "reply.delta", "text": piece})
                            buf += piece
                            done, buf = split_sentences(buf, first=not chat_info.get("spoken"))
                            chat_info["spoken"] = chat_info.get("spoken") or bool(done)
                            for s in done:
                                await sentences.put(s)
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
            if finish is None:
                raise EngineError(f"{t.where()} closed the stream before the answer was complete")
        chat_info["finish_reason"] = finish
        figures["chat_s"] = round(time.monotonic() - t_chat, 4)
        done, _ = split_sentences(buf, final=True)
        for s in done:
            await sentences.put(s)

    async def speak() -> None:
        index = 0
        while (sentence := await sentences.get()) is not None:
            said = speakable(sentence)
            if not re.search(r"\w", said):
                continue
            audio, service, elapsed = await _speak(ctx, tts, req.voice, said)
            figures["speech_s"] += elapsed
            figures["speech_service"] = service
            at = time.monotonic() - t0
            if figures["first_audio_s"] is None:
                figures["first_audio_s"] = round(at, 4)
            facts = wav_facts(audio)
            clips.append(audio)
            await events.put({"type": "audio", "index": index, "text": said, "format": "wav",
                              "audio": base64.b64encode(audio).decode(), "sample_rate": facts[0] if facts else None,
                              "duration_s": round(facts[3], 3) if facts else None, "elapsed_s": round(elapsed, 4),
                              "at_s": round(at, 4)})
            index += 1

    async def run() -> None:
        speaker = asyncio.create_task(speak())
        try:
            await chat()
            await sentences.put(None)
            await speaker
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
            speaker.cancel()
            await events.put(e)
            return
        await events.put(None)

    runner = asyncio.create_task(run())
    try:
        while (ev := await events.get()) is not None:
            if isinstance(ev, BaseException):
                raise ev
            yield ev
    finally:
        if not runner.done():
            runner.cancel()
    reply = "".join(reply_parts).strip()
    sess.messages += [{"role": "user", "content": heard["text"]}, {"role": "assistant", "content": reply}]
    del sess.messages[:-2 * SESSION_TURNS]
    total = time.monotonic() - t0
    yield {"type": "done", "session": sid, "transcript": heard["text"], "language": heard["language"],
           "reply": reply, "finish_reason": chat_info.get("finish_reason"), "sentences": len(clips),
           "models": {"transcription": heard["service"], "chat": chat_info.get("service"),
                      "speech": figures.get("speech_service", tts)},
           "timings": {"transcription_s": heard["elapsed_s"], "chat_first_token_s": figures["chat_first_token_s"],
                       "chat_s": figures.get("chat_s"), "speech_s": round(figures["speech_s"], 4),
                       "first_audio_s": figures["first_audio_s"], "total_s": round(total, 4),
                       "input_audio_s": heard["duration_s"]},
           "_clips": clips}


async def whole(ctx: Context, req: VoiceTurn) -> dict[str, Any]:
    """The turn in one answer: the ``done`` event with the reply's audio as one WAV (base64)."""
    done: dict[str, Any] = {}
    async for ev in turn(ctx, req):
        if ev["type"] == "done":
            done = ev
    clips = done.pop("_clips", [])
    audio = join_wavs(clips)
    facts = wav_facts(audio) if audio else None
    return {**{k: v for k, v in done.items() if k != "type"}, "format": "wav",
            "audio": base64.b64encode(audio).decode(), "audio_duration_s": round(facts[3], 3) if facts else 0.0}
