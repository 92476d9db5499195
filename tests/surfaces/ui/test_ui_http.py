"""The web page's files over HTTP (no browser): served by the daemon from the package, with a Content-Security-
Policy that allows no inline script, compressed, cacheable by ETag, loadable without a key while every route
with data still needs one — and the page itself holds no secret and no inline script."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from aima.surfaces import ui
from tests.support.daemon import Daemon


def test_the_page_is_served_with_a_strict_policy(daemon: Daemon) -> None:
    r = daemon.http.get("/ui", follow_redirects=False)
    assert r.status_code == 308 and r.headers["location"] == "/ui/"
    r = daemon.http.get("/ui/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    html = r.text
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "an inline script"
    assert not re.search(r"\son[a-z]+=", html), "an inline event handler"
    assert "http://" not in html and "https://" not in html  # nothing from elsewhere: works offline
    for src in re.findall(r'(?:src|href)="(assets/[^"]+)"', html):
        a = daemon.http.get("/ui/" + src)
        assert a.status_code == 200, src
        assert "content-security-policy" in a.headers


def test_assets_are_compressed_and_revalidated_by_etag(daemon: Daemon) -> None:
    r = daemon.http.get("/ui/assets/app.js", headers={"accept-encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    assert r.headers["content-type"].startswith("text/javascript")
    plain = httpx.get(daemon.url + "/ui/assets/app.js", headers={"accept-encoding": "identity"}, trust_env=False)
    assert "content-encoding" not in plain.headers and plain.text == r.text
    again = daemon.http.get("/ui/assets/app.js", headers={"if-none-match": r.headers["etag"]})
    assert again.status_code == 304 and not again.content
    assert daemon.http.get("/ui/assets/nope.js").status_code == 404
    assert daemon.http.get("/ui/assets/../__init__.py").status_code == 404


def test_no_asset_reaches_outside_the_package_and_none_is_inline() -> None:
    files = ui.load()
    assert "/" in files and "/assets/app.js" in files and "/assets/app.css" in files
    assert not any(p.endswith(".py") for p in files)
    for path, asset in files.items():
        if asset.media_type.startswith(("text/javascript", "text/css", "text/html")):
            text = asset.body.decode()
            hosts = set(re.findall(r"https?://([A-Za-z0-9-]+\.[A-Za-z0-9.-]+)", text)) - {"www.w3.org"}  # svg
            assert not hosts, f"{path} names another origin: {hosts}"
            assert "eval(" not in text and "new Function" not in text and "innerHTML" not in text, path


def test_with_a_key_the_page_loads_and_the_data_does_not(daemon: Daemon) -> None:
    key = daemon.op("key.create", name="ui")["key"]
    bare = httpx.Client(base_url=daemon.url, trust_env=False)
    for path in ("/ui", "/ui/", "/ui/assets/app.js", "/ui/assets/pages/dashboard.js", "/ui/assets/app.css"):
        assert bare.get(path, follow_redirects=False).status_code in (200, 308), path
    for path in ("/api/v1/services", "/api/v1/status", "/api/v1/events/history", "/metrics", "/v1/models",
                 "/ui/../api/v1/services"):
        assert bare.get(path).status_code == 401, path
    assert key not in bare.get("/ui/").text
    authed = bare.get("/api/v1/status", headers={"authorization": f"Bearer {key}"})
    assert authed.status_code == 200


def test_the_page_files_ship_in_the_package() -> None:
    pyproject = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text()
    assert '"surfaces/ui/**/*"' in pyproject
    licences = [p for p in Path(ui.__file__).parent.rglob("*") if "LICENSE" in p.name.upper()]
    assert not licences or all(p.read_text().strip() for p in licences)
