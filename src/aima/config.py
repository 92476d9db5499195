"""Settings: environment ``AIMA_*`` beats ``AIMA_HOME/config.yaml`` beats the defaults."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from aima.errors import InvalidInput


def default_home() -> Path:
    return Path(os.environ.get("AIMA_HOME") or Path.home() / ".aima").expanduser()


class _YamlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = default_home() / "config.yaml"
        if not path.is_file():
            return {}
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise InvalidInput(f"{path} is not valid YAML: {e}; fix or remove it") from e
        if not isinstance(data, dict):
            raise InvalidInput(f"{path} must hold a mapping of settings")
        agent = data.pop("agent", None)  # `agent: {base_url: ...}` is agent_base_url, as AIMA_AGENT_BASE_URL is
        if isinstance(agent, dict):
            for k, v in agent.items():
                data.setdefault(f"agent_{k}", v)
        elif agent is not None:
            raise InvalidInput(f"{path}: `agent` must hold a mapping (base_url, model, api_key, ...)")
        ray = data.pop("ray", None)  # `ray: {address: HOST:PORT}` is ray_address, as AIMA_RAY_ADDRESS is
        if isinstance(ray, dict):
            for k, v in ray.items():
                data.setdefault(f"ray_{k}", v)
        elif ray is not None:
            raise InvalidInput(f"{path}: `ray` must hold a mapping (address: HOST:PORT of the head's GCS)")
        return data


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AIMA_", extra="ignore")

    home: Path = default_home()
    host: str = "127.0.0.1"
    port: int = 9090
    port_range: str = "20000-29999"
    reconcile_interval_s: float = 1.0
    health_timeout_s: float = 600.0
    # A running engine whose health probes time out (port accepting, no answer in 2 s) is busy, not down:
    # it stays ready until probes have timed out for this long (refused or failing probes: 3 misses).
    busy_grace_s: float = 60.0
    stop_grace_s: float = 10.0
    # Engine logs rotate past AIMA_LOG_MAX_BYTES, keeping AIMA_LOG_KEEP older files (.1 newest).
    log_max_bytes: int = Field(10 * 1024 * 1024, ge=4096)
    log_keep: int = Field(3, ge=0, le=100)
    restart_max: int = 5
    restart_backoff_s: float = 1.0
    restart_backoff_max_s: float = 60.0
    events_keep: int = 20000
    hf_endpoint: str | None = None  # AIMA_HF_ENDPOINT: a Hugging Face hub or mirror (default: the client's)
    # AIMA_HF_TOKEN (else the client's own HF_TOKEN): for gated repositories; never logged nor stored.
    hf_token: str | None = Field(None, repr=False)
    ms_endpoint: str | None = None  # AIMA_MS_ENDPOINT: a ModelScope hub or mirror (default: the client's)
    # The gateway. AIMA_API_KEY is also accepted by the daemon as a key (a bootstrap key: with it set, the
    # daemon needs a key before any was created); keys made with `aima key create` live in the database.
    api_key: str | None = Field(None, repr=False)
    gateway_timeout_s: float = 600.0  # an engine's answer must begin within this (504 otherwise)
    # Per-device memory budget for load on demand, e.g. "cpu=8GiB,gpu0=20GiB" (default: each device's total).
    memory_budget: str | None = None
    # The operator agent (`aima ask`): any OpenAI-compatible chat endpoint that supports tools. Unset, the agent
    # serves its own model (agent_model, default the catalog's tool-capable small model) through this daemon's /v1,
    # started on demand and stopped again after agent_idle_ttl_s without use. Also `agent: {...}` in config.yaml.
    agent_base_url: str | None = None
    agent_model: str | None = None
    agent_api_key: str | None = Field(None, repr=False)
    agent_max_rounds: int = 30
    agent_session_ttl_s: float = 7 * 86400.0  # a session (--session ID) is forgotten this long after its last use
    agent_approval_timeout_s: float = 300.0  # a REST approval not given within this is a denial
    agent_tool_timeout_s: float = 900.0  # the longest a tool may run (starts and pulls wait up to this)
    agent_context_tokens: int | None = None  # the model's context (default: the served engine's n_ctx, else 8192)
    agent_idle_ttl_s: float = 1800.0  # the self-served model's service stops after this long unused
    agent_request_timeout_s: float = 300.0  # one answer of the model
    # Ask the model once to look before answering and to verify after acting when it skips it (default: for the
    # small model aima serves itself, not for an endpoint named by agent_base_url).
    agent_guided: bool | None = None
    # A Ray cluster to run services on (`aima start --ray ADDRESS`, also `ray: {address: ...}` in config.yaml):
    # host:port of its head's GCS. The daemon attaches as a driver at start and fails at once when it cannot.
    ray_address: str | None = None
    # The language the default stack is brought up for (`aima up` without --lang): en, or zh (Whisper base).
    stack_lang: Literal["en", "zh"] = "en"

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):  # type: ignore[no-untyped-def]
        return (init_settings, env_settings, _YamlSource(settings_cls), file_secret_settings)

    @field_validator("port_range")
    @classmethod
    def _check_range(cls, v: str) -> str:
        parse_port_range(v)
        return v

    @property
    def ports(self) -> tuple[int, int]:
        return parse_port_range(self.port_range)

    @property
    def db_path(self) -> Path:
        return self.home / "aima.db"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def pid_file(self) -> Path:
        return self.home / "daemon.pid"

    @property
    def local_key_file(self) -> Path:
        """The running daemon's key for this machine's CLI (mode 0600; see ``server.auth``)."""
        return self.home / "local.key"

    def ensure_dirs(self) -> None:
        for d in (self.home, self.logs_dir):
            d.mkdir(parents=True, exist_ok=True)


def parse_port_range(text: str) -> tuple[int, int]:
    try:
        lo_s, hi_s = text.split("-", 1)
        lo, hi = int(lo_s), int(hi_s)
    except ValueError:
        raise InvalidInput(f"port range {text!r} must look like 20000-29999", field="port_range") from None
    if not (1024 <= lo <= hi <= 65535):
        raise InvalidInput(f"port range {text!r} must lie within 1024-65535", field="port_range")
    return lo, hi


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
