"""Opening the database: WAL mode, migrations to head, and one clear error when it is unusable."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from aima.errors import StoreError

MIGRATIONS = Path(__file__).parent / "migrations"


class Database:
    def __init__(self, path: Path):
        self.path = path
        self.engine = _open(path)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def close(self) -> None:
        """Checkpoint the WAL into the main file and release every connection."""
        try:
            with self.engine.connect() as c:
                c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        except Exception:  # noqa: BLE001 - closing must not raise
            pass
        self.engine.dispose()


def _unusable(path: Path, why: object) -> StoreError:
    return StoreError(
        f"database {path} is unreadable or corrupt ({why}); move it aside "
        f"(mv {path} {path}.bad) and start again to create a fresh one"
    )


def _open(path: Path) -> Engine:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not path.is_file():
        raise StoreError(f"database path {path} is not a file; remove it or set AIMA_HOME elsewhere")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    try:
        with engine.connect() as c:
            ok = c.execute(text("PRAGMA quick_check")).scalar()
            if ok != "ok":
                raise _unusable(path, ok)
        _migrate(engine)
    except StoreError:
        engine.dispose()
        raise
    except (DatabaseError, OperationalError, sqlite3.DatabaseError) as e:
        engine.dispose()
        raise _unusable(path, getattr(e, "orig", e)) from None
    return engine


def _migrate(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        try:
            command.upgrade(cfg, "head")
        except CommandError as e:  # e.g. a revision this version does not know: a newer aima wrote it
            path = engine.url.database
            raise StoreError(
                f"database {path} cannot be migrated ({e}); it may come from a newer aima: upgrade aima, "
                f"or move it aside (mv {path} {path}.bad) and start again to create a fresh one"
            ) from None
