"""The gateway in front of a real llama.cpp server (the catalog's ``llama-cpp`` engine) on the tiny random
GGUF of tests/support/tiny.py: chat (plain and streamed) and completions by catalog alias, embeddings by
service name, token counts in /metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.gateway.conftest import async_client, client, metric
from tests.support.daemon import Daemon
from tests.support.tiny import tiny_gguf

# `make test` installs the engines (`make engines`): a real llama.cpp engine is always there to route to.


def test_llama_cpp_through_the_gateway(daemon: Daemon, tmp_path: Path) -> None:
    gguf = tiny_gguf(tmp_path / "tiny.gguf")
    daemon.op("model.import", path=str(gguf), name="smollm2-135m", type="llm")
    svc = daemon.op("service.create", model="smollm2-135m", name="tiny", config={"n_ctx": "512"})
    assert svc["engine"] == "llama-cpp" and svc["memory_bytes"] and svc["devices"] == ["cpu"]
    emb = daemon.op("service.create", model="smollm2-135m", name="tiny-embed",
                    config={"n_ctx": "512", "embedding": "true"})
    for name in ("tiny", "tiny-embed"):
        out = daemon.op("service.start", service=name, timeout_s=120)
        assert out["outcome"] == "ready", out
    c = client(daemon)
    # By catalog alias; the answer carries the name asked for.
    out = c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hello"}], max_tokens=8)
    assert out.model == "smollm2" and out.usage is not None and out.usage.completion_tokens == 8
    assert (out.choices[0].message.content or "").isprintable()
    raw = c.chat.completions.with_raw_response.create(model="SmolLM2-135M-Instruct", max_tokens=4,
                                                      messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-aima-service"] == "tiny"  # the chat service, never the embedding one
    chunks = list(c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hello"}],
                                            max_tokens=6, stream=True))
    assert len([ch for ch in chunks if ch.choices and ch.choices[0].delta.content]) >= 3
    assert {ch.model for ch in chunks} == {"smollm2"}
    comp = c.completions.create(model="smollm2-135m", prompt="the", max_tokens=5)
    assert comp.usage is not None and comp.usage.completion_tokens == 5

    async def many() -> list[int]:
        ac = async_client(daemon)
        outs = await asyncio.gather(*(ac.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": f"n{i}"}], max_tokens=3) for i in range(4)))
        await ac.close()
        return [o.usage.completion_tokens for o in outs if o.usage]

    assert asyncio.run(many()) == [3, 3, 3, 3]

    async def streams() -> list[tuple[int, str | None]]:
        # Concurrent streams queue in llama.cpp (the catalog sets interrupt_requests false): each is whole.
        ac = async_client(daemon)

        async def one(i: int) -> tuple[int, str | None]:
            n, finish = 0, None
            async for ch in await ac.chat.completions.create(
                    model="tiny", messages=[{"role": "user", "content": f"s{i}"}], max_tokens=6, stream=True):
                if ch.choices and ch.choices[0].delta.content:
                    n += 1
                if ch.choices and ch.choices[0].finish_reason:
                    finish = ch.choices[0].finish_reason
            return n, finish

        outs = await asyncio.gather(*(one(i) for i in range(3)))
        await ac.close()
        return outs

    for n, finish in asyncio.run(streams()):
        assert finish is not None and n >= 3, (n, finish)
    vecs = c.embeddings.create(model="tiny-embed", input=["hello world", "the"])
    # (A causal LM without pooling answers one 64-wide vector per token; the gateway relays it as it is.)
    assert vecs.model == "tiny-embed" and len(vecs.data) == 2 and vecs.data[0].embedding
    text = daemon.http.get("/metrics").text
    assert metric(text, "aima_gateway_tokens_total", model="smollm2-135m", direction="out") >= 8 + 4 + 5 + 12
    assert metric(text, "aima_gateway_requests_total", model="smollm2-135m", status="200") >= 8
    assert emb["name"] == "tiny-embed"
