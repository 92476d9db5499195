"""Profiles (what an agent may call) and approvals (what needs a person's yes), as data.

- ``read-only``: operations that change nothing — look at services, logs, events, hardware, models, plans.
- ``operator``: read-only plus create / start / stop / restart / run / pull / chat.
- ``admin``: every operation (but the agent's own: no recursion).

Destructive calls need approval in every profile: deleting a service, removing a model, creating or
revoking an API key, taking the stack down, and stopping (or restarting) a pinned service.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PROFILES = ("read-only", "operator", "admin")
DEFAULT_PROFILE = "operator"

READ_ONLY = ("system.status", "hardware.detect", "service.list", "service.get", "service.logs", "event.list",
             "model.list", "model.info", "catalog.list", "catalog.resolve")
OPERATOR = READ_ONLY + ("service.create", "service.start", "service.stop", "service.restart", "service.run",
                        "model.pull", "inference.chat")
NEVER = ("agent.",)  # the agent is never a tool of an agent

DESTRUCTIVE = ("service.delete", "model.rm", "key.create", "key.revoke", "stack.down")
PINNED_STOPS = ("service.stop", "service.restart")  # destructive when the service is pinned

# The fields a small profile offers of a large operation (admin offers every field).
# service.create for a small profile: a catalog model by name (the catalog picks engine and settings) or any
# engine by its command line, the name first. Offered every field, a small model fills each with a guess (engine
# "echo", port 8080, pinned) and the call fails or does more than asked; admin offers them all.
_CREATE = ("name", "model", "command", "idle_ttl_s")
# Fields the agent offers under another name (the operation's own name is understood too). A call is written
# {"name": TOOL, "arguments": {...}}: a small model then leaves out service.create's own "name" argument, and
# "service" is what every other service tool calls a service's name.
RENAMES: dict[str, dict[str, str]] = {"service.create": {"name": "service"}}
FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "read-only": {"event.list": ("service", "limit"), "catalog.resolve": ("model", "engine", "config")},
    "operator": {"service.create": _CREATE, "event.list": ("service", "limit"),
                 "catalog.resolve": ("model", "engine", "config"), "inference.chat": ("model", "prompt", "max_tokens"),
                 "service.run": ("model", "name", "engine", "config", "timeout_s"),
                 "model.pull": ("model", "name", "force")},
}


# One line each, verb first, saying when to use it (where the operation's own first sentence leaves a small model
# guessing between two tools).
DESCRIPTIONS = {
    "service.list": "List every service with its state (running, stopped, failed) and readiness",
    "service.get": "Show one service in detail: state, instances, pid, port, exit code, last message",
    "service.logs": "Read a service's engine log: why it failed or what it is doing",
    "service.create": "Create a NEW service (not started); for one that exists use service_start",
    "service.start": "Start an EXISTING service and wait until it is ready",
    "service.stop": "Stop a running service (it stays defined and can be started again)",
    "service.restart": "Stop, then start an existing service and wait until it is ready",
    "service.run": "Serve a catalog model in one step: pull it, create its service, start it, wait",
    "service.delete": "Delete a service: stop it and forget it",
    "hardware.detect": "Show this machine's hardware: CPU, memory, GPUs, disk",
    "system.status": "Show the daemon's overview: version, uptime, services per state",
    "event.list": "List recent events: starts, stops, failures, restarts",
    "model.list": "List the models on this machine",
    "model.pull": "Download a catalog model onto this machine",
    "inference.chat": "Ask a ready chat model a question",
    "catalog.list": "List what the catalog offers: models, engines, hardware profiles",
}


def check_profile(profile: str | None) -> str:
    from aima.errors import InvalidInput

    p = profile or DEFAULT_PROFILE
    if p not in PROFILES:
        raise InvalidInput(f"profile {p!r} does not exist; use one of {', '.join(PROFILES)}", field="profile")
    return p


def offered(profile: str, ops: Mapping[str, Any]) -> list[str]:
    """The operation names a profile offers, in the registry's order."""
    profile = check_profile(profile)
    if profile == "admin":
        allowed: Any = None
    else:
        allowed = READ_ONLY if profile == "read-only" else OPERATOR
    out = []
    for name, op in ops.items():
        if name.startswith(NEVER) or (allowed is not None and name not in allowed):
            continue
        mutating = op.get("mutating") if isinstance(op, dict) else op.mutating
        if profile == "read-only" and mutating:
            continue
        out.append(name)
    return out


def destructive(op_name: str, args: Mapping[str, Any], pinned: Any) -> str | None:
    """Why this call needs approval, or None. ``pinned(service) -> bool`` tells whether a service is pinned."""
    if op_name in DESTRUCTIVE:
        return f"{op_name} is destructive"
    if op_name in PINNED_STOPS and args.get("service") and pinned(str(args["service"])):
        return f"{args['service']} is pinned (kept loaded on purpose)"
    return None
