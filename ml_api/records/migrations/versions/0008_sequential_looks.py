"""sequential_looks: each comparison's decisive test at every look, for the running
always-valid p-value and interval.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
DOUBLE = sa.Float().with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "sequential_looks",
        sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id"), primary_key=True),
        sa.Column("taken_at", TIME, primary_key=True),
        sa.Column("variant", sa.String(64), primary_key=True),
        sa.Column("test", sa.String(32), nullable=False),
        sa.Column("estimate", DOUBLE, nullable=False),
        sa.Column("p_value", DOUBLE, nullable=False),
        sa.Column("ci_low", DOUBLE, nullable=True),
        sa.Column("ci_high", DOUBLE, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("sequential_looks")
