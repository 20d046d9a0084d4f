"""model entries record their parameter count and input size

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: entries saved before this revision were never measured.
    with op.batch_alter_table('modelentry', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parameters', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('image_size', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('modelentry', schema=None) as batch_op:
        batch_op.drop_column('image_size')
        batch_op.drop_column('parameters')
