"""``url:https://…`` — a plain URL, fetched by our own resumable downloader.

The bytes go to ``<file>.partial`` in the staging folder. A later attempt (a retry after a dropped
connection, or the same pull run again after a crash) asks for ``Range: bytes=N-`` where N is what
the partial file already holds, and appends when the server answers ``206`` with a matching
``Content-Range``. A server that ignores Range (``200``) or answers from another offset makes the
download restart cleanly from byte 0. ``#sha256=HEX`` at the end of the URL gives the checksum.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from aima.errors import InvalidInput, NotFound, Unavailable
from aima.modelstore.paths import check_relpath, name_from
from aima.modelstore.sources import FetchContext, Fetched, FileCheck, Options, Plan, Progress

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_DISPOSITION = re.compile(r"""filename\*?=(?:UTF-8'')?["']?([^"';]+)""", re.I)


class Interrupted(Exception):
    def __init__(self, have: int, total: int | None, why: str):
        super().__init__(why)
        self.have, self.total, self.why = have, total, why


def _client(options: Options):  # type: ignore[no-untyped-def]
    import httpx

    return httpx.Client(follow_redirects=True, timeout=httpx.Timeout(options.timeout_s, connect=10.0),
                        headers={"User-Agent": "aima-modelstore", "Accept-Encoding": "identity"})


def _split(ref: str) -> tuple[str, str | None]:
    url, _, frag = ref.partition("#")
    sha = None
    if frag:
        m = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", frag)
        if not m:
            raise InvalidInput(f"URL fragment #{frag} is not understood; use #sha256=<64 hex digits>", field="model")
        sha = m.group(1).lower()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(f"{url!r} is not an http(s) URL", field="model")
    return url, sha


def plan(ref: str, options: Options) -> Plan:
    url, sha = _split(ref)
    import httpx

    size: int | None = None
    filename = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    try:
        with _client(options) as c:
            r = c.head(url)
            if r.status_code == 404:
                raise NotFound(f"{url} does not exist (HTTP 404)", field="model")
            if r.status_code < 400:
                cl = r.headers.get("Content-Length")
                if cl and cl.isdigit() and not r.headers.get("Content-Encoding"):
                    size = int(cl)
                m = _DISPOSITION.search(r.headers.get("Content-Disposition", ""))
                if m:
                    filename = unquote(m.group(1).strip())
    except httpx.HTTPError as e:
        raise Unavailable(f"cannot reach {url}: {type(e).__name__}: {e}") from None
    filename = filename.rsplit("/", 1)[-1] or "model.bin"
    rel = check_relpath(filename, what="file name").as_posix()
    return Plan(scheme="url", ref=ref, name=name_from(rel), kind="file", size=size,
                files={rel: FileCheck(size=size, sha256=sha)}, primary=rel, data={"url": url})


def fetch(p: Plan, ctx: FetchContext) -> Fetched:
    ctx.staging.mkdir(parents=True, exist_ok=True)
    rel = p.primary or "model.bin"
    final = ctx.staging / rel
    partial = final.with_name(final.name + ".partial")
    expected = p.files.get(rel, FileCheck()).size
    download(p.data["url"], partial, expected, ctx.progress, ctx.options)
    partial.replace(final)
    return Fetched(primary=rel)


def download(url: str, partial: Path, expected: int | None, progress: Progress, options: Options) -> None:
    """Fetch url into ``partial``, resuming what it already holds; retries dropped connections."""
    import httpx

    attempts = 0
    with _client(options) as c:
        while True:
            try:
                _attempt(c, url, partial, expected, progress)
                return
            except (httpx.TransportError, Interrupted) as e:
                attempts += 1
                have = partial.stat().st_size if partial.exists() else 0
                if attempts > options.retries:
                    of = f" of {expected}" if expected else ""
                    raise Unavailable(
                        f"download of {url} was interrupted at {have}{of} bytes "
                        f"({getattr(e, 'why', None) or type(e).__name__}); run the same pull again to resume "
                        f"from there", details={"done": have, "total": expected}) from None
                time.sleep(min(0.2 * 2 ** attempts, 5.0))


def _attempt(c, url: str, partial: Path, expected: int | None, progress: Progress) -> None:  # type: ignore[no-untyped-def]
    partial.parent.mkdir(parents=True, exist_ok=True)
    have = partial.stat().st_size if partial.exists() else 0
    if expected is not None and have > expected:
        partial.unlink()
        have = 0
    if expected is not None and have == expected and have > 0:
        progress(have, expected)
        return
    headers = {"Range": f"bytes={have}-"} if have else {}
    with c.stream("GET", url, headers=headers) as r:
        if r.status_code == 416 and have:
            # our partial is not a prefix the server recognises: start over
            partial.unlink()
            raise Interrupted(0, expected, "server refused the range; restarting from byte 0")
        if r.status_code == 404:
            raise NotFound(f"{url} does not exist (HTTP 404)", field="model")
        if r.status_code >= 400:
            if r.status_code >= 500 or r.status_code in (408, 429):
                raise Interrupted(have, expected, f"HTTP {r.status_code}")
            raise Unavailable(f"{url} answered HTTP {r.status_code}")
        total: int | None
        if r.status_code == 206 and have:
            m = _CONTENT_RANGE.match(r.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                # a range other than the one we asked for: throw the partial away and start clean
                partial.unlink()
                raise Interrupted(0, expected, "server answered another range; restarting from byte 0")
            total = int(m.group(3)) if m.group(3) != "*" else expected
            mode = "ab"
        else:
            # 200: the server ignored Range (or there was nothing to resume) — restart cleanly
            have = 0
            cl = r.headers.get("Content-Length")
            total = int(cl) if cl and cl.isdigit() and not r.headers.get("Content-Encoding") else expected
            mode = "wb"
        if expected is not None and total is not None and total != expected:
            raise Unavailable(f"{url} now has {total} bytes, not the {expected} announced; the file changed on "
                              f"the server — pull again")
        with open(partial, mode) as f:
            for chunk in r.iter_bytes():  # as they arrive: a drop loses nothing already received
                f.write(chunk)
                have += len(chunk)
                progress(have, total)
        if total is not None and have < total:
            raise Interrupted(have, total, f"connection closed after {have} of {total} bytes")
