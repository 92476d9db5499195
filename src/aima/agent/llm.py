"""The agent's model: any OpenAI-compatible chat endpoint with tools, or one aima serves itself.

``AIMA_AGENT_BASE_URL`` (+ ``AIMA_AGENT_MODEL``, ``AIMA_AGENT_API_KEY``, or ``agent:`` in config.yaml) names a
remote endpoint. Unset, the agent uses ``agent_model`` (default ``DEFAULT_MODEL``, a small tool-capable model
from the catalog) served by this daemon: an existing service of that model is used (started when stopped);
else the model is pulled into the store and a service is created with an idle TTL and started. The agent
then talks to it through the daemon's own ``/v1`` like any client.

Tokens are counted with the engine's own tokenizer where it offers one (llama-cpp-python's
``POST /extras/tokenize/count``, llama.cpp's ``POST /tokenize``); where none answers they are estimated
(and said to be).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from aima.errors import AimaError, Unavailable

DEFAULT_MODEL = "qwen2.5-coder-1.5b-instruct"
DEFAULT_CONTEXT = 8192
CHARS_PER_TOKEN = 3.2  # the estimate where no tokenizer answers


class ModelUnreachable(Unavailable):
    """The agent's model could not be reached or did not answer."""

    code = "model_unreachable"


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    seconds: float = 0.0

    def add(self, u: dict[str, Any] | None, seconds: float) -> None:
        self.calls += 1
        self.seconds += seconds
        if u:
            self.prompt_tokens += int(u.get("prompt_tokens") or 0)
            self.completion_tokens += int(u.get("completion_tokens") or 0)

    def dump(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "model_calls": self.calls, "model_seconds": round(self.seconds, 3)}


@dataclass
class ChatModel:
    base_url: str  # ends with /v1
    model: str
    api_key: str | None = None
    context_tokens: int = DEFAULT_CONTEXT
    tokenizer_urls: list[str] = field(default_factory=list)  # engine roots to ask for token counts
    timeout_s: float = 300.0
    served_by: str | None = None  # the aima service, when self-served
    usage: Usage = field(default_factory=Usage)
    _tokenizer: tuple[str, str] | None = None  # (url, kind) that answered
    _no_tokenizer: bool = False
    _counts: dict[str, int] = field(default_factory=dict)
    _client: httpx.AsyncClient | None = None

    @property
    def counts_exactly(self) -> bool:
        return self._tokenizer is not None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(self.timeout_s, connect=10),
                                             trust_env=False)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                       max_tokens: int) -> dict[str, Any]:
        """One chat completion (temperature 0); returns the assistant message. Errors: ModelUnreachable."""
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": 0,
                                "max_tokens": max_tokens, "stream": False}
        if tools:
            body["tools"] = tools
            body["tool_choice"] = "auto"
        url = self.base_url.rstrip("/") + "/chat/completions"
        t0 = time.monotonic()
        try:
            r = await self.client().post(url, json=body)
        except httpx.HTTPError as e:
            raise ModelUnreachable(f"the agent's model {self.model} at {self.base_url} could not be reached: "
                                   f"{type(e).__name__} {e}".rstrip() + "; check AIMA_AGENT_BASE_URL or the "
                                   "service serving it") from None
        if r.status_code >= 400:
            raise ModelUnreachable(f"the agent's model {self.model} at {self.base_url} answered HTTP {r.status_code}: "
                                   f"{_error_text(r)}")
        try:
            data = r.json()
            msg = data["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ModelUnreachable(f"the agent's model at {self.base_url} gave no chat answer: "
                                   f"{r.text[:200]!r}") from None
        self.usage.add(data.get("usage"), time.monotonic() - t0)
        return msg

    # ------------------------------------------------------------------ tokens
    async def count(self, text: str) -> int:
        """Tokens of ``text`` by the engine's tokenizer (cached); an estimate where none answers."""
        if not text:
            return 0
        hit = self._counts.get(text)
        if hit is not None:
            return hit
        n = await self._count_exact(text)
        if n is None:
            n = int(len(text) / CHARS_PER_TOKEN) + 1
        if len(self._counts) > 4096:
            self._counts.clear()
        self._counts[text] = n
        return n

    async def _count_exact(self, text: str) -> int | None:
        if self._no_tokenizer:
            return None
        probes = [self._tokenizer] if self._tokenizer else [
            (root.rstrip("/") + path, kind) for root in self.tokenizer_urls
            for path, kind in (("/extras/tokenize/count", "count"), ("/tokenize", "tokens"))]
        for url, kind in probes:
            body = {"input": text, "model": self.model} if kind == "count" else {"content": text}
            try:
                r = await self.client().post(url, json=body, timeout=30)
                if r.status_code == 200:
                    d = r.json()
                    n = int(d["count"]) if kind == "count" else len(d["tokens"])
                    self._tokenizer = (url, kind)
                    return n
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                pass
            if self._tokenizer:  # it answered before: a passing failure, estimate this once
                return None
        self._no_tokenizer = True
        return None


def _error_text(r: httpx.Response) -> str:
    try:
        d = r.json()
        err = d.get("error") if isinstance(d, dict) else None
        if isinstance(err, dict):
            return str(err.get("message"))[:300]
        return json.dumps(d)[:300]
    except ValueError:
        return r.text[:300]


def _root(base_url: str) -> str:
    b = base_url.rstrip("/")
    return b[: -len("/v1")] if b.endswith("/v1") else b


# ---------------------------------------------------------------------------- choosing and serving the model
Progress = Callable[[str], None]


def daemon_url(ctx: Any) -> str:
    """This daemon's own URL, for the agent's calls to /v1."""
    if ctx.url:
        return str(ctx.url)
    host = ctx.settings.host if ctx.settings.host not in ("0.0.0.0", "::") else "127.0.0.1"
    return f"http://{host}:{ctx.settings.port}"


async def remote_model(ctx: Any) -> ChatModel:
    s = ctx.settings
    base = s.agent_base_url.rstrip("/")
    model = s.agent_model
    cm = ChatModel(base_url=base, model=model or "", api_key=s.agent_api_key,
                   context_tokens=s.agent_context_tokens or DEFAULT_CONTEXT, tokenizer_urls=[_root(base)],
                   timeout_s=s.agent_request_timeout_s)
    if not model:  # the endpoint's first model
        try:
            r = await cm.client().get(base + "/models", timeout=20)
            ids = [m.get("id") for m in r.json().get("data", [])] if r.status_code == 200 else []
        except (httpx.HTTPError, ValueError, AttributeError):
            ids = []
        if not ids:
            await cm.close()
            raise ModelUnreachable(f"AIMA_AGENT_BASE_URL {base} lists no model and AIMA_AGENT_MODEL is not set; "
                                   f"set AIMA_AGENT_MODEL to the model to use")
        cm.model = str(ids[0])
    return cm


async def self_served_model(ctx: Any, api_key: str | None, progress: Progress) -> ChatModel:
    """The agent's own model, served by this daemon (pulled, created and started when needed)."""
    from aima.catalog import loader
    s = ctx.settings
    wanted = s.agent_model or DEFAULT_MODEL
    catalog = await asyncio.to_thread(lambda: loader.load([d for d in (loader.shipped_dir(),
                                                                         loader.overlay_dir(s.home)) if d.is_dir()]))
    entry = catalog.find_model(wanted)
    model = entry.name if entry is not None else wanted
    listed = (await ctx.call("service.list", {})).model_dump(mode="json")["services"]
    mine = [v for v in listed if v["model"] == model or v["name"] == wanted]
    mine.sort(key=lambda v: (not v["ready"], v["state"] == "failed"))
    if mine and mine[0]["ready"]:
        svc = mine[0]
    else:
        if mine:
            name = mine[0]["name"]
        else:
            if entry is None:
                raise ModelUnreachable(f"the agent's model {wanted!r} is neither served here nor in the catalog; "
                                       f"set AIMA_AGENT_MODEL to a catalog model or AIMA_AGENT_BASE_URL to an endpoint")
            progress(f"the agent's model {model} is not served yet: pulling it (once) and starting it")
            try:
                await ctx.call("model.pull", {"model": model})
                created = await ctx.call("service.create", {"model": model, "idle_ttl_s": s.agent_idle_ttl_s})
            except AimaError as e:
                raise ModelUnreachable(f"the agent's model {model} could not be set up: {e.message}") from None
            name = created.model_dump()["name"]
        progress(f"starting {name} (the agent's model) and waiting until it is ready")
        out = (await ctx.call("service.start", {"service": name, "timeout_s": s.agent_tool_timeout_s})
               ).model_dump(mode="json")
        if out["outcome"] != "ready":
            raise ModelUnreachable(f"the agent's model service {name} is {out['outcome']}: {out['message']} "
                                   f"(`aima service logs {name}` says more)")
        svc = out["service"]
    root = daemon_url(ctx)
    return ChatModel(base_url=root + "/v1", model=svc["name"], api_key=api_key or s.api_key or ctx.local_key,
                     context_tokens=s.agent_context_tokens or _context_of(catalog, svc) or DEFAULT_CONTEXT,
                     tokenizer_urls=[svc["endpoint"]] if svc.get("endpoint") else [],
                     timeout_s=s.agent_request_timeout_s, served_by=svc["name"])


def _context_of(catalog: Any, svc: dict[str, Any]) -> int | None:
    """The context window the service was started with: the value of its engine's context-length flag."""
    engine = catalog.engine(svc.get("engine") or "")
    key = engine.key_for_role("context_length") if engine is not None else None
    if key is None or not svc.get("command"):
        return None
    flag = engine.config[key].flag
    words = shlex.split(svc["command"])
    with contextlib.suppress(ValueError, IndexError):
        return int(words[words.index(flag) + 1])
    return None


async def open_model(ctx: Any, api_key: str | None, progress: Progress) -> ChatModel:
    if ctx.settings.agent_base_url:
        return await remote_model(ctx)
    return await self_served_model(ctx, api_key, progress)
