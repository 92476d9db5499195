"""The model store: ``AIMA_HOME/models/<name>/``, one folder per model, plus a row in ``models``.

Layout::

    models/
      <name>/                     a complete model: its files and the completion marker
        .aima-model.json          written last, inside the staging folder, before the move
        SmolLM2-135M-Instruct.Q4_1.gguf
      .partial/                   never deployable
        <name>/                   staging: becomes models/<name>/ by one rename once verified
        <name>.json               which source the staging belongs to (resume only the same one)
        <name>.work/              scratch (downloaded wheels, pip temp files)
        <name>.lock               one pull, import or rm of <name> at a time

A model is *present* only when its row exists and its folder holds the marker (and, for a
single-file model, that file). Half-done downloads stay under ``.partial`` and are either resumed
by the next pull of the same source or thrown away.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from aima.errors import Conflict, NotFound
from aima.modelstore.paths import check_name, ensure_inside
from aima.store.db import Database
from aima.store.tables import ModelRow

MARKER = ".aima-model.json"
STAGING = ".partial"


@dataclass
class ModelRecord:
    id: str
    name: str
    type: str
    format: str | None
    path: str | None  # the main file (single-file model) or the folder
    folder: str
    size_bytes: int | None
    source: str | None
    primary: str | None
    present: bool
    created_at: float
    facts: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_model_id() -> str:
    return "mdl-" + secrets.token_hex(4)


class ModelStore:
    def __init__(self, home: Path, db: Database):
        self.home = Path(home)
        self.root = self.home / "models"
        self.staging_root = self.root / STAGING
        self.db = db

    # ------------------------------------------------------------------ places
    def ensure_dirs(self) -> None:
        self.staging_root.mkdir(parents=True, exist_ok=True)

    def folder(self, name: str) -> Path:
        return ensure_inside(self.root, self.root / check_name(name), what="model name")

    def staging(self, name: str) -> Path:
        return self.staging_root / check_name(name)

    def work(self, name: str) -> Path:
        return self.staging_root / f"{check_name(name)}.work"

    def _staging_meta(self, name: str) -> Path:
        return self.staging_root / f"{name}.json"

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """One pull, import or rm of a model at a time (across threads and processes)."""
        self.ensure_dirs()
        path = self.staging_root / f"{check_name(name)}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EACCES):
                    raise Conflict(f"model {name} is being pulled, imported or removed right now; wait for that "
                                   f"to finish", field="name") from None
                raise
            yield
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ staging
    def begin(self, name: str, spec: str) -> Path:
        """The staging folder for pulling ``name`` from ``spec``; what an earlier pull of the same spec
        left there is kept (to resume), anything else is thrown away."""
        self.ensure_dirs()
        meta = self._staging_meta(name)
        staging = self.staging(name)
        try:
            old = json.loads(meta.read_text()).get("spec")
        except (OSError, ValueError, AttributeError):
            old = None
        if old != spec:
            self.discard(name)
        staging.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"spec": spec, "started_at": time.time()}))
        return staging

    def staged_bytes(self, name: str) -> int:
        from aima.modelstore.sources import tree_bytes

        return tree_bytes(self.staging(name)) + tree_bytes(self.work(name))

    def discard(self, name: str) -> None:
        """Throw away whatever a pull of ``name`` left under .partial."""
        for p in (self.staging(name), self.work(name)):
            if p.is_symlink() or p.is_file():
                p.unlink(missing_ok=True)
            elif p.exists():
                shutil.rmtree(p, ignore_errors=True)
        self._staging_meta(name).unlink(missing_ok=True)

    # ------------------------------------------------------------------ install
    def record(self, name: str, *, staging: Path, primary: str | None, facts: dict[str, Any], source: str,
               files: dict[str, dict[str, Any]], type: str | None = None) -> ModelRecord:
        """Install a verified staging folder as models/<name>/ (one rename) and record it."""
        check_name(name)
        existing = self._row(name)
        mid = existing.id if existing is not None else new_model_id()
        size = sum(int(f.get("size") or 0) for f in files.values())
        mtype = type or facts.get("type") or "unknown"
        now = time.time()
        marker = {"id": mid, "name": name, "type": mtype, "format": facts.get("format"), "source": source,
                  "primary": primary, "size_bytes": size, "files": files, "facts": facts, "created_at": now,
                  "complete": True}
        tmp = staging / (MARKER + ".tmp")
        with open(tmp, "w") as f:
            json.dump(marker, f, indent=1, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, staging / MARKER)
        final = self.folder(name)
        old: Path | None = None
        if final.exists() or final.is_symlink():
            old = self.staging_root / f".old-{name}-{secrets.token_hex(3)}"
            os.rename(final, old)
        os.rename(staging, final)
        _fsync_dir(self.root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._upsert(marker)
        self.discard(name)
        rec = self.get(name)
        assert rec is not None
        return rec

    def _upsert(self, m: dict[str, Any]) -> None:
        final = self.folder(m["name"])
        path = str(final / m["primary"]) if m.get("primary") else str(final)
        meta = {"source": m.get("source"), "primary": m.get("primary"), "files": m.get("files") or {},
                "facts": m.get("facts") or {}}
        with self.db.session() as s:
            row = s.scalars(select(ModelRow).where(ModelRow.name == m["name"])).first()
            created = m.get("created_at") or time.time()
            if row is None:
                s.add(ModelRow(id=m["id"], name=m["name"], type=m["type"], path=path, format=m.get("format"),
                               size_bytes=m.get("size_bytes"), meta=meta, created_at=created))
            else:
                row.type, row.path, row.format = m["type"], path, m.get("format")
                row.size_bytes, row.meta, row.created_at = m.get("size_bytes"), meta, created

    # ------------------------------------------------------------------ reads
    def _row(self, name: str) -> ModelRow | None:
        with self.db.session() as s:
            return s.scalars(select(ModelRow).where(ModelRow.name == name)).first()

    def _view(self, row: ModelRow) -> ModelRecord:
        meta = dict(row.meta or {})
        folder = self.root / row.name
        primary = meta.get("primary")
        present = (folder / MARKER).is_file() and (not primary or (folder / primary).exists())
        return ModelRecord(id=row.id, name=row.name, type=row.type, format=row.format, path=row.path,
                           folder=str(folder), size_bytes=row.size_bytes, source=meta.get("source"),
                           primary=primary, present=present, created_at=row.created_at,
                           facts=meta.get("facts") or {}, files=meta.get("files") or {})

    def get(self, name: str) -> ModelRecord | None:
        row = self._row(name)
        return self._view(row) if row is not None else None

    def info(self, name: str) -> ModelRecord:
        rec = self.get(name)
        if rec is None:
            self.adopt()
            rec = self.get(name)
        if rec is None:
            raise NotFound(f"model {name!r} is not in the store; `aima model list` shows the models, "
                           f"`aima model pull` fetches one", field="model")
        return rec

    def list(self) -> list[ModelRecord]:
        self.adopt()
        with self.db.session() as s:
            rows = list(s.scalars(select(ModelRow).order_by(ModelRow.name)))
        return [self._view(r) for r in rows]

    def path_for(self, name: str) -> Path | None:
        """Where an engine finds the model (its main file, or its folder); None unless it is present."""
        try:
            rec = self.get(check_name(name))
        except Exception:  # noqa: BLE001 - an invalid name is simply not present
            return None
        if rec is None or not rec.present or not rec.path:
            return None
        return Path(rec.path)

    def adopt(self) -> int:
        """Record complete folders that have a marker but no row (a crash between move and insert)."""
        if not self.root.is_dir():
            return 0
        with self.db.session() as s:
            names = set(s.scalars(select(ModelRow.name)))
        n = 0
        for d in self.root.iterdir():
            if d.name.startswith(".") or d.name in names or not (d / MARKER).is_file():
                continue
            try:
                m = json.loads((d / MARKER).read_text())
                if m.get("name") != d.name or not m.get("complete"):
                    continue
                check_name(d.name)
                self._upsert(m)
                n += 1
            except Exception:  # noqa: BLE001 - a bad marker is skipped, never fatal for a listing
                continue
        return n

    # ------------------------------------------------------------------ remove
    def rm(self, name: str) -> ModelRecord:
        rec = self.info(name)
        with self.lock(name):
            folder = self.folder(name)
            if folder.exists() or folder.is_symlink():
                trash = self.staging_root / f".trash-{name}-{secrets.token_hex(3)}"
                os.rename(folder, trash)
                shutil.rmtree(trash, ignore_errors=True)
            with self.db.session() as s:
                row = s.scalars(select(ModelRow).where(ModelRow.name == name)).first()
                if row is not None:
                    s.delete(row)
            self.discard(name)
        return rec


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
