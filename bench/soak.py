"""A bounded soak: mixed load on one daemon for some minutes, then its open file descriptors, threads and RSS
idle before it, under it (first, middle and last sample, and their slope) and 3 s after it — does anything
grow beyond noise under load — and whether every request got an answer (2xx, or a refusal: 4xx/503), none
lost. The daemon's connections to engines are counted apart: the gateway keeps them open for reuse (its pool
is bounded by the load's concurrency), so they stay after the load as the idle figure's difference.

The load, all at once:
- /v1 chat completions at concurrency 16 against a quick engine (the in-package echo engine), half of them
  streamed;
- start/stop cycles of two other services;
- event-stream clients (GET /api/v1/events) that connect, read a little and drop;
- MCP clients (streamable HTTP, the official ``mcp`` client) that initialize and list the tools.

    python bench/soak.py                 # 10 minutes
    python bench/soak.py --minutes 2

Never asserts: it prints the table, and says where a figure grew.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from benchlib import BenchDaemon, echo_cmd, header, install_signal_unwind, loadavg, say


@dataclass
class Tally:
    answered: Counter[int] = field(default_factory=Counter)  # status -> count
    lost: list[str] = field(default_factory=list)  # requests with no answer at all (a transport error)
    cycles: int = 0
    sse_clients: int = 0
    mcp_lists: int = 0
    mcp_errors: list[str] = field(default_factory=list)


# aima's engine ports (AIMA_PORT_RANGE's default): a daemon's connection to one is the gateway's keep-alive pool
ENGINE_PORTS = range(20000, 30000)


@dataclass
class Sample:
    t: float
    fds: int
    threads: int
    rss: int
    upstream: int  # of the fds: connections to engines (the gateway's pool, bounded by its concurrency)


def sample(pid: int, t0: float) -> Sample:
    p = psutil.Process(pid)
    up = sum(1 for c in p.net_connections("tcp") if c.raddr and c.raddr.port in ENGINE_PORTS)
    return Sample(time.monotonic() - t0, p.num_fds(), p.num_threads(), p.memory_info().rss, up)


async def chat_load(url: str, until: float, tally: Tally, concurrency: int = 16) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False, limits=limits) as c:
        async def worker(i: int) -> None:
            n = 0
            while time.monotonic() < until:
                n += 1
                body = {"model": "soak-chat", "messages": [{"role": "user", "content": f"hello {i} {n}"}],
                        "stream": n % 2 == 0}
                try:
                    if body["stream"]:
                        async with c.stream("POST", "/v1/chat/completions", json=body) as r:
                            async for _ in r.aiter_bytes():
                                pass
                    else:
                        r = await c.post("/v1/chat/completions", json=body)
                    tally.answered[r.status_code] += 1
                except httpx.HTTPError as e:
                    tally.lost.append(f"{type(e).__name__}: {e}")
        await asyncio.gather(*(worker(i) for i in range(concurrency)))


async def cycles(url: str, until: float, tally: Tally) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=120, trust_env=False) as c:
        while time.monotonic() < until:
            for name in ("soak-a", "soak-b"):
                for op in ("service.start", "service.stop"):
                    r = await c.post(f"/api/v1/ops/{op}", json={"service": name})
                    tally.answered[r.status_code] += 1
            tally.cycles += 1


async def sse_clients(url: str, until: float, tally: Tally) -> None:
    while time.monotonic() < until:
        async with httpx.AsyncClient(base_url=url, timeout=10, trust_env=False) as c:
            with contextlib.suppress(httpx.HTTPError, TimeoutError):
                async with c.stream("GET", "/api/v1/events?since=0") as r:
                    tally.answered[r.status_code] += 1
                    got = 0
                    async for chunk in r.aiter_bytes():
                        got += len(chunk)
                        if got > 2000:
                            break  # drop it mid-stream
        tally.sse_clients += 1
        await asyncio.sleep(0.2)


async def mcp_clients(url: str, until: float, tally: Tally) -> None:
    from mcp import Client

    while time.monotonic() < until:
        try:
            async with Client(url + "/mcp") as c:
                tools = await c.list_tools()
                if tools.tools:
                    tally.mcp_lists += 1
        except Exception as e:  # noqa: BLE001 - counted and shown, the soak goes on
            tally.mcp_errors.append(f"{type(e).__name__}: {e}")
        await asyncio.sleep(0.5)


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (per second)."""
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


async def soak(d: BenchDaemon, seconds: float, tally: Tally, samples: list[Sample]) -> None:
    assert d.proc is not None
    t0 = time.monotonic()
    until = t0 + seconds

    async def sampler() -> None:
        while time.monotonic() < until:
            samples.append(sample(d.proc.pid, t0))  # type: ignore[union-attr]
            await asyncio.sleep(max(1.0, seconds / 60))

    await asyncio.gather(chat_load(d.url, until, tally), cycles(d.url, until, tally),
                         sse_clients(d.url, until, tally), mcp_clients(d.url, until, tally), sampler())
    await asyncio.sleep(3)  # let it settle
    samples.append(sample(d.proc.pid, t0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    args = ap.parse_args()
    install_signal_unwind()
    header(f"aima soak: {args.minutes:g} minutes of mixed load on one daemon")
    with tempfile.TemporaryDirectory(prefix="aima-soak-") as root:
        d = BenchDaemon(Path(root), "soak")
        d.start()
        try:
            for name, model in (("soak-chat", "soak-chat"), ("soak-a", "soak-a"), ("soak-b", "soak-b")):
                d.op("service.create", model=model, name=name, command=echo_cmd())
            out = d.op("service.start", service="soak-chat", timeout_s=60)
            assert out["outcome"] == "ready", out
            d.rss(2.0)
            tally, samples = Tally(), []
            say(f"load for {args.minutes:g} min (load average {loadavg()})")
            asyncio.run(soak(d, args.minutes * 60, tally, samples))
        finally:
            d.cleanup()
    # samples[0] is taken as the load begins (idle), samples[-1] 3 s after it ended; the rest under load
    first, last = samples[0], samples[-1]
    load = samples[1:-1] or samples
    xs = [s.t for s in load]
    rows = [("open fds", lambda s: s.fds), ("threads", lambda s: s.threads), ("RSS (MiB)", lambda s: s.rss / 2**20),
            ("  to engines", lambda s: s.upstream)]
    print(f"\nfigure        idle     load: first  middle   last     after    slope per minute under load "
          f"({len(load)} samples)")
    grew = []
    for name, get in rows:
        ys = [get(s) for s in load]
        print(f"{name:<13} {get(first):<8.1f} {ys[0]:<12.1f} {ys[len(ys) // 2]:<8.1f} {ys[-1]:<8.1f} "
              f"{get(last):<8.1f} {slope(xs, ys) * 60:+.3f}")
        if not name.startswith(" ") and len(ys) > 2 and ys[-1] > ys[0] * 1.2 + 5:
            grew.append(name)
    total = sum(tally.answered.values())
    bad = {s: n for s, n in tally.answered.items() if s >= 500 and s != 503}
    print(f"\nrequests answered: {total} ({dict(sorted(tally.answered.items()))}); lost (no answer): "
          f"{len(tally.lost)}; 5xx other than 503: {sum(bad.values())}")
    print(f"start/stop cycles: {tally.cycles}; event-stream clients that connected and dropped: {tally.sse_clients}; "
          f"MCP tools/list: {tally.mcp_lists} ({len(tally.mcp_errors)} failed)")
    if tally.lost:
        print("  first lost: " + "; ".join(tally.lost[:3]))
    if tally.mcp_errors:
        print("  first MCP failures: " + "; ".join(tally.mcp_errors[:3]))
    print(f"\nverdict: {'growth under load in ' + ', '.join(grew) if grew else 'no growth under load beyond noise'}; "
          f"{'every request answered' if not tally.lost and not bad else 'requests lost or failed'} "
          f"(load average at the end {loadavg()}; {first.t:.0f}-{last.t:.0f} s sampled)")


if __name__ == "__main__":
    main()
