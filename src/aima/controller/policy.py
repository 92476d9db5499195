"""The controller's decisions, as pure functions: given records and observations, what to do.

Nothing here touches a process, a port, the database or the clock: the reconciler gathers the facts,
calls these, and applies what they return (it stays the only writer of instance state). So each rule
is tested as a table, without processes (tests/controller/test_policy.py):

- ``after_exit``: an instance died unasked — restart it (after a backoff), or not, and why (rule 8);
- ``idle_victims``: which running services have been idle longer than their idle TTL;
- ``make_room``: which services to unload so another fits its device's memory budget;
- ``adoption``: at boot, what becomes of each recorded instance and of each found one no record claims
  (rule 11).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from aima.domain.states import Desired, RestartPolicy, State, backoff_delay
from aima.domain.units import size_text

RESTART_RESET_S = 600.0  # an instance ready this long before crashing resets the restart count


# ---------------------------------------------------------------------------- exits and restarts
@dataclass(frozen=True)
class RestartRules:
    max_restarts: int = 5
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0


@dataclass(frozen=True)
class ExitFacts:
    """An instance that died without being asked to, and its service as it stands."""

    service_name: str
    instance_id: str
    desired: str
    policy: str
    restarts: int  # restarts already made in a row
    exit_code: int | None
    reason: str  # what to tell the user about the exit
    fatal: bool  # the log matched a fatal pattern of the engine
    ready_at: float | None  # when it became ready, if ever
    now: float


@dataclass(frozen=True)
class ExitDecision:
    action: Literal["leave", "restart", "give_up"]
    message: str  # the service's message
    restarts: int  # the service's restart count from now on
    delay_s: float = 0.0
    attempt: int = 0


def after_exit(f: ExitFacts, rules: RestartRules) -> ExitDecision:
    """Restart or not (rule 8): by the service's policy, never after a fatal error or an exit before it was
    ever ready, at most ``max_restarts`` in a row with exponential backoff; a long healthy run first
    resets the count."""
    crashed = f.exit_code != 0
    policy = RestartPolicy(f.policy)
    wants = f.desired == Desired.running.value and (
        policy == RestartPolicy.always or (policy == RestartPolicy.on_failure and crashed))
    if not wants:
        return ExitDecision("leave", f"instance {f.instance_id} {f.reason}", f.restarts)
    if f.fatal or f.ready_at is None:
        why = "a fatal error" if f.fatal else "an exit before it was ever ready"
        return ExitDecision("leave", f"{f.reason} (not restarted after {why}; fix the cause, then "
                                     f"`aima service start {f.service_name}`)", f.restarts)
    restarts = f.restarts
    if restarts and f.now - f.ready_at > RESTART_RESET_S:
        restarts = 0  # it served well for a while: a fresh crash budget
    if restarts >= rules.max_restarts:
        return ExitDecision("give_up", f"gave up after {restarts} restarts; last: {f.reason}", restarts)
    attempt = restarts + 1
    delay = backoff_delay(attempt, rules.backoff_s, rules.backoff_max_s)
    return ExitDecision("restart", f"{f.reason}; restarting in {delay:g}s (attempt {attempt} of "
                                   f"{rules.max_restarts})", attempt, delay, attempt)


def retry_launch(restarts: int, rules: RestartRules) -> tuple[int, float]:
    """A launch refused because the place it must run is away for now (a pinned node that was lost): tried
    again with the restart backoff and no cap on attempts, until that place returns. (restarts, delay)."""
    attempt = restarts + 1
    return attempt, backoff_delay(attempt, rules.backoff_s, rules.backoff_max_s)


# ---------------------------------------------------------------------------- idle unload
@dataclass(frozen=True)
class Use:
    """A service as load-on-demand sees it."""

    id: str
    last_use: float  # its last request, else when it became ready (or the daemon booted)
    memory_bytes: int = 0
    devices: tuple[str, ...] = ()
    pinned: bool = False
    busy: bool = False  # a request in flight, or a start/stop under way
    idle_ttl_s: float | None = None


def idle_victims(services: Iterable[Use], now: float) -> list[tuple[str, float, float]]:
    """(service id, idle seconds, TTL) of each unpinned, not busy service idle for at least its TTL."""
    out = []
    for u in services:
        if u.idle_ttl_s is None or u.pinned or u.busy:
            continue
        idle = now - u.last_use
        if idle >= u.idle_ttl_s:
            out.append((u.id, idle, u.idle_ttl_s))
    return out


# ---------------------------------------------------------------------------- making room
@dataclass
class Room:
    device: str
    budget: int
    used: int  # by the other loaded services, before any unload
    victims: list[str] = field(default_factory=list)  # least recently used first
    fits: bool = True  # after unloading the victims

    def why(self, name: str, need: int) -> str:
        free = max(self.budget - self.used, 0)
        return (f"to make room for {name} on {self.device} (it needs {size_text(need)}; {size_text(free)} of the "
                f"{size_text(self.budget)} budget was free)")

    def refusal(self, name: str, need: int) -> str:
        return (f"service {name} needs {size_text(need)} on {self.device}, but only "
                f"{size_text(max(self.budget - self.used, 0))} of its {size_text(self.budget)} budget is free and no "
                f"other service can be unloaded (pinned or busy); stop one, or raise AIMA_MEMORY_BUDGET")


def make_room(need: int, devices: Iterable[str], budgets: Mapping[str, int], loaded: Iterable[Use]) -> list[Room]:
    """Per device of a service about to load (needing ``need`` bytes on each): which loaded services to
    unload, least recently used first, so it fits its budget. Pinned and busy services stay. When even
    unloading every movable one would not make room, none is unloaded and the room says it does not fit."""
    rooms = []
    loaded = list(loaded)
    for dev in devices:
        budget = budgets.get(dev)
        if budget is None:
            continue
        here = [u for u in loaded if u.memory_bytes and dev in u.devices]
        used = sum(u.memory_bytes for u in here)
        room = Room(dev, budget, used)
        rooms.append(room)
        if used + need <= budget:
            continue
        movable = [u for u in here if not u.pinned and not u.busy]
        fixed = used - sum(u.memory_bytes for u in movable)
        if fixed + need > budget:
            room.fits = False
            continue
        left = used
        for u in sorted(movable, key=lambda u: u.last_use):
            if left + need <= budget:
                break
            room.victims.append(u.id)
            left -= u.memory_bytes
        room.fits = left + need <= budget
    return rooms


# ---------------------------------------------------------------------------- adoption at boot
@dataclass(frozen=True)
class Recorded:
    """An instance the database says is active (starting, running or stopping)."""

    id: str
    state: str
    alive: bool  # observed now, by its recorded identity


@dataclass
class Adoption:
    adopt: list[str] = field(default_factory=list)  # alive and wanted: keep it (watch it when starting)
    stop: list[str] = field(default_factory=list)  # alive but was being stopped: finish the stop
    stopped: list[str] = field(default_factory=list)  # gone while stopping: it is stopped
    exited: list[str] = field(default_factory=list)  # gone while the daemon was down: the restart policy applies
    orphans: list[str] = field(default_factory=list)  # found carrying this home's marks, claimed by no record


def adoption(recorded: Iterable[Recorded], found: Iterable[str]) -> Adoption:
    """Rule 11: instances are re-adopted by recorded identity, never by a bare pid; nothing is started here
    (no duplicate), and what no record claims is an orphan to remove."""
    plan = Adoption()
    known = set()
    for r in recorded:
        known.add(r.id)
        stopping = r.state == State.stopping.value
        if r.alive:
            (plan.stop if stopping else plan.adopt).append(r.id)
        else:
            (plan.stopped if stopping else plan.exited).append(r.id)
    plan.orphans = [i for i in dict.fromkeys(found) if i not in known]
    return plan
