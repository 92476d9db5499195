"""aima.engines.whisper_server on the real whisper tiny.en model (the catalog's pypi source)."""

from __future__ import annotations

import io
import re
import wave
from pathlib import Path

import httpx
import pytest

from aima import catalog
from tests.engines.conftest import PY, run_to_exit, serve
from tests.support.daemon import free_port


def argv(model: Path, port: int, name: str = "whisper-tiny-en") -> list[str]:
    # the flags the faster-whisper catalog entry renders
    return [PY, "-m", "aima.engines.whisper_server", "--model", str(model), "--model-name", name, "--host",
            "127.0.0.1", "--port", str(port), "--device", "cpu", "--compute-type", "int8", "--cpu-threads", "2",
            "--beam-size", "1"]


def speech_wav(piper_model: Path) -> bytes:
    """'hello world testing one two three' spoken by the real Piper voice (in-process, no server)."""
    from piper import PiperVoice

    onnx = next(piper_model.glob("*.onnx")) if piper_model.is_dir() else piper_model
    voice = PiperVoice.load(str(onnx))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        voice.synthesize_wav("Hello world, testing one two three.", w)
    return buf.getvalue()


@pytest.fixture(scope="module")
def whisper(whisper_model: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    port = free_port()
    with serve(argv(whisper_model, port), port=port, name="whisper-tiny-en",
               log=tmp_path_factory.mktemp("whisper") / "engine.log", timeout_s=120) as eng:
        yield eng


def test_health_and_identity(whisper) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=whisper.url, timeout=10, trust_env=False) as c:
        assert c.get("/health").json()["status"] == "ok"
        assert [m["id"] for m in c.get("/v1/models").json()["data"]] == ["whisper-tiny-en"]
    assert "127.0.0.1" in whisper.text()


def test_transcribes_real_speech(whisper, piper_model: Path) -> None:  # type: ignore[no-untyped-def]
    audio = speech_wav(piper_model)
    with httpx.Client(base_url=whisper.url, timeout=120, trust_env=False) as c:
        r = c.post("/v1/audio/transcriptions", files={"file": ("hello.wav", audio, "audio/wav")},
                   data={"model": "whisper-tiny-en"})
        assert r.status_code == 200, r.text
        text = r.json()["text"].lower()
        assert "hello" in text and "world" in text and "testing" in text, text
        r = c.post("/v1/audio/transcriptions", files={"file": ("hello.wav", audio, "audio/wav")},
                   data={"model": "whisper-tiny-en", "response_format": "verbose_json", "language": "en"})
        v = r.json()
        assert v["language"] == "en" and v["duration"] > 1 and v["segments"] and "hello" in v["text"].lower()
        r = c.post("/v1/audio/transcriptions", files={"file": ("hello.wav", audio, "audio/wav")},
                   data={"response_format": "text"})
        assert r.headers["content-type"].startswith("text/plain") and "hello" in r.text.lower()
        r = c.post("/v1/audio/transcriptions", files={"file": ("x.wav", b"not audio at all", "audio/wav")})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_audio"
        r = c.post("/v1/audio/transcriptions", files={"file": ("hello.wav", audio, "audio/wav")},
                   data={"response_format": "mp3"})
        assert r.status_code == 400 and "response_format" in r.json()["error"]["message"]


def test_missing_model_exits_with_one_clear_line(tmp_path: Path) -> None:
    res = run_to_exit([PY, "-m", "aima.engines.whisper_server", "--model", str(tmp_path / "nope"), "--model-name", "w"])
    assert res.returncode != 0
    line = f"aima whisper_server: cannot load model at {tmp_path / 'nope'}: no such file or folder"
    assert line in res.stderr.splitlines()
    # the catalog fails a service at once on that line
    assert any(re.search(p, line) for p in catalog.engine("faster-whisper", home=tmp_path).fatal_patterns)


def test_broken_model_exits_with_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.bin").write_bytes(b"\0" * 1000)
    (bad / "config.json").write_text("{}")
    res = run_to_exit([PY, "-m", "aima.engines.whisper_server", "--model", str(bad)])
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("aima whisper_server: cannot load model at")]
    assert len(lines) == 1, res.stderr
