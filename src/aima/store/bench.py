"""Benchmark results (``aima bench``), kept in SQLite: add one, list them (newest first), get one by id."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from aima.store.db import Database
from aima.store.tables import BenchResultRow


class BenchResults:
    def __init__(self, db: Database):
        self.db = db

    def add(self, **fields: Any) -> BenchResultRow:
        with self.db.session() as s:
            row = BenchResultRow(**fields)
            s.add(row)
            s.flush()
            return row

    def get(self, result_id: int) -> BenchResultRow | None:
        with self.db.session() as s:
            return s.get(BenchResultRow, result_id)

    def list(self, *, model: str | None = None, kind: str | None = None, sweep: str | None = None,
             limit: int = 50) -> list[BenchResultRow]:
        with self.db.session() as s:
            q = select(BenchResultRow)
            if model:
                q = q.where(BenchResultRow.model == model)
            if kind:
                q = q.where(BenchResultRow.kind == kind)
            if sweep:
                q = q.where(BenchResultRow.sweep == sweep)
            return list(s.scalars(q.order_by(BenchResultRow.id.desc()).limit(limit)))
