"""The agent's mechanics against a scripted OpenAI-compatible model (a real HTTP server this test starts,
answering with planned tool calls): a real daemon process runs the loop, the real CLI prints it, REST streams
it. What is checked is aima's real state and its audit, never only the words."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.daemon import Daemon, free_port
from tests.support.scripted import ScriptedModel, answer, call, last_tool_result, text_call


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel() as m:
        yield m


@pytest.fixture
def agent_daemon(tmp_path: Path, model: ScriptedModel) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "home", model.env())
    d.start()
    try:
        yield d
    finally:
        d.cleanup()


def audit(d: Daemon) -> list[dict[str, Any]]:
    return d.cli_json("agent", "log", "-n", "100")["entries"]


def sse(d: Daemon, body: dict[str, Any], on_event: Any = None) -> list[tuple[str, dict[str, Any]]]:
    """POST /api/v1/agent/ask and read its server-sent events to the end."""
    events: list[tuple[str, dict[str, Any]]] = []
    with httpx.Client(base_url=d.url, timeout=120, trust_env=False) as c, \
            c.stream("POST", "/api/v1/agent/ask", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        kind, data = "message", []
        for line in r.iter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and data:
                ev = json.loads("\n".join(data))
                events.append((kind, ev))
                if on_event is not None:
                    on_event(kind, ev)
                kind, data = "message", []
    return events


def test_the_tool_result_reaches_the_answer(agent_daemon: Daemon, model: ScriptedModel) -> None:
    d = agent_daemon
    d.create("echo-model", name="web-a")
    model.plan = [call("service_list"), lambda b: answer("There is one service: " + last_tool_result(b))]
    r = d.cli("ask", "which services are there?")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "→ service_list {}" and lines[1].strip() == "✓ 1 service(s): web-a (created)"
    assert "web-a" in lines[-1] and '"state":"created"' in lines[-1]
    # the model got the tool's result as a tool message answering its call
    tool_msgs = [m for m in model.requests[1]["messages"] if m["role"] == "tool"]
    assert tool_msgs and json.loads(tool_msgs[0]["content"])["services"][0]["name"] == "web-a"
    # -o json: {answer, steps[], session}
    model.plan = [text_call("service_get", service="web-a"), lambda b: answer("state: " + last_tool_result(b))]
    out = d.cli_json("ask", "what state is web-a in?")
    assert out["answer"].startswith("state: ") and '"created"' in out["answer"]
    assert out["session"].startswith("ses-")
    assert [(s["tool"], s["arguments"], s["outcome"]) for s in out["steps"]] == [
        ("service_get", {"service": "web-a"}, "ok")]  # read from the reply's text: a small model's way


def test_read_only_offers_no_mutating_tool_and_never_the_agent(agent_daemon: Daemon, model: ScriptedModel) -> None:
    d = agent_daemon
    ops = {o["name"]: o for o in d.http.get("/api/v1/ops").json()["operations"]}
    model.plan = [answer("ok")]
    assert d.cli("ask", "--profile", "read-only", "look around").returncode == 0
    offered = model.offered(0)
    assert offered and "service_list" in offered and "hardware_detect" in offered
    assert not [t for t in offered if ops[t.replace("_", ".", 1)]["mutating"]]
    model.plan = [answer("ok")]
    assert d.cli("ask", "--profile", "admin", "look around").returncode == 0
    admin = model.offered(1)
    assert "service_delete" in admin and not [t for t in admin if t.startswith("agent")]
    assert len(admin) == len([n for n in ops if not n.startswith("agent.")])


def test_a_destructive_call_needs_approval(agent_daemon: Daemon, model: ScriptedModel) -> None:
    d = agent_daemon
    d.create("echo-model", name="doomed")
    model.plan = [call("service_delete", service="doomed"), lambda b: answer(last_tool_result(b))]
    r = d.cli("ask", "--profile", "admin", "delete doomed")  # no terminal here, and no --yes: denied
    assert r.returncode == 0, r.stderr
    assert "  ⊘ denied (no terminal and no --yes)\n" in r.stdout
    assert model.requests[1]["messages"][-1]["content"].startswith("denied:")
    assert [s["name"] for s in d.op("service.list")["services"]] == ["doomed"]  # nothing was deleted
    model.plan = [call("service_delete", service="doomed"), answer("deleted")]
    r = d.cli("ask", "--profile", "admin", "--yes", "delete doomed")
    assert r.returncode == 0, r.stderr
    assert "✓ deleted doomed [--yes]" in r.stdout
    assert d.op("service.list")["services"] == []
    rows = [(e["tool"], e["outcome"], e["approval"]) for e in audit(d)]
    assert rows == [("service.delete", "denied", "no terminal and no --yes"),
                    ("service.delete", "denied", "no terminal and no --yes"),
                    ("service.delete", "approved", "--yes"), ("service.delete", "ok", "--yes")]


def test_stopping_a_pinned_service_needs_approval(agent_daemon: Daemon, model: ScriptedModel) -> None:
    d = agent_daemon
    d.create("echo-model", name="keeper", pinned=True)
    d.create("echo-model", name="loose")
    model.plan = [call("service_stop", service="keeper"), call("service_stop", service="loose"), answer("done")]
    out = d.cli_json("ask", "stop keeper and loose")
    assert [(s["arguments"]["service"], s["outcome"]) for s in out["steps"]] == [("keeper", "denied"),
                                                                                ("loose", "ok")]


def test_a_failing_tool_goes_back_to_the_model(agent_daemon: Daemon, model: ScriptedModel) -> None:
    d = agent_daemon
    d.create("echo-model", name="real-one")
    model.plan = [call("service_get", service="ghost"), call("service_start", colour="blue"),
                  call("service_explode"), lambda b: answer("errors seen")]
    out = d.cli_json("ask", "how is ghost?")
    assert [s["outcome"] for s in out["steps"]] == ["error", "error", "error"]
    tool_msgs = [m["content"] for m in model.requests[3]["messages"] if m["role"] == "tool"]
    assert "does not exist" in tool_msgs[0] and "real-one" in tool_msgs[0]  # the names that do exist
    assert "service" in tool_msgs[1] and "colour" in tool_msgs[1]  # the missing field; the unknown one ignored
    assert "no tool 'service_explode'" in tool_msgs[2] and "service_list" in tool_msgs[2]
    assert out["answer"] == "errors seen"


def test_the_round_cap_ends_a_model_that_never_stops(agent_daemon: Daemon, model: ScriptedModel) -> None:
    model.repeat = call("service_list")
    r = agent_daemon.cli("ask", "--max-rounds", "3", "loop forever")
    assert r.returncode == 9
    assert r.stderr.strip().splitlines()[-1].startswith("aima: the agent hit its round cap of 3 rounds")
    assert len(model.requests) == 3


def test_an_unreachable_model_is_one_line(tmp_path: Path) -> None:
    port = free_port()
    d = Daemon(tmp_path / "home", {"AIMA_AGENT_BASE_URL": f"http://127.0.0.1:{port}/v1", "AIMA_AGENT_MODEL": "m"})
    d.start()
    try:
        r = d.cli("ask", "hello")
        assert r.returncode == 6
        err = r.stderr.strip().splitlines()
        assert err[-1].startswith("aima: the agent's model m at http://127.0.0.1:")
        assert "could not be reached" in err[-1]
        assert "Traceback" not in r.stderr
    finally:
        d.cleanup()


def test_rest_streams_steps_and_the_answer(agent_daemon: Daemon, model: ScriptedModel) -> None:
    d = agent_daemon
    d.create("echo-model", name="svc-x-1")
    model.plan = [call("service_list"), answer("one service")]
    events = sse(d, {"prompt": "list them"})
    kinds = [k for k, _ in events]
    assert kinds[0] == "session" and kinds[-1] == "answer"
    assert [k for k in kinds if k in ("step", "result")] == ["step", "result"]
    step = next(e for k, e in events if k == "step")
    assert step["tool"] == "service_list" and step["arguments"] == {}
    result = next(e for k, e in events if k == "result")
    assert result["outcome"] == "ok" and "svc-x-1" in result["summary"]
    final = events[-1][1]
    assert final["answer"] == "one service" and final["steps"][0]["tool"] == "service_list"
    # a bad input is an error before any stream
    r = d.http.post("/api/v1/agent/ask", json={"prompt": "x", "profile": "root"})
    assert r.status_code == 422 and "profile" in r.json()["error"]["message"]


@pytest.mark.parametrize("approve", [True, False])
def test_approval_over_rest(agent_daemon: Daemon, model: ScriptedModel, approve: bool) -> None:
    d = agent_daemon
    d.create("echo-model", name="target")
    model.plan = [call("service_delete", service="target"), answer("finished")]
    answered: list[Any] = []

    def on_event(kind: str, ev: dict[str, Any]) -> None:
        if kind == "needs_approval":
            assert ev["tool"] == "service_delete" and ev["arguments"] == {"service": "target"}
            # answered from another thread, as a person's client would, while the stream waits
            t = threading.Thread(target=lambda: answered.append(
                d.http.post(f"/api/v1/agent/approvals/{ev['id']}", json={"approve": approve})))
            t.start()
            t.join()

    events = sse(d, {"prompt": "delete target", "profile": "admin"}, on_event)
    assert answered and answered[0].status_code == 200 and answered[0].json()["approved"] is approve
    result = next(e for k, e in events if k == "result")
    assert result["outcome"] == ("ok" if approve else "denied") and result["approval"] == "rest"
    names = [s["name"] for s in d.op("service.list")["services"]]
    assert names == ([] if approve else ["target"])
    assert audit(d)[0]["outcome"] == ("approved" if approve else "denied")
    r = d.http.post(f"/api/v1/agent/approvals/{next(e for k, e in events if k == 'needs_approval')['id']}",
                    json={"approve": True})
    assert r.status_code == 404  # decided once


def test_a_session_keeps_the_conversation(agent_daemon: Daemon, model: ScriptedModel) -> None:
    d = agent_daemon
    d.create("echo-model", name="s1")
    model.plan = [call("system_status"), answer("first answer")]
    assert d.cli("ask", "--session", "work-1", "how is the daemon?").returncode == 0
    model.plan = [answer("second answer")]
    out = d.cli_json("ask", "--session", "work-1", "and now?")
    assert out["session"] == "work-1"
    roles = [(m["role"], m.get("content")) for m in model.requests[-1]["messages"] if m["role"] != "system"]
    # each question starts with a look at the services as they are (here: none)
    assert roles[0] == ("user", "Services now:\n- s1: created, model echo-model\n\nhow is the daemon?")
    assert ("assistant", "first answer") in roles
    assert roles[-1] == ("user", "Services now:\n- s1: created, model echo-model\n\nand now?")
    assert json.loads(next(m for m in model.requests[1]["messages"] if m["role"] == "tool")["content"])["services"] == 1


def test_results_are_cut_to_fit_the_context_counted_by_the_engine(tmp_path: Path, model: ScriptedModel) -> None:
    d = Daemon(tmp_path / "home", {**model.env(), "AIMA_AGENT_CONTEXT_TOKENS": "1024"})
    d.start()
    try:
        for i in range(12):
            d.create("echo-model", name=f"svc-{i:02d}")
        model.plan = [call("service_list"), answer("many")]
        assert d.cli("ask", "list").returncode == 0
        tool_msg = next(m for m in model.requests[1]["messages"] if m["role"] == "tool")["content"]
        assert "cut to fit the context" in tool_msg
        assert model.token_counts > 0  # counted with the engine's /extras/tokenize/count
        assert len(tool_msg) < 1400  # ~256 tokens of 4 characters, and the note
    finally:
        d.cleanup()


@pytest.mark.parametrize("reply", ["y", "n"])
def test_on_a_terminal_the_cli_asks_y_or_n(agent_daemon: Daemon, model: ScriptedModel, reply: str) -> None:
    """The real `aima ask` on a pseudo-terminal: it shows the exact call and waits for y/N."""
    import os
    import pty
    import subprocess
    import time

    from tests.support.daemon import AIMA

    d = agent_daemon
    d.create("echo-model", name="victim")
    model.plan = [call("service_delete", service="victim"), answer("done")]
    master, slave = pty.openpty()
    proc = subprocess.Popen([AIMA, "ask", "--profile", "admin", "delete victim"], env=d.env, stdin=slave,
                            stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while b"[y/N]" not in seen and time.monotonic() < deadline:
            seen += os.read(master, 4096)
        assert b'Allow service_delete {"service": "victim"}? (service.delete is destructive) [y/N]' in seen, seen
        os.write(master, reply.encode() + b"\n")
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                seen += os.read(master, 4096)
            except OSError:
                break
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    names = [s["name"] for s in d.op("service.list")["services"]]
    assert names == ([] if reply == "y" else ["victim"])
    decision = audit(d)[0]
    assert (decision["outcome"], decision["approval"]) == (("approved", "terminal") if reply == "y"
                                                          else ("denied", "terminal"))
