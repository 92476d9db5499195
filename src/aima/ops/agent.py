"""Agent operations: ``agent.ask`` (the operator agent: a prompt in, the steps it took and its answer out) and
``agent.log`` (the audit of every tool call).

REST streams ``agent.ask`` as server-sent events at ``POST /api/v1/agent/ask`` (``session``, ``progress``,
``step``, ``needs_approval``, ``result``, ``answer`` | ``error``); a destructive call waits there for
``POST /api/v1/agent/approvals/{id}`` with ``{"approve": true|false}``. Called as a plain operation
(``POST /api/v1/ops/agent.ask``) nobody can answer an approval: destructive calls are denied unless ``yes``.
The agent's tools never include these operations (no recursion).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from pydantic import Field

from aima.errors import AimaError, TimedOut
from aima.ops.context import Context
from aima.ops.models import Input, Output, cli
from aima.ops.registry import Cli, operation

AUDIT_COLUMNS = ("time", "session", "profile", "tool", "arguments", "outcome", "approval")


class AskInput(Input):
    prompt: str = Field(min_length=1, max_length=20000, description="what you want, in words")
    session: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
                                description="continue this conversation (a new one when unknown)")
    profile: Literal["read-only", "operator", "admin"] = Field(
        "operator", description="what the agent may call: read-only looks, operator also creates/starts/stops, "
                                "admin everything")
    yes: bool = Field(False, description="approve every destructive call (delete, rm, keys, stack down, stopping a "
                                         "pinned service)")
    max_rounds: int | None = Field(None, ge=1, le=200, description="most model answers before giving up (default 30)")
    interactive: bool = Field(True, description="the caller answers needs_approval events (REST stream); false: "
                                                "destructive calls without yes are denied at once",
                              json_schema_extra=cli(hidden=True))
    via: Literal["rest", "terminal"] = Field("rest", description="how approvals are given, for the audit",
                                             json_schema_extra=cli(hidden=True))


class Step(Output):
    round: int
    tool: str
    op: str | None
    arguments: dict[str, Any]
    outcome: str = Field(description="ok | error | denied")
    summary: str
    approval: str | None = Field(None, description="how a destructive call was approved")
    seconds: float


class AskOutput(Output):
    answer: str
    steps: list[Step]
    session: str
    rounds: int
    model: str
    usage: dict[str, Any] = Field(description="tokens and model time of this ask")


def _request(inp: AskInput, api_key: str | None, interactive: bool) -> Any:
    from aima.agent.loop import AskRequest

    return AskRequest(prompt=inp.prompt, session=inp.session, profile=inp.profile, max_rounds=inp.max_rounds,
                      yes=inp.yes, interactive=interactive, approval_via=inp.via, api_key=api_key)


def _raise(ev: dict[str, Any]) -> None:
    from aima.agent.llm import ModelUnreachable

    if ev.get("code") == "round_cap":
        raise TimedOut(ev["message"])
    if ev.get("code") == "model_unreachable":
        raise ModelUnreachable(ev["message"])
    raise AimaError(ev["message"])


@operation("agent.ask", mutating=True, method="POST", path="/agent/ask", cli=None)
async def ask(ctx: Context, inp: AskInput) -> AskOutput:
    """Ask the operator agent to do something in words; it looks, acts through aima's operations and answers.

    Called as an operation, destructive calls are denied unless ``yes`` (nobody is there to approve them);
    ``POST /api/v1/agent/ask`` streams the steps as server-sent events and waits for approvals."""
    from aima.agent.loop import ask as run

    last: dict[str, Any] | None = None
    async for ev in run(ctx, _request(inp, None, interactive=False)):
        last = ev
    assert last is not None
    if last["event"] != "answer":
        _raise(last)
    return AskOutput(answer=last["answer"], steps=[Step(**s) for s in last["steps"]], session=last["session"],
                     rounds=last["rounds"], model=last["model"], usage=last["usage"])


class LogInput(Input):
    limit: int = Field(20, ge=1, le=10000, description="the newest N entries",
                       json_schema_extra=cli("lines", short="-n"))
    session: str | None = Field(None, max_length=64, description="only this session's entries")


class AuditEntry(Output):
    id: int
    ts: float
    time: str
    session: str | None
    profile: str
    tool: str
    arguments: dict[str, Any]
    outcome: str = Field(description="ok | error | denied | approved")
    approval: str | None = Field(description="how it was approved or denied (--yes, terminal, rest, ...)")
    message: str | None
    seconds: float | None


class LogOutput(Output):
    entries: list[AuditEntry]


@operation("agent.log", mutating=False, method="GET", path="/agent/log",
           cli=Cli("agent", "log", table="entries", columns=AUDIT_COLUMNS))
async def log(ctx: Context, inp: LogInput) -> LogOutput:
    """The agent's audit: every tool call with its time, session, profile, arguments, outcome and approval."""
    from aima.agent.store import audit_entries

    rows = await asyncio.to_thread(audit_entries, ctx.db, inp.limit, inp.session)
    return LogOutput(entries=[AuditEntry(**r, time=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["ts"])))
                              for r in rows])


# ---------------------------------------------------------------------------- REST: a stream and approvals
class ApprovalInput(Input):
    approve: bool = Field(description="true runs the call, false denies it")
