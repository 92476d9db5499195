"""Surfaces: CLI, REST, MCP and the web page, all generated from the operation registry."""
