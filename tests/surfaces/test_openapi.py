"""The OpenAPI contract, checked from outside: schemathesis (``--checks all``) over every route of a real
daemon, ``/v1`` included — every answer matches the document (status, content type, schema, ``Allow``),
every schema-valid request is taken and every invalid one refused, and no request ends in a 5xx.

Bounded: a fixed seed and a few examples per operation. The daemon's outside world is made local and
quick so nothing is fetched: Hugging Face and ModelScope are the suite's local mirrors (unknown repos:
404), the package index is off, and the agent's model is a scripted one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.daemon import Daemon
from tests.support.modelstore import HfMirror, MsMirror
from tests.support.scripted import ScriptedModel, answer

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.mark.timeout(1200)
def test_schemathesis_finds_nothing(aima_home: Path) -> None:
    if not SCHEMATHESIS.exists():
        pytest.fail("schemathesis is not installed (the dev extra installs it)")
    hf, ms = HfMirror(), MsMirror()
    with ScriptedModel(repeat=answer("nothing to do")) as model:
        env = {"AIMA_HF_ENDPOINT": hf.url, "AIMA_MS_ENDPOINT": ms.url, "PIP_CONFIG_FILE": os.devnull,
               "PIP_NO_INDEX": "1", "DOCKER_HOST": "unix:///nonexistent/docker.sock", **model.env()}
        d = Daemon(aima_home, env)
        d.start()
        try:
            key = json.loads(d.cli("key", "create", "--name", "fuzz", "-o", "json").stdout)["key"]
            r = subprocess.run([str(SCHEMATHESIS), "--config-file", str(Path(__file__).with_name("schemathesis.toml")),
                                "run", f"{d.url}/openapi.json", "-H", f"Authorization: Bearer {key}",
                                "--checks", "all", "--max-examples", "8", "--seed", "4242", "--no-color",
                                "--request-timeout", "5"],  # (the live event stream ends there)
                               capture_output=True, text=True, timeout=900, env={**os.environ, "NO_COLOR": "1"})
            out = r.stdout + r.stderr
            assert r.returncode == 0 and "Schema Error" not in out, out[-12000:]
        finally:
            d.cleanup()
            hf.close()
            ms.close()
