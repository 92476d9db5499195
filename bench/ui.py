"""Web page benchmark: the dashboard's first paint on loopback and the bytes it transfers, each beside a baseline
measured in the same run, in the same browser (Debian's chromium driven by Playwright, as the page's tests do).

Run it with the project's interpreter (``.venv/bin/python bench/ui.py``). It starts its own daemon with a fresh
temporary ``AIMA_HOME`` on 127.0.0.1, with ``--services`` echo services of which ``--running`` run (the
dashboard then has a realistic list to draw), opens the page ``--loads`` times in a fresh browser context each
(a cold cache: every file is fetched), then as many times again in one context (a warm cache: the files are
revalidated by ETag and answered 304), and prints medians. Never asserts; exits 0 when it could measure.

Figures (targets from the web page issue):
  1. first paint of /ui/ (first-contentful-paint)      [< 300 ms]  vs first paint of /health (a page of one line)
  2. the service list drawn (a mark the page sets)     [no target] vs the same
  3. bytes transferred until then, as sent (gzip)      [< 300 KB]  vs the bytes of /health
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchlib import BenchDaemon, Row, echo_cmd, header, install_signal_unwind, say, table

SHOWN = "aima:services-shown"


def measure(ctx: Any, url: str, ready: str | None) -> dict[str, float]:
    """Open ``url`` in a new page of ``ctx``: its first contentful paint, when ``ready`` (a performance mark) was
    set, and the bytes the browser received (headers and bodies as sent, compressed: CDP's encodedDataLength)."""
    page = ctx.new_page()
    cdp = ctx.new_cdp_session(page)
    cdp.send("Network.enable")
    got: dict[str, float] = {}

    def finished(e: dict[str, Any]) -> None:
        got[e["requestId"]] = e["encodedDataLength"]

    def data(e: dict[str, Any]) -> None:  # a stream that never finishes (the live events)
        got.setdefault("stream:" + e["requestId"], 0)
        got["stream:" + e["requestId"]] += e.get("encodedDataLength", 0)

    cdp.on("Network.loadingFinished", finished)
    cdp.on("Network.dataReceived", data)
    page.goto(url)
    if ready:
        page.wait_for_function("(m) => performance.getEntriesByName(m).length > 0", arg=ready, timeout=30000)
    else:
        page.wait_for_load_state("load")
    page.wait_for_timeout(300)  # late answers (hardware, status) land
    timing = page.evaluate("""(m) => ({
        fcp: (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime,
        ready: m ? performance.getEntriesByName(m)[0].startTime : null,
    })""", ready)
    streams = {k: v for k, v in got.items() if k.startswith("stream:")}
    done = sum(v for k, v in got.items() if not k.startswith("stream:"))
    page.close()
    return {"fcp": timing["fcp"] / 1000, "ready": (timing["ready"] or 0) / 1000,
            "bytes": done + sum(v for k, v in streams.items() if k[7:] not in got)}


def median(xs: list[dict[str, float]], key: str) -> float:
    return statistics.median(x[key] for x in xs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loads", type=int, default=7, help="page loads per figure (median)")
    ap.add_argument("--services", type=int, default=20, help="services on the dashboard")
    ap.add_argument("--running", type=int, default=3, help="of which running (echo engines)")
    args = ap.parse_args()
    install_signal_unwind()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.support.browser import launch, unavailable

    header("aima web page benchmark")
    why = unavailable()
    if why:
        print(f"  cannot measure: {why}")
        return 0
    root = Path(tempfile.mkdtemp(prefix="aima-bench-ui-"))
    d = BenchDaemon(root, "home")
    try:
        d.start()
        say(f"daemon on {d.url}; {args.services} services, {args.running} running")
        for i in range(args.services):
            d.create(f"bench-model-{i:03d}", name=f"service-{i:03d}", command=echo_cmd())
        for i in range(args.running):
            d.note_engines(d.op("service.start", service=f"service-{i:03d}")["service"])
        with launch() as browser:
            cold, base = [], []
            for _ in range(args.loads):
                ctx = browser.new_context(viewport={"width": 1400, "height": 900})
                base.append(measure(ctx, f"{d.url}/health", None))
                ctx.close()
                ctx = browser.new_context(viewport={"width": 1400, "height": 900})
                cold.append(measure(ctx, f"{d.url}/ui/", SHOWN))
                ctx.close()
            ctx = browser.new_context(viewport={"width": 1400, "height": 900})
            measure(ctx, f"{d.url}/ui/", SHOWN)  # fills the cache
            warm = [measure(ctx, f"{d.url}/ui/", SHOWN) for _ in range(args.loads)]
            ctx.close()
        fcp, fcp_warm, fcp_base = median(cold, "fcp"), median(warm, "fcp"), median(base, "fcp")
        kb, kb_warm, kb_base = median(cold, "bytes") / 1000, median(warm, "bytes") / 1000, median(base, "bytes") / 1000
        rows = [
            Row("first paint of the dashboard, cold cache", fcp, "s", fcp_base, "/health", target="< 300 ms",
                verdict=fcp < 0.3),
            Row("first paint of the dashboard, warm cache (304s)", fcp_warm, "s", fcp_base, "/health",
                target="< 300 ms", verdict=fcp_warm < 0.3),
            Row(f"{args.services} services drawn, cold cache", median(cold, "ready"), "s", fcp_base, "/health"),
            Row(f"{args.services} services drawn, warm cache", median(warm, "ready"), "s", fcp_base, "/health"),
            Row("bytes transferred, cold cache (gzip)", kb, "KB", kb_base, "/health", target="< 300 KB",
                verdict=kb < 300),
            Row("bytes transferred, warm cache", kb_warm, "KB", kb_base, "/health", target="< 300 KB",
                verdict=kb_warm < 300),
        ]
        print()
        print(f"median of {args.loads} loads each, Chromium headless on loopback")
        print(table(rows))
        return 0
    finally:
        d.cleanup()


if __name__ == "__main__":
    sys.exit(main())
