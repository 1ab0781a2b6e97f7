"""Outcomes, incremental result counters, audit log, shadow predictions, canary health.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
DOUBLE = sa.Float().with_variant(mysql.DOUBLE(), "mysql", "mariadb")
TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def exact_string(length):
    exact = mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_nopad_bin")
    return sa.String(length).with_variant(exact, "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "variant_counters",
        sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id"), primary_key=True),
        sa.Column("variant", sa.String(64), primary_key=True),
        sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("exposures", sa.BigInteger, nullable=False),
        sa.Column("expected", DOUBLE, nullable=False),
    )
    op.create_table(
        "variant_metrics",
        sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id"), primary_key=True),
        sa.Column("variant", sa.String(64), primary_key=True),
        sa.Column("metric", sa.String(64), primary_key=True),
        sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("users", sa.BigInteger, nullable=False),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("total", DOUBLE, nullable=False),
        sa.Column("total_sq", DOUBLE, nullable=False),
    )
    op.create_table(
        "user_metrics",
        sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id"), primary_key=True),
        sa.Column("uid", exact_string(256), primary_key=True),
        sa.Column("metric", sa.String(64), primary_key=True),
        sa.Column("variant", sa.String(64), nullable=False),
        sa.Column("total", DOUBLE, nullable=False),
        sa.Column("events", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "outcomes",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("uid", exact_string(256), nullable=False),
        sa.Column("variant", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("value", DOUBLE, nullable=False),
        sa.Column("event_id", exact_string(128), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.UniqueConstraint("experiment_id", "event_id", name="uq_outcome_event"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("before", sa.JSON, nullable=True),
        sa.Column("after", sa.JSON, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_index("ix_audit_experiment", "audit_log", ["experiment_id", "id"])
    op.create_table(
        "shadow_counters",
        sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id"), primary_key=True),
        sa.Column("variant", sa.String(64), primary_key=True),
        sa.Column("comparisons", sa.BigInteger, nullable=False),
        sa.Column("agreements", sa.BigInteger, nullable=False),
        sa.Column("primary_ms_sum", DOUBLE, nullable=False),
        sa.Column("shadow_ms_sum", DOUBLE, nullable=False),
    )
    op.create_table(
        "shadow_predictions",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("uid", exact_string(256), nullable=False),
        sa.Column("primary_variant", sa.String(64), nullable=False),
        sa.Column("primary_prediction", sa.JSON, nullable=True),
        sa.Column("primary_score", DOUBLE, nullable=True),
        sa.Column("primary_ms", DOUBLE, nullable=False),
        sa.Column("shadow_variant", sa.String(64), nullable=False),
        sa.Column("shadow_prediction", sa.JSON, nullable=True),
        sa.Column("shadow_score", DOUBLE, nullable=True),
        sa.Column("shadow_ms", DOUBLE, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_table(
        "variant_health",
        sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id"), primary_key=True),
        sa.Column("variant", sa.String(64), primary_key=True),
        sa.Column("window_start", sa.DateTime, primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("latency_buckets", sa.JSON, nullable=False),
    )
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("started_at", sa.DateTime, nullable=True))
    _backfill_counters()


def _backfill_counters() -> None:
    """Counter rows for experiments that exist already; their exposures so far go to shard 0
    (expected = observed: the weights at the time were not recorded before this revision)."""
    bind = op.get_bind()
    counts = {(e, v): n for e, v, n in bind.execute(sa.text(
        "SELECT experiment_id, variant, COUNT(*) FROM exposures GROUP BY experiment_id, variant"))}
    rows = [
        {"e": e, "v": v, "s": shard, "n": counts.get((e, v), 0) if shard == 0 else 0}
        for e, v in bind.execute(sa.text("SELECT experiment_id, name FROM variants"))
        for shard in range(16)
    ]
    if rows:
        bind.execute(sa.text(
            "INSERT INTO variant_counters (experiment_id, variant, shard, exposures, expected) "
            "VALUES (:e, :v, :s, :n, :n)"), rows)


def downgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("started_at")
        batch.drop_column("version")
    for table in ("variant_health", "shadow_predictions", "shadow_counters", "audit_log",
                  "outcomes", "user_metrics", "variant_metrics", "variant_counters"):
        op.drop_table(table)
