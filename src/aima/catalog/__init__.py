"""The catalog of engines and models. Until the YAML catalog lands it knows one engine: ``custom``,
a user-given command line with ``{port}`` (and ``{host}``, ``{model}``) placeholders."""

from __future__ import annotations

from aima.domain.engine import EngineSpec
from aima.errors import InvalidInput

# Log lines that mean an engine cannot come up: the service fails at once with the line.
COMMON_FATAL_PATTERNS = (
    r"[Aa]ddress already in use",
    r"\bout of memory\b|\bOutOfMemoryError\b|CUDA out of memory",
    r"[Ff]ailed to load model|[Ii]nvalid model file|not a valid GGUF",
)

CUSTOM = EngineSpec(name="custom", health_path="/health", health_timeout_s=600.0,
                    identity_required=False, fatal_patterns=COMMON_FATAL_PATTERNS)


def engine(name: str) -> EngineSpec:
    if name == "custom":
        return CUSTOM
    raise InvalidInput(f"engine {name!r} is not in the catalog; known engines: custom "
                       f"(give --command to run any engine)", field="engine")
