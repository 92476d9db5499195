"""The database file: a fresh home gets SQLite in WAL mode at the Alembic head; a damaged or unusable
file stops the daemon and `aima start` with one clear line (naming the file and what to do), untouched."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from tests.support.daemon import AIMA, PY, Daemon, free_port

MIGRATIONS = Path(__file__).parents[2] / "src/aima/store/migrations"


def alembic_head() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head
    return head


def test_fresh_home_gets_a_wal_database_at_head(daemon: Daemon) -> None:
    db = daemon.home / "aima.db"
    assert db.is_file()
    daemon.create("db-check")
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("SELECT version_num FROM alembic_version").fetchall() == [(alembic_head(),)]
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"services", "instances", "events"} <= tables
        assert c.execute("SELECT name FROM services").fetchall() == [("db-check",)]
    # A graceful stop checkpoints the WAL into the main file; the mode stays WAL.
    assert daemon.terminate() == 0
    wal = db.with_name("aima.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    with contextlib.closing(sqlite3.connect(db)) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("SELECT name FROM services").fetchall() == [("db-check",)]


def _garbage(db: Path) -> None:
    db.write_bytes(bytes((i * 37 + 11) % 256 for i in range(16384)))


def _sqlite_header_then_garbage(db: Path) -> None:
    db.write_bytes(b"SQLite format 3\x00" + bytes((i * 91 + 7) % 256 for i in range(8192)))


def _truncated(db: Path) -> None:
    """A database cut short, as a full disk or a bad copy leaves it."""
    with contextlib.closing(sqlite3.connect(db)) as c:
        c.execute("CREATE TABLE t (x TEXT)")
        c.executemany("INSERT INTO t VALUES (?)", [("x" * 500,) for _ in range(200)])
        c.commit()
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])


def _directory(db: Path) -> None:
    db.mkdir()
    (db / "something").write_text("not a database")


def _from_a_newer_aima(db: Path) -> None:
    """A database whose Alembic revision this aima does not know."""
    with contextlib.closing(sqlite3.connect(db)) as c:
        c.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        c.execute("INSERT INTO alembic_version VALUES ('9999_from_the_future')")
        c.commit()


DAMAGE: dict[str, Callable[[Path], None]] = {
    "garbage": _garbage, "header-then-garbage": _sqlite_header_then_garbage, "truncated": _truncated,
    "directory": _directory, "newer-revision": _from_a_newer_aima,
}


def _fingerprint(path: Path) -> str:
    if path.is_dir():
        return "dir:" + ",".join(sorted(p.name for p in path.iterdir()))
    try:  # a readable database: its content (opening it may switch the header to WAL mode)
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as c:
            return "db:" + repr(c.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
                                 + c.execute("SELECT * FROM alembic_version").fetchall())
    except sqlite3.DatabaseError:
        return hashlib.sha256(path.read_bytes()).hexdigest()


def _cleanup(home: Path) -> None:
    """If a broken start left a daemon behind (it must not), do not leak it."""
    import psutil

    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if p.environ().get("AIMA_HOME") == str(home):
                os.kill(p.pid, signal.SIGKILL)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_unusable_database_is_one_clear_line(tmp_path: Path, damage: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    db = home / "aima.db"
    DAMAGE[damage](db)
    before = _fingerprint(db)
    port = free_port()
    env = {**os.environ, "AIMA_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("AIMA_URL", None)
    commands = {
        "daemon": [PY, "-m", "aima.surfaces.daemon", "--port", str(port)],
        "aima start": [AIMA, "start", "--port", str(port)],
        "aima start --detach": [AIMA, "start", "--detach", "--port", str(port), "--timeout", "30"],
    }
    try:
        for label, argv in commands.items():
            r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
            assert r.returncode != 0, f"{label} started on a {damage} database"
            assert "Traceback" not in r.stderr + r.stdout, f"{label}:\n{r.stderr}"
            lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
            assert len(lines) == 1, f"{label}: expected one line, got:\n{r.stderr}"
            line = lines[0]
            assert line.startswith("aima: ") and str(db) in line, f"{label}: {line}"
            what_to_do = ("mv ", "remove it", "move it aside", "upgrade aima")
            assert any(w in line for w in what_to_do), f"{label} does not say what to do: {line}"
            if label == "aima start --detach":
                assert "daemon.log" in line  # where the details are
        assert _fingerprint(db) == before, "the damaged database was modified"
        assert not (home / "daemon.pid").exists()
    finally:
        _cleanup(home)


def test_moving_the_damaged_file_aside_recovers(tmp_path: Path) -> None:
    """The advice works: after `mv aima.db aima.db.bad` the daemon starts with a fresh database."""
    home = tmp_path / "aima-home"
    home.mkdir()
    _garbage(home / "aima.db")
    shutil.move(home / "aima.db", home / "aima.db.bad")
    d = Daemon(home, {})
    try:
        d.start()
        assert d.op("service.list")["services"] == []
        assert (home / "aima.db.bad").stat().st_size == 16384
    finally:
        d.cleanup()
