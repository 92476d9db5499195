"""``aima up``'s live view: one line per model of the stack, drawn on stderr from the daemon's events
while ``stack.up`` runs — resolve, pull (bytes), convert, start, ready, live check — then the result.

The stack itself is one blocking request (``POST /api/v1/ops/stack.up``); a thread follows
``GET /api/v1/events`` meanwhile (see ``progress.Follower``), so ``-o json`` output stays clean.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

STACK_EVENT = "stack.progress"
PULL_EVENT = "model.pull.progress"
CONVERT_EVENT = "model.convert.started"


def _mb(n: Any) -> str:
    return f"{int(n or 0) / 1e6:.1f}"


def final_line(row: dict[str, Any]) -> str:
    """One service's last word: outcome, check, figure (Rich markup)."""
    if row.get("outcome") != "ready":
        return f"[red]✗ {row.get('outcome')}[/]: {row.get('saw') or row.get('message') or ''}"
    check = row.get("check")
    style = {"passed": "green", "failed": "red"}.get(str(check), "yellow")
    figure = f" · {row['figure']}" if row.get("figure") else ""
    mark = "[red]✗[/]" if check == "failed" else "[green]✓[/]"
    return f"{mark} ready · [{style}]check {check}[/]{figure}"


def up_with_progress(url: str, api_key: str | None, data: dict[str, Any], *, console: Any = None,
                     on_event: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """Call ``stack.up`` on the daemon, drawing a line per model from its events; returns the result
    (errors are raised as the CLI client raises them). ``on_event`` also receives each event."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn
    from rich.table import Column

    from aima.surfaces.cli.client import Client
    from aima.surfaces.cli.progress import Follower

    console = console or Console(stderr=True)
    bar = Progress(SpinnerColumn(finished_text=" "),
                   TextColumn("[bold]{task.fields[model]}", table_column=Column(no_wrap=True)),
                   TextColumn("{task.description}", table_column=Column(overflow="fold")),
                   console=console, transient=False)
    tasks: dict[str, Any] = {}
    lock = threading.Lock()

    def task(model: str) -> Any:
        if model not in tasks:
            tasks[model] = bar.add_task("waiting", total=None, model=model)
        return tasks[model]

    def on_ev(ev: dict[str, Any]) -> None:
        kind, d = ev.get("kind"), ev.get("data") or {}
        if kind not in (STACK_EVENT, PULL_EVENT, CONVERT_EVENT):
            return
        if on_event is not None:
            on_event(ev)
        with lock:
            if kind == STACK_EVENT and d.get("model"):
                msg = str(ev.get("message") or "")
                bar.update(task(d["model"]), description=msg.removeprefix(f"{d['model']}: "))
            elif kind == PULL_EVENT and d.get("request") in tasks:
                total = f"/{_mb(d.get('total'))}" if d.get("total") else ""
                bar.update(tasks[d["request"]], description=f"pulling {_mb(d.get('done'))}{total} MB")
            elif kind == CONVERT_EVENT and d.get("request") in tasks:
                bar.update(tasks[d["request"]], description=f"converting with {d.get('tool')}")

    follower = Follower(url, api_key, on_ev)
    follower.start()
    follower.ready.wait(2.0)  # subscribed before the stack starts, so no event is missed
    client = Client(url, api_key)
    try:
        with bar:
            result = client.call("stack.up", data)
            with lock:
                for row in result.get("services", []) if isinstance(result, dict) else []:
                    bar.update(task(row.get("requested") or row["model"]), description=final_line(row),
                               total=1, completed=1)
        return result
    finally:
        follower.stop()
        client.close()


def show_result(result: dict[str, Any]) -> None:
    """The stack as a table on stdout — model, engine, endpoint, state, check, figure — then what each
    check saw, one line per service (the table stays narrow enough to read)."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a pipe or a file: no terminal to wrap for
    t = Table("model", "engine", "endpoint", "state", "check", "figure", box=box.SIMPLE_HEAD)
    for r in result.get("services", []):
        style = {"passed": "green", "failed": "red"}.get(r.get("check"), "yellow")
        state = r.get("state") or "-"
        t.add_row(escape(r["model"]), escape(r.get("engine") or "-"), r.get("endpoint") or "-",
                  state if r.get("outcome") == "ready" else f"[red]{escape(state)}[/]",
                  f"[{style}]{r.get('check')}[/]", r.get("figure") or "-")
    console.print(t)
    for r in result.get("services", []):
        if r.get("saw"):
            console.print(f"  [bold]{escape(r['model'])}[/]: {escape(r['saw'])}", soft_wrap=True)
