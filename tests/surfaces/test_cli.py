"""The real `aima` CLI: JSON output for every generated command, one-line errors (never a traceback),
lazy imports, a current manifest, and the daemon's start/stop plus `up`/`down`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support.daemon import AIMA, PY, Daemon, echo_cmd, free_port, wait_until
from tests.support.echo_catalog import write_echo_catalog

MANIFEST = json.loads((Path(__file__).parents[2] / "src/aima/surfaces/cli/manifest.json").read_text())
# Commands wrapped by `aima up` / `aima down` rather than exposed as `aima stack ...`. `up` brings up the
# overlay's echo model (see daemon_env below) without the live checks: the echo engine is no model, and
# the real stack with its checks is tests/e2e/test_stack.py's (it needs the real engines and models).
WRAPPED = {"stack.up": ["up", "--model", "echo-model", "--no-check", "--timeout", "60"], "stack.down": ["down"]}
# Commands that need a real engine of their model type: tests/e2e/test_stack.py runs each of them, with
# -o json, against the real stack.
REAL_ENGINES = {"inference.embed", "inference.speak", "inference.transcribe"}


@pytest.fixture
def daemon_env(aima_home: Path, tmp_path: Path) -> dict[str, str]:
    """Every daemon of this module has the echo engine and model in its catalog overlay."""
    write_echo_catalog(aima_home, tmp_path / "weights" / "echo.gguf")
    return {}


def run(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIMA, *args], env=env, capture_output=True, text=True, timeout=timeout)


def one_line_error(r: subprocess.CompletedProcess[str], *words: str) -> str:
    """The single stderr line of a failed command (asserting there is exactly one, and no traceback)."""
    assert r.returncode != 0, f"expected a failure; stdout={r.stdout!r}"
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{r.stderr}"
    line = lines[0]
    assert line.startswith("aima: "), line
    for w in words:
        assert w in line, f"{w!r} not in {line!r}"
    return line


def command_line(cmd: dict[str, Any], service: str, values: dict[tuple[str, str], str] | None = None) -> list[str]:
    """The argv of a generated command, filled for the service this test uses (and ``values`` for
    other positional arguments, keyed by (operation, argument))."""
    if cmd["op"] in WRAPPED:
        return list(WRAPPED[cmd["op"]])
    argv = [cmd["group"], cmd["command"]] if cmd["group"] else [cmd["command"]]
    values = values or {}
    for p in cmd["params"]:
        if p["positional"]:
            if (cmd["op"], p["name"]) in values:
                argv.append(values[(cmd["op"], p["name"])])
                continue
            if not (p["name"] == "service" or (cmd["op"], p["name"]) == ("service.create", "model")):
                pytest.fail(f"{cmd['op']}: teach this test a value for the argument {p['name']!r}")
            argv.append(service)
        elif p["required"]:
            pytest.fail(f"{cmd['op']}: teach this test a value for the option --{p['cli_name']}")
    if cmd["op"] == "service.create":
        argv += ["--command", echo_cmd()]
    if cmd["op"] in ("service.start", "service.restart"):
        argv += ["--timeout", "60"]
    return argv


def test_every_generated_command_prints_json(daemon: Daemon, tmp_path: Path) -> None:
    from tests.support.modelstore import write_gguf

    gguf = write_gguf(tmp_path / "cli-tiny.gguf")
    values = {
        ("catalog.show", "name"): "llama-cpp", ("catalog.resolve", "model"): "smollm2-135m",
        ("model.import", "path"): str(gguf), ("model.info", "model"): "cli-tiny",
        ("model.scan", "target"): "cli-tiny", ("model.pull", "model"): f"file:{gguf}",
        ("model.rm", "model"): "cli-tiny", ("inference.chat", "model"): "cli-json",
        ("inference.chat", "prompt"): "hello there",
    }
    cmds = [c for c in MANIFEST["commands"] if c["op"] not in REAL_ENGINES]
    assert {c["op"] for c in cmds} >= {"service.create", "service.start", "service.list", "system.status"}
    # create, import and start first (chat needs the service ready), the ones that remove things last,
    # `down` (which stops the daemon too) at the end.
    first = {"service.create": 0, "model.import": 1, "service.start": 2, "inference.chat": 3}
    # API keys: list, create (from then on every call needs the key), revoke it (open again) before `down`.
    last = {"service.delete": 1, "model.rm": 1, "key.list": 1.2, "key.create": 1.4, "key.revoke": 1.6,
            "stack.down": 2}
    order = sorted(cmds, key=lambda c: (first.get(c["op"], 4), last.get(c["op"], 0)))
    outputs: dict[str, Any] = {}
    for cmd in order:
        if cmd["op"] == "key.revoke":
            values[("key.revoke", "key")] = outputs["key.create"]["id"]
        argv = command_line(cmd, "cli-json", values)
        if cmd["op"] == "model.pull":
            argv += ["--name", "cli-tiny-pulled"]
        key = ["--api-key", outputs["key.create"]["key"]] if cmd["op"] == "key.revoke" else []
        # the global options after the command, as scripts write them (`aima service list -o json`)
        r = daemon.cli(*argv, "-o", "json", *key)
        assert r.returncode == 0, f"aima {' '.join(argv)} -o json: rc={r.returncode} {r.stderr}"
        try:
            outputs[cmd["op"]] = json.loads(r.stdout)
        except ValueError:
            pytest.fail(f"aima {' '.join(argv)} -o json printed no JSON:\n{r.stdout}")
    assert outputs["service.create"]["name"] == "cli-json"
    assert outputs["service.start"]["outcome"] == "ready"
    assert outputs["service.delete"]["name"] == "cli-json"
    assert outputs["key.list"]["keys"] == [] and outputs["key.create"]["key"].startswith("aima-")
    assert outputs["key.revoke"]["active"] is False
    assert outputs["inference.chat"]["text"] == "echo: hello there"
    assert outputs["inference.chat"]["service"] == "cli-json"
    up = outputs["stack.up"]
    assert [(s["name"], s["outcome"], s["check"]) for s in up["services"]] == [("echo-model", "ready", "skipped")]
    assert up["ok"] is True
    assert [(s["name"], s["state"]) for s in outputs["stack.down"]["services"]] == [("echo-model", "stopped")]
    assert daemon.proc is not None and daemon.proc.wait(40) == 0  # `down` stopped the daemon


def test_missing_daemon_is_one_line_saying_how_to_start_it(tmp_path: Path) -> None:
    env = {**os.environ, "AIMA_HOME": str(tmp_path / "home"), "AIMA_URL": f"http://127.0.0.1:{free_port()}"}
    for args in (["status"], ["service", "list"], ["-o", "json", "service", "status", "x"],
                 ["service", "create", "m", "--command", echo_cmd()], ["event", "list"], ["mcp"],
                 ["up", "--timeout", "5"], ["down"]):
        r = run(env, *args)
        assert r.returncode == 6, (args, r.returncode, r.stderr)
        line = one_line_error(r, "aima start", env["AIMA_URL"])
        assert len(line) < 300, line


def test_bad_input_is_one_readable_line(daemon: Daemon) -> None:
    daemon.create("exists")
    cases = [
        (["service", "create", "m", "--command", echo_cmd(), "--replicas", "abc"], ["--replicas"]),
        (["service", "create", "m", "--command", echo_cmd(), "--config", "novalue"], ["--config", "novalue"]),
        (["service", "create", "m", "--command", echo_cmd(), "--port", "99999"], ["port"]),
        (["service", "create", "m", "--command", echo_cmd(), "--restart", "sometimes"], ["restart"]),
        (["service", "create", "m", "--command", "no-placeholder"], ["{port}"]),
        (["service", "create", "exists", "--command", echo_cmd()], ["exists", "already exists"]),
        (["service", "create"], ["model"]),
        (["service", "status", "ghost"], ["ghost", "does not exist"]),
        (["-o", "json", "service", "start", "ghost"], ["ghost"]),
        (["service", "logs", "ghost", "-n", "5"], ["ghost"]),
        (["service", "logs", "exists", "-n", "abc"], ["--lines"]),
        (["service", "explode"], ["explode"]),
        (["--no-such-flag", "status"], ["--no-such-flag"]),
        (["-o", "yaml", "status"], ["yaml"]),
    ]
    for args, words in cases:
        r = daemon.cli(*args)
        one_line_error(r, *words)
    assert [s["name"] for s in daemon.op("service.list")["services"]] == ["exists"]


@pytest.mark.parametrize("argv", [["--help"], ["service", "create", "--help"], ["service", "list", "--help"]])
def test_help_imports_no_server_libraries(argv: list[str]) -> None:
    snippet = (
        "import sys, json\n"
        f"sys.argv = ['aima', *{argv!r}]\n"
        "import aima.surfaces.cli.main as m\n"
        "try:\n    m.main()\nexcept SystemExit as e:\n    code = e.code\n"
        "heavy = {'fastapi', 'starlette', 'uvicorn', 'sqlalchemy', 'alembic', 'pydantic', 'pydantic_core',\n"
        "         'pydantic_settings', 'httpx', 'mcp', 'torch'}\n"
        "loaded = sorted({k.split('.')[0] for k in sys.modules} & heavy)\n"
        "print(json.dumps({'code': code, 'loaded': loaded}), file=sys.stderr)\n"
    )
    r = subprocess.run([PY, "-c", snippet], capture_output=True, text=True, timeout=60)
    report = json.loads(r.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "loaded": []}, report
    assert "Usage" in r.stdout and "--help" in r.stdout
    # And the real entry point answers the same.
    r = subprocess.run([AIMA, *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Usage" in r.stdout and r.stderr == ""


def test_committed_manifest_is_current() -> None:
    from aima.surfaces.cli.manifest import PATH, render

    assert PATH.read_text() == render(), "manifest.json is stale: run `make manifest`"


def test_global_options_work_before_and_after_the_command_with_the_same_help(daemon: Daemon) -> None:
    for argv in (["-o", "json", "service", "list"], ["service", "list", "-o", "json"],
                 ["service", "list", "--output", "json"], ["hardware", "-o", "json"],
                 ["catalog", "list", "-o", "json"]):
        r = daemon.cli(*argv)
        assert r.returncode == 0, (argv, r.stderr)
        json.loads(r.stdout)
    # --url after the command wins over AIMA_URL (here: a port where nothing listens)
    dead = f"http://127.0.0.1:{free_port()}"
    r = daemon.cli("service", "list", "--url", dead)
    one_line_error(r, "no aima daemon at", dead)
    r = daemon.cli("--url", dead, "service", "list", "--url", daemon.url, "-o", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["services"] == [], r.stderr
    r = daemon.cli("service", "list", "-o", "yaml")
    one_line_error(r, "-o must be table or json")
    top = daemon.cli("--help").stdout
    for argv in (["service", "list"], ["service", "status"], ["key", "create"], ["hardware"], ["start"]):
        text = daemon.cli(*argv, "--help").stdout
        for flag in ("--url", "--api-key", "--output"):
            assert flag in text and flag in top, (argv, flag)
    # `speak -o FILE` keeps its file; `-o json` is still the output format there
    assert "--out" in daemon.cli("speak", "--help").stdout


def test_a_killed_daemon_left_as_a_zombie_does_not_block_the_next_start(daemon: Daemon) -> None:
    """Under a PID 1 that reaps slowly a killed daemon stays a zombie for a while: its pid file is stale."""
    assert daemon.proc is not None
    pid = daemon.proc.pid
    os.kill(pid, signal.SIGKILL)  # not reaped: this test process is its parent and does not wait yet
    wait_until(lambda: psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 10)
    r = daemon.cli("start", "--detach", "--port", str(daemon.port))
    try:
        assert r.returncode == 0, r.stderr
        assert "stale" in r.stderr and str(pid) in r.stderr and "zombie" in r.stderr, r.stderr
        info = json.loads((daemon.home / "daemon.pid").read_text())
        assert info["pid"] != pid and daemon.http.get("/health").status_code == 200
        # a second start now finds it running and answering
        one_line_error(daemon.cli("start", "--detach", "--port", str(free_port())), "already running",
                       str(info["pid"]))
        r = daemon.cli("stop")
        assert r.returncode == 0 and "stopped" in r.stdout, r.stderr
    finally:
        daemon.proc.wait(10)
        with contextlib.suppress(OSError, ValueError, KeyError):
            os.kill(int(json.loads((daemon.home / "daemon.pid").read_text())["pid"]), signal.SIGKILL)


def test_start_detach_when_running_then_stop(daemon: Daemon) -> None:
    assert daemon.proc is not None
    for args in (["start", "--detach", "--port", str(free_port())], ["start", "--port", str(free_port())]):
        r = daemon.cli(*args)
        one_line_error(r, "already running", str(daemon.proc.pid))
    assert daemon.http.get("/health").status_code == 200  # untouched
    r = daemon.cli("stop")
    assert r.returncode == 0 and "stopped" in r.stdout, r.stderr
    assert daemon.proc.wait(40) == 0
    assert not (daemon.home / "daemon.pid").exists()
    with pytest.raises(httpx.HTTPError):
        daemon.http.get("/health", timeout=2)
    r = daemon.cli("stop")
    assert r.returncode == 0 and "not running" in r.stdout


def test_service_logs_shows_the_engines_lines(daemon: Daemon) -> None:
    says = [f"engine-line-{i}" for i in range(1, 9)]
    daemon.create("chatty", command=echo_cmd(*[x for s in says for x in ("--say", s)]))
    assert daemon.op("service.start", service="chatty")["outcome"] == "ready"
    expected = daemon.op("service.logs", service="chatty", lines=5)["lines"]
    assert len(expected) == 5 and "engine-line-8" in expected and "engine-line-1" not in expected
    r = daemon.cli("service", "logs", "chatty", "-n", "5")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == expected
    assert "engine-line-1" not in r.stdout
    out = daemon.cli_json("service", "logs", "chatty", "--lines", "3")
    assert out["lines"] == expected[-3:]


UP_ECHO = ("up", "--model", "echo-model", "--no-check", "--timeout", "60")


def test_up_and_down_against_a_running_daemon(daemon: Daemon) -> None:
    r = daemon.cli(*UP_ECHO)
    assert r.returncode == 0, r.stderr
    assert "echo-model" in r.stdout and "running" in r.stdout  # the table
    assert "echo-model" in r.stderr and "ready" in r.stderr  # the live progress
    echo = daemon.get("echo-model")
    assert echo["state"] == "running" and echo["ready"] is True
    assert len(daemon.engine_processes()) == 1
    r = daemon.cli(*UP_ECHO)  # idempotent: the stack is already up
    assert r.returncode == 0, r.stderr
    assert len(daemon.engine_processes()) == 1
    assert daemon.get("echo-model")["instances"][0]["pid"] == echo["instances"][0]["pid"]
    r = daemon.cli("down")
    assert r.returncode == 0, r.stderr
    assert "aima is down" in r.stderr
    assert daemon.proc is not None and daemon.proc.wait(40) == 0
    assert daemon.engine_processes() == []


def _kill_home(home: Path) -> None:
    """Clean up after the self-started daemon of a test home: the daemon and any engine it left."""
    with contextlib.suppress(OSError, ValueError, KeyError, psutil.Error):
        pid = int(json.loads((home / "daemon.pid").read_text())["pid"])
        psutil.Process(pid).send_signal(signal.SIGKILL)
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            env = p.environ()
            if env.get("AIMA_HOME") == str(home) and env.get("AIMA_INSTANCE_ID") and os.getpgid(p.pid) == p.pid:
                os.killpg(p.pid, signal.SIGKILL)


def test_up_and_down_with_a_fresh_home_on_a_non_default_port(tmp_path: Path) -> None:
    home = tmp_path / "fresh-home"
    port = free_port()
    env = {**os.environ, "AIMA_HOME": str(home), "AIMA_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    env.pop("AIMA_URL", None)
    env.pop("AIMA_API_KEY", None)
    write_echo_catalog(home, tmp_path / "weights" / "echo.gguf")
    try:
        r = run(env, *UP_ECHO, timeout=120)
        assert r.returncode == 0, r.stderr
        assert f"127.0.0.1:{port}" in r.stderr  # it started its own daemon, on AIMA_PORT
        info = json.loads((home / "daemon.pid").read_text())
        assert info["port"] == port
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=30)
        echo = http.get("/api/v1/services/echo-model").json()
        assert echo["state"] == "running" and echo["ready"] is True
        # Other commands reach that daemon with --url.
        out = json.loads(run(env, "--url", f"http://127.0.0.1:{port}", "-o", "json", "status").stdout)
        assert out["home"] == str(home) and out["services"] == 1
        r = run(env, "down", timeout=120)
        assert r.returncode == 0, r.stderr
        assert "echo-model" in r.stdout and "stopped" in r.stdout
        deadline = time.monotonic() + 40
        while psutil.pid_exists(info["pid"]) and psutil.Process(info["pid"]).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the daemon did not stop"
            time.sleep(0.05)
        assert not (home / "daemon.pid").exists()
        alive = [i["pid"] for i in echo["instances"] if i["pid"] and psutil.pid_exists(i["pid"])]
        assert alive == [], "`aima down` left the stack running"
        http.close()
    finally:
        _kill_home(home)
