"""Benchmark results (``aima bench``): each with the model, service, engine and its version, config, hardware and
aima version it ran with, what was asked and the figures per level

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bench_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.Float, nullable=False, index=True),
        sa.Column("model", sa.String(200), nullable=False, index=True),
        sa.Column("service", sa.String(128), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("engine", sa.String(64), nullable=True),
        sa.Column("engine_version", sa.String(200), nullable=True),
        sa.Column("runtime", sa.String(32), nullable=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("hardware", sa.JSON, nullable=False),
        sa.Column("aima_version", sa.String(32), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("levels", sa.JSON, nullable=False),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("sweep", sa.String(32), nullable=True, index=True),
        sa.Column("elapsed_s", sa.Float, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("bench_results")
