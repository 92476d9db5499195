"""Usage per API key: every ``/v1`` answer counted per key, model and minute, and the per-minute limits.

The request path only adds numbers in memory (a dict lookup and a few integer adds); the counts are
written to SQLite (``key_usage``, one row per key, model and minute) every few seconds by the daemon, and
before every read, so ``aima key usage`` sees every answer. A key's limits (``rpm``, ``tpm``) are checked
against the current minute before the engine sees a request: requests are counted when admitted,
tokens when answered.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select

from aima.store.db import Database
from aima.store.tables import KeyUsageRow

NO_KEY = "-"


@dataclass
class Count:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    audio_seconds: float = 0.0

    def add(self, other: Count) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.audio_seconds += other.audio_seconds


@dataclass
class _Window:
    minute: float = 0.0
    requests: int = 0
    tokens: int = 0


@dataclass
class UsageBook:
    db: Database | None = None
    pending: dict[tuple[float, str, str], Count] = field(default_factory=dict)  # not yet written
    totals: dict[tuple[str, str], Count] = field(default_factory=dict)  # since the daemon started (for /metrics)
    _windows: dict[str, _Window] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def minute(now: float) -> float:
        return float(math.floor(now / 60.0) * 60)

    # -- limits
    def admit(self, key_id: str, rpm: int | None, tpm: int | None, now: float | None = None) -> float | None:
        """Count a request against its key's current minute; None when admitted, else the seconds until the
        minute ends (it was not counted)."""
        now = time.time() if now is None else now
        start = self.minute(now)
        w = self._windows.get(key_id)
        if w is None:
            w = self._windows[key_id] = _Window(start)
        elif w.minute != start:
            w.minute, w.requests, w.tokens = start, 0, 0
        if (rpm is not None and w.requests >= rpm) or (tpm is not None and w.tokens >= tpm):
            return max(1.0, start + 60.0 - now)
        w.requests += 1
        return None

    # -- counting
    def add(self, key_id: str, model: str, *, ok: bool, prompt: int = 0, completion: int = 0,
            audio_s: float = 0.0, now: float | None = None) -> None:
        now = time.time() if now is None else now
        c = Count(1, 0 if ok else 1, prompt, completion, audio_s)
        with self._lock:
            k = (self.minute(now), key_id, model)
            got = self.pending.get(k)
            if got is None:
                self.pending[k] = c
            else:
                got.add(c)
            t = self.totals.get((key_id, model))
            if t is None:
                self.totals[(key_id, model)] = Count(**vars(c))
            else:
                t.add(c)
        w = self._windows.get(key_id)
        if w is not None and w.minute == self.minute(now):
            w.tokens += prompt + completion

    def flush(self) -> int:
        """Write what was counted since the last flush; the number of rows touched."""
        with self._lock:
            pending, self.pending = self.pending, {}
        if not pending or self.db is None:
            return 0
        try:
            with self.db.session() as s:
                for (minute, key_id, model), c in pending.items():
                    row = s.get(KeyUsageRow, (minute, key_id, model))
                    if row is None:
                        s.add(KeyUsageRow(minute=minute, key_id=key_id, model=model, requests=c.requests,
                                          errors=c.errors, prompt_tokens=c.prompt_tokens,
                                          completion_tokens=c.completion_tokens, audio_seconds=c.audio_seconds))
                    else:
                        row.requests += c.requests
                        row.errors += c.errors
                        row.prompt_tokens += c.prompt_tokens
                        row.completion_tokens += c.completion_tokens
                        row.audio_seconds += c.audio_seconds
        except Exception:
            with self._lock:  # not written (the database is locked, the disk full): kept for the next flush
                for k, c in pending.items():
                    got = self.pending.get(k)
                    if got is None:
                        self.pending[k] = c
                    else:
                        got.add(c)
            raise
        return len(pending)

    def summary(self, since: float, key_ids: Iterable[str] | None = None) -> dict[tuple[str, str], Count]:
        """(key id, model) -> what was counted from ``since`` on (whole minutes), written or not."""
        self.flush()
        out: dict[tuple[str, str], Count] = {}
        if self.db is not None:
            with self.db.session() as s:
                q = select(KeyUsageRow).where(KeyUsageRow.minute >= self.minute(since))
                if key_ids is not None:
                    q = q.where(KeyUsageRow.key_id.in_(list(key_ids)))
                for r in s.scalars(q):
                    c = out.setdefault((r.key_id, r.model), Count())
                    c.add(Count(r.requests, r.errors, r.prompt_tokens, r.completion_tokens, r.audio_seconds))
        return out
