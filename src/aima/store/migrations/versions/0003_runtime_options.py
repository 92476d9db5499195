"""A service's container settings and the reason its runtime was chosen (the docker runtime)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN (see 0002: a batch rebuild would cascade to `instances`).
    op.add_column("services", sa.Column("runtime_options", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("services") as b:
        b.drop_column("runtime_options")
