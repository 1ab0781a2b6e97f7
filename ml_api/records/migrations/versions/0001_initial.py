"""Initial schema: model registry, experiments, variants, exposures.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def exact_string(length):
    exact = mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_nopad_bin")
    return sa.String(length).with_variant(exact, "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("feature_names", sa.JSON, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("trained_at", sa.String(40), nullable=False),
        sa.Column("registered_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_model_name_version"),
    )
    op.create_table(
        "experiments",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("name", exact_string(128), nullable=False, unique=True),
        sa.Column("salt", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("strategy", sa.String(32), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("default_variant", sa.String(64), nullable=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "variants",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("model_key", sa.String(200), nullable=False),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.UniqueConstraint("experiment_id", "name", name="uq_variant_name"),
    )
    op.create_table(
        "exposures",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("uid", exact_string(256), nullable=False),
        sa.Column("variant", sa.String(64), nullable=False),
        sa.Column(
            "first_seen",
            sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb"),
            nullable=False,
        ),
        sa.UniqueConstraint("experiment_id", "uid", name="uq_exposure_uid"),
    )


def downgrade() -> None:
    for table in ("exposures", "variants", "experiments", "model_versions"):
        op.drop_table(table)
