"""Which runtime a service gets: ``--runtime NAME`` or ``auto``, as one decision over the runtimes' own
answers (``claims``, ``consider``), always saying which it picked and why.

``auto``: a runtime that claims the service takes it (``--image`` was given: a container; a model that
does not fit this machine while a cluster is attached: the cluster); else the engine's preferred runtime
when it can run it; else the first other that can, in registry order; else the preferred one when its
own start will say what is missing (``fallback``), or ``Unavailable`` saying why none can. Verdicts are
asked for lazily, so a native choice never waits on Docker. Options given for a runtime that was not
chosen are refused, naming the runtime to ask for.
"""

from __future__ import annotations

from collections.abc import Mapping

from aima.errors import Conflict, InvalidInput, Unavailable
from aima.runtimes.base import Runtime, ServicePlan, Verdict


def choose(asked: str, plan: ServicePlan, runtimes: Mapping[str, Runtime]) -> tuple[str, str]:
    """(runtime, reason); ``Unavailable`` or ``InvalidInput`` when no runtime can be had."""
    if asked != "auto":
        if asked not in runtimes:
            raise InvalidInput(f"runtime {asked!r} does not exist; choose one of: auto, {', '.join(runtimes)}",
                               field="runtime")
        name, reason = asked, f"--runtime {asked} was asked for"
    else:
        name, reason = _auto(plan, runtimes)
    _refuse_foreign_options(name, reason, plan, runtimes)
    return name, reason


def _auto(plan: ServicePlan, runtimes: Mapping[str, Runtime]) -> tuple[str, str]:
    for name, rt in runtimes.items():
        why = rt.claims(plan)
        if why:
            return name, f"auto: {why}"
    prefer = plan.prefer if plan.prefer in runtimes else next(iter(runtimes))
    order = [prefer, *(n for n in runtimes if n != prefer)]
    seen: dict[str, Verdict] = {}
    for name in order:
        v = seen[name] = runtimes[name].consider(plan)
        if not v.usable:
            continue
        if plan.custom:
            return name, f"auto: {v.why}"
        if name == prefer:
            return name, f"auto: {plan.engine} prefers {prefer} and {v.why}"
        return name, (f"auto: {plan.engine} prefers {prefer}, but {seen[prefer].why}; {v.why}, so it runs "
                      f"{runtimes[name].describe}")
    first = seen[prefer]
    others = "; ".join(f"it cannot run {runtimes[n].describe} ({v.why})" for n, v in seen.items() if n != prefer)
    if first.fallback:
        return prefer, f"auto: {plan.engine} prefers {prefer} ({first.why}; {others})"
    raise Unavailable(f"{plan.engine} prefers {prefer}, but {first.why}; and {others}")


def _refuse_foreign_options(name: str, reason: str, plan: ServicePlan, runtimes: Mapping[str, Runtime]) -> None:
    for other, rt in runtimes.items():
        if other == name:
            continue
        given = [_flag(rt, f) for f in rt.Options.model_fields if plan.given.get(f) not in (None, [], {}, "")]
        if given:
            verb = "apply" if len(given) > 1 else "applies"
            # at odds with the runtime this service gets here (auto takes what is available), hence 409
            raise Conflict(f"{', '.join(given)} {verb} to {rt.applies_to}, but this service runs "
                           f"{runtimes[name].describe} ({reason}); add --runtime {other}", field="runtime")


def _flag(rt: Runtime, field: str) -> str:
    extra = rt.Options.model_fields[field].json_schema_extra
    cli_name = extra.get("x-cli-name") if isinstance(extra, dict) else None
    return f"--{cli_name or field.replace('_', '-')}"
