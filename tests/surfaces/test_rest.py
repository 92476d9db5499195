"""REST under /api/v1 against a real daemon: every operation's routes refuse bad input with a 4xx in the
one error shape (never a 500, never a half-written record), plus 404/409, OpenAPI, SSE and /health."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.daemon import Daemon, echo_cmd

ERROR_KEYS = {"message", "type", "code", "param", "details"}
MISSING = "no-such-svc"
# A valid input for operations whose required fields are not just a service reference.
BASE_INPUT: dict[str, dict[str, Any]] = {
    "service.create": {"model": "fuzz-model", "command": echo_cmd()},
    "service.run": {"model": "no-such-model"},
    "key.revoke": {"key": "no-such-key"},
    "catalog.show": {"name": "llama-cpp"},
    "catalog.resolve": {"model": "smollm2-135m"},
    "model.info": {"model": "no-such-model"},
    "model.rm": {"model": "no-such-model"},
    "model.pull": {"model": "file:/no/such/file.gguf"},
    "model.import": {"path": "/no/such/file.gguf"},
    "model.scan": {"target": "/no/such/file.gguf"},
    "inference.chat": {"model": "no-such-model", "prompt": "hi"},
    "inference.embed": {"model": "no-such-model", "inputs": ["hi"]},
    "inference.speak": {"model": "no-such-model", "text": "hi"},
    "inference.transcribe": {"model": "no-such-model", "audio": "UklGRg=="},
    "agent.ask": {"prompt": "hi"},
    "bench.run": {"model": "no-such-model"},
    "bench.sweep": {"model": "no-such-model", "config": {"n_threads": "1,2"}},
    "bench.show": {"id": 999999},
    "bench.compare": {"a": 999998, "b": 999999},
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One real daemon for the read-mostly checks of this module (the fuzzing sends hundreds of requests)."""
    d = Daemon(tmp_path_factory.mktemp("rest") / "aima-home", {})
    d.start()
    try:
        yield d
    finally:
        d.cleanup()


@pytest.fixture(scope="module")
def operations(shared: Daemon) -> list[dict[str, Any]]:
    r = shared.http.get("/api/v1/ops")
    assert r.status_code == 200
    ops = r.json()["operations"]
    names = {o["name"] for o in ops}
    assert {"service.create", "service.start", "service.get", "service.list", "service.delete"} <= names
    return ops


def error_problem(r: httpx.Response, field: str | None = None) -> str | None:
    """Why ``r`` is not a proper client error naming ``field`` (None when it is)."""
    if not 400 <= r.status_code < 500:
        return f"status {r.status_code}: {r.text[:300]}"
    try:
        body = r.json()
    except ValueError:
        return f"status {r.status_code} with a non-JSON body: {r.text[:300]!r}"
    err = body.get("error") if isinstance(body, dict) else None
    if set(body) != {"error"} or not isinstance(err, dict):
        return f"not the error shape: {body!r}"
    if not {"message", "type", "code"} <= set(err) or not set(err) <= ERROR_KEYS:
        return f"error keys {sorted(err)}: {body!r}"
    if not all(isinstance(err[k], str) and err[k] for k in ("message", "type", "code")):
        return f"empty or non-string message/type/code: {body!r}"
    if field is not None:
        if field not in err["message"]:
            return f"message does not name {field!r}: {err['message']!r}"
        if err.get("param") is not None and err["param"].split(".")[0] != field:
            return f"param {err['param']!r} is not {field!r}"
    return None


def resolve(schema: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        return {**schema["$defs"][name], **{k: v for k, v in prop.items() if k != "$ref"}}
    return prop


def prop_types(prop: dict[str, Any]) -> set[str]:
    types = {prop["type"]} if "type" in prop else {a.get("type") for a in prop.get("anyOf", [])}
    if "enum" in prop or "const" in prop or any("enum" in a or "const" in a for a in prop.get("anyOf", [])):
        types.add("string")
    return {t for t in types if t}


def wrong_values(prop: dict[str, Any]) -> list[Any]:
    """Values of clearly the wrong JSON type for a property."""
    types = prop_types(prop)
    out: list[Any] = []
    if "string" in types:
        out += [{"an": "object"}, 12345, ["a", "list"]]
    if "integer" in types:
        out += ["abc", {"an": "object"}, 1.5]
    if "number" in types:
        out += ["abc", {"an": "object"}, [1]]
    if "boolean" in types:
        out += ["maybe", {"an": "object"}]
    if "object" in types:
        out += ["not-an-object", [1, 2]]
    if "array" in types:
        out += ["not-a-list", {"an": "object"}]
    if "null" not in types:
        out.append(None)
    assert out, f"no wrong values for {prop}"
    return out


def base_input(op: dict[str, Any]) -> dict[str, Any]:
    if op["name"] in BASE_INPUT:
        return dict(BASE_INPUT[op["name"]])
    schema = op["input_schema"]
    data = {}
    for name in schema.get("required", []):
        if name != "service":
            pytest.fail(f"{op['name']}: teach this test a valid input (required field {name!r})")
        data[name] = MISSING
    return data


def resource_url(op: dict[str, Any]) -> str:
    url = op["path"].replace("{service}", MISSING)
    for k, v in BASE_INPUT.get(op["name"], {}).items():  # other path parameters: the base input's valid values
        url = url.replace("{" + k + "}", str(v))
    return url


def path_params(op: dict[str, Any]) -> set[str]:
    return {p.strip("{}") for p in op["path"].split("/") if p.startswith("{")}


def create_named(d: Daemon, model: str, name: str) -> dict[str, Any]:
    """``daemon.create(..., name=...)`` clashes with ``Daemon.op``'s own ``name`` parameter."""
    r = d.http.post("/api/v1/ops/service.create", json={"model": model, "name": name, "command": echo_cmd()})
    assert r.status_code == 201, r.text
    return r.json()


def service_count(d: Daemon) -> int:
    r = d.http.get("/api/v1/services")
    assert r.status_code == 200, r.text
    return len(r.json()["services"])


def test_every_route_refuses_malformed_bodies(shared: Daemon, operations: list[dict[str, Any]]) -> None:
    before = service_count(shared)
    bodies = {"malformed JSON": b'{"model": "x",', "a JSON array": b'[{"model": "x"}]', "a string": b'"x"',
              "a number": b"42", "null": b"null", "not UTF-8": b'\xff\xfe{"a\x00'}
    problems = []
    for op in operations:
        routes = [("POST", f"/api/v1/ops/{op['name']}")]
        if op["method"] != "GET":  # a GET resource route takes its input from the query string
            routes.append((op["method"], resource_url(op)))
        for method, url in routes:
            for what, body in bodies.items():
                r = shared.http.request(method, url, content=body, headers={"Content-Type": "application/json"})
                why = error_problem(r)
                if why is None and r.status_code != 400:
                    why = f"status {r.status_code}, expected 400"
                if why is None and "JSON" not in r.json()["error"]["message"]:
                    why = f"message does not say what is wrong: {r.json()['error']['message']!r}"
                if why:
                    problems.append(f"{method} {url} with {what}: {why}")
    assert problems == [], "\n".join(problems)
    assert service_count(shared) == before


def test_every_route_refuses_wrong_types_and_unknown_fields(shared: Daemon,
                                                            operations: list[dict[str, Any]]) -> None:
    before = service_count(shared)
    problems = []
    tried = 0
    for op in operations:
        schema = op["input_schema"]
        base = base_input(op)
        in_path = path_params(op)
        cases: list[tuple[str, dict[str, Any]]] = [("zzz_unknown", {**base, "zzz_unknown": 1})]
        for field, prop in schema.get("properties", {}).items():
            for bad in wrong_values(resolve(schema, prop)):
                cases.append((field, {**base, field: bad}))
        for field, data in cases:
            targets = [("POST", f"/api/v1/ops/{op['name']}", data)]
            if op["method"] != "GET" and field not in in_path:
                targets.append((op["method"], resource_url(op), {k: v for k, v in data.items() if k not in in_path}))
            for method, url, body in targets:
                tried += 1
                r = shared.http.request(method, url, json=body)
                why = error_problem(r, field)
                if why is None and r.status_code != 422:
                    why = f"status {r.status_code}, expected 422"
                if why:
                    problems.append(f"{method} {url} {json.dumps(body)[:160]}: {why}")
        # The resource route of a GET operation: wrong types and unknown fields in the query string.
        if op["method"] == "GET":
            query_cases = [("zzz_unknown", {"zzz_unknown": "1"})]
            for field, prop in schema.get("properties", {}).items():
                if prop_types(resolve(schema, prop)) & {"integer", "number", "boolean"} and field not in in_path:
                    query_cases.append((field, {field: "abc"}))
            for field, params in query_cases:
                tried += 1
                valid = {k: str(v) for k, v in base.items() if k not in in_path}  # required query fields
                r = shared.http.get(resource_url(op), params={**valid, **params})
                why = error_problem(r, field)
                if why is None and r.status_code != 422:
                    why = f"status {r.status_code}, expected 422"
                if why:
                    problems.append(f"GET {resource_url(op)}?{params}: {why}")
    assert tried > 100
    assert problems == [], f"{len(problems)} of {tried} bad requests were not refused properly:\n" + \
        "\n".join(problems)
    # Nothing was half-written: no service appeared, no creation was announced.
    assert service_count(shared) == before
    events = shared.op("event.list", limit=10000)["events"]
    assert [e for e in events if e["kind"] == "service.created"] == []


def test_every_route_survives_extreme_numbers(shared: Daemon, operations: list[dict[str, Any]]) -> None:
    """Huge and negative numbers are refused or handled, never a 500 (e.g. SQLite's 64-bit integer limit)."""
    before = service_count(shared)
    problems = []
    for op in operations:
        schema = op["input_schema"]
        for field, prop in schema.get("properties", {}).items():
            types = prop_types(resolve(schema, prop))
            extremes = [10**30, -(10**30), 2**63, -1] if "integer" in types else \
                [1e308, -1e308, 0.0] if "number" in types else []
            for value in extremes:
                r = shared.http.post(f"/api/v1/ops/{op['name']}", json={**base_input(op), field: value})
                if r.status_code >= 500 or (r.status_code >= 400 and error_problem(r)):
                    problems.append(f"{op['name']} {field}={value}: {r.status_code} {r.text[:200]}")
    assert problems == [], "\n".join(problems)
    assert service_count(shared) == before


@pytest.mark.parametrize("bad", [
    {"name": "-starts-with-a-symbol"}, {"name": "svc-0badc0de"}, {"engine": "no-such-engine"},
    {"command": "'unclosed quote {port}"}, {"command": "no-port-placeholder"}, {"config": {"k": "v"}},
    {"health": "no-leading-slash"}, {"port": 0}, {"replicas": 0}, {"model": ""}, {"model": "   "},
    {"restart": "sometimes"}, {"runtime": "mainframe"},
])
def test_failed_create_writes_nothing(shared: Daemon, bad: dict[str, Any]) -> None:
    before = service_count(shared)
    data = {**BASE_INPUT["service.create"], **bad}
    field = next(iter(bad))
    for url in ("/api/v1/services", "/api/v1/ops/service.create"):
        r = shared.http.post(url, json=data)
        assert r.status_code == 422, r.text
        assert error_problem(r) is None, error_problem(r)
        assert field in r.json()["error"]["message"], r.text  # it says what was wrong
    assert service_count(shared) == before


def test_unknown_service_is_404_naming_it(shared: Daemon) -> None:
    name = "ghost-service"
    calls = [("GET", f"/api/v1/services/{name}", None), ("GET", f"/api/v1/services/{name}/logs", None),
             ("POST", f"/api/v1/services/{name}/start", {"wait": False}), ("POST", f"/api/v1/services/{name}/stop", {}),
             ("POST", f"/api/v1/services/{name}/restart", {}), ("DELETE", f"/api/v1/services/{name}", None),
             ("POST", "/api/v1/ops/service.get", {"service": name}),
             ("GET", "/api/v1/events/history", {"service": name})]
    for method, url, body in calls:
        if method == "GET":
            r = shared.http.get(url, params=body)
        else:
            r = shared.http.request(method, url, json=body)
        assert r.status_code == 404, (method, url, r.text)
        assert error_problem(r) is None, error_problem(r)
        err = r.json()["error"]
        assert name in err["message"] and err["code"] == "not_found", err
        assert err.get("param") == "service"


def test_duplicate_name_is_409_and_keeps_the_first(daemon: Daemon) -> None:
    first = create_named(daemon, "dup-model", "twin")
    for url in ("/api/v1/services", "/api/v1/ops/service.create"):
        r = daemon.http.post(url, json={"model": "other-model", "name": "twin", "command": echo_cmd()})
        assert r.status_code == 409, r.text
        assert error_problem(r, "name") is None, error_problem(r, "name")
        assert "'twin'" in r.json()["error"]["message"]
        assert r.json()["error"]["code"] == "conflict"
    services = daemon.op("service.list")["services"]
    assert [(s["id"], s["name"], s["model"]) for s in services] == [(first["id"], "twin", "dup-model")]
    # The default name comes from the model: the same model twice without --name is a conflict too.
    daemon.create("same-model")
    r = daemon.http.post("/api/v1/services", json={"model": "same-model", "command": echo_cmd()})
    assert r.status_code == 409 and "same-model" in r.json()["error"]["message"]
    assert len(daemon.op("service.list")["services"]) == 2


def test_unknown_operation_route_and_method(shared: Daemon) -> None:
    r = shared.http.post("/api/v1/ops/service.explode", json={})
    assert r.status_code == 404 and error_problem(r, "service.explode") is None, r.text
    assert "/api/v1/ops" in r.json()["error"]["message"]  # says where the list is
    r = shared.http.get("/api/v1/no-such-route")
    assert r.status_code == 404 and error_problem(r) is None, r.text
    r = shared.http.put("/api/v1/services", json={})
    assert r.status_code == 405 and error_problem(r) is None, r.text


def _resolve_pointer(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"external $ref {ref!r}"
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"$ref {ref!r} does not resolve (at {part!r})"
        node = node[part]
    return node


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for v in node.values():
            yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def test_openapi_lists_every_operation_with_resolvable_schemas(shared: Daemon,
                                                               operations: list[dict[str, Any]]) -> None:
    r = shared.http.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc = json.loads(r.text)
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for op in operations:
        assert op["path"] in paths, f"{op['path']} missing from /openapi.json"
        entry = paths[op["path"]].get(op["method"].lower())
        assert entry is not None, f"{op['method']} {op['path']} missing from /openapi.json"
        assert entry["operationId"] == op["name"]
        if op["method"] != "GET":
            schema = entry["requestBody"]["content"]["application/json"]["schema"]
            target = _resolve_pointer(doc, schema["$ref"]) if "$ref" in schema else schema
            in_path = set(re.findall(r"\{(\w+)\}", op["path"]))  # those the path carries are not in the body
            assert set(target["properties"]) == set(op["input_schema"].get("properties", {})) - in_path, op["name"]
        answers = (entry["responses"].get("200") or entry["responses"]["201"])["content"]  # 201: a create
        if "application/json" not in answers:  # an event stream (agent.ask)
            assert "text/event-stream" in answers, op["name"]
            continue
        out = answers["application/json"]["schema"]
        assert "properties" in _resolve_pointer(doc, out["$ref"])
    for extra in ("/api/v1/ops", "/api/v1/events", "/health"):
        assert extra in paths, extra
    for op in operations:  # each operation by name too, with its own body
        assert f"/api/v1/ops/{op['name']}" in paths, op["name"]
    refs = list(_refs(doc))
    assert len(refs) >= len(operations)
    for ref in refs:
        _resolve_pointer(doc, ref)


def _sse_events(lines: Iterator[str], want: Any, deadline: float, max_lines: int = 2000) -> list[dict[str, Any]]:
    """Parse SSE lines into events until ``want(event)`` is true (bounded in lines and time)."""
    events: list[dict[str, Any]] = []
    current: dict[str, str] = {}
    for n, line in enumerate(lines):
        assert n < max_lines and time.monotonic() < deadline, f"no matching event; got {events}"
        if line == "":
            if "data" in current:
                ev = {"id": current.get("id"), "event": current.get("event"), "data": json.loads(current["data"])}
                events.append(ev)
                if want(ev):
                    return events
            current = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            current[key] = value.removeprefix(" ")
    raise AssertionError(f"the stream ended before a matching event; got {events}")


def test_events_stream_a_create_as_sse(daemon: Daemon) -> None:
    timeout = httpx.Timeout(10.0)
    with httpx.Client(base_url=daemon.url, timeout=timeout, trust_env=False) as c:
        with c.stream("GET", "/api/v1/events") as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = r.iter_lines()
            assert next(lines).startswith(":")  # the opening comment: subscribed from here on
            svc = create_named(daemon, "sse-model", "sse-svc")
            events = _sse_events(lines, lambda e: e["event"] == "service.created", time.monotonic() + 15)
        ev = events[-1]
        assert ev["data"]["service_id"] == svc["id"] and ev["data"]["kind"] == "service.created"
        assert ev["id"] == str(ev["data"]["id"])
        # since=ID replays history first: the same event comes back to a late subscriber.
        with c.stream("GET", "/api/v1/events", params={"since": int(ev["id"]) - 1}) as r:
            replay = _sse_events(r.iter_lines(), lambda e: e["id"] == ev["id"], time.monotonic() + 15)
        assert replay[-1]["data"] == ev["data"]
    # A bad since is a 4xx in the error shape before any stream starts.
    for bad in ("abc", "-1", str(10**30)):
        r = daemon.http.get("/api/v1/events", params={"since": bad})
        assert r.status_code == 422 and error_problem(r, "since") is None, r.text


def test_health(shared: Daemon) -> None:
    r = shared.http.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and isinstance(body["version"], str) and body["version"]
