"""The daemon: one FastAPI app on one port for /api/v1, /v1, /mcp, /health (and later /ui, /metrics)."""
