"""A catalog overlay for tests that need the whole catalog path (resolve → pull → create → start) fast and
without a model hub: an engine that runs aima's echo server, and a model whose weights are a local file.

``write_echo_catalog(home, weights)`` writes both into ``home/catalog`` (the overlay folder) and a small
GGUF at ``weights``; ``echo-model`` (alias ``echo-alias``) then resolves to the ``echo-engine``.
"""

from __future__ import annotations

from pathlib import Path

ENGINE = """\
name: echo-engine
description: aima's echo server as a catalog engine (tests only)
model_types: [llm]
formats: [gguf]
command: ["{python}", "-m", "aima.engines.echo", "--model", "{model_name}", "--say", "weights {model_path}"]
host_flag: --host
ports:
  - {name: http, flag: --port, primary: true}
config:
  ready_after:
    flag: --ready-after
    type: float
    min: 0
    description: seconds before /health answers 200
health:
  path: /health
  timeout_s: 60
identity:
  required: true
runtime:
  prefer: native
"""

MODEL = """\
name: echo-model
type: llm
family: echo
description: a local file served by the echo engine (tests only)
aliases: [echo-alias]
sources:
  - id: local
    type: local
    path: {path}
    format: gguf
variants:
  - name: cpu
    engine: echo-engine
    device: cpu
    format: gguf
    source: local
    config:
      ready_after: 0.2
    memory:
      required_bytes: 1MiB
"""


def write_echo_catalog(home: Path, weights: Path) -> Path:
    """The echo engine and model in ``home``'s catalog overlay; returns the weights file it wrote."""
    from tests.support.modelstore import write_gguf

    weights.parent.mkdir(parents=True, exist_ok=True)
    write_gguf(weights)
    (home / "catalog" / "engines").mkdir(parents=True, exist_ok=True)
    (home / "catalog" / "models").mkdir(parents=True, exist_ok=True)
    (home / "catalog" / "engines" / "echo-engine.yaml").write_text(ENGINE)
    (home / "catalog" / "models" / "echo-model.yaml").write_text(MODEL.format(path=weights))
    return weights
