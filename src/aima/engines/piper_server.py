"""``python -m aima.engines.piper_server``: a Piper voice behind the OpenAI speech API.

Piper's own ``piper.http_server`` answers ``POST /synthesize`` (not the OpenAI API), lists nothing
at ``/v1/models`` and binds 0.0.0.0 by default, so aima runs this small adapter around
``piper.PiperVoice`` instead:

- ``POST /v1/audio/speech`` — JSON ``{"model", "input", "voice", "response_format", "speed"}``;
  ``response_format`` wav (default) or pcm (raw 16-bit little-endian mono at the voice's sample
  rate, given in the ``X-Sample-Rate`` header). mp3, opus, aac and flac need an encoder Piper does
  not ship: they are refused with 400 and a message saying to ask for wav. ``speed`` (0.25–4.0)
  divides the voice's length scale. ``voice`` picks a speaker of a multi-speaker voice by name or
  number; any other name (``alloy``, the model name…) means the default speaker, so OpenAI clients
  work unchanged.
- ``GET /v1/audio/voices`` lists the speakers, ``GET /v1/models`` the served name, ``GET /health``.

``--model`` is the ``.onnx`` voice, or a folder holding exactly one; its ``<voice>.onnx.json`` must sit
next to it (or be given with ``--config``). The voice is loaded before the port opens, offline
(``HF_HUB_OFFLINE=1``). A missing or broken voice prints ONE line
``aima piper_server: cannot load model at PATH: REASON`` and exits 2 without listening — the catalog's
fatal pattern for this engine. Binds 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import io
import json
import sys
import threading
import time
import wave
from pathlib import Path
from typing import Any, NoReturn

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

PROG = "aima piper_server"
FORMATS = ("wav", "pcm")
NEEDS_ENCODER = ("mp3", "opus", "aac", "flac")
MAX_INPUT = 4096  # characters, as in the OpenAI API


def fail(msg: str, code: int = 2) -> NoReturn:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m aima.engines.piper_server",
                                description="a Piper voice behind OpenAI POST /v1/audio/speech")
    p.add_argument("--model", required=True, help="the voice's .onnx file, or a folder holding exactly one")
    p.add_argument("--config", default=None, help="the voice's .onnx.json (default: next to the .onnx)")
    p.add_argument("--model-name", default=None, help="the name served at /v1/models (default: the voice name)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--speaker", type=int, default=None, help="default speaker id of a multi-speaker voice")
    p.add_argument("--length-scale", type=float, default=None, help="speaking time scale (default: the voice's)")
    p.add_argument("--noise-scale", type=float, default=None)
    p.add_argument("--noise-w", type=float, default=None)
    p.add_argument("--sentence-silence", type=float, default=0.0, help="seconds of silence after each sentence")
    p.add_argument("--log-level", default="info")
    return p.parse_args(argv)


def find_voice(model: str, config: str | None) -> tuple[Path, Path]:
    """(the .onnx, its .onnx.json), or one clear line and exit 2."""
    path = Path(model).expanduser()
    where = f"cannot load model at {path}"
    if not path.exists():
        fail(f"{where}: no such file or folder")
    if path.is_dir():
        onnx = sorted(path.glob("*.onnx"))
        if len(onnx) != 1:
            fail(f"{where}: the folder holds {len(onnx)} .onnx files, expected exactly one"
                 + (f" ({', '.join(p.name for p in onnx)}); give the file" if onnx else ""))
        path = onnx[0]
        where = f"cannot load model at {path}"
    cfg = Path(config).expanduser() if config else path.with_name(path.name + ".json")
    if not cfg.is_file():
        fail(f"{where}: its config {cfg.name} is missing (a Piper voice is <voice>.onnx plus <voice>.onnx.json)")
    try:
        json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        fail(f"{where}: its config {cfg} is not valid JSON ({e})")
    return path, cfg


def load_voice(onnx: Path, cfg: Path) -> Any:
    where = f"cannot load model at {onnx}"
    try:
        from piper import PiperVoice
    except ImportError as e:
        fail(f"{where}: piper-tts is not installed in {sys.executable} ({e}); pip install piper-tts")
    try:
        voice = PiperVoice.load(str(onnx), config_path=str(cfg))
        # one short synthesis proves the ONNX graph, the config and espeak-ng data fit together
        for _chunk in voice.synthesize("ok"):
            pass
        return voice
    except Exception as e:  # noqa: BLE001 - whatever onnxruntime or piper says, the engine cannot come up
        text = str(e).strip()
        fail(f"{where}: {type(e).__name__}: {text.splitlines()[0] if text else repr(e)}")


def speakers(voice: Any, name: str) -> dict[str, int]:
    """Speaker name → id (a single-speaker voice has one, named after the model)."""
    cfg = voice.config
    ids = dict(getattr(cfg, "speaker_id_map", None) or {})
    if getattr(cfg, "num_speakers", 1) > 1 and ids:
        return {str(k): int(v) for k, v in ids.items()}
    return {name: 0}


def build_app(voice: Any, name: str, args: argparse.Namespace) -> Any:
    from piper import SynthesisConfig

    app = FastAPI(title="aima piper_server", docs_url=None, redoc_url=None)
    lock = threading.Lock()
    created = int(time.time())
    rate = int(voice.config.sample_rate)
    multi = getattr(voice.config, "num_speakers", 1) > 1
    by_name = speakers(voice, name)
    base_length = args.length_scale if args.length_scale is not None else voice.config.length_scale

    def error(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                       "code": code}}, status_code=status)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": name}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "aima"}]}

    @app.get("/v1/audio/voices")
    def voices() -> dict[str, Any]:
        return {"object": "list", "model": name, "sample_rate": rate,
                "data": [{"id": k, "speaker_id": v} for k, v in by_name.items()]}

    @app.post("/v1/audio/speech", response_model=None)
    async def speech(request: Request) -> Any:
        try:
            body = await request.json()
        except ValueError:
            return error(400, "the body must be JSON: {\"model\", \"input\", \"voice\"}", "invalid_json")
        if not isinstance(body, dict):
            return error(400, "the body must be a JSON object", "invalid_json")
        text = body.get("input")
        if not isinstance(text, str) or not text.strip():
            return error(400, "input must be a non-empty string", "invalid_input", "input")
        if len(text) > MAX_INPUT:
            return error(400, f"input is {len(text)} characters; at most {MAX_INPUT}", "input_too_long", "input")
        fmt = body.get("response_format") or "wav"
        if fmt in NEEDS_ENCODER:
            return error(400, f"response_format {fmt!r} needs an audio encoder this Piper engine does not have; "
                              f"ask for wav (or pcm: 16-bit mono at {rate} Hz)", "unsupported_response_format",
                         "response_format")
        if fmt not in FORMATS:
            return error(400, f"response_format {fmt!r} is not supported; use wav or pcm",
                         "unsupported_response_format", "response_format")
        try:
            speed = float(body.get("speed", 1.0) or 1.0)
        except (TypeError, ValueError):
            return error(400, "speed must be a number between 0.25 and 4.0", "invalid_speed", "speed")
        if not 0.25 <= speed <= 4.0:
            return error(400, "speed must be between 0.25 and 4.0", "invalid_speed", "speed")
        speaker = args.speaker
        v = body.get("voice")
        if multi and v is not None:
            if str(v) in by_name:
                speaker = by_name[str(v)]
            elif str(v).isdigit() and int(v) in by_name.values():
                speaker = int(v)
        syn = SynthesisConfig(speaker_id=speaker, length_scale=base_length / speed, noise_scale=args.noise_scale,
                              noise_w_scale=args.noise_w)
        gap = b"\0\0" * int(rate * max(0.0, args.sentence_silence))

        def work() -> bytes:
            with lock:
                return gap.join(c.audio_int16_bytes for c in voice.synthesize(text, syn_config=syn))

        pcm = await run_in_threadpool(work)
        headers = {"X-Sample-Rate": str(rate)}
        if fmt == "pcm":
            return Response(pcm, media_type="audio/pcm", headers=headers)
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(pcm)
        return Response(buf.getvalue(), media_type="audio/wav", headers=headers)

    return app


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    onnx, cfg = find_voice(args.model, args.config)
    voice = load_voice(onnx, cfg)
    name = args.model_name or onnx.name.removesuffix(".onnx")
    print(f"{PROG}: loaded {onnx} as {name} ({voice.config.sample_rate} Hz) in {time.monotonic() - t0:.2f}s",
          flush=True)
    app = build_app(voice, name, args)
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
