"""counter_snapshots: each variant's counters once a minute, for the effect over time.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
DOUBLE = sa.Float().with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "counter_snapshots",
        sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id"), primary_key=True),
        sa.Column("taken_at", TIME, primary_key=True),
        sa.Column("variant", sa.String(64), primary_key=True),
        sa.Column("exposures", sa.BigInteger, nullable=False),
        sa.Column("users", sa.BigInteger, nullable=False),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("total", DOUBLE, nullable=False),
        sa.Column("total_sq", DOUBLE, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("counter_snapshots")
