"""The web page at ``/ui``: static files only, served from the package (no CDN, no Node, works offline).

The page holds no behaviour and no data of its own: its script reads and writes through the same routes as
the CLI and MCP (``/api/v1/...`` with ``GET /api/v1/events`` followed as a stream, ``/v1`` for the
playground, ``/metrics``), sending the API key the person gives it as ``Authorization: Bearer``. Its files
carry no secret, so ``/ui``, ``/ui/`` and ``/ui/assets/...`` load without a key (``server.auth``) and the
page can ask for one; every route with data still needs it.

Files are read once at mount time and kept with their gzip form and a content hash (``ETag``); every answer
carries a Content-Security-Policy that allows scripts, styles and connections from this origin only (no
inline script, no ``eval``), and ``blob:`` media for the generated speech.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

HERE = Path(__file__).parent
PREFIX = "/ui"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' blob:; connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")
SECURITY = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY", "Cross-Origin-Opener-Policy": "same-origin"}
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml", ".json": "application/json",
         ".png": "image/png", ".txt": "text/plain; charset=utf-8"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    gz: bytes | None
    etag: str
    media_type: str


def load(root: Path = HERE) -> dict[str, Asset]:
    """Every file of the page by its URL path under /ui (``index.html`` at ``/``)."""
    out: dict[str, Asset] = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix in (".py", ".pyc") or "__pycache__" in p.parts:
            continue
        rel = p.relative_to(root).as_posix()
        if not (rel == "index.html" or rel.startswith("assets/")):
            continue
        body = p.read_bytes()
        media = TYPES.get(p.suffix) or mimetypes.guess_type(p.name)[0] or "application/octet-stream"
        packed = gzip.compress(body, 9, mtime=0) if media.startswith(("text/", "image/svg", "application/json")) \
            else None
        out["/" if rel == "index.html" else "/" + rel] = Asset(
            body, packed if packed is not None and len(packed) < len(body) else None,
            '"' + hashlib.sha256(body).hexdigest()[:20] + '"', media)
    return out


def _answer(request: Request, asset: Asset) -> Response:
    headers = {**SECURITY, "ETag": asset.etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    body = asset.body
    if asset.gz is not None and "gzip" in request.headers.get("accept-encoding", ""):
        body = asset.gz
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=asset.media_type, headers=headers)


def mount(app: FastAPI, get_ctx: Any, settings: Any) -> None:
    """The web page on the daemon's app (``aima.server.app.Mount``)."""
    files = load()

    @app.get(PREFIX, include_in_schema=False)
    async def ui_root() -> Response:
        return RedirectResponse(PREFIX + "/", status_code=308)

    @app.get(PREFIX + "/", include_in_schema=False)
    async def ui_index(request: Request) -> Response:
        return _answer(request, files["/"])

    @app.get(PREFIX + "/assets/{path:path}", include_in_schema=False)
    async def ui_asset(path: str, request: Request) -> Response:
        asset = files.get("/assets/" + path)
        if asset is None:
            return Response(b"not found", status_code=404, media_type="text/plain", headers=SECURITY)
        return _answer(request, asset)
