"""The least a Python proxy can do per request: a byte relay on uvloop, one upstream connection per client
connection, no parsing, no routing, no copying beyond what the kernel does.

Every request costs it exactly what any proxy must pay: a read and a write on each side. What it
sustains in front of the stub, beside the stub called directly, is the ceiling for any front door
written in Python on this machine (aima's gateway does that work plus HTTP parsing, routing, the
model rewrite, metrics and its headers).

    python bench/relay_floor.py --port P --upstream 127.0.0.1:U
"""

from __future__ import annotations

import argparse
import asyncio


class Upstream(asyncio.Protocol):
    def __init__(self, client: asyncio.Transport):
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class Client(asyncio.Protocol):
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.transport: asyncio.Transport | None = None
        self.up: Upstream | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        assert self.transport is not None
        _t, up = await asyncio.get_running_loop().create_connection(lambda: Upstream(self.transport),  # type: ignore[arg-type]
                                                                    self.host, self.port)
        self.up = up
        for data in self.pending:
            up.transport.write(data)  # type: ignore[union-attr]
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        if self.up is None:
            self.pending.append(data)
        else:
            self.up.transport.write(data)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.close()


async def serve(port: int, upstream: str) -> None:
    host, _, up_port = upstream.rpartition(":")
    server = await asyncio.get_running_loop().create_server(lambda: Client(host, int(up_port)), "127.0.0.1", port,
                                                             backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="host:port")
    args = p.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.port, args.upstream))


if __name__ == "__main__":
    main()
