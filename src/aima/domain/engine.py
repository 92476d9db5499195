"""What the controller needs to know about an engine to launch and judge it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EngineSpec:
    name: str
    health_path: str | None = "/health"
    health_timeout_s: float = 600.0
    identity_required: bool = False
    fatal_patterns: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
