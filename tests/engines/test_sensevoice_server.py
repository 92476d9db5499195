"""aima.engines.sensevoice_server on the real sherpa-onnx runtime.

SenseVoiceSmall's weights cannot be had on these machines (no registry package ships them, no hub is reachable), so
the adapter runs a stand-in export of the same interface (tests/support/standins.py, random weights): it starts,
lists its model and answers each format — its words are noise, and nothing here checks them. Without its files it
fails at once with one line naming the missing file. The catalog's hub source is pulled from the local hub mirror,
and the daemon serves the pulled model as a catalog service through the gateway."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from aima import catalog
from tests.engines.conftest import PY, run_to_exit, serve
from tests.support.daemon import Daemon, free_port
from tests.support.standins import sensevoice_export

SPEECH = Path(__file__).parents[1] / "data" / "speech" / "BAC009S0764W0121.wav"


def argv(model: Path, port: int, name: str = "sensevoice-small") -> list[str]:
    return [PY, "-m", "aima.engines.sensevoice_server", "--model", str(model), "--model-name", name, "--host",
            "127.0.0.1", "--port", str(port), "--num-threads", "1", "--language", "auto", "--use-itn", "true"]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    model = sensevoice_export(tmp_path_factory.mktemp("sv") / "export")
    port = free_port()
    with serve(argv(model, port), port=port, name="sensevoice-small",
               log=tmp_path_factory.mktemp("sv-log") / "engine.log", timeout_s=60) as eng:
        yield eng


def test_starts_lists_its_model_and_answers_every_format(engine) -> None:  # type: ignore[no-untyped-def]
    audio = SPEECH.read_bytes()
    with httpx.Client(base_url=engine.url, timeout=60, trust_env=False) as c:
        assert [m["id"] for m in c.get("/v1/models").json()["data"]] == ["sensevoice-small"]
        r = c.post("/v1/audio/transcriptions", files={"file": ("zh.wav", audio, "audio/wav")},
                   data={"model": "sensevoice-small", "response_format": "verbose_json", "language": "zh"})
        assert r.status_code == 200, r.text
        v = r.json()
        assert set(v) >= {"text", "language", "duration", "emotion", "event", "segments"}
        assert 4.1 < v["duration"] < 4.3 and "<|" not in v["text"]
        assert c.post("/v1/audio/transcriptions", files={"file": ("zh.wav", audio, "audio/wav")}).json().keys() \
            == {"text"}
        r = c.post("/v1/audio/transcriptions", files={"file": ("zh.wav", audio, "audio/wav")},
                   data={"response_format": "text"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        for data, files, field in (({"language": "fr"}, {"file": ("a.wav", audio)}, "language"),
                                   ({"response_format": "srt"}, {"file": ("a.wav", audio)}, "response_format"),
                                   ({}, {"file": ("a.wav", b"")}, "file"),
                                   ({}, {"file": ("a.wav", b"RIFF not audio at all")}, "file")):
            r = c.post("/v1/audio/transcriptions", data=data, files=files)
            assert r.status_code == 400 and r.json()["error"]["param"] == field, r.text
    assert "127.0.0.1" in engine.text()


@pytest.mark.parametrize(("missing", "named"), [("model.int8.onnx", "model.int8.onnx is missing"),
                                                ("tokens.txt", "tokens.txt is missing")])
def test_a_missing_file_is_one_line_naming_it(tmp_path: Path, missing: str, named: str) -> None:
    model = sensevoice_export(tmp_path / "export")
    (model / missing).unlink()
    res = run_to_exit([PY, "-m", "aima.engines.sensevoice_server", "--model", str(model)], timeout_s=30)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines == [f"aima sensevoice_server: cannot load model at {model}: {named}" + lines[0].split(named)[1]]
    assert any(re.search(p, lines[0]) for p in catalog.engine("sensevoice", home=tmp_path).fatal_patterns)


def test_a_broken_model_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.int8.onnx").write_bytes(b"\0" * 100)
    (bad / "tokens.txt").write_text("<blank> 0\n")
    res = run_to_exit([PY, "-m", "aima.engines.sensevoice_server", "--model", str(bad)], timeout_s=30)
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("aima sensevoice_server:")]
    assert res.returncode == 2 and len(lines) == 1 and "cannot load model at" in lines[0], res.stderr


# ---------------------------------------------------------------------------- the catalog model, end to end
REPO = "csukuangfj/sherpa-onnx-sense-voice-zh-en-ja-ko-yue-int8-2025-09-09"


def test_the_catalog_model_is_pulled_from_the_hub_and_served(tmp_path: Path) -> None:
    from tests.support.modelstore import HfMirror  # sets the hub client's environment

    export = sensevoice_export(tmp_path / "export")
    hub = HfMirror()
    hub.add(REPO, {"model.int8.onnx": (export / "model.int8.onnx").read_bytes(),
                   "tokens.txt": (export / "tokens.txt").read_bytes(), "README.md": b"stand-in"})
    d = Daemon(tmp_path / "home", {"AIMA_HF_ENDPOINT": hub.url})
    d.start()
    try:
        plan = d.cli_json("resolve", "sensevoice")
        assert (plan["model"], plan["engine"], plan["variant"]) == ("sensevoice-small", "sensevoice", "cpu-int8")
        assert plan["source_spec"] == f"hf:{REPO}"
        out = d.cli_json("run", "sensevoice-small", "--detach", "--timeout", "120")
        assert out["outcome"] == "ready", out
        assert any(f"/api/models/{REPO}" in r["path"] for r in hub.requests)
        r = d.cli("-o", "json", "transcribe", "sensevoice-small", str(SPEECH), "--language", "zh")
        assert r.returncode == 0, r.stderr
        models = httpx.get(d.url + "/v1/models", trust_env=False).json()["data"]
        assert "sensevoice-small" in [m["id"] for m in models]
        r = d.cli("transcribe", "sensevoice-small", str(SPEECH), "--language", "xx")
        assert r.returncode != 0 and "language" in r.stderr and "Traceback" not in r.stderr
    finally:
        d.cleanup()
        hub.close()
