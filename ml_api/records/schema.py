"""SQLAlchemy 2 tables: model registry, experiments, variants, exposures. The tables of the
experiment's history over time are in history_schema.py.

The schema itself is created by the Alembic migrations in migrations/, never by create_all.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def _exact_string(length: int):
    """A VARCHAR compared byte for byte on MariaDB: uid "Bob", "bob" and "bob " are three users.

    MariaDB's default collations are case-insensitive and pad trailing spaces, which would
    merge distinct uids in the unique index.
    """
    exact = mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_nopad_bin")
    return String(length).with_variant(exact, "mysql", "mariadb")


ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements only INTEGER keys
DOUBLE = Float().with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")
TIME = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


class Base(DeclarativeBase):
    pass


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_model_name_version"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(512))
    feature_names: Mapped[list] = mapped_column(JSON)
    metrics: Mapped[dict] = mapped_column(JSON)
    trained_at: Mapped[str] = mapped_column(String(40), default="")
    registered_at: Mapped[datetime] = mapped_column(DateTime)


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(_exact_string(128), unique=True)
    salt: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    strategy: Mapped[str] = mapped_column(String(32), default="hash")
    metric: Mapped[str] = mapped_column(String(64), default="conversion")
    default_variant: Mapped[str | None] = mapped_column(String(64), nullable=True)
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    # Bumped by every admin change: changes are compare-and-set on it, so two admins (or an
    # admin and the canary/auto-stop supervisor) cannot overwrite each other unseen.
    version: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # When the variants' weights last changed: after started_at, the hash under the current
    # weights may no longer give an early uid the group it was first given.
    weights_changed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Variant(Base):
    __tablename__ = "variants"
    __table_args__ = (UniqueConstraint("experiment_id", "name", name="uq_variant_name"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    name: Mapped[str] = mapped_column(String(64))
    model_key: Mapped[str] = mapped_column(String(200))
    weight: Mapped[float] = mapped_column(Float)
    position: Mapped[int] = mapped_column(Integer)


class Exposure(Base):
    """First exposure of a uid to an experiment: one row per (experiment, uid), ever."""

    __tablename__ = "exposures"
    __table_args__ = (UniqueConstraint("experiment_id", "uid", name="uq_exposure_uid"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    uid: Mapped[str] = mapped_column(_exact_string(256))
    variant: Mapped[str] = mapped_column(String(64))
    first_seen: Mapped[datetime] = mapped_column(TIME)
    covariate: Mapped[float | None] = mapped_column(DOUBLE, nullable=True)  # for CUPED


class VariantCounter(Base):
    """Exposures per variant, and the exposures the weights expected at assignment time (for
    the sample-ratio check). Sharded by uid so concurrent first exposures rarely share a row."""

    __tablename__ = "variant_counters"

    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), primary_key=True)
    variant: Mapped[str] = mapped_column(String(64), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    exposures: Mapped[int] = mapped_column(BigInteger)
    expected: Mapped[float] = mapped_column(DOUBLE)
    covariates: Mapped[int] = mapped_column(BigInteger, default=0)  # exposures with one
    covariate_sum: Mapped[float] = mapped_column(DOUBLE, default=0.0)
    covariate_sq: Mapped[float] = mapped_column(DOUBLE, default=0.0)


class VariantMetric(Base):
    """Per variant and metric: users with an outcome, events, and the sum and sum of squares
    of per-user totals (so mean and variance per exposed user cost O(1) to read)."""

    __tablename__ = "variant_metrics"

    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), primary_key=True)
    variant: Mapped[str] = mapped_column(String(64), primary_key=True)
    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    users: Mapped[int] = mapped_column(BigInteger)
    events: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[float] = mapped_column(DOUBLE)
    total_sq: Mapped[float] = mapped_column(DOUBLE)
    covariate_total: Mapped[float] = mapped_column(DOUBLE, default=0.0)  # sum of x * total
    covariate_converting: Mapped[float] = mapped_column(DOUBLE, default=0.0)  # x * (total > 0)
    # The uid's total and conversion, over the uids that came with a covariate (CUPED's
    # missing-covariate indicator needs the rest's sum).
    covered_total: Mapped[float] = mapped_column(DOUBLE, default=0.0)
    covered_converting: Mapped[int] = mapped_column(BigInteger, default=0)


class UserMetric(Base):
    __tablename__ = "user_metrics"

    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), primary_key=True)
    uid: Mapped[str] = mapped_column(_exact_string(256), primary_key=True)
    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    variant: Mapped[str] = mapped_column(String(64))
    total: Mapped[float] = mapped_column(DOUBLE)
    events: Mapped[int] = mapped_column(BigInteger)


class Outcome(Base):
    """Every accepted outcome event, as received (the raw record the counters reconcile to)."""

    __tablename__ = "outcomes"
    __table_args__ = (UniqueConstraint("experiment_id", "event_id", name="uq_outcome_event"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    uid: Mapped[str] = mapped_column(_exact_string(256))
    variant: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(DOUBLE)
    event_id: Mapped[str | None] = mapped_column(_exact_string(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(TIME)


class DeadLetter(Base):
    """A spooled outcome whose exposure never reached the database within the spool's
    horizon (its host's spool was lost, say): kept here, reported by `reconcile`."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    uid: Mapped[str] = mapped_column(_exact_string(256))
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(String(255))
    spooled_at: Mapped[datetime] = mapped_column(TIME)
    moved_at: Mapped[datetime] = mapped_column(TIME)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    before: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(TIME)


class ShadowCounter(Base):
    __tablename__ = "shadow_counters"

    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), primary_key=True)
    variant: Mapped[str] = mapped_column(String(64), primary_key=True)
    comparisons: Mapped[int] = mapped_column(BigInteger)
    agreements: Mapped[int] = mapped_column(BigInteger)
    primary_ms_sum: Mapped[float] = mapped_column(DOUBLE)
    shadow_ms_sum: Mapped[float] = mapped_column(DOUBLE)


class ShadowPrediction(Base):
    __tablename__ = "shadow_predictions"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    request_id: Mapped[str] = mapped_column(String(32))
    uid: Mapped[str] = mapped_column(_exact_string(256))
    primary_variant: Mapped[str] = mapped_column(String(64))
    primary_prediction: Mapped[object] = mapped_column(JSON, nullable=True)
    primary_score: Mapped[float | None] = mapped_column(DOUBLE, nullable=True)
    primary_ms: Mapped[float] = mapped_column(DOUBLE)
    shadow_variant: Mapped[str] = mapped_column(String(64))
    shadow_prediction: Mapped[object] = mapped_column(JSON, nullable=True)
    shadow_score: Mapped[float | None] = mapped_column(DOUBLE, nullable=True)
    shadow_ms: Mapped[float] = mapped_column(DOUBLE)
    created_at: Mapped[datetime] = mapped_column(TIME)


class VariantTraffic(Base):
    """Requests, errors and a latency histogram per variant and minute (canary guards)."""

    __tablename__ = "variant_health"

    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), primary_key=True)
    variant: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    latency_buckets: Mapped[dict] = mapped_column(JSON)
