"""Shared pydantic shapes for operation inputs and outputs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# Text without control characters (names people type; JSON Schema and pydantic read this pattern alike).
PLAIN = r"^[^\x00-\x1f\x7f-\x9f]*$"
# PLAIN, neither blank nor starting or ending with white space (a name someone types)
TRIMMED = r"^[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$"


class Input(BaseModel):
    """Base of every operation input: unknown fields are refused, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


def cli(name: str | None = None, *, short: str | None = None, hidden: bool = False) -> dict[str, object]:
    """Presentation hints for the generated CLI (``json_schema_extra`` of a field)."""
    d: dict[str, object] = {}
    if name:
        d["x-cli-name"] = name
    if short:
        d["x-cli-short"] = short
    if hidden:
        d["x-cli-hidden"] = True
    return d
