"""The agent loop: ask the model, run the tool it calls, give it the result, until it answers.

``ask(ctx, request)`` is an async generator of events, which the REST route streams as server-sent events
and ``agent.ask`` collects:

- ``session``: the conversation's id and profile (first);
- ``progress``: what a long step is doing (the model being pulled or started, a service starting);
- ``step``: the tool about to run and its arguments;
- ``needs_approval``: a destructive call waits for ``POST /api/v1/agent/approvals/{id}`` (REST only);
- ``result``: how the call ended (``ok``, ``error``, ``denied``) with a one-line summary rendered from the
  result itself;
- ``answer`` (last): the model's answer, every step, the session, rounds and tokens;
- ``error`` (last): the model could not be reached, or the round cap was hit.

A round is one answer of the model. A failing tool (unknown service, bad arguments) goes back to the model
as the tool's result, never ends the loop. Results are made compact and cut to fit the model's context,
counted with its own tokenizer; when the conversation outgrows the context, the oldest results go first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select

from aima.agent import approvals, calls, store
from aima.agent.llm import ChatModel, ModelUnreachable, open_model
from aima.agent.profiles import check_profile, destructive
from aima.agent.prompt import CAP_NOTE, system_prompt
from aima.agent.tools import Tool, by_function_name, check_arguments, compact_result, openai_tools, summarize, toolset
from aima.errors import AimaError, NotFound
from aima.store.tables import ServiceRow

FORWARD = ("service.", "instance.", "model.pull.", "model.convert.", "stack.progress", "image.pull.")
PROGRESS_EVERY_S = 2.0
MAX_CORRECTIONS = 2  # replies that call a tool that was not offered, answered with the list of tools
ANSWER_TOKENS = 768
IDLE_AFTER_S = 300.0  # a running service without a request for this long is idle
NUDGES = {
    "look": "Look first: call the tool that shows the facts (service_logs for why a service failed, service_get or "
            "service_list for services, hardware_detect for the machine), then answer.",
    "retry": "Your last call failed. Read its error, fix the call (use a service name from the list) and call "
             "again; or, if it cannot be done, say why.",
    "verify": "Verify: call service_list now to see the state after your change. If any part of the request is not "
              "done yet, do it with the next call; else answer.",
}
SNAPSHOT_SERVICES = 25  # services named in the look at the state that starts each ask
_ECHOED = re.compile(r"<tool_response>.*?(</tool_response>|$)", re.S)  # a small model repeating a result back


@dataclass
class AskRequest:
    prompt: str
    session: str | None = None
    profile: str | None = None
    max_rounds: int | None = None
    yes: bool = False  # approve every destructive call (--yes)
    interactive: bool = True  # someone answers needs_approval events; False: destructive calls are denied
    approval_via: str = "rest"  # how an interactive approval is given, for the audit
    api_key: str | None = None  # the caller's key, for the agent's own calls to this daemon's /v1


@dataclass
class _Run:
    ctx: Any
    req: AskRequest
    profile: str
    session: str
    tools: dict[str, Tool]
    model: ChatModel | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    first_step: int = 0


async def ask(ctx: Any, req: AskRequest) -> AsyncIterator[dict[str, Any]]:
    s = ctx.settings
    profile = check_profile(req.profile)
    max_rounds = req.max_rounds or s.agent_max_rounds
    loaded = store.load_session(ctx.db, req.session)
    run = _Run(ctx=ctx, req=req, profile=profile, session=loaded.id, tools=toolset(profile, ctx.operations()))
    yield {"event": "session", "session": loaded.id, "profile": profile, "resumed": loaded.resumed,
           "expired": loaded.expired, "max_rounds": max_rounds}
    history = list(loaded.messages)
    try:
        queue = ctx.bus.subscribe()  # the model's pull and start show as progress, as any long step does
        try:
            opening = asyncio.ensure_future(open_model(ctx, req.api_key, lambda m: queue.put_nowait(_progress(m))))
            async for ev in _drive(ctx, opening, queue):
                yield ev
        finally:
            ctx.bus.unsubscribe(queue)
        run.model = opening.result()
        yield _progress(f"model {run.model.model}" + (f" (service {run.model.served_by})" if run.model.served_by
                                                        else f" at {run.model.base_url}"), model=run.model.model)
        history.append({"role": "user", "content": await _with_snapshot(ctx, req.prompt, run.model.served_by)})
        async for ev in _rounds(run, history, max_rounds):
            yield ev
    except ModelUnreachable as e:
        yield _error(run, e.message, "model_unreachable", e.exit_code)
    except AimaError as e:
        yield _error(run, e.message, e.code, e.exit_code)
    finally:
        with contextlib.suppress(Exception):
            store.save_session(ctx.db, run.session, profile, run.model.model if run.model else None, history,
                               s.agent_session_ttl_s)
        if run.model is not None:
            await run.model.close()


def _error(run: _Run, message: str, code: str, exit_code: int) -> dict[str, Any]:
    return {"event": "error", "message": message, "code": code, "exit_code": exit_code, "session": run.session,
            "steps": run.steps, "usage": run.model.usage.dump() if run.model else None}


def _progress(message: str, **data: Any) -> dict[str, Any]:
    return {"event": "progress", "message": message, **data}


async def _rounds(run: _Run, history: list[dict[str, Any]], max_rounds: int) -> AsyncIterator[dict[str, Any]]:
    model = run.model
    assert model is not None
    tool_defs = openai_tools(run.tools)
    offered = {t.function_name for t in run.tools.values()} | set(run.tools)
    system = {"role": "system", "content": system_prompt(run.profile)}
    fixed = await model.count(system["content"]) + await model.count(json.dumps(tool_defs))
    answer_tokens = min(ANSWER_TOKENS, max(128, model.context_tokens // 8))
    corrections = 0
    guided = run.ctx.settings.agent_guided if run.ctx.settings.agent_guided is not None else bool(model.served_by)
    nudged: set[str] = set()
    before = ""  # what the model said before it was nudged: its answer if it then says nothing
    run.first_step = len(run.steps)
    for rnd in range(1, max_rounds + 1):
        extra = [] if max_rounds - rnd >= 3 else [{"role": "system", "content": CAP_NOTE.format(left=max_rounds - rnd)}]
        await _fit(model, history, model.context_tokens - fixed - answer_tokens)
        message = await model.complete([system, *history, *extra], tool_defs, answer_tokens)
        reading = calls.read(message, offered)
        if not reading.calls:
            nudge = _nudge(run, guided, nudged) if not reading.unknown else None
            if nudge is not None:
                nudged.add(nudge)
                before = _ECHOED.sub("", reading.text or message.get("content") or "").strip() or before
                history.append({"role": "assistant", "content": message.get("content") or ""})
                history.append({"role": "user", "content": NUDGES[nudge]})
                continue
            if reading.unknown and corrections < MAX_CORRECTIONS:
                corrections += 1
                history.append({"role": "assistant", "content": message.get("content") or ""})
                history.append({"role": "user", "content": (
                    f"There is no tool named {reading.unknown[0]!r}. The tools are: "
                    f"{', '.join(t.function_name for t in run.tools.values())}. Call one of them, or answer in plain "
                    f"words.")})
                continue
            answer = _ECHOED.sub("", reading.text or message.get("content") or "").strip() or before
            history.append({"role": "assistant", "content": answer})
            if guided:  # a small model's prose may misstate a result: the results themselves, rendered in code
                seen = [f"{st['tool']}: " + (st["summary"] if st["outcome"] == "ok" else f"{st['outcome']}, "
                                             f"{st['summary']}".replace("denied, denied", "denied"))
                        for st in run.steps]
                if seen:
                    answer = (answer + "\n\n(from the tools — " + "; ".join(seen[-4:]) + ")").strip()
            yield {"event": "answer", "answer": answer, "session": run.session, "steps": run.steps, "rounds": rnd,
                   "model": model.model, "usage": model.usage.dump(), "tokens_counted": model.counts_exactly}
            return
        assistant: dict[str, Any] = {"role": "assistant", "content": reading.text if not reading.calls[0].structured
                                     else (message.get("content") or ""), "tool_calls": []}
        results: list[dict[str, Any]] = []
        for call in reading.calls:
            tool = by_function_name(run.tools, call.name)
            fname = tool.function_name if tool else call.name
            raw_args = call.arguments if isinstance(call.arguments, dict) else {"_raw": call.arguments}
            assistant["tool_calls"].append({"id": call.id, "type": "function", "function": {
                "name": fname, "arguments": json.dumps(raw_args)}})
            async for ev in _call(run, rnd, call, tool):
                if ev["event"] == "_tool_message":
                    results.append({"role": "tool", "tool_call_id": call.id, "name": fname,
                                    "content": await _cut(model, ev["content"])})
                else:
                    yield ev
        history.append(assistant)
        history.extend(results)
    yield _error(run, f"the agent hit its round cap of {max_rounds} rounds without an answer (raise it with "
                      f"--max-rounds, or ask for less at once)", "round_cap", 9)


def _nudge(run: _Run, guided: bool, nudged: set[str]) -> str | None:
    """For a small model (guided): the habit the prompt teaches, asked for once when it is skipped — look
    before answering (no tool used yet), and verify after acting (an answer right after a change)."""
    if not guided:
        return None
    steps = run.steps[run.first_step:]
    if not steps and "look" not in nudged:
        return "look"
    if steps and steps[-1]["outcome"] == "error" and "retry" not in nudged:
        return "retry"
    if steps and "verify" not in nudged:
        mutating = [i for i, st in enumerate(steps) if st["outcome"] == "ok" and st["op"]
                    and run.tools[st["op"]].mutating]
        if mutating and mutating[-1] == len(steps) - 1:
            return "verify"
    return None


async def _call(run: _Run, rnd: int, call: calls.Call, tool: Tool | None) -> AsyncIterator[dict[str, Any]]:
    """Run one tool call: check it, get approval when it is destructive, run it with its progress, audit it."""
    ctx, s = run.ctx, run.ctx.settings
    t0 = time.monotonic()
    name = tool.function_name if tool else call.name
    step: dict[str, Any] = {"round": rnd, "tool": name, "op": tool.name if tool else None,
                            "arguments": call.arguments if isinstance(call.arguments, dict) else {}}
    yield {"event": "step", **step}

    def finish(outcome: str, text: str, summary: str, approval: str | None = None) -> list[dict[str, Any]]:
        seconds = time.monotonic() - t0
        store.audit(ctx.db, session=run.session, profile=run.profile, tool=tool.name if tool else call.name,
                    arguments=step["arguments"], outcome=outcome, approval=approval, message=summary, seconds=seconds)
        done = {**step, "outcome": outcome, "summary": summary, "approval": approval, "seconds": round(seconds, 3)}
        run.steps.append(done)
        return [{"event": "result", **done}, {"event": "_tool_message", "content": text}]

    if tool is None:
        known = ", ".join(t.function_name for t in run.tools.values())
        for ev in finish("error", f"error: there is no tool {call.name!r}; the tools are: {known}",
                         f"no tool {call.name!r}"):
            yield ev
        return
    try:
        args, dropped = check_arguments(tool, call.arguments)
    except ValueError as e:
        for ev in finish("error", f"error: {e}", str(e)):
            yield ev
        return
    step["arguments"] = args
    note = f" (note: {tool.function_name} takes no {', '.join(dropped)}; ignored)" if dropped else ""
    approval = None
    reason = destructive(tool.name, args, lambda ref: _pinned(ctx, ref))
    if reason:
        how: str
        if run.req.yes:
            ok, how = True, "--yes"
        elif not run.req.interactive:
            ok, how = False, "no terminal and no --yes"
        else:
            pending = approvals.open_request(tool.name, args, reason, run.session)
            yield {"event": "needs_approval", "id": pending.id, "tool": name, "op": tool.name, "arguments": args,
                   "reason": reason, "timeout_s": s.agent_approval_timeout_s}
            decided = await approvals.wait(pending, s.agent_approval_timeout_s)
            ok = bool(decided)
            how = run.req.approval_via if decided is not None else f"no answer within {s.agent_approval_timeout_s:g}s"
        store.audit(ctx.db, session=run.session, profile=run.profile, tool=tool.name, arguments=args,
                    outcome="approved" if ok else "denied", approval=how, message=reason)
        if not ok:
            for ev in finish("denied", f"denied: this call needs a person's approval ({reason}) and was not approved "
                                       f"({how}). Do not retry it; tell the user it was not done and why.",
                             f"denied ({how})", approval=how):
                yield ev
            return
        approval = how
    if "timeout_s" in tool.op.input.model_fields and "timeout_s" not in args:
        args["timeout_s"] = s.agent_tool_timeout_s  # long operations are waited for, within a bound
    task = asyncio.ensure_future(tool.op.call(ctx, args))
    bus_q = ctx.bus.subscribe()
    try:
        async for ev in _drive(ctx, task, bus_q, deadline=time.monotonic() + s.agent_tool_timeout_s + 60):
            yield ev
    finally:
        ctx.bus.unsubscribe(bus_q)
    if not task.done():  # never cancelled: a start keeps going; the model is told to look again later
        msg = f"still running after {s.agent_tool_timeout_s + 60:g}s; look again later (service_get)"
        for ev in finish("error", f"error: {msg}", msg, approval):
            yield ev
        return
    try:
        out = task.result()
    except AimaError as e:
        text = e.message + _names_hint(ctx, e) + note
        for ev in finish("error", f"error: {text}", e.message, approval):
            yield ev
        return
    except Exception as e:  # noqa: BLE001 - the model reads what went wrong; the loop goes on
        for ev in finish("error", f"error: {tool.name} failed: {type(e).__name__}: {e}", f"{type(e).__name__}: {e}",
                         approval):
            yield ev
        return
    data = out.model_dump(mode="json")
    with contextlib.suppress(Exception):  # a fact added for the model never costs it the result
        _mark_idle(ctx, data)
    text = json.dumps(compact_result(data), separators=(",", ":"), ensure_ascii=False)
    text += note
    for ev in finish("ok", text, summarize(tool.name, data), approval):
        yield ev


async def _drive(ctx: Any, task: asyncio.Future[Any], queue: asyncio.Queue[dict[str, Any]],
                 deadline: float | None = None) -> AsyncIterator[dict[str, Any]]:
    """Yield progress events from ``queue`` (the event bus, or the model's own progress) until ``task`` ends
    (or ``deadline`` passes)."""
    last: dict[str, float] = {}
    while not task.done():
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return
        getter = asyncio.ensure_future(queue.get())
        done, _ = await asyncio.wait({task, getter}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        if getter not in done:
            getter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await getter
            continue
        ev = getter.result()
        if ev.get("event") == "progress":
            yield ev
            continue
        kind = str(ev.get("kind") or "")
        if not kind.startswith(FORWARD):
            continue
        if kind.endswith("progress"):  # at most one progress line per thing every few seconds
            now = time.monotonic()
            if now - last.get(kind, 0.0) < PROGRESS_EVERY_S:
                continue
            last[kind] = now
        yield _progress(str(ev.get("message") or kind), kind=kind)
    while not queue.empty():
        ev = queue.get_nowait()
        if ev.get("event") == "progress":
            yield ev


async def _with_snapshot(ctx: Any, prompt: str, own: str | None = None) -> str:
    """The prompt with a one-line look at the services now (names and states), so that even a small model
    starts from the real names instead of guessing them; the tools give the details."""
    try:
        data = (await ctx.call("service.list", {})).model_dump(mode="json")
    except AimaError:
        return prompt
    _mark_idle(ctx, data)
    rows = sorted(data.get("services") or [], key=lambda r: r["name"] == own)  # the agent's own model last
    if not rows:
        return f"Services now: none\n\n{prompt}"
    lines = [f"- {r['name']}: {r['state']}" + "".join(f", {w}" for w in ("ready", "idle", "pinned") if r.get(w))
             + (f", model {r['model']}" if r.get("model") and r["model"] != r["name"] else "")
             + (", the agent's own model" if r["name"] == own else "")
             + (f" ({_clip(r['message'], 160)})" if r["state"] == "failed" and r.get("message") else "")
             for r in rows[:SNAPSHOT_SERVICES]]
    if len(rows) > SNAPSHOT_SERVICES:
        lines.append(f"- and {len(rows) - SNAPSHOT_SERVICES} more (service_list shows them)")
    return "Services now:\n" + "\n".join(lines) + f"\n\n{prompt}"


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _mark_idle(ctx: Any, data: Any) -> None:
    """Services in a result say whether they are idle — running, no request in flight and none for
    ``IDLE_AFTER_S`` (or never one) — and how long ago their last request was, from the gateway's usage."""
    routes = getattr(ctx, "routes", None)
    if routes is None or not isinstance(data, dict):
        return
    now = time.time()
    found = [data] if "engine" in data and "state" in data else []
    listed = data.get("services")
    found += [s for s in listed if isinstance(s, dict)] if isinstance(listed, list) else []
    found += [data["service"]] if isinstance(data.get("service"), dict) else []
    for svc in found:
        if svc.get("state") != "running" or not svc.get("id"):
            continue
        last, busy = routes.last_used(svc["id"]), routes.inflight(svc["id"])
        svc["idle"] = busy == 0 and (last is None or now - last > IDLE_AFTER_S)
        if last is not None:
            svc["last_request_s_ago"] = round(now - last)


def _pinned(ctx: Any, ref: str) -> bool:
    with ctx.db.session() as s:
        row = s.scalars(select(ServiceRow.pinned).where(or_(ServiceRow.name == ref, ServiceRow.id == ref))).first()
    return bool(row)


def _names_hint(ctx: Any, e: AimaError) -> str:
    """An unknown service: the names that do exist, so the model can pick one instead of guessing again."""
    if not (isinstance(e, NotFound) and e.field == "service"):
        return ""
    with ctx.db.session() as s:
        names = list(s.scalars(select(ServiceRow.name).order_by(ServiceRow.created_at)))
    return f" (the services are: {', '.join(names)})" if names else " (there are no services)"


async def _cut(model: ChatModel, text: str) -> str:
    """A tool result within its share of the context, counted with the model's tokenizer."""
    budget = max(256, min(2000, model.context_tokens // 4))
    n = await model.count(text)
    original = n
    while n > budget and len(text) > 200:
        keep = int(len(text) * budget / n * 0.9)
        text = text[:keep]
        n = await model.count(text)
    if original > n:
        text += f"\n… (cut to fit the context: {n} of {original} tokens; ask for less, e.g. lines=20)"
    return text


async def _fit(model: ChatModel, history: list[dict[str, Any]], budget: int) -> None:
    """Shorten the conversation to ``budget`` tokens: the oldest tool results are emptied first, then the
    oldest turns (a user message and what followed it) dropped; the current turn stays."""
    async def size(m: dict[str, Any]) -> int:
        return await model.count(str(m.get("content") or "") + json.dumps(m.get("tool_calls") or "")) + 4

    total = sum([await size(m) for m in history])
    if total <= budget:
        return
    last_user = max(i for i, m in enumerate(history) if m["role"] == "user")
    for i, m in enumerate(history):
        if total <= budget:
            return
        if m["role"] == "tool" and i < len(history) - 1 and not m["content"].startswith("(result dropped"):
            before = await size(m)
            m["content"] = "(result dropped to fit the context; call the tool again if it is needed)"
            total -= before - await size(m)
    while total > budget and last_user > 0:
        cut = next((i for i in range(1, last_user + 1) if history[i]["role"] == "user"), last_user)
        total -= sum([await size(m) for m in history[:cut]])
        del history[:cut]
        last_user -= cut
