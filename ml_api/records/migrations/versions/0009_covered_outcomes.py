"""CUPED with missing covariates: per variant and metric, the sum of the uids' totals and
conversions over the uids that came with a covariate (the rest are the missing ones).

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DOUBLE = sa.Float().with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")

# The sums so far, from the raw per-uid totals; added to one shard row of each group (the
# results add the shards up).
COVERED = sa.text("""
    SELECT um.experiment_id, um.variant, um.metric, SUM(um.total),
           SUM(CASE WHEN um.total > 0 THEN 1 ELSE 0 END)
    FROM user_metrics um JOIN exposures e
      ON e.experiment_id = um.experiment_id AND e.uid = um.uid
    WHERE e.covariate IS NOT NULL
    GROUP BY um.experiment_id, um.variant, um.metric""")


def upgrade() -> None:
    with op.batch_alter_table("variant_metrics") as table:
        table.add_column(sa.Column("covered_total", DOUBLE, nullable=False, server_default="0"))
        table.add_column(sa.Column("covered_converting", sa.BigInteger, nullable=False,
                                   server_default="0"))
    connection = op.get_bind()
    for experiment_id, variant, metric, total, converting in connection.execute(COVERED).all():
        key = {"e": experiment_id, "v": variant, "m": metric}
        shard = connection.execute(sa.text(
            "SELECT MIN(shard) FROM variant_metrics "
            "WHERE experiment_id = :e AND variant = :v AND metric = :m"), key).scalar()
        connection.execute(sa.text(
            "UPDATE variant_metrics SET covered_total = :t, covered_converting = :c "
            "WHERE experiment_id = :e AND variant = :v AND metric = :m AND shard = :s"),
            {**key, "s": shard, "t": float(total or 0), "c": int(converting or 0)})


def downgrade() -> None:
    with op.batch_alter_table("variant_metrics") as table:
        table.drop_column("covered_converting")
        table.drop_column("covered_total")
