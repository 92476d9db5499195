"""initial schema: models, services, instances, events

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True, index=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("path", sa.Text, nullable=True),
        sa.Column("format", sa.String(32), nullable=True),
        sa.Column("size_bytes", sa.Integer, nullable=True),
        sa.Column("meta", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "services",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True, index=True),
        sa.Column("model", sa.String(200), nullable=False, index=True),
        sa.Column("engine", sa.String(64), nullable=False),
        sa.Column("runtime", sa.String(32), nullable=False),
        sa.Column("command", sa.Text, nullable=True),
        sa.Column("health_path", sa.String(200), nullable=True),
        sa.Column("health_timeout_s", sa.Float, nullable=True),
        sa.Column("explicit_port", sa.Integer, nullable=True),
        sa.Column("ports", sa.JSON, nullable=False),
        sa.Column("replicas", sa.Integer, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("env", sa.JSON, nullable=False),
        sa.Column("restart_policy", sa.String(16), nullable=False),
        sa.Column("idle_ttl_s", sa.Float, nullable=True),
        sa.Column("pinned", sa.Boolean, nullable=False),
        sa.Column("desired", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("restarts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
    )
    op.create_table(
        "instances",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("service_id", sa.String(16), sa.ForeignKey("services.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("replica", sa.Integer, nullable=False),
        sa.Column("runtime", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("ready", sa.Boolean, nullable=False),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("start_time", sa.Float, nullable=True),
        sa.Column("cmdline", sa.JSON, nullable=False),
        sa.Column("handle", sa.JSON, nullable=False),
        sa.Column("host", sa.String(64), nullable=False),
        sa.Column("port", sa.Integer, nullable=True),
        sa.Column("log_path", sa.Text, nullable=True),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("ready_at", sa.Float, nullable=True),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Float, nullable=False, index=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("service_id", sa.String(16), nullable=True, index=True),
        sa.Column("instance_id", sa.String(16), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    for t in ("events", "instances", "services", "models"):
        op.drop_table(t)
