"""The CLI's HTTP client of the daemon: the standard library only, so a command starts fast."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any
from urllib.parse import urlsplit

from aima.errors import AimaError, DaemonUnreachable


class Client:
    def __init__(self, url: str, api_key: str | None, timeout: float | None = None):
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DaemonUnreachable(f"--url {url!r} is not an http(s) URL like http://127.0.0.1:9090")
        self._parts = parts
        self._timeout = timeout
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            klass = http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
            self._conn = klass(self._parts.hostname or "127.0.0.1", self._parts.port, timeout=self._timeout)
        return self._conn

    def call(self, op: str, data: dict[str, Any]) -> Any:
        return json.loads(self.call_raw(op, data))

    def call_raw(self, op: str, data: dict[str, Any]) -> bytes:
        """The daemon's JSON answer as bytes (errors raised as AimaError)."""
        return self.request("POST", f"/api/v1/ops/{op}", data)

    def request(self, method: str, path: str, data: Any = None) -> bytes:
        body = json.dumps(data).encode() if data is not None else None
        headers = {**self._headers, "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn = self._connection()
            conn.request(method, self._parts.path.rstrip("/") + path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (ConnectionRefusedError, socket.gaierror, FileNotFoundError):
            self.close()
            raise DaemonUnreachable(
                f"no aima daemon at {self.url}; start one with `aima start --detach` "
                f"(or set --url / AIMA_URL)") from None
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise DaemonUnreachable(f"the daemon at {self.url} did not answer: {type(e).__name__} {e}") from None
        if resp.status >= 400:
            try:
                payload: Any = json.loads(raw)
            except ValueError:
                payload = raw.decode(errors="replace")
            raise AimaError.from_dict(resp.status, payload)
        return raw

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
