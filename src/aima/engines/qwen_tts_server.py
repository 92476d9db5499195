"""``python -m aima.engines.qwen_tts_server``: Qwen3-TTS behind the OpenAI speech API, on the official ``qwen-tts``.

Qwen3-TTS-12Hz-0.6B-CustomVoice speaks Chinese, English and eight more languages with nine named voices
(Vivian, Serena, Uncle_Fu, Dylan, Eric, Ryan, Aiden, Ono_Anna, Sohee). No OpenAI-compatible server ships with it,
so aima runs this adapter around ``qwen_tts.Qwen3TTSModel``:

- ``POST /v1/audio/speech`` — JSON ``{"model", "input", "voice", "response_format", "language", "instructions"}``;
  ``voice`` is one of the model's own speaker names (an OpenAI name such as ``alloy`` or the model's name means the
  default voice); ``response_format`` wav (default) or pcm (16-bit mono, rate in ``X-Sample-Rate``);
- ``POST /v1/tts`` — the path the image this follows offered: ``{"text" (or "input"), "speaker" (or "voice"),
  "language"}``, answered with WAV;
- ``GET /v1/audio/voices`` the model's speakers, ``GET /v1/models`` the served name, ``GET /health``.

The weights (a Hugging Face folder: ``config.json``, ``model.safetensors``, the speech tokenizer …) are checked and
loaded before the port opens. Anything missing — a file, or the ``qwen-tts`` package and torch — prints ONE line
``aima qwen_tts_server: cannot load model at PATH: REASON`` naming it and exits 2 without listening: the catalog's
fatal pattern. There is never a stand-in voice: every answer is the model's speech, or an error.
Binds 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a path is never taken for a hub name

import argparse
import io
import sys
import threading
import time
import wave
from pathlib import Path
from typing import Any, NoReturn

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

PROG = "aima qwen_tts_server"
FORMATS = ("wav", "pcm")
NEEDS_ENCODER = ("mp3", "opus", "aac", "flac")
MAX_INPUT = 4096
OPENAI_VOICES = {"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse"}
# The CustomVoice models' speakers as Qwen names them (used when the model does not list its own).
SPEAKERS = ("Vivian", "Serena", "Uncle_Fu", "Dylan", "Eric", "Ryan", "Aiden", "Ono_Anna", "Sohee")
LANGUAGES = {"auto": "Auto", "zh": "Chinese", "en": "English", "ja": "Japanese", "ko": "Korean", "de": "German",
             "fr": "French", "ru": "Russian", "pt": "Portuguese", "es": "Spanish", "it": "Italian"}


def fail(msg: str, code: int = 2) -> NoReturn:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m aima.engines.qwen_tts_server",
                                description="Qwen3-TTS (qwen-tts) behind OpenAI POST /v1/audio/speech")
    p.add_argument("--model", required=True, help="the model folder (config.json, model.safetensors, ...)")
    p.add_argument("--model-name", default=None, help="the name served at /v1/models (default: the folder name)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--speaker", default="Vivian", help="the default voice")
    p.add_argument("--language", default="auto", help=f"default language: {', '.join(LANGUAGES)}")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch decides)")
    p.add_argument("--log-level", default="info")
    return p.parse_args(argv)


def check_files(model: str) -> Path:
    """The model folder, or one line naming the first missing piece and exit 2 (before torch is imported)."""
    path = Path(model).expanduser()
    where = f"cannot load model at {path}"
    if not path.exists():
        fail(f"{where}: no such file or folder")
    if not path.is_dir():
        fail(f"{where}: not a folder (a Qwen3-TTS model is a Hugging Face folder with config.json and "
             f"model.safetensors)")
    if not (path / "config.json").is_file():
        fail(f"{where}: config.json is missing")
    if not any(path.glob("*.safetensors")):
        fail(f"{where}: model.safetensors is missing (the weights)")
    return path


def load(path: Path, args: argparse.Namespace) -> Any:
    where = f"cannot load model at {path}"
    try:
        import torch
        from qwen_tts import Qwen3TTSModel
    except ImportError as e:
        fail(f"{where}: qwen-tts is not installed in {sys.executable} ({e}); pip install qwen-tts")
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]
        model = Qwen3TTSModel.from_pretrained(str(path), device_map=args.device, dtype=dtype)
        wavs, _rate = model.generate_custom_voice(text="好。", language="Chinese", speaker=args.speaker)
        if not len(wavs) or not len(wavs[0]):
            fail(f"{where}: a test sentence gave no audio")
        return model
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - whatever torch or qwen-tts says, the engine cannot come up
        text = str(e).strip()
        fail(f"{where}: {type(e).__name__}: {text.splitlines()[0] if text else repr(e)}")


def speakers_of(model: Any) -> list[str]:
    get = getattr(model, "get_supported_speakers", None)
    try:
        got = list(get()) if callable(get) else []
    except Exception:  # noqa: BLE001
        got = []
    return [str(s) for s in got] or list(SPEAKERS)


def to_pcm16(samples: Any) -> bytes:
    import numpy as np

    x = np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1.0, 1.0)
    return (x * 32767.0).astype("<i2").tobytes()


def wav_bytes(pcm: bytes, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


def build_app(model: Any, name: str, args: argparse.Namespace) -> Any:
    app = FastAPI(title="aima qwen_tts_server", docs_url=None, redoc_url=None)
    lock = threading.Lock()
    created = int(time.time())
    voices = speakers_of(model)
    by_lower = {v.lower(): v for v in voices}

    def error(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                       "code": code}}, status_code=status)

    async def synthesize(body: Any, text_keys: tuple[str, ...], voice_keys: tuple[str, ...],
                         fmt_default: str) -> Any:
        if not isinstance(body, dict):
            return error(400, "the body must be a JSON object", "invalid_json")
        key = next((k for k in text_keys if k in body), text_keys[0])
        text = body.get(key)
        if not isinstance(text, str) or not text.strip():
            return error(400, f"{key} must be a non-empty string", "invalid_input", key)
        if len(text) > MAX_INPUT:
            return error(400, f"{key} is {len(text)} characters; at most {MAX_INPUT}", "input_too_long", key)
        fmt = body.get("response_format") or fmt_default
        if fmt in NEEDS_ENCODER or fmt not in FORMATS:
            return error(400, f"response_format {fmt!r} is not supported; use wav or pcm",
                         "unsupported_response_format", "response_format")
        vkey = next((k for k in voice_keys if body.get(k)), voice_keys[0])
        asked = body.get(vkey)
        speaker = args.speaker
        if asked is not None and str(asked).lower() not in OPENAI_VOICES and str(asked) != name:
            speaker = by_lower.get(str(asked).lower())
            if speaker is None:
                return error(400, f"{vkey} {asked!r} is not a voice of {name}; its voices: {', '.join(voices)}",
                             "unknown_voice", vkey)
        lang_in = str(body.get("language") or args.language)
        language = LANGUAGES.get(lang_in.lower()) or next((v for v in LANGUAGES.values()
                                                           if v.lower() == lang_in.lower()), None)
        if language is None:
            return error(400, f"language {lang_in!r} is not one {name} speaks; use one of {', '.join(LANGUAGES)}",
                         "unsupported_language", "language")
        instruct = body.get("instructions") or None

        def work() -> tuple[bytes, int]:
            with lock:
                kw = {"instruct": instruct} if instruct else {}
                wavs, rate = model.generate_custom_voice(text=text, language=language, speaker=speaker, **kw)
            return to_pcm16(wavs[0]), int(rate)

        pcm, rate = await run_in_threadpool(work)
        headers = {"X-Sample-Rate": str(rate), "X-Voice": speaker}
        if fmt == "pcm":
            return Response(pcm, media_type="audio/pcm", headers=headers)
        return Response(wav_bytes(pcm, rate), media_type="audio/wav", headers=headers)

    async def json_body(request: Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            return None

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": name}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "aima"}]}

    @app.get("/v1/audio/voices")
    def list_voices() -> dict[str, Any]:
        return {"object": "list", "model": name, "data": [{"id": v} for v in voices]}

    @app.post("/v1/audio/speech", response_model=None)
    async def speech(request: Request) -> Any:
        return await synthesize(await json_body(request), ("input",), ("voice",), "wav")

    @app.post("/v1/tts", response_model=None)
    async def tts(request: Request) -> Any:
        return await synthesize(await json_body(request), ("text", "input"), ("speaker", "voice"), "wav")

    return app


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    path = check_files(args.model)
    model = load(path, args)
    name = args.model_name or path.name
    print(f"{PROG}: loaded {path} as {name} ({args.device}, {args.dtype}) in {time.monotonic() - t0:.2f}s",
          flush=True)
    app = build_app(model, name, args)
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
