"""``python -m aima.engines.whisper_server``: faster-whisper behind the OpenAI transcription API.

Why an adapter and not ``faster-whisper-server``: that server takes its models only from a config
file (no ``--model PATH`` flag for the catalog to render), lists none at ``/v1/models`` (404), so
aima's readiness probe could never confirm which model it serves, loads the model lazily on the
first request (a broken model shows up as a 500 long after "ready"), and binds 0.0.0.0 by default.
This module is the whole engine in one small file:

- ``POST /v1/audio/transcriptions`` — multipart ``file`` (any format PyAV decodes), ``model``,
  optional ``language``, ``prompt``, ``response_format`` (json | text | verbose_json | srt | vtt),
  ``temperature``;
- ``GET /v1/models`` lists the served name (``--model-name``), ``GET /health`` answers 200.

``--chinese-prompt TEXT``: when the speech is Chinese (the request's ``language``, ``--language``, or what the
model detects) and the request gives no ``prompt``, TEXT is the initial prompt. A multilingual Whisper writes
Mandarin in traditional or simplified characters at random; a simplified-Chinese prompt such as
``以下是普通话的句子。`` makes it write simplified characters.

The model (a CTranslate2 folder: model.bin, config.json, tokenizer/vocabulary) is loaded before the
port opens, offline (``HF_HUB_OFFLINE=1``; a path is never taken for a hub name). A missing or broken
model prints ONE line ``aima whisper_server: cannot load model at PATH: REASON`` and exits 2 without
listening — the catalog's fatal pattern for this engine, so the service fails at once with that line.
Binds 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before faster_whisper imports huggingface_hub: never fetch a model

import argparse
import io
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

from fastapi import FastAPI, File, Form, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

PROG = "aima whisper_server"
FORMATS = ("json", "text", "verbose_json", "srt", "vtt")


def fail(msg: str, code: int = 2) -> NoReturn:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m aima.engines.whisper_server",
                                description="faster-whisper behind OpenAI POST /v1/audio/transcriptions")
    p.add_argument("--model", required=True, help="a CTranslate2 whisper model folder (holds model.bin)")
    p.add_argument("--model-name", default=None, help="the name served at /v1/models (default: the folder name)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--compute-type", default="int8", help="int8, float16, float32, ... (CTranslate2)")
    p.add_argument("--cpu-threads", type=int, default=0, help="CPU threads (0: CTranslate2 decides)")
    p.add_argument("--beam-size", type=int, default=1)
    p.add_argument("--language", default=None, help="force a language code (default: detect it)")
    p.add_argument("--chinese-prompt", default=None,
                   help="initial prompt for Chinese (zh) speech when the request gives none")
    p.add_argument("--log-level", default="info")
    return p.parse_args(argv)


def load_model(args: argparse.Namespace) -> Any:
    """The WhisperModel, or one clear line and exit 2."""
    path = Path(args.model).expanduser()
    where = f"cannot load model at {path}"
    if not path.exists():
        fail(f"{where}: no such file or folder")
    if not path.is_dir() or not (path / "model.bin").is_file():
        fail(f"{where}: not a CTranslate2 model folder (model.bin is missing)")
    try:
        from faster_whisper import WhisperModel
    except ImportError as e:
        fail(f"{where}: faster-whisper is not installed in {sys.executable} ({e}); pip install faster-whisper")
    try:
        return WhisperModel(str(path), device=args.device, compute_type=args.compute_type,
                            cpu_threads=args.cpu_threads, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - whatever CTranslate2 says, the engine cannot come up
        fail(f"{where}: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else e!r}")


def _ts(t: float, sep: str) -> str:
    ms = int(round(t * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def subtitles(segments: list[dict[str, Any]], fmt: str) -> str:
    out = ["WEBVTT", ""] if fmt == "vtt" else []
    sep = "." if fmt == "vtt" else ","
    for i, s in enumerate(segments, 1):
        if fmt == "srt":
            out.append(str(i))
        out += [f"{_ts(s['start'], sep)} --> {_ts(s['end'], sep)}", s["text"].strip(), ""]
    return "\n".join(out)


def build_app(model: Any, name: str, args: argparse.Namespace) -> Any:

    app = FastAPI(title="aima whisper_server", docs_url=None, redoc_url=None)
    lock = threading.Lock()  # one transcription at a time: the CPU threads are already all in use
    created = int(time.time())

    def error(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                       "code": code}}, status_code=status)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": name}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created,
                                            "owned_by": "aima"}]}

    @app.post("/v1/audio/transcriptions", response_model=None)
    async def transcriptions(file: UploadFile = File(...), model_: str | None = Form(None, alias="model"),
                             language: str | None = Form(None), prompt: str | None = Form(None),
                             response_format: str = Form("json"), temperature: float = Form(0.0)) -> Any:
        if response_format not in FORMATS:
            return error(400, f"response_format {response_format!r} is not supported; use one of "
                              f"{', '.join(FORMATS)}", "unsupported_response_format", "response_format")
        if not 0.0 <= temperature <= 1.0:
            return error(400, "temperature must be between 0 and 1", "invalid_temperature", "temperature")
        data = await file.read()
        if not data:
            return error(400, "the uploaded file is empty", "empty_file", "file")

        def work() -> tuple[list[dict[str, Any]], Any]:
            from faster_whisper import decode_audio

            audio = decode_audio(io.BytesIO(data), sampling_rate=model.feature_extractor.sampling_rate)
            with lock:
                lang = language or args.language
                initial = prompt or None
                if initial is None and args.chinese_prompt and getattr(model, "model", None) is not None \
                        and model.model.is_multilingual:
                    if lang is None:  # detected once here, then passed on (transcribe would detect it again)
                        lang = model.detect_language(audio)[0]
                    if lang == "zh":
                        initial = args.chinese_prompt
                segs, info = model.transcribe(audio, language=lang, beam_size=args.beam_size,
                                              temperature=temperature, initial_prompt=initial)
                out = [{"id": s.id, "seek": s.seek, "start": round(s.start, 3), "end": round(s.end, 3),
                        "text": s.text, "tokens": list(s.tokens), "temperature": s.temperature,
                        "avg_logprob": s.avg_logprob, "compression_ratio": s.compression_ratio,
                        "no_speech_prob": s.no_speech_prob} for s in segs]
            return out, info

        try:
            segments, info = await run_in_threadpool(work)
        except Exception as e:  # noqa: BLE001 - undecodable audio is the caller's problem, not a crash
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return error(400, f"cannot transcribe {file.filename or 'the upload'}: {msg}", "invalid_audio", "file")
        text = "".join(s["text"] for s in segments).strip()
        if response_format == "text":
            return PlainTextResponse(text + "\n")
        if response_format in ("srt", "vtt"):
            return PlainTextResponse(subtitles(segments, response_format))
        if response_format == "verbose_json":
            return {"task": "transcribe", "language": info.language, "duration": round(info.duration, 3),
                    "text": text, "segments": segments}
        return {"text": text}

    return app


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    name = args.model_name or Path(args.model).name
    t0 = time.monotonic()
    model = load_model(args)
    print(f"{PROG}: loaded {args.model} as {name} ({args.device}, {args.compute_type}) in "
          f"{time.monotonic() - t0:.2f}s", flush=True)
    app = build_app(model, name, args)
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
