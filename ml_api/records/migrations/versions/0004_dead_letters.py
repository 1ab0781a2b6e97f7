"""dead_letters: spooled outcomes whose exposure never reached the database.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
EXACT_UID = sa.String(256).with_variant(
    mysql.VARCHAR(256, charset="utf8mb4", collation="utf8mb4_nopad_bin"), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("uid", EXACT_UID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("reason", sa.String(255), nullable=False),
        sa.Column("spooled_at", TIME, nullable=False),
        sa.Column("moved_at", TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("dead_letters")
