"""`aima bench` against real engines: llama.cpp on the tiny random GGUF of tests/support/tiny.py (chat and
embeddings, fast), and the default stack's speech models, whisper tiny.en and Piper joe, pulled from the
package index (speech to text hears audio Piper makes). Each kind is measured through the gateway (and
directly), kept, listed, shown, compared and plotted (a PNG an image library reads, and the curves in the
terminal); a sweep's --apply changes what `aima resolve` prints, with the provenance `benchmark`; bad input is
one line naming what is wrong. No timing is asserted beyond "it was measured": figures are positive and
consistent with each other (TTFT within the latency, requests counted).
"""

from __future__ import annotations

import json
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from aima import __version__
from tests.support.daemon import Daemon
from tests.support.tiny import tiny_gguf

CHAT = "smollm2-135m"  # the tiny GGUF imported under a catalog model's name: the catalog's llama-cpp engine runs it


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("bench")
    d = Daemon(root / "home", {})
    d.start()
    try:
        d.op("model.import", path=str(tiny_gguf(root / "tiny.gguf")), name=CHAT, type="llm")
        d.op("service.create", model=CHAT, name="tiny", config={"n_ctx": "512"})
        d.op("service.create", model=CHAT, name="tiny-embed", config={"n_ctx": "512", "embedding": "true"})
        for name in ("tiny", "tiny-embed"):
            out = d.op("service.start", service=name, timeout_s=120)
            assert out["outcome"] == "ready", out
        yield d
    finally:
        d.cleanup()


def bench_json(d: Daemon, *args: str, timeout: float = 300) -> dict[str, Any]:
    r = d.cli("-o", "json", "bench", *args, timeout=timeout)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n{d.log_tail()}"
    return json.loads(r.stdout)


def one_line_error(r: Any, code: int | tuple[int, ...], *words: str) -> str:
    """The command failed with ``code`` and one line on stderr (no progress bar, no traceback) saying ``words``."""
    assert r.returncode in (code if isinstance(code, tuple) else (code,)), (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("aima: "), r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert "Traceback" not in r.stderr and not r.stdout.strip()
    return lines[0]


# ---------------------------------------------------------------------------- chat
def test_chat_through_the_gateway_and_directly_in_one_run(tiny: Daemon) -> None:
    out = bench_json(tiny, CHAT, "--concurrency", "1,2", "--requests", "4", "--output-tokens", "8",
                     "--prompt-tokens", "32", "--direct", "--label", "first")
    assert out["kind"] == "llm" and out["model"] == CHAT and out["service"] == "tiny" and out["label"] == "first"
    # what it ran with: engine and its version, config, hardware, aima's version
    assert out["engine"] == "llama-cpp" and "llama-cpp-python" in out["engine_version"]
    assert out["config"]["n_ctx"] == "512" and out["runtime"] == "native"
    assert out["hardware"]["cores"] >= 1 and out["hardware"]["tag"] and out["aima_version"] == __version__
    assert out["params"]["concurrency"] == [1, 2] and out["params"]["doors"] == ["gateway", "direct"]
    levels = {(lv["door"], lv["concurrency"]): lv for lv in out["levels"]}
    assert set(levels) == {("gateway", 1), ("direct", 1), ("gateway", 2), ("direct", 2)}
    # the doors alternate from level to level (a b, b a): the second level starts with direct
    assert [lv["door"] for lv in out["levels"]] == ["gateway", "direct", "direct", "gateway"]
    for lv in out["levels"]:
        f = lv["figures"]
        assert lv["requests"] == 4 and lv["errors"] == 0 and lv["error"] is None, lv
        assert 0 < f["ttft_p50_s"] <= f["ttft_p99_s"] <= f["latency_p99_s"], f
        assert f["ttft_p50_s"] <= f["latency_p50_s"] and f["output_tokens_per_s"] > 0 and f["requests_per_s"] > 0
        assert 1 <= f["output_tokens_mean"] <= 8 and f["tpot_p50_s"] is not None
        # the rates are totals over the level's duration
        assert f["requests_per_s"] == pytest.approx(4 / lv["duration_s"], rel=0.01)
    # kept: listed and shown as stored
    listed = tiny.cli_json("bench", "list", "--model", CHAT)["results"]
    assert out["id"] in [r["id"] for r in listed]
    row = next(r for r in listed if r["id"] == out["id"])
    assert row["levels"] == "c=1,2 +direct" and "output tokens/s" in row["headline"]
    assert tiny.cli_json("bench", "show", str(out["id"])) == out
    # the progress bar's events
    kinds = [e for e in tiny.op("event.list", limit=10000)["events"] if e["kind"] == "bench.progress"]
    assert kinds and all(e["data"]["request"] == CHAT for e in kinds)
    assert max(e["data"]["done"] for e in kinds) == kinds[-1]["data"]["total"] == 16


def test_the_table_and_the_progress_bar(tiny: Daemon) -> None:
    r = tiny.cli("bench", CHAT, "-c", "2", "-n", "4", "--output-tokens", "4")
    assert r.returncode == 0, r.stderr
    assert "TTFT p50" in r.stdout and "out tok/s" in r.stdout and "gateway" in r.stdout
    assert "llama-cpp-python" in r.stdout and f"aima {__version__}" in r.stdout
    assert "bench smollm2-135m" in r.stderr and "4/4" in r.stderr  # the bar, on stderr


def test_a_run_by_duration(tiny: Daemon) -> None:
    out = bench_json(tiny, "tiny", "--duration", "1.5", "--output-tokens", "4", "--warmup", "0")
    (lv,) = out["levels"]
    assert lv["requests"] >= 1 and lv["duration_s"] >= 1.5 and out["params"]["duration_s"] == 1.5


def test_a_dataset_of_prompts(tiny: Daemon, tmp_path: Path) -> None:
    data = tmp_path / "prompts.jsonl"
    data.write_text("\n".join(json.dumps(x) for x in (
        {"prompt": "hello world"}, "the world", {"messages": [{"role": "user", "content": "a hello"}]},
        {"conversations": [{"from": "human", "value": "is the world"}, {"from": "gpt", "value": "yes"}]})))
    out = bench_json(tiny, CHAT, "--dataset", str(data), "-n", "4", "--output-tokens", "4")
    assert out["params"]["dataset"] == str(data) and any("prompts from" in n for n in out["notes"])
    assert out["levels"][0]["requests"] == 4


# ---------------------------------------------------------------------------- embeddings
def test_embeddings_per_batch_size(tiny: Daemon) -> None:
    out = bench_json(tiny, "tiny-embed", "--batch", "1,4", "-n", "3", "--prompt-tokens", "8")
    assert out["kind"] == "embedding" and out["service"] == "tiny-embed"
    assert [(lv["batch"], lv["concurrency"]) for lv in out["levels"]] == [(1, 1), (4, 1)]
    for lv in out["levels"]:
        f = lv["figures"]
        assert lv["requests"] == 3 and lv["errors"] == 0
        assert f["embeddings_per_s"] == pytest.approx(3 * lv["batch"] / lv["duration_s"], rel=0.01)
        assert 0 < f["latency_p50_s"] <= f["latency_p99_s"]
    r = tiny.cli("bench", "tiny-embed", "--batch", "2", "-n", "2")
    assert r.returncode == 0 and "emb/s" in r.stdout, r.stderr


# ---------------------------------------------------------------------------- bad input
def test_bad_input_is_one_line_naming_what_is_wrong(tiny: Daemon) -> None:
    one_line_error(tiny.cli("bench", "no-such-model"), 4, "no-such-model", "not served")
    one_line_error(tiny.cli("bench", CHAT, "--concurrency", "0"), 2, "concurrency")
    one_line_error(tiny.cli("bench", CHAT, "--concurrency", "1,x"), 2, "--concurrency")
    one_line_error(tiny.cli("bench", CHAT, "--batch", "8"), 2, "batch is for embedding models", "chat (llm)")
    one_line_error(tiny.cli("bench", "tiny-embed", "--output-tokens", "8"), 2, "output_tokens is for chat",
                   "embedding")
    one_line_error(tiny.cli("bench", CHAT, "--audio-seconds", "5"), 2, "audio_s")
    one_line_error(tiny.cli("bench", CHAT, "-n", "2", "--duration", "1"), 2, "requests or duration")
    one_line_error(tiny.cli("bench", CHAT, "--dataset", "/nonexistent/prompts.txt"), 4, "dataset")
    one_line_error(tiny.cli("bench", "show", "999999"), 4, "999999")
    one_line_error(tiny.cli("bench", "sweep", CHAT, "--config", "no_such_key=1,2"), (2, 4), "no_such_key")
    # REST: a 4xx naming the field
    for body, status, param in (({"model": CHAT, "concurrency": [0]}, 422, "concurrency.0"),
                                ({"model": "no-such-model"}, 404, "model"),
                                ({"model": CHAT, "batch": [2]}, 422, "batch")):
        r = tiny.http.post("/api/v1/bench/run", json=body)
        assert r.status_code == status and r.json()["error"]["param"] == param, r.text


# ---------------------------------------------------------------------------- compare, plot, REST, MCP
def test_compare_plot_and_the_same_operations_over_rest_and_mcp(tiny: Daemon, tmp_path: Path) -> None:
    a = bench_json(tiny, CHAT, "-c", "1,2", "-n", "4", "--output-tokens", "4", "--label", "a")
    b = bench_json(tiny, CHAT, "-c", "1,2", "-n", "4", "--output-tokens", "8", "--label", "b")
    cmp = tiny.cli_json("bench", "compare", str(a["id"]), str(b["id"]))
    assert cmp["a"]["id"] == a["id"] and cmp["b"]["id"] == b["id"]
    assert cmp["differences"]["output_tokens"] == [4, 8] and cmp["differences"]["label"] == ["a", "b"]
    tps = [r for r in cmp["ratios"] if r["figure"] == "output_tokens_per_s"]
    assert {r["concurrency"] for r in tps} == {1, 2}
    for r in tps:
        assert r["ratio"] == pytest.approx(r["b"] / r["a"], rel=1e-3)
        assert r["better"] == ("same" if abs(r["ratio"] - 1) <= 0.02 else "b" if r["ratio"] > 1 else "a")
    text = tiny.cli("bench", "compare", str(a["id"]), str(b["id"]))
    assert text.returncode == 0 and "B/A" in text.stdout and "output_tokens: 4 → 8" in text.stdout
    emb = tiny.cli_json("bench", "list", "--kind", "embedding")["results"]
    if emb:  # results of two kinds do not compare
        one_line_error(tiny.cli("bench", "compare", str(a["id"]), str(emb[0]["id"])), 2, "one kind")

    png = tmp_path / "curves.png"
    r = tiny.cli("bench", "plot", str(a["id"]), str(b["id"]), "-o", str(png))
    assert r.returncode == 0, r.stderr
    assert "output tokens/s" in r.stdout and "time to first token" in r.stdout
    assert f"#{a['id']} a" in r.stdout and f"#{b['id']} b" in r.stdout
    assert any(0x2801 <= ord(ch) <= 0x28FF for ch in r.stdout)  # braille dots: the curves
    from PIL import Image

    with Image.open(png) as img:
        assert img.format == "PNG" and img.width >= 800 and img.height >= 300
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50  # drawn, not blank
    charts = tiny.cli_json("bench", "plot", str(a["id"]), str(b["id"]))["charts"]
    assert [c["title"] for c in charts] == ["output tokens/s", "time to first token p50"]
    assert [s["x"] for s in charts[0]["series"]] == [[1, 2], [1, 2]]
    one_line_error(tiny.cli("bench", "plot", str(a["id"]), "-o", str(tmp_path / "x.jpg")), 2, ".png")

    # REST and MCP: the same operations
    listed = tiny.http.get("/api/v1/bench/results", params={"model": CHAT, "limit": 2}).json()["results"]
    assert [r["id"] for r in listed] == [b["id"], a["id"]]
    assert tiny.http.get(f"/api/v1/bench/results/{a['id']}").json() == a
    assert tiny.http.get("/api/v1/bench/compare", params={"a": a["id"], "b": b["id"]}).json() == cmp

    async def mcp() -> dict[str, Any]:
        from mcp import Client

        async with Client(tiny.url + "/mcp") as c:
            tools = {t.name for t in (await c.list_tools()).tools}
            assert {"bench.run", "bench.list", "bench.show", "bench.compare", "bench.sweep"} <= tools
            res = await c.call_tool("bench.run", {"model": "tiny", "requests": 2, "output_tokens": 4})
            assert not res.is_error, res.content[0].text
            return json.loads(res.content[0].text)

    got = anyio.run(mcp)
    assert got["kind"] == "llm" and got["levels"][0]["requests"] == 2


# ---------------------------------------------------------------------------- sweep → resolver
def test_sweep_apply_feeds_the_resolver_with_provenance_benchmark(tiny: Daemon) -> None:
    before = tiny.cli_json("resolve", CHAT)["config"]
    assert before["n_threads"]["source"] == "detected" and before["n_batch"]["source"] == "engine-default"
    r = tiny.cli("-o", "json", "bench", "sweep", CHAT, "--config", "n_threads=1,2", "--config", "n_batch=256",
                 "-n", "3", "--output-tokens", "4", "--apply", timeout=600)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n{tiny.log_tail()}"
    out = json.loads(r.stdout)
    assert [row["config"] for row in out["rows"]] == [{"n_threads": "1", "n_batch": "256"},
                                                      {"n_threads": "2", "n_batch": "256"}]
    assert all(row["result"] and row["value"] > 0 and row["error"] is None for row in out["rows"])
    best = out["best"]
    assert best["value"] == max(row["value"] for row in out["rows"]) and out["variant"] == "cpu-gguf-q4"
    overlay = Path(out["applied"])
    assert overlay == tiny.home / "catalog" / "models" / f"{CHAT}.benchmark.yaml" and overlay.is_file()
    # each combination ran as a service of its own, deleted afterwards; its results are kept, labelled
    names = {s["name"] for s in tiny.op("service.list")["services"]}
    assert names == {"tiny", "tiny-embed"}
    swept = tiny.cli_json("bench", "list", "--sweep", out["sweep"])["results"]
    assert sorted(r["label"] for r in swept) == ["n_threads=1 n_batch=256", "n_threads=2 n_batch=256"]
    shown = tiny.cli_json("bench", "show", str(best["result"]))
    assert shown["config"]["n_threads"] == best["config"]["n_threads"] and shown["sweep"] == out["sweep"]
    # the resolver now takes the best values, saying where they came from (user config still wins)
    after = tiny.cli_json("resolve", CHAT)["config"]
    assert after["n_threads"]["value"] == int(best["config"]["n_threads"])
    assert after["n_threads"]["source"] == after["n_batch"]["source"] == "benchmark"
    assert after["n_batch"]["value"] == 256 and f"benchmark result {best['result']}" in after["n_batch"]["reason"]
    text = tiny.cli("resolve", CHAT)
    assert text.returncode == 0 and "benchmark" in text.stdout
    user = tiny.cli_json("resolve", CHAT, "--config", "n_batch=128")["config"]["n_batch"]
    assert user["source"] == "user" and user["overrides"][-1]["source"] == "benchmark"
    assert tiny.cli_json("catalog", "validate")["ok"] is True
    overlay.unlink()
    assert tiny.cli_json("resolve", CHAT)["config"]["n_threads"]["source"] == "detected"


# ---------------------------------------------------------------------------- speech
@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("bench-speech")
    d = Daemon(root / "home", {})
    d.start()
    try:
        r = d.cli("up", "--model", "piper-en-us-joe", "--model", "whisper-tiny-en", "--no-check", timeout=1200)
        assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n{d.log_tail()}"
        yield d
    finally:
        d.cleanup()


def test_speech_both_ways_with_audio_the_voice_makes(speech: Daemon, tmp_path: Path) -> None:
    tts = bench_json(speech, "piper-en-us-joe", "--audio-seconds", "2,6", "-n", "2", "--direct")
    assert tts["kind"] == "tts" and tts["engine"] == "piper" and "piper-tts" in tts["engine_version"]
    by = {(lv["door"], lv["audio_s"]): lv for lv in tts["levels"]}
    assert set(by) == {("gateway", 2.0), ("direct", 2.0), ("gateway", 6.0), ("direct", 6.0)}
    for lv in tts["levels"]:
        f = lv["figures"]
        assert lv["requests"] == 2 and lv["errors"] == 0 and f["audio_s_mean"] > 0.5
        assert f["rtf_p50"] == pytest.approx(f["latency_p50_s"] / f["audio_s_mean"], rel=0.5)
    # longer text, longer audio
    assert by[("gateway", 6.0)]["figures"]["audio_s_mean"] > by[("gateway", 2.0)]["figures"]["audio_s_mean"]

    asr = bench_json(speech, "whisper-tiny-en", "--audio-seconds", "3,8", "-n", "2")
    assert asr["kind"] == "asr" and "faster-whisper" in asr["engine_version"]
    assert any("audio made by piper-en-us-joe" in n for n in asr["notes"]), asr["notes"]
    for lv in asr["levels"]:
        f = lv["figures"]
        assert lv["requests"] == 2 and lv["errors"] == 0 and f["rtf_p50"] > 0 and f["audio_s_mean"] > 1
    # a given audio file instead of the voice's (and the curves of RTF against audio length)
    clip = tmp_path / "clip.wav"
    with wave.open(str(clip), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * 16000 * 2)
    given = bench_json(speech, "whisper-tiny-en", "--dataset", str(clip), "-n", "2")
    assert given["levels"][0]["audio_s"] == pytest.approx(2.0) and any("clip.wav" in n for n in given["notes"])
    r = speech.cli("bench", "plot", str(asr["id"]))
    assert r.returncode == 0 and "real-time factor p50" in r.stdout and "audio length" in r.stdout, r.stderr
    one_line_error(speech.cli("bench", "whisper-tiny-en", "--voice", "whisper-tiny-en"), 2, "voice")

