"""The daemon's front protocol on the wire (raw sockets): /v1 answered outside ASGI and every other route
through it, on one keep-alive connection, in order; pipelining; ``Expect: 100-continue``; chunked
request bodies; HTTP/1.0; a body over the route's limit; a 64-connection burst."""

from __future__ import annotations

import concurrent.futures
import json
import socket
from collections.abc import Iterator

import pytest

from tests.gateway.conftest import serve
from tests.support.daemon import Daemon


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("front") / "aima-home", {})
    d.start()
    try:
        serve(d, "chat", "echo-chat")
        yield d
    finally:
        d.cleanup()


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> dict:
        return json.loads(self.body)


class Wire:
    """One raw TCP connection to the daemon; answers are read one at a time (Content-Length or chunked)."""

    def __init__(self, d: Daemon):
        self.sock = socket.create_connection(("127.0.0.1", d.port), timeout=30)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"connection closed early; got {self.buf[:300]!r}"
        self.buf += chunk

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(marker)
        return head + marker

    def read_n(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def answer(self) -> Answer:
        lines = self.read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        if "content-length" in headers:
            return Answer(status, headers, self.read_n(int(headers["content-length"])))
        assert headers.get("transfer-encoding") == "chunked", headers
        body = b""
        while True:
            size = int(self.read_until(b"\r\n").strip(), 16)
            body += self.read_n(size)
            self.read_n(2)
            if size == 0:
                return Answer(status, headers, body)

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: x", "Content-Type: application/json",
            f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


CHAT = json.dumps({"model": "echo-chat", "messages": [{"role": "user", "content": "hi"}]}).encode()


def test_one_keep_alive_connection_mixes_v1_and_the_rest_in_order(gw: Daemon) -> None:
    w = Wire(gw)
    try:
        for _ in range(3):
            w.send(post("/v1/chat/completions", CHAT))
            a = w.answer()
            assert a.status == 200 and a.json()["choices"][0]["message"]["content"] == "echo: hi"
            assert a.headers["x-aima-service"] == "chat"
            w.send(get("/health"))
            assert w.answer().json()["status"] == "ok"
            w.send(get("/api/v1/services"))
            assert any(s["name"] == "chat" for s in w.answer().json()["services"])
            w.send(get("/v1/models"))
            assert [m["id"] for m in w.answer().json()["data"]] == ["echo-chat"]
    finally:
        w.close()


def test_head_gets_a_head_without_a_body(gw: Daemon) -> None:
    w = Wire(gw)
    try:
        w.send(b"HEAD /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        head = w.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 405") and b"allow: get" in head.lower() and b"server: aima" in head
        w.send(get("/v1/models"))  # no body was sent: the next answer starts right after the head
        assert w.answer().status == 200
    finally:
        w.close()


def test_pipelined_requests_are_answered_in_order(gw: Daemon) -> None:
    w = Wire(gw)
    try:
        bodies = [json.dumps({"model": "echo-chat", "messages": [{"role": "user", "content": f"p{i}"}]}).encode()
                  for i in range(4)]
        w.send(post("/v1/chat/completions", bodies[0]) + get("/health") + post("/v1/chat/completions", bodies[1])
               + get("/v1/models") + post("/v1/chat/completions", bodies[2]) + post("/v1/nope", b"{}")
               + post("/v1/chat/completions", bodies[3]))
        got = [w.answer() for _ in range(7)]
        assert [a.status for a in got] == [200, 200, 200, 200, 200, 404, 200]
        said = [a.json()["choices"][0]["message"]["content"] for a in got if "choices" in a.body.decode()]
        assert said == ["echo: p0", "echo: p1", "echo: p2", "echo: p3"]
        assert got[1].json()["status"] == "ok" and got[5].json()["error"]["code"] == "not_found"
    finally:
        w.close()


def test_expect_100_continue_and_a_chunked_body(gw: Daemon) -> None:
    w = Wire(gw)
    try:
        w.send(("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(CHAT)}\r\nExpect: 100-continue\r\n\r\n").encode())
        assert w.read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 100 Continue")
        w.send(CHAT)
        assert w.answer().json()["choices"][0]["message"]["content"] == "echo: hi"
        half = len(CHAT) // 2
        w.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n%b\r\n" % (half, CHAT[:half]) + b"%x\r\n%b\r\n" % (len(CHAT) - half, CHAT[half:])
               + b"0\r\n\r\n")
        assert w.answer().json()["choices"][0]["message"]["content"] == "echo: hi"
    finally:
        w.close()


def test_http_1_0_gets_its_answer_then_the_connection_closes(gw: Daemon) -> None:
    w = Wire(gw)
    try:
        w.send(b"POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
               + f"Content-Length: {len(CHAT)}\r\n\r\n".encode() + CHAT)
        a = w.answer()
        assert a.status == 200 and a.headers.get("connection") == "close"
        assert w.closed()
    finally:
        w.close()


def test_a_body_over_the_route_limit_is_413_and_the_connection_lives_on(gw: Daemon) -> None:
    w = Wire(gw)
    try:
        big = b'{"model": "echo-chat", "pad": "' + b"x" * (33 << 20) + b'"}'
        w.send(post("/v1/chat/completions", big))
        a = w.answer()
        assert a.status == 413 and a.json()["error"]["code"] == "body_too_large"
        w.send(post("/v1/chat/completions", CHAT))
        assert w.answer().status == 200
    finally:
        w.close()


def test_64_connections_at_once_all_answered(gw: Daemon) -> None:
    def one(i: int) -> str:
        w = Wire(gw)
        try:
            body = json.dumps({"model": "chat", "messages": [{"role": "user", "content": f"c{i}"}]}).encode()
            out = []
            for _ in range(5):
                w.send(post("/v1/chat/completions", body))
                a = w.answer()
                assert a.json()["model"] == "chat"  # the name the client used, put back
                out.append(a.json()["choices"][0]["message"]["content"])
            assert len(set(out)) == 1
            return out[0]
        finally:
            w.close()

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        assert sorted(pool.map(one, range(64))) == sorted(f"echo: c{i}" for i in range(64))
