"""The OpenAI routes under /v1: what the front protocol (``aima.gateway.front``) runs for each request,
outside ASGI and FastAPI (no validation layer, no re-encoding on the fast path).

A request: read the body, take its ``model`` (JSON, form or multipart), find the services that serve
that name (service name, model name or catalog alias: exact matches only), pick the ready instance
with the fewest requests in flight, rewrite ``model`` to the engine's served name only when it
differs, and relay the engine's answer: JSON answers whole (with the requested name put back), SSE
and audio chunk by chunk as they arrive. A client that goes away aborts the engine connection at once.

Unknown model: 404 ``model_not_found`` listing the served models. Known but not ready: 503 with
``Retry-After`` and the service's state, or, for a service with an idle TTL (load on demand), the
reconciler starts it and the request waits (bounded by the service's health timeout). Engine
unreachable: another ready instance is tried, else 502, and the reconciler re-probes the instance now.
Every error has OpenAI's shape ``{"error": {"message", "type", "code"}}``.

Finding the instance and loading on demand are ``controller.acquire``'s (the inference operations use
the same); API keys were checked before a request gets here (``server.http``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from fastapi import APIRouter

from aima.controller.acquire import Acquirer, NotReady, NotServed
from aima.controller.routes import Endpoint, RouteTable, ServiceRoute, pick
from aima.errors import InsufficientMemory
from aima.gateway import bodies
from aima.gateway.metrics import Metrics, RequestMetrics
from aima.gateway.proxy import Connection, Pool, UpstreamError, answer_headers, header, request_head
from aima.store.usage import UsageBook

if TYPE_CHECKING:
    from aima.gateway.exchange import Exchange
    from aima.ops.context import Context

log = logging.getLogger("aima.gateway")


MiB = 1 << 20
_CONTENT = re.compile(rb'"content"\s*:\s*"[^"]')  # a streamed piece of text (about one token)
_DURATION = re.compile(rb'"duration"\s*:\s*([0-9.]+)')  # a transcription's audio seconds (verbose_json)


@dataclass
class Tally:
    """What one answer used, for the key's usage: tokens (the engine's ``usage``, else the streamed pieces)
    and audio seconds (heard or spoken)."""

    prompt: int = 0
    completion: int = 0
    pieces: int = 0
    audio_s: float = 0.0
    audio_bytes: int = 0
    byte_rate: int = 0

    def tokens(self, u: tuple[int, int] | None) -> None:
        if u is not None:
            self.prompt, self.completion = u

    def wav(self, head: bytes) -> None:
        """A WAV answer's first piece: its byte rate, to turn the length into seconds."""
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE" and len(head) >= 44:
            self.byte_rate = int.from_bytes(head[28:32], "little")

    def seconds(self) -> float:
        if self.audio_s:
            return self.audio_s
        return max(self.audio_bytes - 44, 0) / self.byte_rate if self.byte_rate else 0.0


@dataclass(frozen=True)
class RouteSpec:
    methods: tuple[str, ...]
    limit: int = 32 * MiB
    kind: str | None = None  # the model type the route needs: it decides between services of one model


ROUTES: dict[str, RouteSpec] = {
    "/v1/models": RouteSpec(("GET",)),
    "/v1/chat/completions": RouteSpec(("POST",), kind="llm"),
    "/v1/completions": RouteSpec(("POST",), kind="llm"),
    "/v1/embeddings": RouteSpec(("POST",), kind="embedding"),
    "/v1/audio/speech": RouteSpec(("POST",), kind="tts"),
    "/v1/audio/transcriptions": RouteSpec(("POST",), limit=200 * MiB, kind="asr"),
    "/v1/audio/translations": RouteSpec(("POST",), limit=200 * MiB, kind="asr"),
    "/v1/audio/voices": RouteSpec(("GET",)),
    "/v1/voice": RouteSpec(("POST",), limit=200 * MiB),  # audio -> transcription -> chat -> speech (gateway/voice.py)
}
JSON_CT = (b"content-type", b"application/json")


class GatewayError(Exception):
    def __init__(self, status: int, message: str, type_: str, code: str, *, param: str | None = None,
                 headers: list[tuple[bytes, bytes]] | None = None, extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code
        self.param = param
        self.headers = headers or []
        self.extra = extra or {}

    def body(self) -> bytes:
        err: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code, "param": self.param}
        err.update(self.extra)
        return json.dumps({"error": err}).encode()


class Gateway:
    def __init__(self) -> None:
        self.routes = RouteTable()
        self.acquirer: Acquirer | None = None
        self.metrics: Metrics | None = None
        self.usage = UsageBook()
        self.pool = Pool()
        self.timeout_s = 600.0
        self.ctx: Context | None = None

    def bind(self, ctx: Context) -> None:
        """Attach to the daemon's context: its route table and the one way to a ready engine; the metrics
        count every request that way (the inference operations' too)."""
        self.routes = ctx.routes
        self.acquirer = ctx.acquirer
        self.ctx = ctx
        self.timeout_s = float(ctx.settings.gateway_timeout_s)
        self.usage = ctx.usage
        self.metrics = Metrics(ctx.routes, ctx.usage)
        ctx.bus.listen(self.metrics.on_event)
        ctx.acquirer.meter = self.metrics

    def close(self) -> None:
        self.pool.close()

    # ------------------------------------------------------------------ entry
    def body_limit(self, path: str) -> int:
        spec = ROUTES.get(path)
        return spec.limit if spec is not None else 0

    async def serve(self, ex: Exchange) -> None:
        """Answer one /v1 request (the front protocol's :class:`Exchange`); never raises."""
        t0 = perf_counter()
        try:
            await self._serve(ex, t0)
        except GatewayError as e:
            if self.metrics is not None:
                self.metrics.error("", e.code)
            if not ex.committed:
                ex.whole(e.status, [JSON_CT, *e.headers], e.body())
            elif not ex.response_complete:
                ex.abort()
        except Exception:  # noqa: BLE001 - one request's bug must not take the connection's others down
            log.exception("gateway: %s %s failed", ex.method, ex.path)
            if not ex.committed:
                err = GatewayError(500, "aima's gateway failed on this request; see the daemon's log",
                                   "server_error", "internal_error")
                ex.whole(500, [JSON_CT], err.body())
            elif not ex.response_complete:
                ex.abort()

    async def _serve(self, ex: Exchange, t0: float) -> None:
        path = ex.path
        spec = ROUTES.get(path)
        if spec is None:
            raise GatewayError(404, f"no route {path}; the OpenAI routes are {', '.join(ROUTES)}",
                               "invalid_request_error", "not_found")
        method = ex.method
        if method not in spec.methods:
            raise GatewayError(405, f"{path} takes {' or '.join(spec.methods)}, not {method}",
                               "invalid_request_error", "method_not_allowed",
                               headers=[(b"allow", ", ".join(spec.methods).encode())])
        if path == "/v1/models":
            ex.whole(200, [JSON_CT], self._models(ex.key.models))
            return
        if method == "GET":  # /v1/audio/voices
            model = _query_model(ex.query)
            if model is None:
                ex.whole(200, [JSON_CT], await self._all_voices())
                return
            await self._relay(ex, t0, path, model, None)
            return
        body = await ex.body()
        if body is None:
            return  # the client left before sending its body
        if ex.too_large:
            raise _too_large(spec.limit)
        if path == "/v1/voice":  # several models in one request: the voice pipeline, not a relay
            from aima.gateway import voice

            await voice.serve(self, ex, body)
            return
        try:
            parsed = bodies.parse(ex.header(b"content-type") or b"", body)
        except bodies.BadBody as e:
            raise GatewayError(400, e.message, "invalid_request_error", e.code, param=e.param) from None
        await self._relay(ex, t0, path, parsed.model, parsed)

    # ------------------------------------------------------------------ /v1/models and voices
    def _models(self, allowed: frozenset[str] | None = None) -> bytes:
        data: list[dict[str, Any]] = []
        by_model: dict[str, dict[str, Any]] = {}
        for r in self.routes.models():
            if allowed is not None and not _allowed(allowed, model=r.model, routes=[r]):
                continue
            entry = by_model.get(r.model)
            if entry is None:
                entry = {"id": r.model, "object": "model", "created": int(r.created_at), "owned_by": "aima",
                         "service": r.name, "aliases": []}
                by_model[r.model] = entry
                data.append(entry)
            for a in (r.name, *r.aliases):
                if a != r.model and a not in entry["aliases"]:
                    entry["aliases"].append(a)
        return json.dumps({"object": "list", "data": data}).encode()

    async def _all_voices(self) -> bytes:
        """Without ``?model=``: the voices of every ready service that lists voices, each with its model."""
        async def one(r: ServiceRoute) -> list[dict[str, Any]]:
            picked = pick([r])
            if picked is None:
                return []
            try:
                status, body = await self._fetch(picked[1], b"/v1/audio/voices")
                if status != 200:
                    return []
                items = json.loads(body).get("data") or []
            except (UpstreamError, ValueError, AttributeError):
                return []
            return [{**v, "model": r.model} if isinstance(v, dict) else {"id": str(v), "model": r.model}
                    for v in items]

        lists = await asyncio.gather(*(one(r) for r in self.routes.models()))
        return json.dumps({"object": "list", "data": [v for lst in lists for v in lst]}).encode()

    async def _fetch(self, ep: Endpoint, target: bytes) -> tuple[int, bytes]:
        conn = await self.pool.acquire(ep.connect_host, ep.port)
        try:
            conn.send(request_head("GET", target, ep.connect_host, ep.port, [], None), b"")
            status, _h = await conn.response(5.0)
            parts = []
            while (piece := await conn.read()) is not None:
                parts.append(piece)
            conn.release()
            return status, b"".join(parts)
        except BaseException:
            conn.abort()
            raise

    # ------------------------------------------------------------------ choosing an instance
    async def _acquire(self, model: str, routes: list[ServiceRoute]) -> tuple[ServiceRoute, Endpoint, float]:
        """No instance of ``routes`` is ready: load one on demand (the request waits), or refuse."""
        assert self.acquirer is not None
        try:
            t = await self.acquirer.acquire(model, routes=routes)
        except NotServed as e:
            raise GatewayError(404, e.message, "invalid_request_error", "model_not_found", param="model") from None
        except NotReady as e:
            raise GatewayError(503, e.message, "service_unavailable", "model_not_ready",
                               headers=[(b"retry-after", str(e.retry_after).encode()),
                                        (b"x-aima-service", e.service.encode()),
                                        (b"x-aima-service-state", e.state.encode())],
                               extra={"service": e.service, "state": e.state}) from None
        except InsufficientMemory as e:
            raise GatewayError(503, e.message, "service_unavailable", "insufficient_memory",
                               headers=[(b"retry-after", b"30")]) from None
        return t.route, t.endpoint, t.load_s

    # ------------------------------------------------------------------ relaying
    async def _relay(self, ex: Exchange, t0: float, path: str, model: str, parsed: bodies.Parsed | None) -> None:
        assert self.acquirer is not None
        # one model served several ways (e.g. chat and embeddings): the right kind first
        routes = self.acquirer.candidates(model, ROUTES[path].kind)
        key = ex.key
        if key.models is not None and not _allowed(key.models, model, routes):
            raise GatewayError(403, f"API key {key.id} may use only {', '.join(sorted(key.models))}, not {model!r}",
                               "permission_error", "model_not_allowed", param="model")
        if key.rpm is not None or key.tpm is not None:  # counted before the engine sees it
            wait = self.usage.admit(key.id, key.rpm, key.tpm)
            if wait is not None:
                raise GatewayError(429, f"API key {key.id} is over its limit ({_limits(key)}); retry in {wait:.0f}s",
                                   "rate_limit_error", "rate_limit_exceeded",
                                   headers=[(b"retry-after", str(int(wait + 0.999)).encode())])
        picked = pick(routes)
        load_s = 0.0
        if picked is None:  # nothing ready: 404, 503, or load on demand and wait (not counted as aima's overhead)
            route, ep, load_s = await self._acquire(model, routes)
        else:
            route, ep = picked
        metrics = self.metrics
        assert metrics is not None
        served = route.model
        method = ex.method
        body = parsed.with_model(served) if parsed is not None else b""
        route.active += 1
        route.last_used = time.time()
        tried: list[Endpoint] = []
        status = 0
        from_engine = False
        tally = Tally()
        rm = metrics.request(served, ep.instance_id, path)
        try:
            while True:  # at most: a stale kept-alive connection, then other instances
                ep.inflight += 1
                rm = metrics.request(served, ep.instance_id, path)
                rm.inflight += 1
                conn: Connection | None = None
                try:
                    conn = await self.pool.acquire(ep.connect_host, ep.port)
                    if ex.disconnected:  # the client left while this waited (a load, a connect)
                        status, from_engine = 499, True
                        return
                    conn.owner = ex
                    ex.upstream = conn  # a client that goes away aborts this connection at once
                    conn.send(request_head(method, ex.target, ep.connect_host, ep.port, ex.headers,
                                           len(body) if method != "GET" else None), body)
                    t_up = perf_counter()
                    status, up_headers = await conn.response(self.timeout_s)
                    from_engine = True
                    t_first = perf_counter()
                    await self._answer(ex, conn, t0, load_s, t_up, t_first, rm, path, model, route, ep,
                                       status, up_headers, tally)
                    return
                except UpstreamError as e:
                    if ex.disconnected:
                        status, from_engine = 499, True
                        return
                    if conn is not None and conn.reused and not conn.got_bytes and ep not in tried:
                        tried.append(ep)  # an idle connection the engine had closed: once more, fresh
                        self.pool.forget(ep.connect_host, ep.port)
                        continue
                    if getattr(e, "timeout", False):
                        status = 504
                        raise GatewayError(504, f"model {model!r}: {e.message} (instance {ep.instance_id})",
                                           "timeout_error", "engine_timeout") from None
                    if conn is not None and conn.headers_done:
                        status = 502
                        metrics.error(served, "engine_broke_off")
                        return  # broken off mid-answer: the client's answer is already cut short
                    self.acquirer.recheck(ep.instance_id)
                    tried.append(ep)
                    other = pick(routes, exclude=ep)
                    if other is not None and other[1] not in tried and len(tried) < 4:
                        route, ep = other
                        continue
                    status = 502
                    raise GatewayError(502, f"the engine of model {model!r} (service {route.name}, instance "
                                            f"{ep.instance_id}) is unreachable: {e.message}; it is being re-checked",
                                       "upstream_error", "engine_unreachable") from None
                finally:
                    ex.upstream = None
                    ep.inflight -= 1
                    rm.inflight -= 1
                    if conn is not None and conn.owner is ex:
                        conn.abort()  # not handed back to the pool: an error, or the client left
        finally:
            route.active -= 1
            route.last_used = time.time()
            rm.answered(status)
            rm.latency.observe(perf_counter() - t0)
            self.usage.add(key.id, served, ok=0 < status < 400, prompt=tally.prompt,
                           completion=tally.completion or tally.pieces, audio_s=tally.seconds())
            if from_engine and status >= 400:
                metrics.error(served, "cancelled" if status == 499 else f"engine_http_{status}")

    async def _answer(self, ex: Exchange, conn: Connection, t0: float, load_s: float, t_up: float, t_first: float,
                      rm: RequestMetrics, path: str, model: str, route: ServiceRoute, ep: Endpoint, status: int,
                      up_headers: list[tuple[bytes, bytes]], tally: Tally) -> None:
        served = route.model
        rewrite = bodies.answer_rewriter(served, model) if model != served else None
        ctype = header(up_headers, b"content-type") or b""
        sse = ctype.startswith(b"text/event-stream")
        whole = not sse and bodies.media_type(ctype) == b"application/json"
        if whole:  # a JSON answer: relayed in one piece, with its usage counted
            parts = []
            while (piece := await conn.read()) is not None:
                parts.append(piece)
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            t_last = perf_counter()
            conn.release()
            if rewrite is not None:
                data = rewrite(data)
            out = answer_headers(up_headers, keep_length=False)
            overhead = (perf_counter() - t0) - load_s - (t_last - t_up)
            out += self._aima_headers(route, ep, overhead, load_s)
            rm.overhead.observe(overhead)
            ex.whole(status, out, data)
            tally.tokens(rm.count_tokens(data))
            if path.startswith("/v1/audio/") and (m := _DURATION.search(data)):
                tally.audio_s = float(m.group(1))
            return
        # A stream (SSE, audio): piece by piece as the engine writes them; the length is kept when
        # nothing is rewritten and the engine sent one.
        keep_length = rewrite is None and header(up_headers, b"content-length") is not None
        out = answer_headers(up_headers, keep_length=keep_length)
        overhead = (perf_counter() - t0) - load_s - (t_first - t_up)
        out += self._aima_headers(route, ep, overhead, load_s)
        rm.overhead.observe(overhead)
        ex.start(status, out, length=keep_length)
        first = True
        carry = b""
        tail = b""
        last = b""
        audio = ctype.startswith(b"audio/")
        try:
            while (piece := await conn.read()) is not None:
                if first:
                    first = False
                    rm.ttft.observe(perf_counter() - t0)
                    if audio:
                        tally.wav(piece)
                if sse:
                    tally.pieces += len(_CONTENT.findall(piece))
                elif audio:
                    tally.audio_bytes += len(piece)
                if rewrite is not None and sse:
                    piece = carry + piece
                    cut = piece.rfind(b"\n") + 1
                    piece, carry = rewrite(piece[:cut]), piece[cut:]
                    if not piece:
                        continue
                elif rewrite is not None:
                    piece = rewrite(piece)
                if sse and b'"usage"' in piece:
                    tail = piece
                if conn.ready_now():  # the engine's whole answer is in: this piece ends the body (a write less)
                    last = piece
                    break
                ex.write(piece)
                await ex.drain()
        except UpstreamError as e:
            if ex.disconnected:
                raise
            log.warning("engine %s broke off its answer to %s: %s", ep.instance_id, path, e.message)
            if sse and not keep_length:
                err = GatewayError(502, f"the engine broke off its answer: {e.message}", "upstream_error",
                                   "engine_broke_off")
                ex.write(b"data: " + err.body() + b"\n\n")
                ex.end()
            else:
                ex.abort()
            raise
        conn.release()
        end = carry and (rewrite(carry) if rewrite else carry)
        ex.end(last + end if end else last)
        if tail:
            tally.tokens(rm.count_tokens(tail))

    def _aima_headers(self, route: ServiceRoute, ep: Endpoint, overhead_s: float,
                      load_s: float) -> list[tuple[bytes, bytes]]:
        out = [(b"x-aima-service", route.name.encode()), (b"x-aima-instance", ep.instance_id.encode()),
               (b"x-aima-overhead-ms", f"{overhead_s * 1000:.3f}".encode())]
        if load_s:
            out.append((b"x-aima-load-ms", f"{load_s * 1000:.1f}".encode()))
        return out


def _allowed(models: frozenset[str], model: str, routes: list[ServiceRoute]) -> bool:
    """An inference key limited to ``models`` may use a model by any of its names (service, model, alias)."""
    if model in models:
        return True
    return any(r.model in models or r.name in models or not models.isdisjoint(r.aliases) for r in routes)


def _limits(key: Any) -> str:
    return ", ".join(f"{n} per minute" for n in (f"{key.rpm} requests" if key.rpm is not None else "",
                                                f"{key.tpm} tokens" if key.tpm is not None else "") if n)


def _query_model(qs: bytes) -> str | None:
    if not qs:
        return None
    values = parse_qs(qs.decode("latin-1")).get("model")
    return values[-1] if values else None


def _too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"the request body is larger than {limit // MiB} MiB", "invalid_request_error",
                        "body_too_large")


# ---------------------------------------------------------------------------- OpenAPI description
docs = APIRouter(prefix="/v1", tags=["openai"])

_DOCS = {
    ("GET", "/models"): "Models with a ready instance, with their aliases (OpenAI shape)",
    ("POST", "/chat/completions"): "Chat completion, streamed (SSE) or not, relayed to the model's engine",
    ("POST", "/completions"): "Text completion, relayed to the model's engine",
    ("POST", "/embeddings"): "Embeddings, relayed to the model's engine",
    ("POST", "/audio/speech"): "Text to speech (audio bytes), relayed to the model's engine",
    ("POST", "/audio/transcriptions"): "Speech to text (multipart upload), relayed to the model's engine",
    ("POST", "/audio/translations"): "Speech to English text (multipart upload), relayed to the model's engine",
    ("GET", "/audio/voices"): "Voices of a speech model (?model=), or of every ready one",
    ("POST", "/voice"): "One spoken turn (multipart `file`): transcription, chat (optional system prompt and "
                        "session) and the reply spoken, as JSON with both texts, the audio and each stage's time, "
                        "or (stream=true) server-sent events with the reply's speech sentence by sentence",
}


def _doc_endpoint(summary: str) -> Callable[[], Awaitable[None]]:
    async def endpoint() -> None:  # never reached: the daemon's HTTP protocol answers /v1 (Door: 501 elsewhere)
        raise RuntimeError("served by the gateway")
    endpoint.__doc__ = summary
    return endpoint


for (_method, _path), _summary in _DOCS.items():
    docs.add_api_route(_path, _doc_endpoint(_summary), methods=[_method], summary=_summary,
                       operation_id="openai" + _path.replace("/", "_"))
