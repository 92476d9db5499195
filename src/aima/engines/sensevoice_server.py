"""``python -m aima.engines.sensevoice_server``: SenseVoiceSmall on sherpa-onnx behind the OpenAI transcription API.

SenseVoiceSmall (FunAudioLLM) recognises Mandarin, English, Japanese, Korean and Cantonese, and tags the
speaker's emotion and sound events. Its sherpa-onnx export is ``model.int8.onnx`` (or ``model.onnx``) plus
``tokens.txt``; sherpa-onnx (a PyPI wheel, no torch) runs it on the CPU through
``OfflineRecognizer.from_sense_voice``. This module is the whole engine:

- ``POST /v1/audio/transcriptions`` — multipart ``file`` (WAV; other formats when PyAV is installed),
  ``model``, optional ``language`` (auto, zh, en, ja, ko, yue), ``response_format`` (json | text |
  verbose_json: with the detected ``language``, ``emotion`` and ``event``);
- ``GET /v1/models`` lists the served name (``--model-name``), ``GET /health`` answers 200.

``--model`` is the folder holding the export (or its ``.onnx`` file, ``tokens.txt`` beside it). The model is
loaded before the port opens; a missing or broken one prints ONE line
``aima sensevoice_server: cannot load model at PATH: REASON`` (naming the missing file) and exits 2 without
listening — the catalog's fatal pattern for this engine. There is no fallback text: no model, no engine.
Binds 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import threading
import time
import wave
from pathlib import Path
from typing import Any, NoReturn

from fastapi import FastAPI, File, Form, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

PROG = "aima sensevoice_server"
FORMATS = ("json", "text", "verbose_json")
LANGUAGES = ("auto", "zh", "en", "ja", "ko", "yue")
MODEL_FILES = ("model.int8.onnx", "model.onnx")
RATE = 16000
_TAG = re.compile(r"<\|([^|]*)\|>")


def fail(msg: str, code: int = 2) -> NoReturn:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m aima.engines.sensevoice_server",
                                description="SenseVoiceSmall (sherpa-onnx) behind OpenAI POST /v1/audio/transcriptions")
    p.add_argument("--model", required=True, help="the sherpa-onnx export: a folder with model.int8.onnx (or "
                                                  "model.onnx) and tokens.txt, or the .onnx file")
    p.add_argument("--tokens", default=None, help="tokens.txt (default: beside the model)")
    p.add_argument("--model-name", default=None, help="the name served at /v1/models (default: the folder name)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--num-threads", type=int, default=2, help="CPU threads")
    p.add_argument("--language", default="auto", choices=LANGUAGES, help="default language (auto: detect it)")
    p.add_argument("--use-itn", default="true", choices=["true", "false"],
                   help="inverse text normalisation: punctuation and digits (default true)")
    p.add_argument("--provider", default="cpu", help="onnxruntime provider: cpu or cuda")
    p.add_argument("--log-level", default="info")
    return p.parse_args(argv)


def find_files(model: str, tokens: str | None) -> tuple[Path, Path]:
    """(the .onnx, tokens.txt), or one line naming what is missing and exit 2."""
    path = Path(model).expanduser()
    where = f"cannot load model at {path}"
    if not path.exists():
        fail(f"{where}: no such file or folder")
    if path.is_dir():
        onnx = next((path / f for f in MODEL_FILES if (path / f).is_file()), None)
        if onnx is None:
            fail(f"{where}: {MODEL_FILES[0]} is missing (the sherpa-onnx export of SenseVoiceSmall: "
                 f"{MODEL_FILES[0]} or {MODEL_FILES[1]}, and tokens.txt)")
    else:
        onnx = path
    tok = Path(tokens).expanduser() if tokens else onnx.with_name("tokens.txt")
    if not tok.is_file():
        fail(f"{where}: {tok.name if not tokens else tok} is missing (the model's tokens, beside {onnx.name})")
    return onnx, tok


def load(onnx: Path, tokens: Path, args: argparse.Namespace) -> Any:
    where = f"cannot load model at {onnx}"
    try:
        import sherpa_onnx
    except ImportError as e:
        fail(f"{where}: sherpa-onnx is not installed in {sys.executable} ({e}); pip install sherpa-onnx")
    try:
        rec = sherpa_onnx.OfflineRecognizer.from_sense_voice(
            model=str(onnx), tokens=str(tokens), num_threads=args.num_threads, provider=args.provider,
            language="" if args.language == "auto" else args.language, use_itn=args.use_itn == "true")
        stream = rec.create_stream()  # one decode proves the graph, the tokens and the runtime fit together
        stream.accept_waveform(RATE, [0.0] * (RATE // 2))
        rec.decode_stream(stream)
        return rec
    except Exception as e:  # noqa: BLE001 - whatever onnxruntime or sherpa says, the engine cannot come up
        text = str(e).strip()
        fail(f"{where}: {type(e).__name__}: {text.splitlines()[0] if text else repr(e)}")


def decode(data: bytes) -> tuple[Any, int]:
    """(float32 mono samples, sample rate) of an upload: WAV by the standard library, anything else by PyAV."""
    import numpy as np

    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            rate, channels, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError):
        return _decode_av(data)
    if width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 4:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2147483648.0
    elif width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    else:
        raise ValueError(f"{8 * width}-bit WAV samples are not supported")
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    return x, rate


def _decode_av(data: bytes) -> tuple[Any, int]:
    try:
        import av
        import numpy as np
    except ImportError:
        raise ValueError("not a WAV file (other formats need PyAV: pip install av)") from None
    with av.open(io.BytesIO(data)) as c:
        res = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        frames = [f.to_ndarray().reshape(-1) for fr in c.decode(audio=0) for f in res.resample(fr)]
        frames += [f.to_ndarray().reshape(-1) for f in res.resample(None)]
    if not frames:
        raise ValueError("no audio in the file")
    return np.concatenate(frames).astype(np.float32), RATE


def tag(value: str) -> str | None:
    """``<|zh|>`` → ``zh`` (sherpa-onnx reports the language, emotion and event as the model's tokens)."""
    m = _TAG.search(value or "")
    return (m.group(1) if m else value.strip()) or None


def build_app(rec: Any, name: str, args: argparse.Namespace) -> Any:
    import sherpa_onnx

    app = FastAPI(title="aima sensevoice_server", docs_url=None, redoc_url=None)
    lock = threading.Lock()
    created = int(time.time())
    per_language: dict[str, Any] = {args.language: rec}

    def recognizer(lang: str) -> Any:
        if lang not in per_language:  # the language is fixed per recognizer in sherpa-onnx: one per language asked
            onnx, tokens = find_files(args.model, args.tokens)
            per_language[lang] = sherpa_onnx.OfflineRecognizer.from_sense_voice(
                model=str(onnx), tokens=str(tokens), num_threads=args.num_threads, provider=args.provider,
                language="" if lang == "auto" else lang, use_itn=args.use_itn == "true")
        return per_language[lang]

    def error(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                       "code": code}}, status_code=status)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": name}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "aima"}]}

    @app.post("/v1/audio/transcriptions", response_model=None)
    async def transcriptions(file: UploadFile = File(...), model_: str | None = Form(None, alias="model"),
                             language: str | None = Form(None), prompt: str | None = Form(None),
                             response_format: str = Form("json"), temperature: float = Form(0.0)) -> Any:
        if response_format not in FORMATS:
            return error(400, f"response_format {response_format!r} is not supported; use one of "
                              f"{', '.join(FORMATS)}", "unsupported_response_format", "response_format")
        lang = (language or args.language).lower()
        if lang not in LANGUAGES:
            return error(400, f"language {language!r} is not one SenseVoiceSmall knows; use one of "
                              f"{', '.join(LANGUAGES)}", "unsupported_language", "language")
        data = await file.read()
        if not data:
            return error(400, "the uploaded file is empty", "empty_file", "file")

        def work() -> tuple[Any, float]:
            samples, rate = decode(data)
            with lock:
                r = recognizer(lang)
                s = r.create_stream()
                s.accept_waveform(rate, samples)
                r.decode_stream(s)
            return s.result, len(samples) / rate

        try:
            result, duration = await run_in_threadpool(work)
        except Exception as e:  # noqa: BLE001 - undecodable audio is the caller's problem, not a crash
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return error(400, f"cannot transcribe {file.filename or 'the upload'}: {msg}", "invalid_audio", "file")
        text = _TAG.sub("", result.text).strip()
        if response_format == "text":
            return PlainTextResponse(text + "\n")
        if response_format == "verbose_json":
            return {"task": "transcribe", "language": tag(result.lang), "duration": round(duration, 3),
                    "text": text, "emotion": tag(result.emotion), "event": tag(result.event),
                    "segments": [{"id": 0, "start": 0.0, "end": round(duration, 3), "text": text}]}
        return {"text": text}

    return app


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    onnx, tokens = find_files(args.model, args.tokens)
    rec = load(onnx, tokens, args)
    path = Path(args.model).expanduser()
    name = args.model_name or (path.name if path.is_dir() else path.parent.name)
    print(f"{PROG}: loaded {onnx} as {name} (language {args.language}) in {time.monotonic() - t0:.2f}s", flush=True)
    app = build_app(rec, name, args)
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
