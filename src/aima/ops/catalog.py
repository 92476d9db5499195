"""Catalog operations: list, show and validate the catalog assets; resolve a model into a plan."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from aima.catalog import loader
from aima.catalog.resolver import Plan, Rejection
from aima.catalog.resolver import resolve as resolve_plan
from aima.errors import AimaError, Conflict, NotFound, Unavailable
from aima.ops.context import Context
from aima.ops.models import Input, Output, cli
from aima.ops.registry import Cli, operation

Kind = Literal["hardware", "engine", "model"]


# ---------------------------------------------------------------------------- list
class ListInput(Input):
    kind: Kind | None = Field(None, description="only assets of this kind")


class CatalogItem(Output):
    kind: str
    name: str
    detail: str = Field(description="model: type and engines; engine: model types and formats; hardware: match")
    description: str
    overlay: bool = Field(description="defined or changed by the overlay folder")
    file: str
    type: str | None = Field(None, description="a model's type: llm, embedding, asr, tts...")


class ListOutput(Output):
    items: list[CatalogItem]
    overlay_dir: str
    problems: int = Field(description="assets left out because they are broken (see `aima catalog validate`)")


def _detail(e: loader.Entry[Any]) -> str:
    a = e.asset
    if e.kind == "model":
        return f"{a.type}: {', '.join(dict.fromkeys(v.engine for v in a.variants))}"
    if e.kind == "engine":
        return f"{', '.join(a.model_types)} / {', '.join(a.formats)}"
    return ", ".join(f"{k}={v}" for k, v in a.match.model_dump(exclude_none=True).items())


def _catalog(ctx: Context) -> loader.Catalog:
    return loader.load_catalog(ctx.settings.home)


@operation("catalog.list", mutating=False, method="GET", path="/catalog",
           cli=Cli("catalog", "list", table="items", columns=("kind", "name", "detail", "overlay")))
async def list_assets(ctx: Context, inp: ListInput) -> ListOutput:
    """List the catalog: hardware profiles, engines and models (shipped plus the overlay folder)."""
    cat = await asyncio.to_thread(_catalog, ctx)
    items = [CatalogItem(kind=e.kind, name=e.name, detail=_detail(e), description=e.asset.description,
                         overlay=e.overlay, file=e.file, type=e.asset.type if e.kind == "model" else None)
             for e in cat.entries(inp.kind)]
    if inp.kind in (None, "engine"):
        items.append(CatalogItem(kind="engine", name="custom", detail="any / a command you give",
                                 description="runs the command line given with --command ({port}, {host}, {model})",
                                 overlay=False, file="(built in)"))
    return ListOutput(items=items, overlay_dir=str(loader.overlay_dir(ctx.settings.home)),
                      problems=len(cat.problems))


# ---------------------------------------------------------------------------- show
class ShowInput(Input):
    name: str = Field(min_length=1, max_length=200, description="asset name (a model alias also works)")
    kind: Kind | None = Field(None, description="the kind, when names of different kinds collide")


class ShowOutput(Output):
    kind: str
    name: str
    overlay: bool
    files: list[str] = Field(description="the files it comes from (shipped first, then the overlay)")
    asset: dict[str, Any]


@operation("catalog.show", mutating=False, method="GET", path="/catalog/{name}",
           cli=Cli("catalog", "show", args=("name",)))
async def show(ctx: Context, inp: ShowInput) -> ShowOutput:
    """Show one catalog asset with every field, as loaded (overlay merged in)."""
    cat = await asyncio.to_thread(_catalog, ctx)
    hits = [e for e in cat.entries(inp.kind) if e.name == inp.name]
    if not hits and inp.kind in (None, "model"):
        m = cat.find_model(inp.name)
        hits = [cat.models[m.name]] if m is not None else []
    if not hits:
        names = sorted({e.name for e in cat.entries(inp.kind)})
        raise NotFound(f"{inp.kind or 'asset'} {inp.name!r} is not in the catalog; `aima catalog list` shows "
                       f"{len(names)} of them", field="name")
    if len(hits) > 1:
        raise Conflict(f"{inp.name!r} names a {' and a '.join(e.kind for e in hits)}; give --kind",
                       field="kind")
    e = hits[0]
    return ShowOutput(kind=e.kind, name=e.name, overlay=e.overlay, files=e.files,
                      asset=e.asset.model_dump(mode="json"))


# ---------------------------------------------------------------------------- validate
class ValidateInput(Input):
    path: str | None = Field(None, description="a catalog folder (hardware/, engines/, models/) to check "
                                               "instead of the installed catalog and its overlay")
    standalone: bool = Field(False, description="check the folder alone, not layered on the shipped assets")


class ProblemView(Output):
    file: str
    line: int | None
    kind: str | None
    name: str | None
    field: str | None
    message: str
    text: str = Field(description="file:line: kind name: field: message")


class ValidateOutput(Output):
    ok: bool
    dirs: list[str] = Field(description="the folders checked, in layer order")
    assets: dict[str, int] = Field(description="valid assets of each kind")
    problems: list[ProblemView]


@operation("catalog.validate", mutating=False, method="POST", path="/catalog/validate",
           cli=Cli("catalog", "validate", table="problems", columns=("file", "line", "field", "message")))
async def validate(ctx: Context, inp: ValidateInput) -> ValidateOutput:
    """Check catalog YAML: every bad field of every asset and every broken reference, each with file:line."""
    path = Path(inp.path).expanduser() if inp.path else None
    cat = await asyncio.to_thread(loader.validate, path, home=ctx.settings.home, standalone=inp.standalone)
    return ValidateOutput(
        ok=not cat.problems, dirs=cat.dirs,
        assets={"hardware": len(cat.hardware), "engine": len(cat.engines), "model": len(cat.models)},
        problems=[ProblemView(file=p.file, line=p.line, kind=p.kind, name=p.name, field=p.field, message=p.message,
                              text=str(p)) for p in cat.problems])


# ---------------------------------------------------------------------------- resolve
class ResolveInput(Input):
    model: str = Field(min_length=1, max_length=200, description="model name or alias from the catalog")
    engine: str | None = Field(None, description="use this engine (default: the best for this hardware)")
    config: dict[str, str | int | float | bool] = Field(default_factory=dict,
                                                        description="engine config keys, k=v (they win)")
    model_path: str | None = Field(None, description="weights to use instead of the model store's",
                                   json_schema_extra=cli(hidden=True))


def catalog_model(ctx: Context, ref: str) -> Any:
    """The catalog's model entry named (or aliased) ``ref``, or None (also when the catalog is unreadable)."""
    try:
        return loader.get_catalog(ctx.settings.home).find_model(ref)
    except Exception:  # noqa: BLE001 - an unreadable catalog only means no alias and no type
        return None


def detect_here(ctx: Context) -> Any:
    try:
        from aima.hardware import detect
    except ImportError as e:
        raise Unavailable(f"hardware detection is not available in this install ({e}); "
                          f"resolve needs it to choose a variant") from None
    return detect(ctx.settings.home)


def _stored_path(ctx: Context, plan: Plan) -> str | None:
    """The model store's copy of the plan's model when it holds the variant's format."""
    try:
        from aima.modelstore import ModelStore
    except ImportError:
        return None
    try:
        rec = ModelStore(ctx.settings.home, ctx.db).get(plan.model)
    except AimaError:
        return None
    if rec is None or not rec.present or not rec.path or (rec.format and rec.format != plan.format):
        return None
    return str(rec.path)


def plan_for(ctx: Context, inp: ResolveInput, facts: Any = None) -> Plan:
    """Resolve a plan on this machine (or on the machine ``facts`` describe: a cluster's node), using the
    model store's copy of the weights when it has one."""
    cat = loader.get_catalog(ctx.settings.home)
    facts = detect_here(ctx) if facts is None else facts
    plan = resolve_plan(cat, facts, inp.model, inp.engine, inp.config, inp.model_path, home=ctx.settings.home)
    if inp.model_path is None and not plan.model_path_exists:
        stored = _stored_path(ctx, plan)
        if stored is not None:
            plan = resolve_plan(cat, facts, inp.model, inp.engine, inp.config, stored,
                                home=ctx.settings.home)
    return plan


@operation("catalog.resolve", mutating=False, method="POST", path="/catalog/resolve",
           cli=Cli(None, "resolve", args=("model",)))
async def resolve(ctx: Context, inp: ResolveInput) -> Plan:
    """Plan how MODEL would run here: variant, engine, command and config, with where every value came from."""
    return await asyncio.to_thread(plan_for, ctx, inp)


# ---------------------------------------------------------------------------- fit
class FitInput(Input):
    type: str | None = Field(None, description="only models of this type (llm, embedding, asr, tts...)")


class FitItem(Output):
    name: str
    type: str
    description: str
    aliases: list[str]
    overlay: bool
    fits: bool = Field(description="a variant of it runs on this machine")
    variant: str | None = Field(None, description="the variant the resolver picks here")
    engine: str | None = None
    device: str | None = None
    format: str | None = None
    present: bool = Field(False, description="its weights are on this machine already (nothing to pull)")
    size_bytes: int | None = Field(None, description="the size of the chosen source's download, when known")
    required_bytes: int | None = Field(None, description="the memory it needs, when known")
    reason: str = Field(description="why that variant, or why none runs here")
    rejected: list[Rejection] = Field(default_factory=list, description="every variant not chosen, and why")


class FitOutput(Output):
    models: list[FitItem]


def _fit_one(ctx: Context, e: loader.Entry[Any]) -> FitItem:
    m = e.asset
    base = {"name": e.name, "type": m.type, "description": m.description, "aliases": list(m.aliases),
            "overlay": e.overlay}
    try:
        plan = plan_for(ctx, ResolveInput(model=e.name))
    except AimaError as x:
        rejected = [Rejection.model_validate(r) for r in (x.details or {}).get("rejected") or []]
        return FitItem(**base, fits=False, reason=x.message, rejected=rejected)
    size = plan.source.size_bytes
    return FitItem(**base, fits=True, variant=plan.variant, engine=plan.engine, device=plan.device, format=plan.format,
                   present=plan.model_path_exists, size_bytes=int(size) if size else None,
                   required_bytes=plan.fit.required_bytes, reason=plan.reason, rejected=plan.rejected)


@operation("catalog.fit", mutating=False, method="GET", path="/fit",
           cli=Cli("catalog", "fit", table="models", columns=("name", "type", "fits", "engine", "variant", "present",
                                                              "reason")))
async def fit(ctx: Context, inp: FitInput) -> FitOutput:
    """Which catalog models run on this machine: for each, the variant and engine the resolver picks here and
    whether its weights are present, or why no variant runs (every variant's rejection)."""
    def work() -> list[FitItem]:
        cat = _catalog(ctx)
        return [_fit_one(ctx, e) for e in cat.entries("model") if inp.type in (None, e.asset.type)]

    return FitOutput(models=await asyncio.to_thread(work))
