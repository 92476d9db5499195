"""Surfaces: CLI, REST, MCP and the web page, all generated from the operation registry.

The daemon serves REST, MCP and the web page (``/ui``) on its one port: ``mounts()`` is what it is handed
(``aima.server.app`` sits below the surfaces and names none of them); ``python -m aima.surfaces.daemon`` runs it so.
"""

from __future__ import annotations

from typing import Any


def mounts() -> list[Any]:
    """The surfaces the daemon serves beside the gateway, as ``aima.server.app.Mount`` callables."""
    from aima.surfaces import mcp, rest, ui

    return [rest.mount, mcp.mount, ui.mount]
