"""The CLI: Typer + Rich, a thin HTTP client of the daemon. Commands are generated from
``manifest.json`` (written from the operation registry by ``make manifest``), so ``aima --help``
imports neither FastAPI nor pydantic."""
