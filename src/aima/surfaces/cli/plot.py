"""``aima bench plot``: the curves of stored results — throughput and latency against concurrency (chat),
batch size (embeddings) or audio length (speech), one line per result (and door) — drawn twice from the same
data: in the terminal with braille dots (2 x 4 per character), and as a PNG with matplotlib's Agg backend.

matplotlib is the optional ``plot`` extra (``pip install 'aima[plot]'``; ``make install`` puts it in): it draws
real axes, ticks, legends and text, which a hand-written PNG writer would have to re-invent with a bitmap
font; it is imported only here, only when a PNG is asked for, so no other command pays for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aima.errors import InvalidInput

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
TERM = ("cyan", "red", "green", "yellow", "magenta", "blue", "bright_white", "bright_cyan")
# per kind: the x axis preferred when it varies, then (figure key, chart title, unit scale, unit) per chart
KIND_CHARTS: dict[str, tuple[str, tuple[tuple[str, str, float, str], ...]]] = {
    "llm": ("concurrency", (("output_tokens_per_s", "output tokens/s", 1.0, "tok/s"),
                            ("ttft_p50_s", "time to first token p50", 1000.0, "ms"))),
    "embedding": ("batch", (("embeddings_per_s", "embeddings/s", 1.0, "emb/s"),
                            ("latency_p50_s", "latency p50", 1000.0, "ms"))),
    "asr": ("audio_s", (("rtf_p50", "real-time factor p50", 1.0, "RTF"),
                        ("latency_p50_s", "latency p50", 1000.0, "ms"))),
}
KIND_CHARTS["tts"] = KIND_CHARTS["asr"]
X_LABEL = {"concurrency": "concurrency (requests in flight)", "batch": "batch size (texts per request)",
           "audio_s": "audio length (s)"}


@dataclass
class Series:
    label: str
    xs: list[float]
    ys: list[float]


@dataclass
class Chart:
    title: str
    unit: str
    x: str
    series: list[Series] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, "unit": self.unit, "x": self.x,
                "series": [{"label": s.label, "x": s.xs, "y": s.ys} for s in self.series]}


def charts(results: list[dict[str, Any]]) -> list[Chart]:
    """Two charts (throughput, latency) over the results, which must be of one kind."""
    kinds = {r["kind"] for r in results}
    if len(kinds) != 1:
        which = ", ".join(f"{r['id']} ({r['kind']})" for r in results)
        raise InvalidInput(f"results {which} measure different kinds of model; plot results of one kind", field="ids")
    kind = kinds.pop()
    prefer, figs = KIND_CHARTS[kind]
    levels = [lv for r in results for lv in r["levels"]]
    x = prefer if len({lv.get(prefer) for lv in levels}) > 1 else "concurrency"
    out = [Chart(title, unit, x) for _key, title, _scale, unit in figs]
    for r in results:
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for lv in r["levels"]:
            rest = tuple((k, lv.get(k)) for k in ("concurrency", "batch", "audio_s")
                         if k != x and lv.get(k) is not None)
            groups.setdefault((lv["door"], rest), []).append(lv)
        doors = {lv["door"] for lv in r["levels"]}
        for (door, rest), lvs in groups.items():
            name = f"#{r['id']} {r.get('label') or r['model']}"
            if len(doors) > 1:
                name += f" {door}"
            for k, v in rest:
                if len({lv.get(k) for lv in r["levels"]}) > 1:
                    name += f" {'c' if k == 'concurrency' else k}={v:g}"
            lvs = sorted((lv for lv in lvs if lv.get(x) is not None), key=lambda lv: lv[x])
            for chart, (key, _t, scale, _u) in zip(out, figs, strict=True):
                pts = [(float(lv[x]), float(lv["figures"][key]) * scale) for lv in lvs
                       if lv["figures"].get(key) is not None]
                if pts:
                    chart.series.append(Series(name, [p[0] for p in pts], [p[1] for p in pts]))
    return out


# ----------------------------------------------------------------------------- the terminal
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))


def _ticks(values: list[float]) -> list[float]:
    return sorted(set(values))


def _xpos(xs: list[float], ticks: list[float], width: int) -> list[int]:
    """Ticks evenly spaced (concurrency 1, 4, 16 reads best that way); values in between placed by rank."""
    if len(ticks) == 1:
        return [width // 2 for _ in xs]
    return [round(ticks.index(x) * (width - 1) / (len(ticks) - 1)) for x in xs]


def _num(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.3g}"


def terminal(cs: list[Chart], width: int = 64, height: int = 10) -> str:
    from io import StringIO

    from rich.console import Console
    from rich.text import Text

    buf = StringIO()
    console = Console(file=buf, force_terminal=True, width=width + 20, color_system="standard")
    for chart in cs:
        console.print(Text(f"{chart.title} ({chart.unit}) vs {X_LABEL[chart.x]}", style="bold"))
        if not chart.series:
            console.print("  (no figures)")
            continue
        dots_w, dots_h = width * 2, height * 4
        ticks = _ticks([x for s in chart.series for x in s.xs])
        top = max(y for s in chart.series for y in s.ys) * 1.05 or 1.0
        cells: dict[tuple[int, int], tuple[int, int]] = {}  # (row, col) -> (bits, series index)
        for si, s in enumerate(chart.series):
            px = _xpos(s.xs, ticks, dots_w)
            py = [dots_h - 1 - round(y / top * (dots_h - 1)) for y in s.ys]
            pts = list(zip(px, py, strict=True))
            path = [pts[0]] if len(pts) == 1 else []
            for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
                steps = max(abs(x1 - x0), abs(y1 - y0), 1)
                path += [(round(x0 + (x1 - x0) * t / steps), round(y0 + (y1 - y0) * t / steps))
                         for t in range(steps + 1)]
            for x, y in path:
                x, y = min(max(x, 0), dots_w - 1), min(max(y, 0), dots_h - 1)
                key = (y // 4, x // 2)
                bits = cells.get(key, (0, si))[0] | _DOTS[y % 4][x % 2]
                cells[key] = (bits, si)
        label_w = max(len(_num(top)), len(_num(0.0)))
        for row in range(height):
            y_here = top * (1 - row / (height - 1)) if height > 1 else top
            label = _num(y_here) if row in (0, height // 2, height - 1) else ""
            line = Text(f"{label:>{label_w}} ┤" if label else " " * label_w + " │")
            for col in range(width):
                bits, si = cells.get((row, col), (0, 0))
                line.append(chr(0x2800 + bits) if bits else " ", style=TERM[si % len(TERM)] if bits else None)
            console.print(line)
        axis = [" "] * width
        marks = _xpos(ticks, ticks, dots_w)
        for t, pos in zip(ticks, marks, strict=True):
            text = _num(t)
            start = min(max(pos // 2 - len(text) // 2, 0), max(width - len(text), 0))
            axis[start:start + len(text)] = list(text)
        console.print(" " * label_w + " └" + "─" * width)
        console.print(" " * (label_w + 2) + "".join(axis))
        legend = Text("  ")
        for si, s in enumerate(chart.series):
            legend.append("━━ ", style=TERM[si % len(TERM)])
            legend.append(s.label + "   ")
        console.print(legend)
        console.print()
    return buf.getvalue().rstrip("\n")


# ----------------------------------------------------------------------------- PNG
def png(cs: list[Chart], path: str) -> str:
    """The charts side by side in one PNG at ``path`` (matplotlib, Agg backend); returns the path."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise InvalidInput("writing a PNG needs matplotlib: pip install 'aima[plot]' (the terminal plot needs "
                           "nothing)", field="out") from None
    import os

    fig = Figure(figsize=(6.4 * len(cs), 4.6), dpi=110)
    FigureCanvasAgg(fig)
    for i, chart in enumerate(cs):
        ax = fig.add_subplot(1, len(cs), i + 1)
        xs = sorted({x for s in chart.series for x in s.xs})
        if xs and min(xs) > 0 and max(xs) / min(xs) >= 8:
            ax.set_xscale("log", base=2)
        for si, s in enumerate(chart.series):
            ax.plot(s.xs, s.ys, marker="o", color=COLORS[si % len(COLORS)], label=s.label)
        if xs:
            ax.set_xticks(xs)
            ax.set_xticklabels([_num(x) for x in xs])
        ax.set_ylim(bottom=0)
        ax.set_title(chart.title)
        ax.set_xlabel(X_LABEL[chart.x])
        ax.set_ylabel(chart.unit)
        ax.grid(True, alpha=0.3)
        if chart.series:
            ax.legend(fontsize="small")
    fig.tight_layout()
    out = os.path.abspath(os.path.expanduser(path))
    try:
        fig.savefig(out, format="png")
    except OSError as e:
        raise InvalidInput(f"cannot write {path}: {e.strerror or e}", field="out") from None
    return out
