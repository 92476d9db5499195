"""Printing operation results: JSON for scripts (``-o json``) or Rich tables for people."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

SERVICE_FIELDS = ("name", "id", "model", "engine", "runtime", "state", "ready", "endpoint", "ports",
                  "replicas", "restarts", "restart_policy", "command", "message")
INSTANCE_COLUMNS = ("id", "replica", "state", "ready", "pid", "port", "exit_code", "message")


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list | dict):
        return json.dumps(v) if v else "-"
    return str(v)


def dump_json(result: Any) -> None:
    """JSON on stdout: indented for a person at a terminal, compact (and fast) for a pipe."""
    sys.stdout.write(json.dumps(result, indent=2 if sys.stdout.isatty() else None) + "\n")


def show(result: Any, output: str, table: str | None = None, columns: list[str] | None = None) -> None:
    if output == "json":
        dump_json(result)
        return
    from rich.console import Console

    console = Console()
    if not isinstance(result, dict):
        console.print(result)
        return
    if {"platform", "cpu", "memory", "gpus", "effective"} <= result.keys():
        _hardware(console, result)
        return
    if {"variant", "engine", "config", "rejected", "fit"} <= result.keys():
        _plan(console, result)
        return
    if "outcome" in result and "service" in result:
        _outcome(console, result)
        return
    if table and isinstance(result.get(table), list):
        _table(console, result[table], columns or [], empty=f"no {table}")
        return
    if "instances" in result and "state" in result:
        _service(console, result)
        return
    _kv(console, result)


def _outcome(console: Any, result: dict[str, Any]) -> None:
    svc = result["service"]
    out = result["outcome"]
    style = {"ready": "green", "failed": "red", "timeout": "yellow"}.get(out, "cyan")
    where = f" at {svc['endpoint']}" if svc.get("endpoint") else ""
    console.print(f"[{style}]{svc['name']}: {out}[/]{where}" + (f" — {result['message']}" if result["message"] else ""))
    _service(console, svc)


def _gib(n: Any) -> str:
    return "unknown" if n is None else f"{n / 2**30:.1f} GiB"


def _hardware(console: Any, hw: dict[str, Any]) -> None:
    """Detected hardware, for a person; unknown facts say so."""
    from rich.table import Table

    p, c, m, e, g = hw["platform"], hw["cpu"], hw["memory"], hw["effective"], hw["cgroup"]
    console.print(f"[bold]{p['os']}/{p['arch']}[/], Python {p['python']}")
    console.print(f"CPU: {c.get('model') or 'unknown'} — {fmt(c.get('cores_logical'))} logical / "
                  f"{fmt(c.get('cores_physical'))} physical cores, {c.get('isa_level') or ''} "
                  f"({', '.join(c.get('flags') or []) or 'no flags read'})")
    console.print(f"RAM: {_gib(m.get('total_bytes'))} total, {_gib(m.get('available_bytes'))} available")
    if g.get("version"):
        limit = _gib(g["memory_limit_bytes"]) if g.get("memory_limit_bytes") else "none"
        quota = f"{g['cpu_quota_cores']:g} cores" if g.get("cpu_quota_cores") else "none"
        console.print(f"cgroup v{g['version']}: memory limit {limit}, CPU quota {quota}")
    console.print(f"usable: {fmt(e.get('cpu_cores'))} cores, {_gib(e.get('memory_available_bytes'))} memory")
    for d in hw.get("disks") or []:
        console.print(f"disk {d['path']}: {_gib(d.get('free_bytes'))} free of {_gib(d.get('total_bytes'))}")
    if hw["gpus"]:
        t = Table("#", "vendor", "name", "arch", "memory", "free", "unified", "driver")
        for x in hw["gpus"]:
            t.add_row(fmt(x.get("index")), x.get("vendor") or "-", x.get("name") or "-", x.get("arch") or "-",
                      _gib(x.get("memory_total_bytes")), _gib(x.get("memory_free_bytes")),
                      fmt(x.get("unified_memory")), x.get("driver_version") or "-")
        console.print(t)
    else:
        console.print("GPUs: none found")
    for note in hw.get("notes") or []:
        console.print(f"  note: {note}")


def _plan(console: Any, plan: dict[str, Any]) -> None:
    """A resolved plan, for a person: what runs, with every value's provenance and every rejection."""
    from rich.table import Table

    console.print(f"[bold]{plan['model']}[/] ({plan['model_type']}) → variant [bold]{plan['variant']}[/] "
                  f"on [bold]{plan['engine']}[/] ({plan['device']}, {plan['format']})")
    console.print(f"  why: {plan['reason']}")
    fit = plan.get("fit") or {}
    if fit.get("message"):
        console.print(f"  fit: {fit['status']} — {fit['message']}")
    for adj in fit.get("adjustments") or []:
        console.print(f"  lowered: {adj}")
    present = "present" if plan.get("model_path_exists") else f"missing (source {plan.get('source_spec')})"
    console.print(f"  weights: {plan['model_path']} — {present}")
    console.print(f"  command: {plan['command']}")
    t = Table("config", "value", "from", "why", title=None)
    for key, c in (plan.get("config") or {}).items():
        over = ", ".join(f"{o['source']}={fmt(o['value'])}" for o in c.get("overrides") or [])
        why = c.get("reason") or ""
        if over:
            why = f"{why} (over {over})".strip()
        t.add_row(key, fmt(c.get("value")), c.get("source") or "-", _short(why, 60))
    console.print(t)
    if plan.get("rejected"):
        r = Table("rejected variant", "engine", "why not")
        for rej in plan["rejected"]:
            r.add_row(rej["variant"], rej["engine"], rej["reason"])
        console.print(r)
    for note in plan.get("notes") or []:
        console.print(f"  note: {note}")


def _service(console: Any, svc: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(show_header=False, box=None, pad_edge=False)
    for k in SERVICE_FIELDS:
        if k in svc:
            t.add_row(f"[bold]{k}[/]", fmt(svc[k]))
    console.print(t)
    if svc.get("instances"):
        cols = list(INSTANCE_COLUMNS)
        if any(i.get("node") for i in svc["instances"]):  # on a cluster: which node (its address) each runs on
            cols.insert(cols.index("pid"), "host")
        _table(console, svc["instances"], cols, empty="")


# How a table fits a narrow terminal (80 columns: a pipe, a small window). A name is never cut: the first column
# and every identifying one (NAMES) keep their whole width, and columns are left out by priority, least useful
# first, until the table fits; free text (FREE) wraps inside its column instead. What was left out is said below
# the table (`-o json` shows everything).
NAMES = {"name", "id", "model", "service", "key", "kind", "file"}
FREE = {"message", "detail", "description", "reason", "summary", "source", "path", "command", "text", "error"}
FREE_MIN = 24  # a free-text column narrower than this is left out rather than wrapped to shreds
PRIORITY = ("name", "state", "ready", "model", "kind", "type", "outcome", "fits", "endpoint", "engine", "format",
            "size_bytes", "active", "scope", "present", "restarts", "message", "detail", "reason")


def _priority(col: str, position: int) -> tuple[int, int]:
    """Lower is kept longer; columns the list does not name rank after those it names, in their order, and an
    ``id`` (long, and in ``-o json``) goes first."""
    if col == "id":
        return (len(PRIORITY) + 1, position)
    return (PRIORITY.index(col), position) if col in PRIORITY else (len(PRIORITY), position)


def fit_columns(columns: list[str], cells: dict[str, list[str]], width: int) -> tuple[list[str], list[str], int]:
    """(the columns kept, in their order; those left out; the width the kept ones need), for a table of
    ``cells`` (column -> its formatted cells) in ``width`` terminal columns."""
    from rich.cells import cell_len

    def natural(c: str) -> int:
        return max([cell_len(c), *(cell_len(x) for x in cells[c])])

    def need(c: str) -> int:
        return min(natural(c), FREE_MIN) if c in FREE else natural(c)

    def total(cs: list[str]) -> int:  # rich's default box: "│ a │ b │"
        return sum(need(c) for c in cs) + 3 * len(cs) + 1

    keep = list(columns)
    dropped: list[str] = []
    while total(keep) > width and len(keep) > 1:
        victim = max(keep[1:], key=lambda c: _priority(c, columns.index(c)))
        keep.remove(victim)
        dropped.append(victim)
    return keep, dropped, total(keep)


def _table(console: Any, rows: list[dict[str, Any]], columns: list[str], empty: str) -> None:
    from rich.table import Column, Table

    if not rows:
        if empty:
            console.print(f"({empty})")
        return
    cols = columns or list(rows[0].keys())
    cells = {c: [fmt(r.get(c)) for r in rows] for c in cols}
    keep, dropped, needed = fit_columns(cols, cells, console.width)
    whole = {keep[0], *NAMES}
    t = Table(*(Column(c, no_wrap=c not in FREE, overflow="fold",
                       min_width=max(len(c), *(len(x) for x in cells[c])) if c in whole else None) for c in keep))
    for i in range(len(rows)):
        t.add_row(*(cells[c][i] for c in keep))
    console.print(t, width=max(console.width, needed), crop=False)
    if dropped:
        console.print(f"[dim](not shown: {', '.join(dropped)}; -o json has every field)[/]", highlight=False)


def _short(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _kv(console: Any, result: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(show_header=False, box=None, pad_edge=False)
    for k, v in result.items():
        if k.endswith("_at") and isinstance(v, float):
            v = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v))
        t.add_row(f"[bold]{k}[/]", fmt(v))
    console.print(t)
