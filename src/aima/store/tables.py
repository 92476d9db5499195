"""The tables: models, services, instances, events, API keys."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, index=True)
    type: Mapped[str] = mapped_column(String(32), default="llm")
    path: Mapped[str | None] = mapped_column(Text, nullable=True)
    format: Mapped[str | None] = mapped_column(String(32), nullable=True)
    size_bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[float] = mapped_column(Float)


class ServiceRow(Base):
    __tablename__ = "services"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True, index=True)
    model: Mapped[str] = mapped_column(String(200), index=True)
    engine: Mapped[str] = mapped_column(String(64), default="custom")
    runtime: Mapped[str] = mapped_column(String(32), default="native")
    # What a container runtime needs besides the command (images, mounts, limits, GPUs, network) and
    # why the runtime was chosen; fixed at create (see aima.runtimes.container.ContainerOptions).
    runtime_options: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The engine's launch facts (health path and timeout, identity check, fatal log patterns, environment),
    # read from the catalog once at create (aima.domain.engine.EngineSpec); None for a service made before.
    engine_spec: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    command: Mapped[str | None] = mapped_column(Text, nullable=True)
    health_path: Mapped[str | None] = mapped_column(String(200), nullable=True)
    health_timeout_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    explicit_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ports: Mapped[list[int]] = mapped_column(JSON, default=list)
    replicas: Mapped[int] = mapped_column(Integer, default=1)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    env: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    restart_policy: Mapped[str] = mapped_column(String(16), default="on-failure")
    idle_ttl_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    memory_bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)  # per device, when known
    devices: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # "cpu", "gpu0", ...
    desired: Mapped[str] = mapped_column(String(16), default="stopped")
    state: Mapped[str] = mapped_column(String(16), default="created")
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class InstanceRow(Base):
    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    service_id: Mapped[str] = mapped_column(
        String(16), ForeignKey("services.id", ondelete="CASCADE"), index=True
    )
    replica: Mapped[int] = mapped_column(Integer, default=0)
    runtime: Mapped[str] = mapped_column(String(32), default="native")
    state: Mapped[str] = mapped_column(String(16), default="starting")
    ready: Mapped[bool] = mapped_column(Boolean, default=False)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    start_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    cmdline: Mapped[list[str]] = mapped_column(JSON, default=list)
    handle: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    host: Mapped[str] = mapped_column(String(64), default="127.0.0.1")
    node: Mapped[str | None] = mapped_column(String(64), nullable=True)  # None: the daemon's own machine
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    log_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    ready_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class EventRow(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float, index=True)
    kind: Mapped[str] = mapped_column(String(64))
    service_id: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    instance_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    prefix: Mapped[str] = mapped_column(String(32))  # the first characters, to recognise a key
    hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)  # sha256 hex of the key
    created_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    scope: Mapped[str] = mapped_column(String(16), default="admin")  # inference | read | admin
    models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # inference: only these (None: all)
    rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)  # requests per minute, at most
    tpm: Mapped[int | None] = mapped_column(Integer, nullable=True)  # tokens per minute, at most


class KeyUsageRow(Base):
    """What the /v1 answers of one key (``-``: no key) and model added up to in one minute."""

    __tablename__ = "key_usage"

    minute: Mapped[float] = mapped_column(Float, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    audio_seconds: Mapped[float] = mapped_column(Float, default=0.0)


class AgentSessionRow(Base):
    """A conversation of the operator agent (``aima ask --session ID``), kept until ``expires_at``."""

    __tablename__ = "agent_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    profile: Mapped[str] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class AgentAuditRow(Base):
    """One tool call of the operator agent (or of an outside agent over MCP with a profile): who, what, how it
    ended (``ok``, ``error``, ``denied``, ``approved``) and how it was approved."""

    __tablename__ = "agent_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float, index=True)
    session: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    profile: Mapped[str] = mapped_column(String(16))
    tool: Mapped[str] = mapped_column(String(128))
    arguments: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    outcome: Mapped[str] = mapped_column(String(16))
    approval: Mapped[str | None] = mapped_column(String(64), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)


class BenchResultRow(Base):
    """One benchmark of a served model (``aima bench``): what ran it — model, service, engine and its version,
    config, hardware, aima's version — what was asked (``params``) and the figures per level (``levels``)."""

    __tablename__ = "bench_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[float] = mapped_column(Float, index=True)
    model: Mapped[str] = mapped_column(String(200), index=True)
    service: Mapped[str | None] = mapped_column(String(128), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))  # llm | embedding | asr | tts
    engine: Mapped[str | None] = mapped_column(String(64), nullable=True)
    engine_version: Mapped[str | None] = mapped_column(String(200), nullable=True)
    runtime: Mapped[str | None] = mapped_column(String(32), nullable=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    hardware: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    aima_version: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    levels: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    sweep: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    elapsed_s: Mapped[float] = mapped_column(Float, default=0.0)
