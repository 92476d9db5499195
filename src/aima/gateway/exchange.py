"""What the gateway needs of one ``/v1`` request and its answer: the daemon's HTTP protocol
(``server.http.Exchange``) provides it, writing straight to the client's socket."""

from __future__ import annotations

from typing import Any, Protocol

Headers = list[tuple[bytes, bytes]]


class Exchange(Protocol):
    method: str
    path: str
    target: bytes  # the raw path and query, as the engine gets them
    query: bytes
    headers: Headers
    too_large: bool  # the body outgrew the route's limit (it was read and dropped)
    disconnected: bool  # the client went away
    response_complete: bool
    upstream: Any  # the engine connection working on it now: aborted when the client leaves
    key: Any  # the API key it came with (server.auth.KeyInfo: id, scope, models, rpm, tpm)

    async def body(self) -> bytes | None:
        """The whole request body; None when the client left before sending it."""

    def header(self, name: bytes) -> bytes | None: ...

    @property
    def committed(self) -> bool:
        """Some of the answer went out: from now on an error can only cut it short."""

    def whole(self, status: int, headers: Headers, body: bytes) -> None:
        """An answer in one piece."""

    def start(self, status: int, headers: Headers, *, length: bool = False) -> None:
        """Begin an answer whose body follows in pieces."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None:
        """Wait while the client reads slower than the engine writes."""

    def end(self, data: bytes = b"") -> None:
        """The last piece: the answer is complete."""

    def abort(self) -> None:
        """An answer that cannot be finished: the client sees the connection close."""
