"""Memory budgets per device for load on demand: ``AIMA_MEMORY_BUDGET`` (``cpu=8GiB,gpu0=20GiB``), else
each device's total memory as detected."""

from __future__ import annotations

import logging

from aima.config import Settings

log = logging.getLogger("aima.reconciler")


def memory_budgets(settings: Settings) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        from aima.catalog.fit import gpu_total, host_total
        from aima.hardware import detect

        facts = detect(settings.home)
        total = host_total(facts)
        if total:
            out["cpu"] = total
        for g in facts.gpus:
            t = gpu_total(g, facts)
            if t:
                out[f"gpu{g.index}"] = t
    except Exception as e:  # noqa: BLE001 - no detection: only the configured budgets apply
        log.info("memory budgets: hardware not detected (%s)", e)
    if settings.memory_budget:
        from aima.domain.units import parse_bytes

        for part in settings.memory_budget.split(","):
            dev, _, size = part.partition("=")
            if dev.strip() and size.strip():
                try:
                    out[dev.strip()] = parse_bytes(size.strip())
                except ValueError:
                    log.warning("AIMA_MEMORY_BUDGET: %r is not a size like 8GiB; ignored", part)
    return out
