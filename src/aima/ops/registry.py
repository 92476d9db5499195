"""The operation registry: every behaviour of aima is one typed function named ``domain.verb``.

REST routes, MCP tools and CLI commands are all generated from this registry, so adding an
operation adds it to every surface. An operation takes the shared ``Context`` and one pydantic
input model, and returns one pydantic output model; its docstring is its description.
"""

from __future__ import annotations

import inspect
import json
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

    def parse(self, data: Any, *, strict: bool = False) -> BaseModel:
        """The operation's input from ``data``; ``strict`` (a JSON body): every value must already have its
        type (``"3"`` is not ``3``), where query strings and a model's tool calls are read leniently."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InvalidInput(f"{self.name} expects a JSON object, got {type(data).__name__}")
        if strict:
            _check_json(self, data)
        try:
            return self.input.model_validate(data)
        except ValidationError as e:
            raise validation_error(e, self.input) from None

    async def call(self, ctx: Context, data: Any, *, strict: bool = False) -> BaseModel:
        return await self.func(ctx, self.parse(data, strict=strict))


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


_VALIDATORS: dict[str, Any] = {}


def _check_json(op: Operation, data: dict[str, Any]) -> None:
    """A JSON body against the input's JSON Schema, as any client reads it: ``"3"`` is not an integer (``3.0``
    is), a pattern or a ``oneOf`` holds, nothing else is taken. ``InvalidInput`` names the first bad field."""
    v = _VALIDATORS.get(op.name)
    if v is None:
        from jsonschema import Draft202012Validator

        v = _VALIDATORS[op.name] = Draft202012Validator(op.input.model_json_schema())
    # A rule across fields (the schema's own if/then) is the model's validator's to say, in its own words.
    errors = [e for e in v.iter_errors(data) if not {"then", "else"} & set(e.schema_path)]
    err = next(iter(sorted(errors, key=lambda e: (len(e.absolute_path), str(e.absolute_path)))), None)
    if err is None:
        return
    try:  # the input's own validators say why in the daemon's words (a command's unclosed quote, an image's form)
        op.input.model_validate(data)
    except ValidationError as e:
        raise validation_error(e, op.input) from None
    where = ".".join(str(p) for p in err.absolute_path) or None
    if err.validator == "additionalProperties" and where is None:
        extra = sorted(set(data) - set(op.input.model_fields))
        where, msg = (extra[0] if extra else None), "unknown field"
    else:
        msg = err.message if len(err.message) <= 300 else err.message[:300] + "…"
        if err.validator == "pattern" and len(str(err.validator_value)) > 60:  # the pattern says less than the field
            msg = f"{json.dumps(err.instance)[:100]} is not in the expected form"
        if err.validator == "pattern":
            msg += _expects(op.input, list(err.absolute_path))
    raise InvalidInput(f"invalid input: {where or 'body'}: {msg}", field=where)


def _expects(model: type[BaseModel] | None, loc: tuple[Any, ...] | list[Any]) -> str:
    """What a field expects, in its own words (its description), for a value that does not match its pattern."""
    field = model.model_fields.get(str(loc[0])) if model is not None and loc else None
    return f" (expected: {field.description})" if field is not None and field.description else ""


def validation_error(e: ValidationError, model: type[BaseModel] | None = None) -> AimaError:
    """Turn pydantic's errors into one readable message naming each bad field."""
    parts = []
    first_field = None
    for err in e.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__") or "body"
        first_field = first_field or loc
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        elif err.get("type") == "string_pattern_mismatch":
            if len(str(err.get("ctx", {}).get("pattern", ""))) > 60:  # a long pattern says less than the field
                msg = "is not in the expected form"
            msg += _expects(model, err.get("loc", ()))
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
