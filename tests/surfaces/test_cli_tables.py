"""The CLI's tables at 80 columns (a pipe, a small terminal): columns are chosen by priority, a name is never cut,
free text wraps, and what was left out is said — on the real CLI against a real daemon, and on the renderer."""

from __future__ import annotations

import io
import subprocess

from rich.console import Console

from aima.surfaces.cli.render import _table, fit_columns
from tests.support.daemon import AIMA, Daemon, echo_cmd

SERVICE_COLUMNS = ["name", "id", "model", "engine", "state", "ready", "endpoint", "restarts", "message"]
ROWS = [
    {"name": "smollm2-135m-instruct-chat", "id": "svc-1a2b3c4d", "model": "smollm2-135m-instruct",
     "engine": "llama-cpp", "state": "running", "ready": True, "endpoint": "http://127.0.0.1:20001", "restarts": 0,
     "message": "ready on 127.0.0.1:20001"},
    {"name": "whisper-tiny-en", "id": "svc-9f8e7d6c", "model": "whisper-tiny-en", "engine": "faster-whisper",
     "state": "failed", "ready": False, "endpoint": None, "restarts": 3,
     "message": "engine exited with code 1: out of memory while loading the model weights into RAM"},
]


def rendered(width: int, rows: list[dict[str, object]] = ROWS, cols: list[str] = SERVICE_COLUMNS) -> str:
    buf = io.StringIO()
    _table(Console(file=buf, width=width), rows, cols, "none")
    return buf.getvalue()


def test_at_80_columns_the_names_are_whole_and_the_rest_chosen_by_priority() -> None:
    out = rendered(80)
    assert "…" not in out
    assert all(len(line) <= 80 for line in out.splitlines()), out
    for r in ROWS:
        assert r["name"] in out and r["model"] in out  # whole, never "smoll…"
    header = out.splitlines()[1]
    assert [c for c in SERVICE_COLUMNS if f" {c} " in header] == ["name", "model", "state", "ready"]
    assert "(not shown: id, message, restarts, engine, endpoint; -o json has every field)" in out


def test_wide_terminals_show_everything_and_wrap_free_text() -> None:
    out = rendered(220)
    header = out.splitlines()[1]
    assert all(f" {c} " in header for c in SERVICE_COLUMNS)
    assert "not shown" not in out and "…" not in out
    assert "out of memory" in out and "http://127.0.0.1:20001" in out
    mid = rendered(150)
    assert "http://127.0.0.1:20001" in mid and "…" not in mid  # an endpoint is shown whole or not at all


def test_a_name_wider_than_the_terminal_is_still_whole() -> None:
    rows = [{"name": "a-service-name-" + "x" * 90, "state": "running"}]
    out = rendered(80, rows, ["name", "state"])
    assert rows[0]["name"] in out and "…" not in out


def test_fit_columns_keeps_the_first_column_and_drops_by_priority() -> None:
    cells = {c: [str(r.get(c)) for r in ROWS] for c in SERVICE_COLUMNS}
    keep, dropped, needed = fit_columns(SERVICE_COLUMNS, cells, 60)
    assert keep[0] == "name" and "state" in keep and needed <= 60
    assert dropped[0] == "id"  # least useful first
    keep, dropped, _ = fit_columns(SERVICE_COLUMNS, cells, 10)
    assert keep == ["name"] and len(dropped) == len(SERVICE_COLUMNS) - 1


def test_aima_service_list_through_a_pipe_at_80_columns(daemon: Daemon) -> None:
    names = ["smollm2-chat-for-the-team", "whisper-tiny-en-transcriber"]
    for name in names:
        daemon.create("smollm2-135m-instruct-q4", name=name, command=echo_cmd())
    daemon.op("service.start", service=names[0])
    env = {**daemon.env, "COLUMNS": "80"}
    for args in (("service", "list"), ("catalog", "list"), ("catalog", "fit")):
        r = subprocess.run([AIMA, *args], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert "…" not in r.stdout, r.stdout
        assert all(len(line) <= 80 for line in lines), r.stdout
        if args == ("service", "list"):
            for name in names:
                assert name in r.stdout
            assert "smollm2-135m-instruct-q4" in r.stdout and "running" in r.stdout and "created" in r.stdout
        else:
            assert "qwen2.5-coder-1.5b-instruct" in r.stdout
