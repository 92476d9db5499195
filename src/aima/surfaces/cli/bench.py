"""``aima bench``: measure a served model (``aima bench MODEL ...``, the group's default command), and read,
compare, plot and sweep the stored results (``aima bench list|show|compare|plot|sweep``).

Each command calls the daemon's ``bench.*`` operation; a run draws a progress bar on stderr from the
daemon's ``bench.progress`` events (as ``model pull`` does), then prints a table per level (``-o json``: the
stored result). Plots are drawn here, on the CLI's side: the same curves in the terminal (braille dots) and,
with ``-o FILE.png``, as a PNG (``plot.py``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any  # noqa: UP035 - Typer reads these annotations at runtime

import typer
from typer.core import TyperGroup

EVENT = "bench.progress"
SPEECH = ("asr", "tts")


class _DefaultRun(TyperGroup):
    """``aima bench MODEL ...`` is ``aima bench run MODEL ...``: a first word that is no subcommand runs a bench."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().resolve_command(ctx, args)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def _numbers(text: str | None, option: str, cast: Callable[[str], Any], m: Any) -> list[Any] | None:
    if text is None:
        return None
    try:
        return [cast(x.strip()) for x in text.split(",") if x.strip()] or None
    except ValueError:
        m.fail(f"{option} expects numbers separated by commas, like {'1,4,16' if cast is int else '5,15'}; "
               f"got {text!r}", 2)
    return None


# ----------------------------------------------------------------------------- progress
def call_with_bench_progress(url: str, api_key: str | None, op: str, data: dict[str, Any], request: str) -> Any:
    """Call ``op`` (bench.run or bench.sweep), drawing a bar from its ``bench.progress`` events on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from aima.surfaces.cli.client import Client
    from aima.surfaces.cli.progress import Follower

    bar = Progress(TextColumn("[bold]bench {task.fields[model]}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[unit]}"), TimeElapsedColumn(), TextColumn("{task.description}"),
                   console=Console(stderr=True), transient=False)
    task = bar.add_task("starting", total=None, model=request, unit="")
    lock = threading.Lock()
    shown = False  # the bar appears with the first progress event: bad input is one line, no bar

    def on_event(ev: dict[str, Any]) -> None:
        nonlocal shown
        d = ev.get("data") or {}
        if ev.get("kind") != EVENT or d.get("request") != request:
            return
        with lock:
            if not shown:
                bar.start()
                shown = True
            bar.update(task, completed=int(d.get("done") or 0), total=int(d.get("total") or 0) or None,
                       description=str(d.get("level") or ""), unit=str(d.get("unit") or ""))

    follower = Follower(url, api_key, on_event)
    follower.start()
    follower.ready.wait(2.0)  # subscribed before the bench starts, so no event is missed
    client = Client(url, api_key)
    try:
        result = client.call(op, data)
        with lock:
            total = bar.tasks[0].total
            if shown and total:
                bar.update(task, completed=total, description="done")
        return result
    finally:
        follower.stop()
        with lock:
            if shown:
                bar.stop()
        client.close()


# ----------------------------------------------------------------------------- tables
def _fmt(v: Any, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "s":
        return f"{v * 1000:.1f} ms" if v < 0.01 else f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


COLUMNS = {
    "llm": (("ttft_p50_s", "TTFT p50", "s"), ("ttft_p99_s", "TTFT p99", "s"), ("tpot_p50_s", "TPOT p50", "s"),
            ("output_tokens_per_s", "out tok/s", ""), ("requests_per_s", "req/s", ""),
            ("latency_p50_s", "latency p50", "s"), ("latency_p99_s", "p99", "s")),
    "embedding": (("embeddings_per_s", "emb/s", ""), ("latency_p50_s", "latency p50", "s"),
                  ("latency_p99_s", "p99", "s"), ("requests_per_s", "req/s", ""),
                  ("prompt_tokens_mean", "tok/text", "")),
    "speech": (("rtf_p50", "RTF p50", ""), ("rtf_p99", "RTF p99", ""), ("latency_p50_s", "latency p50", "s"),
               ("latency_p99_s", "p99", "s"), ("audio_s_per_s", "audio s/s", ""), ("audio_s_mean", "audio s", "")),
}


def show_result(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=170)
    kind = r["kind"]
    cfg = " ".join(f"{k}={v}" for k, v in (r.get("config") or {}).items()) or "-"
    hw = r.get("hardware") or {}
    version = r.get("engine_version") or "version unknown"
    console.print(f"[bold]result {r['id']}[/]: {escape(r['model'])} ({kind}) · service "
                  f"{escape(r.get('service') or '-')} · {escape(r.get('engine') or '-')} ({escape(version)})"
                  f" · {r.get('time')}", soft_wrap=True)
    console.print(f"  config {escape(cfg)} · {escape(str(hw.get('tag') or '-'))}"
                  + (f" ({hw['cores']} cores)" if hw.get("cores") else "")
                  + f" · aima {r.get('aima_version')}" + (f" · {escape(r['label'])}" if r.get("label") else ""),
                  soft_wrap=True)
    cols = COLUMNS["speech" if kind in SPEECH else kind]
    t = Table("door", "c")
    if kind == "embedding":
        t.add_column("batch")
    if kind in SPEECH:
        t.add_column("audio")
    for name in ("done", "errors"):
        t.add_column(name)
    for _k, label, _u in cols:
        t.add_column(label, justify="right")
    for lv in r["levels"]:
        row = [lv["door"], str(lv["concurrency"])]
        if kind == "embedding":
            row.append(str(lv.get("batch")))
        if kind in SPEECH:
            row.append(f"{lv['audio_s']:g} s" if lv.get("audio_s") else "-")
        row += [str(lv["requests"]), f"[red]{lv['errors']}[/]" if lv["errors"] else "0"]
        row += [_fmt(lv["figures"].get(k), u) for k, _l, u in cols]
        t.add_row(*row)
    console.print(t)
    errors = [f"{lv['door']} c={lv['concurrency']}: {lv['error']}" for lv in r["levels"] if lv.get("error")]
    for line in [*(r.get("notes") or []), *errors[:3]]:
        console.print(f"  {escape(line)}", soft_wrap=True)


def show_list(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=170)
    if not rows:
        console.print("(no results: `aima bench MODEL` measures a served model)")
        return
    t = Table("id", "time", "model", "kind", "engine", "label", "levels", "headline")
    for r in rows:
        t.add_row(str(r["id"]), r["time"], escape(r["model"]), r["kind"], escape(r.get("engine") or "-"),
                  escape(r.get("label") or "-"), r["levels"], escape(r.get("headline") or "-"))
    console.print(t)


def show_compare(out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=170)
    a, b = out["a"], out["b"]
    console.print(f"[bold]A[/] result {a['id']}: {escape(a['model'])} {escape(a.get('label') or '')} ({a['time']})\n"
                  f"[bold]B[/] result {b['id']}: {escape(b['model'])} {escape(b.get('label') or '')} ({b['time']})")
    for k, (va, vb) in out["differences"].items():
        console.print(f"  {k}: {escape(str(va))} → {escape(str(vb))}", soft_wrap=True)
    t = Table("level", "figure", "A", "B", "B/A", "better")
    for row in out["ratios"]:
        level = f"{row['door']} c={row['concurrency']}" + (f" batch {row['batch']}" if row.get("batch") else "") + \
            (f" {row['audio_s']:g} s" if row.get("audio_s") else "")
        style = {"a": "red", "b": "green"}.get(row.get("better") or "", "")
        ratio = f"x{row['ratio']:.3f}" if row.get("ratio") is not None else "-"
        t.add_row(level, row["label"], _fmt(row["a"], row["unit"]), _fmt(row["b"], row["unit"]),
                  f"[{style}]{ratio}[/]" if style else ratio, row.get("better") or "")
    console.print(t)


def show_sweep(out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    t = Table("config", "result", f"{out['objective']} ({out['better']} is better)", "error")
    best = out.get("best") or {}
    for row in out["rows"]:
        cfg = " ".join(f"{k}={v}" for k, v in row["config"].items())
        mark = " [green]← best[/]" if best and row.get("result") == best.get("result") else ""
        t.add_row(escape(cfg) + mark, str(row.get("result") or "-"),
                  "-" if row.get("value") is None else f"{row['value']:.4g}", escape(row.get("error") or ""))
    console.print(t)
    if out.get("applied"):
        console.print(f"applied: {escape(out['applied'])} (`aima resolve {escape(out['model'])}` shows the values "
                      f"with the provenance benchmark)", soft_wrap=True)


# ----------------------------------------------------------------------------- commands
def register(app: typer.Typer, m: Any) -> None:
    """The ``bench`` group on ``app``; ``m`` is the CLI's main module (its ``guarded``, ``call``, ``Opts``...)."""
    bench = typer.Typer(cls=_DefaultRun, no_args_is_help=True,
                        help="Benchmark a served model (aima bench MODEL ...), and read, compare, plot and sweep the "
                             "results.")
    app.add_typer(bench, name="bench")

    def load_options(data: dict[str, Any], *, concurrency: str | None, requests: int | None,
                     duration: float | None, prompt_tokens: int | None, output_tokens: int | None,
                     dataset: str | None, batch: str | None, audio_seconds: str | None, voice: str | None,
                     warmup: int | None) -> None:
        data["concurrency"] = _numbers(concurrency, "--concurrency", int, m) or [1]
        for k, v in (("requests", requests), ("duration_s", duration), ("prompt_tokens", prompt_tokens),
                     ("output_tokens", output_tokens), ("voice", voice), ("warmup", warmup),
                     ("batch", _numbers(batch, "--batch", int, m)),
                     ("audio_s", _numbers(audio_seconds, "--audio-seconds", float, m))):
            if v is not None:
                data[k] = v
        if dataset is not None:
            data["dataset"] = os.path.abspath(os.path.expanduser(dataset))  # the daemon reads it

    def progress_call(op: str, data: dict[str, Any]) -> Any:
        return call_with_bench_progress(m.daemon_url(), m.api_key(m.daemon_url()), op, data, data["model"])

    @bench.command("run", help="Benchmark MODEL (a served model's name or alias, or a service name) by its kind.")
    @m.guarded
    def run_cmd(
        model: str = typer.Argument(..., help="a served model's name or alias, or a service name"),
        concurrency: str | None = typer.Option(None, "--concurrency", "-c",
                                               help="requests in flight, a level each: 1,4,16 (default 1)"),
        requests: int | None = typer.Option(None, "--requests", "-n",
                                            help="requests per level (default 2 x concurrency, at least 8)"),
        duration: float | None = typer.Option(None, "--duration", help="seconds per level instead of --requests"),
        prompt_tokens: int | None = typer.Option(None, "--prompt-tokens",
                                                 help="tokens per prompt (chat, default 128) or text (embeddings, 32)"),
        output_tokens: int | None = typer.Option(None, "--output-tokens", help="tokens per answer (chat, default 64)"),
        dataset: str | None = typer.Option(None, "--dataset",
                                           help="prompts or texts (.txt, .jsonl, .json); speech to text: audio "
                                                "file(s)"),
        batch: str | None = typer.Option(None, "--batch", help="embeddings: texts per request, a level each (1,8,32)"),
        audio_seconds: str | None = typer.Option(None, "--audio-seconds",
                                                 help="speech: seconds of audio, a level each (5,15)"),
        voice: str | None = typer.Option(None, "--voice",
                                         help="speech to text: the text-to-speech model that makes the audio"),
        direct: bool = typer.Option(False, "--direct",
                                    help="also hit the engine itself, beside the gateway, in the same run"),
        warmup: int | None = typer.Option(None, "--warmup", help="requests before each level, not counted (1)"),
        label: str | None = typer.Option(None, "--label", help="a name for the result"),
    ) -> None:
        data: dict[str, Any] = {"model": model, "direct": direct}
        load_options(data, concurrency=concurrency, requests=requests, duration=duration,
                     prompt_tokens=prompt_tokens, output_tokens=output_tokens, dataset=dataset, batch=batch,
                     audio_seconds=audio_seconds, voice=voice, warmup=warmup)
        if label is not None:
            data["label"] = label
        result = progress_call("bench.run", data)
        if m.Opts.output == "json":
            m._print({"table": None}, result)
        else:
            show_result(result)

    @bench.command("list", help="The stored benchmark results, newest first.")
    @m.guarded
    def list_cmd(
        model: str | None = typer.Option(None, "--model", help="only this model's results"),
        kind: str | None = typer.Option(None, "--kind", help="only this kind: llm, embedding, asr or tts"),
        sweep: str | None = typer.Option(None, "--sweep", help="only this sweep's results"),
        limit: int = typer.Option(20, "--limit", "-n", help="the newest N"),
    ) -> None:
        data: dict[str, Any] = {"limit": limit}
        for k, v in (("model", model), ("kind", kind), ("sweep", sweep)):
            if v is not None:
                data[k] = v
        out = m.call("bench.list", data)
        if m.Opts.output == "json":
            m._print({"table": None}, out)
        else:
            show_list(out["results"])

    @bench.command("show", help="One stored result: every level's figures, and what it ran with.")
    @m.guarded
    def show_cmd(result_id: int = typer.Argument(..., metavar="ID", help="the result's id (aima bench list)")) -> None:
        result = m.call("bench.show", {"id": result_id})
        if m.Opts.output == "json":
            m._print({"table": None}, result)
        else:
            show_result(result)

    @bench.command("compare", help="Compare result B with result A, figure by figure (B/A), and what differs.")
    @m.guarded
    def compare_cmd(a: int = typer.Argument(..., metavar="A", help="the baseline result"),
                    b: int = typer.Argument(..., metavar="B", help="the result compared with it")) -> None:
        out = m.call("bench.compare", {"a": a, "b": b})
        if m.Opts.output == "json":
            m._print({"table": None}, out)
        else:
            show_compare(out)

    @bench.command("plot", help="Throughput and latency curves of results (one line each) in the terminal, and "
                                "with -o FILE.png as a picture.")
    @m.guarded(short_o=False)
    def plot_cmd(
        ids: list[int] = typer.Argument(..., metavar="ID...", help="results to draw"),
        out: str | None = typer.Option(None, "--out", "-o",
                                       help="write a PNG there too (`-o json` or `-o table` chooses the output "
                                            "format, as for every command)"),
        width: int = typer.Option(64, "--width", help="terminal plot width in characters"),
    ) -> None:
        from aima.surfaces.cli import plot

        if out in ("json", "table"):
            m.Opts.output, out = out, None
        if out is not None and not out.lower().endswith(".png"):
            m.fail(f"-o {out}: the picture is a PNG; give a file name ending in .png", 2)
        results = [m.call("bench.show", {"id": i}) for i in dict.fromkeys(ids)]
        charts = plot.charts(results)
        written = None
        if out is not None:
            written = plot.png(charts, out)
        if m.Opts.output == "json":
            m._print({"table": None}, {"charts": [c.as_dict() for c in charts], "png": written})
            return
        print(plot.terminal(charts, width=width))
        if written:
            print(f"wrote {written}")

    @bench.command("sweep", help="Benchmark every combination of config values (--config n_threads=1,2 ...), each "
                                 "as a service of its own; --apply writes the best as a catalog overlay.")
    @m.guarded
    def sweep_cmd(
        model: str = typer.Argument(..., help="a catalog model name or alias"),
        config: list[str] = typer.Option(..., "--config", help="key=v1,v2,... (repeatable): the values to try"),
        apply: bool = typer.Option(False, "--apply", help="write the best as a catalog overlay (provenance benchmark)"),
        objective: str | None = typer.Option(None, "--objective",
                                             help="the figure that decides (default: output_tokens_per_s, "
                                                  "embeddings_per_s, rtf_p50)"),
        engine: str | None = typer.Option(None, "--engine", help="catalog engine (default: the best here)"),
        timeout: float | None = typer.Option(None, "--timeout", help="seconds to wait for each service"),
        concurrency: str | None = typer.Option(None, "--concurrency", "-c", help="levels: 1,4,16 (default 1)"),
        requests: int | None = typer.Option(None, "--requests", "-n", help="requests per level"),
        duration: float | None = typer.Option(None, "--duration", help="seconds per level instead of --requests"),
        prompt_tokens: int | None = typer.Option(None, "--prompt-tokens", help="tokens per prompt or text"),
        output_tokens: int | None = typer.Option(None, "--output-tokens", help="tokens per answer (chat)"),
        dataset: str | None = typer.Option(None, "--dataset", help="prompts, texts or audio"),
        batch: str | None = typer.Option(None, "--batch", help="embeddings: texts per request (1,8,32)"),
        audio_seconds: str | None = typer.Option(None, "--audio-seconds", help="speech: seconds of audio (5,15)"),
        voice: str | None = typer.Option(None, "--voice", help="speech to text: the model that makes the audio"),
        warmup: int | None = typer.Option(None, "--warmup", help="requests before each level, not counted"),
    ) -> None:
        data: dict[str, Any] = {"model": model, "config": m._pairs(config, "config"), "apply": apply}
        for k, v in (("objective", objective), ("engine", engine), ("timeout_s", timeout)):
            if v is not None:
                data[k] = v
        load_options(data, concurrency=concurrency, requests=requests, duration=duration,
                     prompt_tokens=prompt_tokens, output_tokens=output_tokens, dataset=dataset, batch=batch,
                     audio_seconds=audio_seconds, voice=voice, warmup=warmup)
        out = progress_call("bench.sweep", data)
        if m.Opts.output == "json":
            m._print({"table": None}, out)
        else:
            show_sweep(out)
        if out.get("best") is None:
            m.fail("no combination could be measured: " + "; ".join(
                f"{' '.join(f'{k}={v}' for k, v in r['config'].items())}: {r.get('error')}" for r in out["rows"]), 8)

