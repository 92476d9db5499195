"""/v1/voice's pure parts: the multipart form it reads (bad fields named), and how the reply is cut into sentences to
speak while the LLM still writes (the pipeline itself runs on the real stack: tests/e2e/test_stack.py)."""

from __future__ import annotations

import pytest

from aima.gateway.voice import FormError, voice_request
from aima.ops.voice import speakable, split_sentences
from aima.surfaces.cli.voice import multipart


def form(fields: dict[str, str], audio: bytes = b"RIFF\r\n--not-a-boundary\r\n\0\xff") -> tuple[bytes, bytes]:
    body, ctype = multipart(fields, "q.wav", audio)
    return ctype.encode(), body


def test_the_form_is_read_with_binary_audio_intact() -> None:
    audio = bytes(range(256)) * 40 + b"\r\n\r\n--"
    req, stream = voice_request(*form({"model": "m", "session": "s1", "max_tokens": "64", "temperature": "0.2",
                                       "system": "Be brief.\nSpeak Chinese.", "stream": "true"}, audio))
    assert stream is True and req.audio == audio and req.filename == "q.wav"
    assert (req.model, req.session, req.max_tokens, req.temperature, req.system) == ("m", "s1", 64, 0.2,
                                                                                      "Be brief.\nSpeak Chinese.")
    req, stream = voice_request(*form({}))
    assert stream is False and req.model is None and req.max_tokens == 256


@pytest.mark.parametrize(("fields", "param"), [({"stream": "maybe"}, "stream"), ({"max_tokens": "lots"}, "max_tokens"),
                                               ({"temperature": "hot"}, "temperature"), ({"colour": "red"}, "colour")])
def test_a_bad_field_is_named(fields: dict[str, str], param: str) -> None:
    with pytest.raises(FormError) as e:
        voice_request(*form(fields))
    assert e.value.param == param and param in e.value.message


def test_no_file_and_no_multipart_are_refused() -> None:
    ctype, body = form({"model": "m"})
    body = body.replace(b'name="file"; filename="q.wav"', b'name="other"')
    with pytest.raises(FormError) as e:
        voice_request(ctype, body)
    assert e.value.param == "file"
    with pytest.raises(FormError, match="multipart/form-data"):
        voice_request(b"application/json", b"{}")


def test_sentences_are_cut_as_they_complete() -> None:
    assert split_sentences("Paris is the capital of France. It is famous for the Eiffel Tower. It has") == \
        (["Paris is the capital of France.", "It is famous for the Eiffel Tower."], " It has")
    assert split_sentences("It costs 3.5 euros. Dr. Smith") == (["It costs 3.5 euros."], " Dr. Smith")
    assert split_sentences("Yes. OK. That is right.", final=True) == (["Yes. OK. That is right."], "")
    assert split_sentences("天空是蓝色的。因为空气散射阳光。它") == (["天空是蓝色的。", "因为空气散射阳光。"], "它")
    # the first words go out at a clause (or before a joining word) so the first audio comes early
    assert split_sentences("Paris is the capital of France, and", first=True) == (
        ["Paris is the capital of France,"], " and")
    assert split_sentences("The sky is blue because of the scattering of light by tiny", first=True)[0] == [
        "The sky is blue because of the scattering of light"]
    assert split_sentences("Paris is the capital of France, and", first=False) == (
        [], "Paris is the capital of France, and")


def test_markup_is_not_spoken() -> None:
    assert speakable("**Paris** is the [capital](https://x.y) of `France`.") == "Paris is the capital of France."
