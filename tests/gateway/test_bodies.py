"""The gateway's body handling on its own: the model a JSON, form or multipart body names, and that body
with only that field rewritten (every other byte kept)."""

from __future__ import annotations

import json

import pytest

from aima.gateway import bodies


def test_json_rewrites_only_the_top_level_model() -> None:
    raw = (b'{"tools": [{"function": {"parameters": {"model": "inner"}}}], "model" :\n "chat",'
           b' "messages": [{"role": "user", "content": "caf\xc3\xa9 \\"model\\": \\"chat\\""}], "n": 1.50}')
    p = bodies.parse(b"application/json", raw)
    assert p.model == "chat"
    assert p.with_model("chat") is raw  # the fast path: the same bytes, nothing re-encoded
    out = p.with_model("served-name")
    assert out == raw.replace(b'"model" :\n "chat"', b'"model" :\n "served-name"')
    assert json.loads(out)["tools"][0]["function"]["parameters"]["model"] == "inner"


def test_json_duplicate_model_keys_follow_json_loads() -> None:
    raw = b'{"model": "a", "x": 1, "model": "b"}'
    p = bodies.parse(b"application/json; charset=utf-8", raw)
    assert p.model == "b"
    assert p.with_model("c") == b'{"model": "a", "x": 1, "model": "c"}'


def test_form_and_multipart() -> None:
    p = bodies.parse(b"application/x-www-form-urlencoded", b"a=1&model=my+model&b=%2F")
    assert p.model == "my model"
    assert p.with_model("x/y") == b"a=1&model=x%2Fy&b=%2F"
    audio = b"RIFF\x00\x01--notaboundary\r\n"
    body = (b'--B0\r\nContent-Disposition: form-data; name="file"; filename="model.wav"\r\n'
            b"Content-Type: audio/wav\r\n\r\n" + audio + b"\r\n"
            b'--B0\r\nContent-Disposition: form-data; name="model"\r\n\r\nvoice\r\n--B0--\r\n')
    p = bodies.parse(b'multipart/form-data; boundary="B0"', body)
    assert p.model == "voice"
    out = p.with_model("echo-voice")
    assert out == body.replace(b"\r\n\r\nvoice\r\n", b"\r\n\r\necho-voice\r\n") and audio in out


@pytest.mark.parametrize("ctype,body,code", [
    (b"application/json", b"", "invalid_body"),
    (b"application/json", b"{", "invalid_body"),
    (b"application/json", b"[]", "invalid_body"),
    (b"application/json", b'{"messages": []}', "missing_model"),
    (b"application/json", b'{"model": null}', "missing_model"),
    (b"application/json", b'{"model": ["a"]}', "invalid_model"),
    (b"text/plain", b"hello", "invalid_body"),
    (b"application/x-www-form-urlencoded", b"model", "invalid_body"),
    (b"multipart/form-data", b"x", "invalid_body"),
    (b"multipart/form-data; boundary=zz", b"no boundary here", "invalid_body"),
    (b"multipart/form-data; boundary=zz", b'--zz\r\nContent-Disposition: form-data; name="model"\r\n\r\n\xff\r\n--zz--',
     "invalid_model"),
])
def test_bad_bodies_say_what_is_wrong(ctype: bytes, body: bytes, code: str) -> None:
    with pytest.raises(bodies.BadBody) as e:
        bodies.parse(ctype, body)
    assert e.value.code == code and e.value.message
