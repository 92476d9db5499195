"""What the controller needs to know about an engine to launch and judge it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class EngineSpec:
    name: str
    health_path: str | None = "/health"
    health_timeout_s: float = 600.0
    identity_required: bool = False
    fatal_patterns: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fatal_patterns"] = list(self.fatal_patterns)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineSpec:
        return cls(name=str(d.get("name") or "custom"), health_path=d.get("health_path"),
                   health_timeout_s=float(d.get("health_timeout_s") or 600.0),
                   identity_required=bool(d.get("identity_required")),
                   fatal_patterns=tuple(d.get("fatal_patterns") or ()), env=dict(d.get("env") or {}))
