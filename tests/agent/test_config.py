"""The agent's settings: AIMA_AGENT_* beat `agent:` in config.yaml beat the defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from aima.config import Settings


def test_agent_settings_from_the_file_and_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("AIMA_AGENT_BASE_URL", "AIMA_AGENT_MODEL", "AIMA_AGENT_API_KEY", "AIMA_AGENT_MAX_ROUNDS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AIMA_HOME", str(tmp_path))
    s = Settings()
    assert s.agent_base_url is None and s.agent_model is None and s.agent_max_rounds == 30
    (tmp_path / "config.yaml").write_text(
        "agent:\n  base_url: http://gpu-box:8000/v1\n  model: qwen3-8b\n  max_rounds: 12\n")
    s = Settings()
    assert (s.agent_base_url, s.agent_model, s.agent_max_rounds) == ("http://gpu-box:8000/v1", "qwen3-8b", 12)
    monkeypatch.setenv("AIMA_AGENT_MODEL", "other")
    monkeypatch.setenv("AIMA_AGENT_API_KEY", "sk-x")
    s = Settings()
    assert (s.agent_model, s.agent_api_key, s.agent_base_url) == ("other", "sk-x", "http://gpu-box:8000/v1")
