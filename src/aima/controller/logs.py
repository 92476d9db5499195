"""Instance log files under AIMA_HOME/logs: rotation (copy-truncate, so a detached engine keeps
writing to the same file), tails, and fatal-pattern scanning."""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections import deque
from pathlib import Path

log = logging.getLogger("aima.logs")


def log_path(logs_dir: Path, service_id: str, replica: int) -> Path:
    return logs_dir / f"{service_id}-{replica}.log"


def rotate_if_needed(path: Path, max_bytes: int, backups: int) -> bool:
    """Past ``max_bytes``: keep the log as ``.1`` (older ones move up, at most ``backups``) and start it again
    empty. A copy that fails (the disk is full) is dropped and the log is emptied all the same: the newest
    lines of a full disk's log are lost rather than the disk staying full."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    path.with_name(f"{path.name}.{backups + 1}").unlink(missing_ok=True)  # a keep lowered since
    for i in range(backups - 1, 0, -1):
        src = path.with_name(f"{path.name}.{i}")
        if src.exists():
            os.replace(src, path.with_name(f"{path.name}.{i + 1}"))
    if backups > 0:
        first = path.with_name(f"{path.name}.1")
        try:
            shutil.copyfile(path, first)
        except OSError as e:
            first.unlink(missing_ok=True)
            log.warning("could not keep a copy of %s (%s); emptying it anyway", path.name, e.strerror or e)
    with open(path, "r+b") as f:  # the engine writes with O_APPEND, so it continues at the new end
        f.truncate(0)
    return True


def rotate_all(paths: list[Path], max_bytes: int, backups: int) -> None:
    for p in paths:
        try:
            rotate_if_needed(p, max_bytes, backups)
        except OSError as e:  # one log's trouble never stops the others' rotation
            log.warning("could not rotate %s: %s", p, e.strerror or e)


def tail(path: Path, n: int) -> list[str]:
    """The last ``n`` lines of the log (reaching into the newest rotated file when needed)."""
    lines: deque[str] = deque(maxlen=n)
    for p in (path.with_name(path.name + ".1"), path):
        if p.exists():
            with open(p, errors="replace") as f:
                for line in f:
                    lines.append(line.rstrip("\n"))
    return list(lines)


def read_from(path: Path, offset: int, limit_bytes: int = 1 << 20) -> tuple[list[str], int]:
    """Complete lines written after byte ``offset``; the new offset. A truncated file restarts at 0."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return [], 0
    if offset > size:
        offset = 0
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = f.read(limit_bytes)
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], offset
    text = chunk[: end + 1].decode(errors="replace")
    return text.splitlines(), offset + end + 1


_FRAME = re.compile(r'^\s+File ".*", line \d+')


def find_fatal(lines: list[str], patterns: list[re.Pattern[str]]) -> str | None:
    """The first line matching a fatal pattern. The source line a Python traceback quotes under a
    ``File "...", line N`` frame is skipped: the error itself (``ValueError: ...``, with the values
    filled in) follows at the end of the traceback."""
    for i, line in enumerate(lines):
        if i and _FRAME.match(lines[i - 1]):
            continue
        for pat in patterns:
            if pat.search(line):
                return line.strip()
    return None
