"""API keys; a service's memory need and devices (for the load-on-demand memory budget)

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(128), nullable=True),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True, index=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
    # Plain ALTER TABLE ADD COLUMN: a batch rebuild would drop `services` and, with foreign keys on,
    # cascade to `instances`.
    op.add_column("services", sa.Column("memory_bytes", sa.Integer, nullable=True))
    op.add_column("services", sa.Column("devices", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("services") as b:
        b.drop_column("devices")
        b.drop_column("memory_bytes")
    op.drop_table("api_keys")
