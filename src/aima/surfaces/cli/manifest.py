"""Write the CLI manifest from the operation registry: ``python -m aima.surfaces.cli.manifest --write``.

The manifest lists, for each operation with a CLI form, its command path, positional arguments and
options (types, defaults, help), so the CLI can build its commands without importing the registry.
A test checks that the committed manifest matches the registry.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

PATH = Path(__file__).with_name("manifest.json")


def _param(name: str, prop: dict[str, Any], required: bool, positional: bool,
           defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in prop:
        prop = {**defs[prop["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in prop.items() if k != "$ref"}}
    types = [prop.get("type")] if "type" in prop else [a.get("type") for a in prop.get("anyOf", [])]
    types = [t for t in types if t and t != "null"]
    kind = types[0] if types else "string"
    enum = prop.get("enum") or next((a.get("enum") for a in prop.get("anyOf", []) if "enum" in a), None)
    if kind == "object":
        kind = "dict"
    elif kind == "array":
        kind = "list"
    return {
        "name": name, "cli_name": prop.get("x-cli-name") or name.replace("_", "-"),
        "short": prop.get("x-cli-short"), "hidden": bool(prop.get("x-cli-hidden")),
        "type": kind, "choices": enum, "required": required, "positional": positional,
        "default": prop.get("default"), "help": prop.get("description", ""),
    }


def build() -> dict[str, Any]:
    from aima.ops.registry import load_all

    commands = []
    # by name: the registry's order is the order its modules happened to be imported in, which differs
    # between a fresh process and one (a test session) that imported some operations first
    for op in sorted(load_all().values(), key=lambda o: o.name):
        if op.cli is None:
            continue
        schema = op.input.model_json_schema()
        required = set(schema.get("required", []))
        defs = schema.get("$defs", {})
        params = [_param(n, p, n in required, n in op.cli.args, defs)
                  for n, p in schema.get("properties", {}).items()]
        params.sort(key=lambda p: (not p["positional"], op.cli.args.index(p["name"]) if p["positional"] else 0))
        commands.append({
            "op": op.name, "group": op.cli.group, "command": op.cli.command, "summary": op.summary,
            "help": op.description, "mutating": op.mutating, "table": op.cli.table,
            "columns": list(op.cli.columns), "params": params,
        })
    return {"commands": commands}


def render() -> str:
    return json.dumps(build(), indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    text = render()
    if "--write" in sys.argv:
        PATH.write_text(text)
        print(f"wrote {PATH}")
    elif PATH.read_text() != text:
        print("manifest.json is stale: run `make manifest`", file=sys.stderr)
        sys.exit(1)
