"""The catalog: hardware profiles, engines and models as YAML assets shipped in the package
(``assets/``) plus the overlay folder ``AIMA_HOME/catalog``; see ``loader`` for the layout,
``schema`` for the fields, ``resolver`` for how a model becomes a plan on this hardware.

``engine(name)`` is what the controller needs of an engine to launch and judge it (health path and
timeout, identity check, fatal log patterns, environment). Besides the YAML engines there is the
built-in ``custom`` engine: a user-given command line with ``{port}`` (and ``{host}``, ``{model}``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from aima.domain.engine import EngineSpec
from aima.errors import NotFound

if TYPE_CHECKING:
    from aima.catalog.loader import Catalog
    from aima.catalog.resolver import Plan
    from aima.hardware.facts import HardwareFacts

# Log lines that mean an engine cannot come up: the service fails at once with the line.
COMMON_FATAL_PATTERNS = (
    r"[Aa]ddress already in use",
    r"\bout of memory\b|\bOutOfMemoryError\b|CUDA out of memory",
    r"[Ff]ailed to load model|[Ii]nvalid model file|not a valid GGUF",
)

CUSTOM = EngineSpec(name="custom", health_path="/health", health_timeout_s=600.0,
                    identity_required=False, fatal_patterns=COMMON_FATAL_PATTERNS)


def load(home: Path | None = None) -> Catalog:
    """The catalog (shipped + overlay of ``home``, default the settings' home); InvalidInput lists
    every problem with its file and line when any asset is broken."""
    from aima.catalog.loader import get_catalog

    return get_catalog(home)


def engine(name: str, home: Path | None = None) -> EngineSpec:
    """What the controller needs of engine ``name``: the common fatal patterns plus the engine's own."""
    if name == "custom":
        return CUSTOM
    cat = load(home)
    eng = cat.engine(name)
    if eng is None:
        known = ", ".join(["custom", *sorted(cat.engines)])
        raise NotFound(f"engine {name!r} is not in the catalog; known engines: {known} "
                       f"(give --command to run any engine with `custom`)", field="engine")
    patterns = tuple(dict.fromkeys((*COMMON_FATAL_PATTERNS, *eng.fatal_patterns)))
    return EngineSpec(name=eng.name, health_path=eng.health.path, health_timeout_s=eng.health.timeout_s,
                      identity_required=eng.identity.required, fatal_patterns=patterns, env=dict(eng.env))


def resolve(facts: HardwareFacts, model: str, engine: str | None = None, config: dict[str, Any] | None = None,
            model_path: str | Path | None = None, *, home: Path | None = None) -> Plan:
    """``resolver.resolve`` over the installed catalog and its overlay."""
    from aima.catalog.resolver import resolve as _resolve

    return _resolve(load(home), facts, model, engine, config, model_path, home=home)
