"""labels: the true label of answered predictions; shadow predictions found by request.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
DOUBLE = sa.Float().with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "labels",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("variant", sa.String(64), nullable=False),
        sa.Column("score", DOUBLE, nullable=False),
        sa.Column("label", sa.Integer, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.UniqueConstraint("experiment_id", "request_id", name="uq_label_request"),
    )
    op.create_index("ix_shadow_request", "shadow_predictions", ["experiment_id", "request_id"])


def downgrade() -> None:
    op.drop_index("ix_shadow_request", "shadow_predictions")
    op.drop_table("labels")
