"""The engine's launch facts kept on the service (read from the catalog once, at create) and the node an
instance runs on (a cluster runtime places instances on other machines)

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN (see 0002: a batch rebuild would cascade to `instances`).
    op.add_column("services", sa.Column("engine_spec", sa.JSON, nullable=True))
    op.add_column("instances", sa.Column("node", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as b:
        b.drop_column("node")
    with op.batch_alter_table("services") as b:
        b.drop_column("engine_spec")
