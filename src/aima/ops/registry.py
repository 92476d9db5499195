"""The operation registry: every behaviour of aima is one typed function named ``domain.verb``.

REST routes, MCP tools and CLI commands are all generated from this registry, so adding an
operation adds it to every surface. An operation takes the shared ``Context`` and one pydantic
input model, and returns one pydantic output model; its docstring is its description.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_type_hints

from pydantic import BaseModel, ValidationError

from aima.errors import AimaError, InvalidInput, NotFound

if TYPE_CHECKING:
    from aima.ops.context import Context

OpFunc = Callable[["Context", Any], Awaitable[BaseModel]]


@dataclass(frozen=True)
class Cli:
    """How the generated CLI presents an operation: ``aima <group> <command> <args...> [--options]``."""

    group: str | None
    command: str
    args: tuple[str, ...] = ()
    table: str | None = None  # name of the list field rendered as a table
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    name: str
    func: OpFunc
    input: type[BaseModel]
    output: type[BaseModel]
    mutating: bool
    summary: str
    description: str
    method: str
    path: str
    cli: Cli | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def parse(self, data: Any) -> BaseModel:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InvalidInput(f"{self.name} expects a JSON object, got {type(data).__name__}")
        try:
            return self.input.model_validate(data)
        except ValidationError as e:
            raise validation_error(e) from None

    async def call(self, ctx: Context, data: Any) -> BaseModel:
        return await self.func(ctx, self.parse(data))


REGISTRY: dict[str, Operation] = {}


def operation(name: str, *, mutating: bool, method: str, path: str,
              cli: Cli | None = None) -> Callable[[OpFunc], OpFunc]:
    def deco(func: OpFunc) -> OpFunc:
        hints = get_type_hints(func)
        params = list(inspect.signature(func).parameters)
        inp = hints[params[1]]
        out = hints["return"]
        doc = inspect.getdoc(func) or name
        if name in REGISTRY:
            raise RuntimeError(f"operation {name} registered twice")
        REGISTRY[name] = Operation(name=name, func=func, input=inp, output=out, mutating=mutating,
                                   summary=doc.splitlines()[0], description=doc, method=method,
                                   path=path, cli=cli)
        return func
    return deco


# The operation modules, as data: each registers its operations when imported. A new domain is one module
# under aima/ops plus its name here.
MODULES = ("agent", "bench", "catalog", "cluster", "events", "hardware", "inference", "key", "model", "service",
           "stack", "system")


def load_all() -> dict[str, Operation]:
    """Import every operation module (each registers its operations on import)."""
    import importlib

    for name in MODULES:
        importlib.import_module(f"aima.ops.{name}")
    return REGISTRY


def get(name: str) -> Operation:
    ops = load_all()
    try:
        return ops[name]
    except KeyError:
        raise NotFound(f"operation {name!r} does not exist; see GET /api/v1/ops for the list") from None


def validation_error(e: ValidationError) -> AimaError:
    """Turn pydantic's errors into one readable message naming each bad field."""
    parts = []
    first_field = None
    for err in e.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__") or "body"
        first_field = first_field or loc
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{loc}: {msg}")
    return InvalidInput("invalid input: " + "; ".join(parts), field=first_field)


def describe(op: Operation) -> dict[str, Any]:
    """The public description of an operation (used by GET /api/v1/ops, stdio MCP and the CLI)."""
    d: dict[str, Any] = {
        "name": op.name, "summary": op.summary, "description": op.description, "mutating": op.mutating,
        "method": op.method, "path": "/api/v1" + op.path,
        "input_schema": op.input.model_json_schema(),
        "output_schema": op.output.model_json_schema(),
    }
    if op.cli is not None:
        d["cli"] = {"group": op.cli.group, "command": op.cli.command, "args": list(op.cli.args),
                    "table": op.cli.table, "columns": list(op.cli.columns)}
    return d
