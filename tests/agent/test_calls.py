"""Reading tool calls leniently: structured tool_calls, or a call written as text the way small local models
write it — and never prose that merely holds JSON."""

from __future__ import annotations

import json

from aima.agent.calls import read
from aima.agent.tools import check_arguments, compact_schema, one_line, toolset
from aima.ops.registry import load_all

OFFERED = {"service_list", "service.list", "service_get", "service.get", "service_stop", "service.stop"}


def test_structured_calls_win() -> None:
    msg = {"content": "", "tool_calls": [{"id": "c1", "type": "function",
                                          "function": {"name": "service_get", "arguments": '{"service": "a"}'}}]}
    r = read(msg, OFFERED)
    assert [(c.name, c.arguments, c.structured, c.id) for c in r.calls] == [
        ("service_get", {"service": "a"}, True, "c1")]


def test_calls_written_as_text() -> None:
    cases = {
        'Let me look.\n```json\n{"name": "service_get", "arguments": {"service": "a"}}\n```': {"service": "a"},
        '<tool_call>\n{"name": "service_get", "arguments": {"service": "a"}}\n</tool_call>': {"service": "a"},
        '```json\n{{"name": "service_get", "arguments": {"service": "a"}}}\n```': {"service": "a"},  # doubled braces
        '{"name": "functions.service_get", "parameters": {"service": "a"}}': {"service": "a"},
        '```\n{"name": "service.get", "arguments": "{\\"service\\": \\"a\\"}"}\n```': {"service": "a"},
    }
    for text, args in cases.items():
        r = read({"content": text}, OFFERED)
        assert len(r.calls) == 1 and r.calls[0].arguments == args and not r.calls[0].structured, text
        assert "{" not in r.text, text


def test_several_calls_one_per_line() -> None:
    text = "```json\n" + "\n".join(json.dumps({"name": "service_stop", "arguments": {"service": s}})
                                   for s in ("a", "b")) + "\n```"
    assert [c.arguments["service"] for c in read({"content": text}, OFFERED).calls] == ["a", "b"]


def test_prose_with_json_is_an_answer_and_unknown_tools_are_noticed() -> None:
    r = read({"content": 'The service is {"name": "web", "state": "running"}.'}, OFFERED)
    assert r.calls == [] and r.unknown == []
    r = read({"content": '```json\n{"name": "exit", "arguments": {}}\n```'}, OFFERED)
    assert r.calls == [] and r.unknown == ["exit"]


def test_compact_schemas_and_argument_checks() -> None:
    tools = toolset("operator", load_all())
    create = tools["service.create"]
    keys: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            keys.update(node)
            for k, v in node.items():
                for child in (v.values() if k == "properties" else [v]):
                    walk(child)
    walk(create.parameters)
    assert not keys & {"title", "default", "anyOf", "$ref", "$defs", "maxLength"}
    assert create.parameters["required"] == ["model"] and "images" not in create.parameters["properties"]
    args, dropped = check_arguments(tools["service.get"], '{"service": "a", "colour": "blue"}')
    assert args == {"service": "a"} and dropped == ["colour"]
    assert one_line("Start it (and wait: see below). More text here.") == "Start it (and wait: see below)"
    assert compact_schema({"properties": {"x": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None,
                                                "title": "X"}}})["properties"] == {"x": {"type": "integer"}}
