"""The daemon's process: ``python -m aima.surfaces.daemon --host H --port P`` (what ``aima start --detach``
runs): ``aima.server.daemon.serve`` with the surfaces it serves."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    import argparse

    from aima.config import Settings
    from aima.errors import AimaError
    from aima.server.daemon import serve
    from aima.surfaces import mounts

    parser = argparse.ArgumentParser(prog="aima-daemon")
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--insecure", action="store_true", help="listen beyond loopback without an API key")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
        return serve(settings, args.host or settings.host, args.port or settings.port, args.insecure, mounts())
    except AimaError as e:
        print(f"aima: {e.message}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
