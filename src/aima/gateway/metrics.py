"""Prometheus metrics of the gateway and the services (``GET /metrics``).

Per request: count, errors, latency, time to first token (streamed answers), tokens in and out (from
the engine's ``usage`` when it reports one), in-flight requests, and aima's own overhead; per
service: state, ready instances, loads and unloads (count and duration), from controller events.

The request path only adds to plain numbers held per (model, instance, route) (a few integer adds
and one bisect per request); ``prometheus_client`` turns them into its text format when scraped.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from aima.controller.routes import RouteTable
from aima.store.usage import UsageBook

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
STATES = ("created", "starting", "running", "stopping", "stopped", "failed")

_PROMPT = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
_COMPLETION = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')


def usage_tokens(body: bytes) -> tuple[int, int] | None:
    """(prompt, completion) tokens of the last ``usage`` object in an answer (JSON or SSE), if any."""
    at = body.rfind(b'"usage"')
    if at < 0:
        return None
    tail = body[at:at + 400]
    p = _PROMPT.search(tail)
    c = _COMPLETION.search(tail)
    if p is None and c is None:
        return None
    return int(p.group(1)) if p else 0, int(c.group(1)) if c else 0


class Hist:
    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        self.counts[bisect_left(self.bounds, v)] += 1
        self.sum += v
        self.count += 1

    def buckets(self) -> list[tuple[str, float]]:
        out, acc = [], 0
        for b, n in zip(self.bounds, self.counts, strict=False):
            acc += n
            out.append((str(float(b)), float(acc)))
        out.append(("+Inf", float(self.count)))
        return out


class RequestMetrics:
    """The numbers of one (model, instance, route)."""

    __slots__ = ("requests", "latency", "ttft", "overhead", "inflight", "_tokens")

    def __init__(self, m: Metrics, model: str, instance: str, route: str):
        self.requests: dict[int, int] = {}
        self.latency = m.hist(m.latency, (model, route), LATENCY_BUCKETS)
        self.ttft = m.hist(m.ttft, (model, route), LATENCY_BUCKETS)
        self.overhead = m.hist(m.overhead, (route,), OVERHEAD_BUCKETS)
        self.inflight = 0
        self._tokens = m.tokens.setdefault(model, [0, 0])

    def answered(self, status: int) -> None:
        self.requests[status] = self.requests.get(status, 0) + 1

    def count_tokens(self, data: bytes) -> tuple[int, int] | None:
        """Add the answer's ``usage`` (the last one in ``data``), and return it: (prompt, completion)."""
        u = usage_tokens(data)
        if u is not None:
            self._tokens[0] += u[0]
            self._tokens[1] += u[1]
        return u


class Metrics:
    def __init__(self, routes: RouteTable, usage: UsageBook | None = None):
        self.routes = routes
        self.usage = usage
        self.per_request: dict[tuple[str, str, str], RequestMetrics] = {}
        self.latency: dict[tuple[str, ...], Hist] = {}
        self.ttft: dict[tuple[str, ...], Hist] = {}
        self.overhead: dict[tuple[str, ...], Hist] = {}
        self.tokens: dict[str, list[int]] = {}
        self.errors: dict[tuple[str, str], int] = {}
        self.loads: dict[tuple[str, str], int] = {}
        self.unloads: dict[tuple[str, str, str], int] = {}
        self.load_seconds: dict[tuple[str, ...], Hist] = {}
        self.unload_seconds: dict[tuple[str, ...], Hist] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)  # type: ignore[arg-type]

    @staticmethod
    def hist(table: dict[tuple[str, ...], Hist], key: tuple[str, ...], bounds: tuple[float, ...]) -> Hist:
        h = table.get(key)
        if h is None:
            h = table[key] = Hist(bounds)
        return h

    def request(self, model: str, instance: str, route: str) -> RequestMetrics:
        key = (model, instance, route)
        rm = self.per_request.get(key)
        if rm is None:
            rm = self.per_request[key] = RequestMetrics(self, model, instance, route)
        return rm

    def error(self, model: str, code: str) -> None:
        key = (model, code)
        self.errors[key] = self.errors.get(key, 0) + 1

    def on_event(self, ev: dict[str, Any]) -> None:
        kind = ev["kind"]
        if kind not in ("service.loaded", "service.unloaded"):
            return
        data = ev.get("data") or {}
        name, model = str(data.get("name", "")), str(data.get("model", ""))
        secs = float(data.get("duration_s") or 0.0)
        if kind == "service.loaded":
            self.loads[(name, model)] = self.loads.get((name, model), 0) + 1
            self.hist(self.load_seconds, (model,), LOAD_BUCKETS).observe(secs)
        else:
            key = (name, model, str(data.get("why", "idle")))
            self.unloads[key] = self.unloads.get(key, 0) + 1
            self.hist(self.unload_seconds, (model,), LOAD_BUCKETS).observe(secs)

    # ------------------------------------------------------------------ exposition
    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("aima_gateway_requests", "inference requests answered, by status",
                                       labels=["model", "instance", "route", "status"])
        inflight = GaugeMetricFamily("aima_gateway_inflight_requests", "requests in flight",
                                     labels=["model", "instance"])
        seen_inflight: dict[tuple[str, str], int] = {}
        for (model, inst, route), rm in list(self.per_request.items()):
            for status, n in list(rm.requests.items()):
                requests.add_metric([model, inst, route, str(status)], n)
            seen_inflight[(model, inst)] = seen_inflight.get((model, inst), 0) + rm.inflight
        for (model, inst), n in seen_inflight.items():
            inflight.add_metric([model, inst], n)
        yield requests
        yield inflight
        errors = CounterMetricFamily("aima_gateway_errors", "requests that ended in an error, by code",
                                     labels=["model", "code"])
        for (model, code), n in list(self.errors.items()):
            errors.add_metric([model, code], n)
        yield errors
        yield _hists("aima_gateway_request_seconds", "time from request to the end of the answer",
                     ["model", "route"], self.latency)
        yield _hists("aima_gateway_time_to_first_token_seconds",
                     "time from request to the first streamed chunk of the answer", ["model", "route"], self.ttft)
        yield _hists("aima_gateway_overhead_seconds", "time spent in aima itself per request", ["route"],
                     self.overhead)
        tokens = CounterMetricFamily("aima_gateway_tokens", "tokens in (prompt) and out (completion), from usage",
                                     labels=["model", "direction"])
        for model, (t_in, t_out) in list(self.tokens.items()):
            tokens.add_metric([model, "in"], t_in)
            tokens.add_metric([model, "out"], t_out)
        yield tokens
        state = GaugeMetricFamily("aima_service_state", "1 for the state each service is in",
                                  labels=["service", "model", "state"])
        ready = GaugeMetricFamily("aima_service_ready_instances", "ready instances of each service",
                                  labels=["service", "model"])
        for r in self.routes.services():
            for st in STATES:
                state.add_metric([r.name, r.model, st], 1.0 if r.state == st else 0.0)
            ready.add_metric([r.name, r.model], float(len(r.endpoints)))
        yield state
        yield ready
        loads = CounterMetricFamily("aima_service_loads", "services started on demand", labels=["service", "model"])
        for key, n in list(self.loads.items()):
            loads.add_metric(list(key), n)
        yield loads
        unloads = CounterMetricFamily("aima_service_unloads", "services stopped because idle or to make room",
                                      labels=["service", "model", "why"])
        for key3, n in list(self.unloads.items()):
            unloads.add_metric(list(key3), n)
        yield unloads
        if self.usage is not None:
            by_key = CounterMetricFamily("aima_key_requests", "/v1 answers per API key ('-': no key) and model, and "
                                         "of those the errors", labels=["key", "model", "outcome"])
            key_tokens = CounterMetricFamily("aima_key_tokens", "tokens per API key and model",
                                             labels=["key", "model", "direction"])
            key_audio = CounterMetricFamily("aima_key_audio_seconds", "audio seconds heard or spoken per API key and "
                                            "model", labels=["key", "model"])
            for (key_id, model), c in list(self.usage.totals.items()):
                by_key.add_metric([key_id, model, "answered"], c.requests)
                by_key.add_metric([key_id, model, "error"], c.errors)
                key_tokens.add_metric([key_id, model, "in"], c.prompt_tokens)
                key_tokens.add_metric([key_id, model, "out"], c.completion_tokens)
                key_audio.add_metric([key_id, model], c.audio_seconds)
            yield by_key
            yield key_tokens
            yield key_audio
        yield _hists("aima_service_load_seconds", "time to load a service on demand", ["model"], self.load_seconds)
        yield _hists("aima_service_unload_seconds", "time to unload a service", ["model"], self.unload_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _hists(name: str, doc: str, labels: list[str], table: dict[tuple[str, ...], Hist]) -> Metric:
    fam = HistogramMetricFamily(name, doc, labels=labels)
    for key, h in list(table.items()):
        fam.add_metric(list(key), h.buckets(), h.sum)
    return fam
