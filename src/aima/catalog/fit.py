"""The fit check: does the chosen variant fit the memory that is free right now?

The budget is the free memory of the device the weights live on, less a reserve the profile keeps
(``reserve.gpu_bytes`` per GPU, 512 MiB by default; ``reserve.ram_bytes`` for the CPU and for
unified memory, 1 GiB by default):

- a GPU with memory of its own: its free memory (the tightest of the GPUs a tensor-parallel
  engine spans; weights and KV cache are split over them);
- the CPU, or a GPU that shares the host's RAM (GB10, Jetson, Apple): host RAM available.

What the check may lower it lowers, never below a floor, and says so (provenance ``fit``):

- an engine that preallocates a fraction of each GPU (role ``memory_fraction``: vLLM
  ``gpu_memory_utilization``, SGLang ``mem_fraction_static``) is clamped to
  ``floor((free - reserve) / total, 0.01)``; under 0.1 it does not fit;
- the context (role ``context_length``: llama.cpp ``n_ctx``, vLLM ``max_model_len``) is halved
  until the KV cache fits, down to the key's ``min``.

A value the user gave is never changed: if it does not fit, the check refuses and says what would.
When the free memory is unknown nothing is lowered and the report says ``unknown``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, Field

from aima.errors import InsufficientMemory

if TYPE_CHECKING:
    from aima.catalog.schema import Engine, HardwareProfile, Model, Variant
    from aima.hardware.facts import GpuFacts, HardwareFacts

MiB = 1 << 20
GiB = 1 << 30
DEFAULT_GPU_RESERVE = 512 * MiB
DEFAULT_RAM_RESERVE = 1 * GiB
MIN_FRACTION = 0.1
DEFAULT_CTX_FLOOR = 256


def gib(n: int | float | None) -> str:
    if n is None:
        return "unknown"
    if abs(n) < GiB:
        return f"{n / MiB:.0f} MiB"
    return f"{n / GiB:.1f} GiB"


class FitAdjustment(BaseModel):
    key: str
    before: Any
    after: Any
    reason: str


class FitReport(BaseModel):
    status: Literal["ok", "lowered", "unknown"] = Field(
        description="ok: fits; lowered: fits after the adjustments; unknown: free memory could not be read")
    device: Literal["cpu", "gpu", "unified"]
    devices: int = Field(description="GPUs the engine spans (1 for the CPU)")
    gpu_indexes: list[int] = Field(default_factory=list)
    total_bytes: int | None = Field(None, description="per device")
    free_bytes: int | None = Field(None, description="per device, now")
    reserve_bytes: int
    budget_bytes: int | None = Field(None, description="free minus reserve")
    required_bytes: int | None = Field(None, description="per device, with the final context")
    adjustments: list[FitAdjustment] = Field(default_factory=list)
    message: str


@dataclass
class Pool:
    device: Literal["cpu", "gpu", "unified"]
    devices: int
    gpu_indexes: list[int]
    total: int | None
    free: int | None
    reserve: int


def _known(n: int | None) -> int | None:
    return n if n else None  # zero means unknown


def host_total(facts: HardwareFacts) -> int | None:
    return _known(facts.effective.memory_total_bytes) or _known(facts.memory.total_bytes)


def host_available(facts: HardwareFacts) -> int | None:
    return _known(facts.effective.memory_available_bytes) or _known(facts.memory.available_bytes)


def gpu_total(g: GpuFacts, facts: HardwareFacts) -> int | None:
    if _known(g.memory_total_bytes):
        return g.memory_total_bytes
    return host_total(facts) if g.unified_memory else None


def gpu_free(g: GpuFacts, facts: HardwareFacts) -> int | None:
    if g.unified_memory and not _known(g.memory_total_bytes):
        return host_available(facts)
    return g.memory_free_bytes if g.memory_free_bytes is not None else None


class Book(Protocol):
    """The merged config of one plan: the fit check reads values and overrides them with ``fit``."""

    def value(self, key: str) -> Any: ...

    def source(self, key: str) -> str | None: ...

    def lower(self, key: str, value: Any, reason: str) -> None: ...


def pool_for(variant: Variant, engine: Engine, facts: HardwareFacts, gpus: list[GpuFacts],
             profile: HardwareProfile | None, book: Book) -> Pool:
    tp_key = engine.key_for_role("tensor_parallel")
    n = 1
    if variant.device == "gpu" and tp_key is not None and book.value(tp_key) is not None:
        n = max(1, int(book.value(tp_key)))
    gpu_reserve = int(profile.reserve.gpu_bytes) if profile and profile.reserve.gpu_bytes is not None \
        else DEFAULT_GPU_RESERVE
    ram_reserve = int(profile.reserve.ram_bytes) if profile and profile.reserve.ram_bytes is not None \
        else DEFAULT_RAM_RESERVE
    if variant.device == "cpu":
        return Pool("cpu", 1, [], host_total(facts), host_available(facts), ram_reserve)
    if len(gpus) < n:
        raise InsufficientMemory(
            f"{tp_key}={n} needs {n} GPUs that suit variant {variant.name}; {len(gpus)} found",
            field=f"config.{tp_key}", details={"gpus_needed": n, "gpus_found": len(gpus)})
    used = gpus[:n]
    if any(g.unified_memory and not _known(g.memory_total_bytes) for g in used):
        return Pool("unified", n, [g.index for g in used], host_total(facts), host_available(facts), ram_reserve)
    totals = [gpu_total(g, facts) for g in used]
    frees = [gpu_free(g, facts) for g in used]
    total = None if any(t is None for t in totals) else min(t for t in totals if t is not None)
    free = None if any(f is None for f in frees) else min(f for f in frees if f is not None)
    return Pool("gpu", n, [g.index for g in used], total, free, gpu_reserve)


def check_fit(*, model: Model, variant: Variant, engine: Engine, facts: HardwareFacts, gpus: list[GpuFacts],
              profile: HardwareProfile | None, book: Book) -> FitReport:
    """Check (and lower) the config of one variant against free memory; raises InsufficientMemory."""
    pool = pool_for(variant, engine, facts, gpus, profile, book)
    split = pool.devices if pool.device == "gpu" else 1
    weights = math.ceil(int(variant.memory.required_bytes) / split)
    per_tok = variant.memory.per_ctx_token_bytes
    per_tok = math.ceil(int(per_tok) / split) if per_tok else None
    ctx_key = engine.key_for_role("context_length")
    frac_key = engine.key_for_role("memory_fraction") if variant.device == "gpu" else None
    if frac_key is not None and book.value(frac_key) is None:
        frac_key = None  # the engine sizes itself: treat it like any other engine
    ctx = book.value(ctx_key) if ctx_key else None
    ctx = int(ctx) if ctx is not None else model.context_length
    floor = DEFAULT_CTX_FLOOR
    if ctx_key is not None and engine.config[ctx_key].min is not None:
        floor = int(engine.config[ctx_key].min)  # type: ignore[arg-type]
    adjustments: list[FitAdjustment] = []
    where = _where(pool)

    def numbers(required: int | None) -> dict[str, Any]:
        return {"device": pool.device, "devices": pool.devices, "gpu_indexes": pool.gpu_indexes,
                "total_bytes": pool.total, "free_bytes": pool.free, "reserve_bytes": pool.reserve,
                "budget_bytes": None if pool.free is None else pool.free - pool.reserve,
                "required_bytes": required, "variant": variant.name, "engine": engine.name}

    def refuse(msg: str, required: int | None) -> InsufficientMemory:
        return InsufficientMemory(f"{model.name} ({variant.name}, {engine.name}) does not fit {where}: {msg}",
                                  field="model", details=numbers(required))

    def kv(c: int | None) -> int:
        return (c or 0) * per_tok if per_tok else 0

    def fit_ctx(capacity: int, what: str) -> None:
        """Halve the context until its KV cache fits ``capacity`` bytes (or refuse)."""
        nonlocal ctx
        if not per_tok or ctx is None or kv(ctx) <= capacity:
            return
        user = ctx_key is not None and book.source(ctx_key) == "user"
        new = ctx
        while kv(new) > capacity and new // 2 >= floor:
            new //= 2
        if user or kv(new) > capacity or ctx_key is None:
            best = max(0, capacity // per_tok)
            hint = (f"; at most {best} tokens of context fit" if best >= floor else "")
            who = f" (you asked {ctx_key}={ctx})" if user else ""
            raise refuse(f"a context of {ctx} tokens needs {gib(kv(ctx))} of KV cache{who} but only "
                         f"{gib(max(capacity, 0))} is left {what}{hint}", weights + kv(ctx))
        adjustments.append(FitAdjustment(key=ctx_key, before=ctx, after=new, reason=(
            f"KV cache of {ctx} tokens ({gib(kv(ctx))}) exceeds the {gib(capacity)} left {what}; "
            f"halved to {new} tokens ({gib(kv(new))})")))
        book.lower(ctx_key, new, adjustments[-1].reason)
        ctx = new

    if frac_key is not None:
        frac = float(book.value(frac_key))
        if pool.total is None:
            return FitReport(status="unknown", device=pool.device, devices=pool.devices, gpu_indexes=pool.gpu_indexes,
                             reserve_bytes=pool.reserve, required_bytes=weights + kv(ctx),
                             message=f"the memory size {where} is unknown; {frac_key}={frac:g} was not checked")
        if pool.free is not None:
            max_safe = math.floor((pool.free - pool.reserve) / pool.total * 100) / 100
            if max_safe < MIN_FRACTION:
                raise refuse(f"{gib(pool.free)} free of {gib(pool.total)}, less the {gib(pool.reserve)} reserve, "
                             f"leaves a {frac_key} of {max_safe:.2f} (under {MIN_FRACTION})", weights)
            if frac > max_safe:
                if book.source(frac_key) == "user":
                    raise refuse(f"you asked {frac_key}={frac:g} ({gib(frac * pool.total)}) but only "
                                 f"{gib(pool.free)} of {gib(pool.total)} is free and {gib(pool.reserve)} stays "
                                 f"reserved: at most {max_safe:.2f} fits", int(frac * pool.total))
                reason = (f"{gib(pool.free)} free of {gib(pool.total)}, less the {gib(pool.reserve)} reserve, "
                          f"allows at most {max_safe:.2f}")
                adjustments.append(FitAdjustment(key=frac_key, before=frac, after=max_safe, reason=reason))
                book.lower(frac_key, max_safe, reason)
                frac = max_safe
        taken = int(frac * pool.total)
        if taken < weights:
            raise refuse(f"the weights need {gib(weights)} per device but {frac_key}={frac:g} of "
                         f"{gib(pool.total)} gives {gib(taken)}", weights)
        fit_ctx(taken - weights, f"in {frac_key}={frac:g} of {gib(pool.total)} after {gib(weights)} of weights")
        required = weights + kv(ctx)
        status: Literal["ok", "lowered", "unknown"] = "lowered" if adjustments else "ok"
        if pool.free is None:
            status = "unknown"
        msg = (f"{engine.name} takes {frac_key}={frac:g} of {gib(pool.total)} ({gib(taken)}) {where}: "
               f"{gib(weights)} of weights + {gib(kv(ctx))} of KV cache for {ctx} tokens"
               if ctx else f"{engine.name} takes {frac_key}={frac:g} of {gib(pool.total)} {where}")
        if pool.free is None:
            msg += "; free memory is unknown, so it was not checked against it"
        return _report(status, pool, required, adjustments, msg)

    if pool.free is None:
        required = weights + kv(ctx)
        if pool.total is not None and required > pool.total - pool.reserve:
            raise refuse(f"it needs {gib(required)} but the device has {gib(pool.total)} in all", required)
        return _report("unknown", pool, required, adjustments,
                       f"free memory {where} is unknown; it needs about {gib(required)}, not checked")
    budget = pool.free - pool.reserve
    if weights > budget:
        raise refuse(f"the weights need {gib(weights)} but {gib(pool.free)} is free and {gib(pool.reserve)} "
                     f"stays reserved ({gib(max(budget, 0))} usable)", weights)
    fit_ctx(budget - weights, f"of the {gib(budget)} usable after {gib(weights)} of weights")
    required = weights + kv(ctx)
    return _report("lowered" if adjustments else "ok", pool, required, adjustments,
                   f"needs {gib(required)} {where}; {gib(pool.free)} is free, {gib(pool.reserve)} stays reserved")


def _where(pool: Pool) -> str:
    if pool.device == "cpu":
        return "in host RAM"
    if pool.device == "unified":
        return "in unified memory (host RAM)"
    idx = ", ".join(map(str, pool.gpu_indexes))
    return f"on GPU {idx}" if pool.devices == 1 else f"on each of GPUs {idx}"


def _report(status: Literal["ok", "lowered", "unknown"], pool: Pool, required: int | None,
            adjustments: list[FitAdjustment], message: str) -> FitReport:
    return FitReport(status=status, device=pool.device, devices=pool.devices, gpu_indexes=pool.gpu_indexes,
                     total_bytes=pool.total, free_bytes=pool.free, reserve_bytes=pool.reserve,
                     budget_bytes=None if pool.free is None else pool.free - pool.reserve,
                     required_bytes=required, adjustments=adjustments, message=message)
