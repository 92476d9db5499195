"""Service and instance states and the transitions allowed between them (lifecycle rule 1)."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    created = "created"
    starting = "starting"
    running = "running"
    stopping = "stopping"
    stopped = "stopped"
    failed = "failed"


class Desired(StrEnum):
    running = "running"
    stopped = "stopped"


class RestartPolicy(StrEnum):
    never = "never"
    on_failure = "on-failure"
    always = "always"


S = State
ALLOWED: dict[State, frozenset[State]] = {
    S.created: frozenset({S.starting, S.stopping, S.stopped, S.failed}),
    S.starting: frozenset({S.starting, S.running, S.stopping, S.stopped, S.failed}),
    S.running: frozenset({S.running, S.starting, S.stopping, S.stopped, S.failed}),
    S.stopping: frozenset({S.stopping, S.stopped, S.failed}),
    S.stopped: frozenset({S.stopped, S.starting, S.stopping}),
    S.failed: frozenset({S.failed, S.starting, S.stopping, S.stopped}),
}

ACTIVE = frozenset({S.starting, S.running, S.stopping})


class IllegalTransition(ValueError):
    pass


def check_transition(old: State, new: State) -> State:
    """Return ``new`` when ``old -> new`` is allowed, else raise ``IllegalTransition``."""
    if new not in ALLOWED[old]:
        raise IllegalTransition(f"{old} -> {new} is not an allowed state change")
    return new


def aggregate(instance_states: list[State], desired: Desired, ever_started: bool,
              restart_pending: bool = False) -> State:
    """The service state users see, derived from desired state and its instances' states."""
    if any(s == S.stopping for s in instance_states):
        return S.stopping
    if desired == Desired.stopped:
        return S.stopped if ever_started else S.created
    if restart_pending or any(s == S.starting for s in instance_states):
        return S.starting
    if instance_states and all(s == S.running for s in instance_states):
        return S.running
    if any(s == S.failed for s in instance_states):
        return S.failed
    if any(s == S.running for s in instance_states):
        return S.running
    return S.stopped if ever_started else S.created


def backoff_delay(attempt: int, base_s: float = 1.0, cap_s: float = 60.0) -> float:
    """Exponential restart backoff: attempt 1 -> base, doubling, capped (rule 8)."""
    if attempt < 1:
        return 0.0
    return min(cap_s, base_s * (2 ** (attempt - 1)))
