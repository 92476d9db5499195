"""The multilingual Whisper base (assembled by the model store from two registry packages, each piece checked by
size and sha256) on real recorded Mandarin (tests/data/speech: two AISHELL-1 utterances): with the catalog's
settings it writes simplified characters, whether the language is given or detected."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.engines.conftest import PY, fetch_model, serve
from tests.support.daemon import free_port

SPEECH = Path(__file__).parents[1] / "data" / "speech"
ZH = {"BAC009S0764W0121.wav": "甚至出现交易几乎停滞的情况", "BAC009S0764W0122.wav": "一二线城市虽然也处于调整中"}
TRADITIONAL = set("線雖處調們與說這個爲為國時對會來發現經過還後從學實體開關間當點樣")


def cer(ref: str, hyp: str) -> float:
    """Character error rate (Levenshtein distance / reference length), punctuation and spaces left out."""
    hyp = "".join(c for c in hyp if c.isalnum())
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1] / len(ref)


def catalog_argv(model: Path, port: int) -> list[str]:
    """The command the catalog renders for whisper-base on a CPU machine (2 threads here)."""
    from aima.catalog.loader import load, shipped_dir

    variant = next(v for v in load([shipped_dir()]).model("whisper-base").variants if v.name == "cpu-int8")
    return [PY, "-m", "aima.engines.whisper_server", "--model", str(model), "--model-name", "whisper-base",
            "--host", "127.0.0.1", "--port", str(port), "--cpu-threads", "2",
            "--beam-size", str(variant.config["beam_size"]), "--chinese-prompt", str(variant.config["chinese_prompt"])]


@pytest.fixture(scope="module")
def whisper_base(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    model = fetch_model("whisper-base")
    assert (model / "model.bin").stat().st_size == 145217532
    port = free_port()
    with serve(catalog_argv(model, port), port=port, name="whisper-base",
               log=tmp_path_factory.mktemp("whisper-base") / "engine.log", timeout_s=180) as eng:
        yield eng


@pytest.mark.parametrize("language", ["zh", None])
def test_recorded_mandarin_comes_back_in_simplified_characters(whisper_base, language: str | None) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=whisper_base.url, timeout=120, trust_env=False) as c:
        for name, ref in ZH.items():
            data = {"model": "whisper-base", "response_format": "verbose_json"}
            if language:
                data["language"] = language
            r = c.post("/v1/audio/transcriptions", data=data,
                       files={"file": (name, (SPEECH / name).read_bytes(), "audio/wav")})
            assert r.status_code == 200, r.text
            out = r.json()
            text = out["text"]
            print(f"{name}: {text!r} (reference {ref!r}, CER {cer(ref, text):.2f})")
            assert out["language"] == "zh" and 4.0 < out["duration"] < 4.5
            assert not TRADITIONAL & set(text), f"traditional characters in {text!r}"
            assert cer(ref, text) <= 0.25, (text, ref)


def test_english_is_still_english(whisper_base, piper_model: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.engines.test_whisper_server import speech_wav

    with httpx.Client(base_url=whisper_base.url, timeout=120, trust_env=False) as c:
        r = c.post("/v1/audio/transcriptions", files={"file": ("en.wav", speech_wav(piper_model), "audio/wav")},
                   data={"response_format": "verbose_json"})
        out = r.json()
        assert out["language"] == "en" and "hello" in out["text"].lower() and "testing" in out["text"].lower(), out
