"""The ``llama-cpp`` engine as the catalog renders it, on the tiny random GGUF (tests/support/tiny.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from aima import catalog
from aima.hardware import detect
from tests.engines.conftest import engine_env, serve
from tests.support.daemon import free_port
from tests.support.tiny import tiny_gguf


def test_tiny_gguf_is_small_unique_and_quick_to_write(tmp_path: Path) -> None:
    import gguf

    t0 = time.monotonic()
    p = tiny_gguf(tmp_path / "m" / "tiny.gguf")
    assert time.monotonic() - t0 < 5
    assert p.stat().st_size < 1_000_000
    r = gguf.GGUFReader(str(p))
    field = r.fields["tokenizer.ggml.tokens"]
    toks = [bytes(field.parts[i]) for i in field.data]
    assert len(toks) == len(set(toks)) == 104
    assert not list(p.parent.glob("*.tmp"))


def test_llama_cpp_engine_serves_the_tiny_gguf_in_seconds(tmp_path: Path) -> None:
    model = tiny_gguf(tmp_path / "tiny.gguf")
    plan = catalog.resolve(detect(tmp_path), "smollm2-135m", config={"n_ctx": 512}, model_path=model, home=tmp_path)
    assert plan.engine == "llama-cpp" and plan.model_path == str(model)
    port = free_port()
    with serve(plan.render(port=port), port=port, name=plan.model, log=tmp_path / "engine.log",
               env=engine_env(plan.env), health=plan.health_path or "/v1/models", timeout_s=30) as eng:
        assert eng.ready_s < 10, f"ready after {eng.ready_s:.1f}s"
        with httpx.Client(base_url=eng.url, timeout=30, trust_env=False) as c:
            body = {"model": plan.model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
            r = c.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
            out = r.json()
            assert out["choices"][0]["finish_reason"] == "length"
            assert out["usage"]["completion_tokens"] == 8
            assert out["choices"][0]["message"]["content"].isprintable()
            with c.stream("POST", "/v1/chat/completions", json={**body, "stream": True, "max_tokens": 3}) as s:
                lines = [ln for ln in s.iter_lines() if ln.startswith("data: ")]
            assert lines[-1] == "data: [DONE]"
            assert json.loads(lines[0][6:])["object"] == "chat.completion.chunk"
