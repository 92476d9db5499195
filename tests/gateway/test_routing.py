"""The OpenAI routes through the official ``openai`` client against real echo engines: chat (sync, async,
streamed), completions, embeddings, speech, transcription, voices; routing by service name, model name
and alias; the X-Aima headers; unknown and not-ready models; malformed bodies (400, never 500)."""

from __future__ import annotations

import asyncio
import io
import json
import wave
from collections.abc import Iterator

import openai
import pytest

from tests.gateway.conftest import async_client, client, engine_stats, metric, serve
from tests.support.daemon import Daemon


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon with two ready echo services (``chat`` serving ``echo-chat``; ``voice``) and one that
    is created but never started (``cold``)."""
    d = Daemon(tmp_path_factory.mktemp("gw") / "aima-home", {})
    d.start()
    try:
        serve(d, "chat", "echo-chat")
        serve(d, "voice", "echo-voice")
        serve(d, "cold", "echo-cold", start=False)
        yield d
    finally:
        d.cleanup()


def endpoint_of(d: Daemon, name: str) -> str:
    return d.get(name)["endpoint"]


def test_chat_sync_by_model_service_name_and_back(gw: Daemon) -> None:
    c = client(gw)
    out = c.chat.completions.create(model="echo-chat", messages=[{"role": "user", "content": "hello"}])
    assert out.choices[0].message.content == "echo: hello"
    assert out.model == "echo-chat"
    assert out.usage is not None and out.usage.completion_tokens == 2
    # By service name: the engine is asked for its served name, the client gets its own name back.
    out = c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "by name"}])
    assert out.choices[0].message.content == "echo: by name" and out.model == "chat"
    assert engine_stats(endpoint_of(gw, "chat"))["last"]["model"] == "echo-chat"


def test_chat_async_and_concurrent(gw: Daemon) -> None:
    async def main() -> list[str]:
        c = async_client(gw)
        outs = await asyncio.gather(*(c.chat.completions.create(
            model="echo-chat", messages=[{"role": "user", "content": f"n{i}"}]) for i in range(20)))
        await c.close()
        return [o.choices[0].message.content or "" for o in outs]

    assert asyncio.run(main()) == [f"echo: n{i}" for i in range(20)]


def test_chat_streams_chunk_by_chunk_with_usage(gw: Daemon) -> None:
    c = client(gw)
    stream = c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "one two three"}],
                                       stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "echo: one two three"
    assert len([ch for ch in chunks if ch.choices and ch.choices[0].delta.content]) == 4
    assert {ch.model for ch in chunks} == {"chat"}  # the requested name, in every chunk
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4

    async def astream() -> str:
        ac = async_client(gw)
        s = await ac.chat.completions.create(model="echo-chat", messages=[{"role": "user", "content": "a b"}],
                                             stream=True)
        parts = [ch.choices[0].delta.content or "" async for ch in s if ch.choices]
        await ac.close()
        return "".join(parts)

    assert asyncio.run(astream()) == "echo: a b"


def test_completions_and_embeddings(gw: Daemon) -> None:
    c = client(gw)
    out = c.completions.create(model="echo-chat", prompt="say this")
    assert out.choices[0].text == "echo: say this"
    parts = [ch.choices[0].text for ch in c.completions.create(model="chat", prompt="x y", stream=True)
             if ch.choices]
    assert "".join(parts) == "echo: x y"
    emb = c.embeddings.create(model="echo-chat", input=["alpha", "beta", "alpha"])
    vecs = [d.embedding for d in emb.data]
    assert len(vecs) == 3 and len(vecs[0]) == 8 and vecs[0] == vecs[2] != vecs[1]
    assert emb.usage.prompt_tokens == 3


def test_speech_transcription_and_voices(gw: Daemon) -> None:
    c = client(gw)
    speech = c.audio.speech.with_raw_response.create(model="voice", voice="echo", input="four words of text")
    assert speech.headers["content-type"] == "audio/wav"
    assert speech.headers["x-aima-service"] == "voice"
    assert speech.headers["x-echo-text"] == "echo: four words of text"
    audio = speech.content
    with wave.open(io.BytesIO(audio)) as w:
        assert w.getnframes() == int(16000 * 0.05 * 4)
    out = c.audio.transcriptions.create(model="echo-voice", file=("clip.wav", audio, "audio/wav"))
    assert out.text == f"echo: clip.wav ({len(audio)} bytes)"
    assert engine_stats(endpoint_of(gw, "voice"))["last"]["model"] == "echo-voice"
    # By service name: the multipart field is rewritten to the served name, the file passes unchanged.
    text = c.audio.transcriptions.create(model="voice", file=("c.wav", audio, "audio/wav"), response_format="text")
    assert str(text).strip() == f"echo: c.wav ({len(audio)} bytes)"
    assert engine_stats(endpoint_of(gw, "voice"))["last"]["model"] == "echo-voice"
    # Voices: of one model, or of every ready one, each with its model.
    r = gw.http.get("/v1/audio/voices", params={"model": "voice"})
    assert r.status_code == 200 and r.json()["data"] == [{"id": "echo", "name": "echo"}]
    all_voices = gw.http.get("/v1/audio/voices").json()["data"]
    assert {(v["id"], v["model"]) for v in all_voices} == {("echo", "echo-chat"), ("echo", "echo-voice")}


def test_form_body_and_json_sent_as_form(gw: Daemon) -> None:
    # `curl -d '{...}'` sends JSON labelled as a form: it is read as JSON.
    r = gw.http.post("/v1/chat/completions", content=json.dumps(
        {"model": "chat", "messages": [{"role": "user", "content": "curl"}]}),
        headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "echo: curl"


def test_body_passes_through_unchanged_when_the_name_is_the_served_name(gw: Daemon) -> None:
    raw = b'{ "messages" : [{"role":"user","content":"caf\xc3\xa9 \\u00e9"}], "model":"echo-chat", "x_extra": 1.50 }'
    r = gw.http.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 200
    last = engine_stats(endpoint_of(gw, "chat"))["last"]
    import hashlib

    assert last["sha256"] == hashlib.sha256(raw).hexdigest() and last["length"] == len(raw)
    # Only "model" changes when a service name is used; every other byte is as sent.
    r = gw.http.post("/v1/chat/completions", content=raw.replace(b'"echo-chat"', b'"chat"'),
                     headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["model"] == "chat"
    last = engine_stats(endpoint_of(gw, "chat"))["last"]
    assert last["sha256"] == hashlib.sha256(raw).hexdigest()


def test_x_aima_headers(gw: Daemon) -> None:
    c = client(gw)
    raw = c.chat.completions.with_raw_response.create(model="echo-chat", messages=[{"role": "user", "content": "h"}])
    svc = gw.get("chat")
    assert raw.headers["x-aima-service"] == "chat"
    assert raw.headers["x-aima-instance"] == svc["instances"][0]["id"]
    overhead = float(raw.headers["x-aima-overhead-ms"])
    assert 0 <= overhead < 1000
    with gw.http.stream("POST", "/v1/chat/completions", json={"model": "chat", "stream": True,
                                                                 "messages": [{"role": "user", "content": "s"}]}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-aima-service"] == "chat" and float(r.headers["x-aima-overhead-ms"]) >= 0
        r.read()


def test_models_lists_ready_models_with_aliases(gw: Daemon) -> None:
    data = client(gw).models.list().data
    assert sorted(m.id for m in data) == ["echo-chat", "echo-voice"]  # not echo-cold: it is not ready
    by_id = {m.id: m.model_dump() for m in data}
    assert by_id["echo-chat"]["aliases"] == ["chat"] and by_id["echo-chat"]["service"] == "chat"


def test_unknown_model_is_404_listing_the_served_models(gw: Daemon) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    err = e.value.body
    assert isinstance(err, dict) and err["code"] == "model_not_found"
    assert "gpt-4o" in err["message"] and "echo-chat" in err["message"] and "echo-voice" in err["message"]
    # Never a guess: a prefix or a different case is not a match.
    for near in ("echo", "Echo-Chat", "echo-cha"):
        r = gw.http.post("/v1/chat/completions", json={"model": near, "messages": []})
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", near


def test_known_but_not_ready_is_503_with_retry_after_and_state(gw: Daemon) -> None:
    r = gw.http.post("/v1/chat/completions", json={"model": "echo-cold", "messages": []})
    assert r.status_code == 503
    assert int(r.headers["retry-after"]) > 0
    err = r.json()["error"]
    assert err["code"] == "model_not_ready" and err["state"] == "created" and err["service"] == "cold"
    assert "aima service start cold" in err["message"]
    with pytest.raises(openai.InternalServerError):
        client(gw).embeddings.create(model="cold", input="x")


BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("malformed JSON", b'{"model": "chat",', "application/json"),
    ("a JSON array", b'[{"model": "chat"}]', "application/json"),
    ("a string", b'"chat"', "application/json"),
    ("null", b"null", "application/json"),
    ("not UTF-8", b'\xff\xfe{"a\x00', "application/json"),
    ("empty", b"", "application/json"),
    ("no model", b'{"messages": []}', "application/json"),
    ("model a number", b'{"model": 7}', "application/json"),
    ("model empty", b'{"model": "  "}', "application/json"),
    ("form without model", b"a=1&b=2", "application/x-www-form-urlencoded"),
    ("multipart without boundary", b"--x\r\n\r\n", "multipart/form-data"),
    ("multipart without model", b'--xx\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
                                 b"RIFF\r\n--xx--\r\n", "multipart/form-data; boundary=xx"),
    ("multipart cut short", b'--xx\r\nContent-Disposition: form-data; name="model"\r\n\r\nchat',
     "multipart/form-data; boundary=xx"),
]


@pytest.mark.parametrize("what,body,ctype", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_malformed_bodies_are_400_never_500(gw: Daemon, what: str, body: bytes, ctype: str) -> None:
    for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/audio/transcriptions"):
        r = gw.http.post(path, content=body, headers={"content-type": ctype})
        assert r.status_code == 400, (what, path, r.status_code, r.text)
        err = r.json()["error"]
        assert set(err) >= {"message", "type", "code"} and err["type"] == "invalid_request_error"
        assert all(isinstance(err[k], str) and err[k] for k in ("message", "type", "code")), err


def test_wrong_route_and_method(gw: Daemon) -> None:
    r = gw.http.post("/v1/no/such/route", json={"model": "chat"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = gw.http.get("/v1/chat/completions")
    assert r.status_code == 405 and "POST" in r.headers["allow"]
    r = gw.http.post("/v1/models", json={})
    assert r.status_code == 405


def test_metrics(gw: Daemon) -> None:
    c = client(gw)
    c.chat.completions.create(model="echo-chat", messages=[{"role": "user", "content": "count these words"}])
    list(c.chat.completions.create(model="echo-chat", messages=[{"role": "user", "content": "s t"}], stream=True,
                                   stream_options={"include_usage": True}))
    gw.http.post("/v1/chat/completions", json={"model": "nope", "messages": []})
    r = gw.http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    inst = gw.get("chat")["instances"][0]["id"]
    assert metric(text, "aima_gateway_requests_total", model="echo-chat", instance=inst,
                  route="/v1/chat/completions", status="200") >= 2
    assert metric(text, "aima_gateway_request_seconds_count", model="echo-chat") >= 2
    assert metric(text, "aima_gateway_time_to_first_token_seconds_count", model="echo-chat") >= 1
    assert metric(text, "aima_gateway_tokens_total", model="echo-chat", direction="in") >= 3
    assert metric(text, "aima_gateway_tokens_total", model="echo-chat", direction="out") >= 4
    assert metric(text, "aima_gateway_errors_total", code="model_not_found") >= 1
    assert metric(text, "aima_gateway_overhead_seconds_count", route="/v1/chat/completions") >= 2
    assert "aima_gateway_inflight_requests{" in text
    assert metric(text, "aima_service_state", service="chat", state="running") == 1
    assert metric(text, "aima_service_state", service="cold", state="created") == 1
    assert metric(text, "aima_service_ready_instances", service="chat") == 1
    assert "aima_service_loads_total" in text or "# TYPE aima_service_loads counter" in text


def test_health_and_metrics_need_no_body(gw: Daemon) -> None:
    assert gw.http.get("/health").json()["status"] == "ok"
    doc = gw.http.get("/openapi.json").json()
    for path in ("/v1/chat/completions", "/v1/models", "/v1/audio/transcriptions", "/metrics"):
        assert path in doc["paths"], path
