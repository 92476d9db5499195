"""API keys gain a scope (inference, read, admin), the models an inference key may use, and limits per
minute; every /v1 answer is counted per key and model, per minute

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN (see 0002). Keys made before scopes were admin keys.
    op.add_column("api_keys", sa.Column("scope", sa.String(16), nullable=False, server_default="admin"))
    op.add_column("api_keys", sa.Column("models", sa.JSON, nullable=True))
    op.add_column("api_keys", sa.Column("rpm", sa.Integer, nullable=True))
    op.add_column("api_keys", sa.Column("tpm", sa.Integer, nullable=True))
    op.create_table(
        "key_usage",
        sa.Column("minute", sa.Float, primary_key=True),  # the minute's start, unix time
        sa.Column("key_id", sa.String(16), primary_key=True),  # "-" for requests without a key
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("requests", sa.Integer, nullable=False, server_default="0"),
        sa.Column("errors", sa.Integer, nullable=False, server_default="0"),
        sa.Column("prompt_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("audio_seconds", sa.Float, nullable=False, server_default="0"),
    )
    op.create_index("ix_key_usage_key_minute", "key_usage", ["key_id", "minute"])


def downgrade() -> None:
    op.drop_index("ix_key_usage_key_minute", "key_usage")
    op.drop_table("key_usage")
    with op.batch_alter_table("api_keys") as b:
        for c in ("tpm", "rpm", "models", "scope"):
            b.drop_column(c)
