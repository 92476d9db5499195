"""aima.engines.piper_server on the real en_US-joe-medium voice (the catalog's pypi source)."""

from __future__ import annotations

import io
import re
import shutil
import wave
from pathlib import Path

import httpx
import pytest

from aima import catalog
from tests.engines.conftest import PY, run_to_exit, serve
from tests.support.daemon import free_port


def argv(model: Path, port: int, name: str = "piper-en-us-joe") -> list[str]:
    return [PY, "-m", "aima.engines.piper_server", "--model", str(model), "--model-name", name, "--host",
            "127.0.0.1", "--port", str(port)]


@pytest.fixture(scope="module")
def piper(piper_model: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    port = free_port()
    with serve(argv(piper_model, port), port=port, name="piper-en-us-joe",
               log=tmp_path_factory.mktemp("piper") / "engine.log", timeout_s=60) as eng:
        yield eng


def test_health_identity_and_voices(piper) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=piper.url, timeout=10, trust_env=False) as c:
        assert c.get("/health").json() == {"status": "ok", "model": "piper-en-us-joe"}
        assert [m["id"] for m in c.get("/v1/models").json()["data"]] == ["piper-en-us-joe"]
        v = c.get("/v1/audio/voices").json()
        assert v["sample_rate"] == 22050 and [x["id"] for x in v["data"]] == ["piper-en-us-joe"]


def test_speaks_wav_and_pcm(piper) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=piper.url, timeout=60, trust_env=False) as c:
        body = {"model": "piper-en-us-joe", "input": "Hello world, testing one two three.", "voice": "alloy"}
        r = c.post("/v1/audio/speech", json=body)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "audio/wav"
        with wave.open(io.BytesIO(r.content)) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 22050)
            normal = w.getnframes() / w.getframerate()
        assert 1.0 < normal < 6.0
        r = c.post("/v1/audio/speech", json={**body, "response_format": "pcm", "speed": 2.0})
        assert r.status_code == 200 and r.headers["x-sample-rate"] == "22050"
        fast = len(r.content) / 2 / 22050
        assert fast < normal * 0.75, (fast, normal)


def test_refuses_what_it_cannot_do(piper) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=piper.url, timeout=30, trust_env=False) as c:
        r = c.post("/v1/audio/speech", json={"input": "hi", "response_format": "mp3"})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "unsupported_response_format" and "wav" in r.json()["error"]["message"]
        assert c.post("/v1/audio/speech", json={"input": ""}).status_code == 400
        assert c.post("/v1/audio/speech", json={"input": "hi", "speed": 9}).status_code == 400
        assert c.post("/v1/audio/speech", content=b"nope").status_code == 400


def test_missing_model_exits_with_one_clear_line(tmp_path: Path) -> None:
    res = run_to_exit([PY, "-m", "aima.engines.piper_server", "--model", str(tmp_path / "v.onnx")])
    assert res.returncode != 0
    line = f"aima piper_server: cannot load model at {tmp_path / 'v.onnx'}: no such file or folder"
    assert line in res.stderr.splitlines()
    assert any(re.search(p, line) for p in catalog.engine("piper", home=tmp_path).fatal_patterns)


def test_voice_without_its_config_or_broken_exits_with_one_clear_line(piper_model: Path, tmp_path: Path) -> None:
    onnx = next(piper_model.glob("*.onnx"))
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(onnx, lone / onnx.name)
    res = run_to_exit([PY, "-m", "aima.engines.piper_server", "--model", str(lone)])
    assert res.returncode != 0
    assert f"cannot load model at {lone / onnx.name}: its config {onnx.name}.json is missing" in res.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "v.onnx").write_bytes(b"garbage" * 100)
    shutil.copy(onnx.with_name(onnx.name + ".json"), broken / "v.onnx.json")
    res = run_to_exit([PY, "-m", "aima.engines.piper_server", "--model", str(broken / "v.onnx")])
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("aima piper_server: cannot load model at")]
    assert len(lines) == 1, res.stderr
