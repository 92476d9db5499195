"""``POST /v1/voice``: one spoken turn — the question's audio in, the reply's speech out, with both texts.

The request is multipart like ``/v1/audio/transcriptions``: the audio in the field ``file``; optional ``model``
(the chat model), ``transcription_model``, ``speech_model``, ``voice``, ``system``, ``session``, ``language``,
``max_tokens``, ``temperature`` and ``stream``. The work is ``aima.ops.voice`` (each stage through aima's own
routing); this module reads the form and writes the answer:

- without ``stream``: one JSON object — ``transcript``, ``reply``, ``audio`` (the reply spoken, one WAV, base64),
  ``timings`` (each stage), ``models``, ``session``;
- with ``stream=true``: server-sent events as they happen — ``transcript``, ``reply.delta`` pieces, one ``audio``
  event per sentence (WAV, base64) while the LLM still writes the next, and ``done`` with the texts and timings.

Bad input is a 4xx in OpenAI's error shape naming the field; an engine error before the answer began is its
status (502, 503 …); after the stream began, an ``error`` event ends it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aima.errors import AimaError

if TYPE_CHECKING:
    from aima.gateway.exchange import Exchange
    from aima.gateway.router import Gateway

FIELDS = ("model", "transcription_model", "speech_model", "voice", "system", "session", "language", "max_tokens",
          "temperature", "stream")
MAX_TOKENS = 8192  # as ops/voice.py takes
JSON_CT = (b"content-type", b"application/json")


class FormError(Exception):
    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message, self.param = message, param


def parse_multipart(content_type: bytes, body: bytes) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """(fields, files) of a multipart/form-data body; files map a field to (filename, bytes)."""
    mt, _, params = content_type.partition(b";")
    if mt.strip().lower() != b"multipart/form-data":
        raise FormError("send multipart/form-data with the audio in the field `file` (as for "
                        "/v1/audio/transcriptions)", "file")
    boundary = None
    for p in params.split(b";"):
        k, _, v = p.strip().partition(b"=")
        if k.lower() == b"boundary":
            boundary = v.strip().strip(b'"')
    if not boundary:
        raise FormError("the multipart body has no boundary")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in body.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        if content.endswith(b"\r\n"):
            content = content[:-2]
        name = filename = None
        for line in head.split(b"\r\n"):
            key, _, value = line.partition(b":")
            if key.strip().lower() != b"content-disposition":
                continue
            for item in value.split(b";"):
                k, _, v = item.strip().partition(b"=")
                v = v.strip().strip(b'"')
                if k.lower() == b"name":
                    name = v.decode("utf-8", "replace")
                elif k.lower() == b"filename":
                    filename = v.decode("utf-8", "replace")
        if name is None:
            continue
        if filename is not None:
            files[name] = (filename or "audio.wav", content)
        else:
            fields[name] = content.decode("utf-8", "replace")
    return fields, files


def voice_request(content_type: bytes, body: bytes) -> tuple[Any, bool]:
    """The ops request of a /v1/voice body, and whether to stream; FormError names a bad field."""
    from aima.ops.voice import VoiceTurn

    fields, files = parse_multipart(content_type, body)
    if "file" not in files:
        raise FormError("the audio is missing: send it as the multipart file field `file`", "file")
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise FormError(f"unknown field {unknown[0]!r}; /v1/voice takes file, {', '.join(FIELDS)}", unknown[0])
    kw: dict[str, Any] = {}
    for name in ("model", "transcription_model", "speech_model", "voice", "system", "session", "language"):
        if name in fields and fields[name] != "":
            kw[name] = fields[name]
    for name, cast in (("max_tokens", int), ("temperature", float)):
        if name in fields and fields[name] != "":
            try:
                kw[name] = cast(fields[name])
            except ValueError:
                raise FormError(f"{name} must be a {'whole ' if cast is int else ''}number, not {fields[name]!r}",
                                name) from None
    if not 1 <= kw.get("max_tokens", 1) <= MAX_TOKENS:
        raise FormError(f"max_tokens must be from 1 to {MAX_TOKENS}", "max_tokens")
    if not 0 <= kw.get("temperature", 0) <= 2:
        raise FormError("temperature must be from 0 to 2", "temperature")
    stream = fields.get("stream", "false").strip().lower()
    if stream not in ("true", "false", "1", "0", ""):
        raise FormError(f"stream must be true or false, not {fields['stream']!r}", "stream")
    filename, audio = files["file"]
    return VoiceTurn(audio=audio, filename=filename, **kw), stream in ("true", "1")


def _sse(ev: dict[str, Any]) -> bytes:
    return b"event: " + ev["type"].encode() + b"\ndata: " + json.dumps(ev, ensure_ascii=False).encode() + b"\n\n"


def error_body(e: AimaError) -> bytes:
    return json.dumps({"error": {"message": e.message, "type": "invalid_request_error" if e.status < 500
                                 else "server_error", "code": e.code, "param": e.field}}).encode()


def _refusal(gw: Gateway, ex: Exchange, req: Any) -> tuple[int, bytes, list[tuple[bytes, bytes]]] | None:
    """The API key's limits, as for every /v1 request: an inference key limited to some models may use only those
    (each of the three stages' models is checked), and its requests per minute are counted once per turn."""
    from aima.gateway.router import _allowed, _limits
    from aima.ops import voice

    assert gw.ctx is not None and gw.acquirer is not None
    for kind, attr in (("asr", "transcription_model"), ("llm", "model"), ("tts", "speech_model")):
        setattr(req, attr, voice.choose(gw.ctx, kind, getattr(req, attr)))  # the same choice the turn makes
    key = getattr(ex, "key", None)
    if key is None:
        return None
    if key.models is not None:
        for kind, attr in (("asr", "transcription_model"), ("llm", "model"), ("tts", "speech_model")):
            name = getattr(req, attr)
            if not _allowed(key.models, name, gw.acquirer.candidates(name, kind)):
                body = json.dumps({"error": {"message": f"API key {key.id} may use only "
                                                        f"{', '.join(sorted(key.models))}, not {name!r} ({attr})",
                                             "type": "permission_error", "code": "model_not_allowed",
                                             "param": attr}}).encode()
                return 403, body, []
    if key.rpm is not None or key.tpm is not None:
        wait = gw.usage.admit(key.id, key.rpm, key.tpm)
        if wait is not None:
            body = json.dumps({"error": {"message": f"API key {key.id} is over its limit ({_limits(key)}); retry "
                                                    f"in {wait:.0f}s", "type": "rate_limit_error",
                                         "code": "rate_limit_exceeded", "param": None}}).encode()
            return 429, body, [(b"retry-after", str(int(wait + 0.999)).encode())]
    return None


async def serve(gw: Gateway, ex: Exchange, body: bytes) -> None:
    """Answer one /v1/voice request (never raises for bad input or engine errors)."""
    from aima.ops import voice

    ctx = gw.ctx
    assert ctx is not None
    try:
        req, stream = voice_request(ex.header(b"content-type") or b"", body)
        voice.check(req)
        refused = _refusal(gw, ex, req)
        if refused is not None:
            ex.whole(refused[0], [JSON_CT, *refused[2]], refused[1])
            return
    except FormError as e:
        err = AimaError(e.message, field=e.param)
        err.status, err.code = 400, "invalid_request"
        ex.whole(400, [JSON_CT], error_body(err))
        return
    except AimaError as e:
        ex.whole(e.status if 400 <= e.status < 600 else 400, [JSON_CT], error_body(e))
        return
    if not stream:
        try:
            out = await voice.whole(ctx, req)
        except AimaError as e:
            ex.whole(e.status, [JSON_CT], error_body(e))
            return
        ex.whole(200, [JSON_CT], json.dumps(out, ensure_ascii=False).encode())
        return
    events = voice.turn(ctx, req)
    try:
        first = await events.__anext__()  # the transcription: errors up to here are a plain HTTP error
    except AimaError as e:
        ex.whole(e.status, [JSON_CT], error_body(e))
        return
    ex.start(200, [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")])
    ex.write(_sse(first))
    await ex.drain()
    try:
        async for ev in events:
            if ex.disconnected:
                break
            if ev["type"] == "done":
                clips = ev.pop("_clips", [])
                ev["audio_duration_s"] = round(sum(len(c) for c in clips) and _duration(clips), 3)
            ex.write(_sse(ev))
            await ex.drain()
    except AimaError as e:
        ex.write(b"event: error\ndata: " + error_body(e) + b"\n\n")
    finally:
        await events.aclose()
    ex.end()


def _duration(clips: list[bytes]) -> float:
    from aima.ops.inference import wav_facts

    return sum(f[3] for f in (wav_facts(c) for c in clips) if f is not None)
