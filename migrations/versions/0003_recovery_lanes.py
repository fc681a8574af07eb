"""recovery lanes, history and partial results

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 13:07:57.474266
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("partial", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("partial_reason", sa.Text(), nullable=True))

    with op.batch_alter_table("notebook_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lane", sa.String(length=16), server_default="primary", nullable=False))
        batch_op.drop_constraint(batch_op.f("uq_notebook_step"), type_="unique")
        batch_op.create_unique_constraint("uq_notebook_lane_step", ["job_id", "subtask_id", "lane", "step"])

    with op.batch_alter_table("subtasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lane", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("history", sa.JSON(), server_default="[]", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("subtasks", schema=None) as batch_op:
        batch_op.drop_column("history")
        batch_op.drop_column("lane")

    with op.batch_alter_table("notebook_entries", schema=None) as batch_op:
        batch_op.drop_constraint("uq_notebook_lane_step", type_="unique")
        batch_op.create_unique_constraint(batch_op.f("uq_notebook_step"), ["job_id", "subtask_id", "step"])
        batch_op.drop_column("lane")

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("partial_reason")
        batch_op.drop_column("partial")
