"""Identifiers and names: ``svc-<8 hex>`` ids and the rules for service names."""

from __future__ import annotations

import re
import secrets

SERVICE_ID = re.compile(r"^svc-[0-9a-f]{8}$")
INSTANCE_ID = re.compile(r"^inst-[0-9a-f]{8}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
# A service name as a JSON Schema pattern: NAME, and not like a service id.
NAME_PATTERN = r"^(?!svc-[0-9a-f]{8}$)[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


def new_service_id() -> str:
    return "svc-" + secrets.token_hex(4)


def new_instance_id() -> str:
    return "inst-" + secrets.token_hex(4)


def is_service_id(text: str) -> bool:
    return bool(SERVICE_ID.match(text))


def valid_name(text: str) -> bool:
    return bool(NAME.match(text)) and not is_service_id(text)


def name_from_model(model: str) -> str:
    """A default service name from a model name: safe characters only."""
    base = model.rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9._:-]+", "-", base).strip("-._:") or "service"
    return name[:128]
