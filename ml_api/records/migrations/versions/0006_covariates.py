"""Covariates for CUPED: each exposure's pre-exposure covariate, and the sums results need.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

DOUBLE = sa.Float().with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")


def upgrade() -> None:
    op.add_column("exposures", sa.Column("covariate", DOUBLE, nullable=True))
    with op.batch_alter_table("variant_counters") as table:
        table.add_column(sa.Column("covariates", sa.BigInteger, nullable=False,
                                   server_default="0"))
        table.add_column(sa.Column("covariate_sum", DOUBLE, nullable=False, server_default="0"))
        table.add_column(sa.Column("covariate_sq", DOUBLE, nullable=False, server_default="0"))
    with op.batch_alter_table("variant_metrics") as table:
        table.add_column(sa.Column("covariate_total", DOUBLE, nullable=False,
                                   server_default="0"))
        table.add_column(sa.Column("covariate_converting", DOUBLE, nullable=False,
                                   server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("variant_metrics") as table:
        table.drop_column("covariate_converting")
        table.drop_column("covariate_total")
    with op.batch_alter_table("variant_counters") as table:
        table.drop_column("covariate_sq")
        table.drop_column("covariate_sum")
        table.drop_column("covariates")
    op.drop_column("exposures", "covariate")
