"""SQLAlchemy 2 tables of an experiment's history over time, written by the supervisor:
counter snapshots and the looks the always-valid running values are taken over.

The schema itself is created by the Alembic migrations in migrations/, never by create_all.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from ml_api.records.schema import DOUBLE, TIME, Base


class CounterSnapshot(Base):
    """A variant's counters at one minute, written by the supervisor: the history the
    effect-over-time chart is computed from."""

    __tablename__ = "counter_snapshots"

    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), primary_key=True)
    taken_at: Mapped[datetime] = mapped_column(TIME, primary_key=True)
    variant: Mapped[str] = mapped_column(String(64), primary_key=True)
    exposures: Mapped[int] = mapped_column(BigInteger)
    users: Mapped[int] = mapped_column(BigInteger)
    events: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[float] = mapped_column(DOUBLE)
    total_sq: Mapped[float] = mapped_column(DOUBLE)


class SequentialLook(Base):
    """One look at one comparison: the decisive test's estimate, mSPRT p-value and
    always-valid interval (None for an unbounded end). The running minimum and
    intersection over these rows are what the decision uses, the same on every replica."""

    __tablename__ = "sequential_looks"

    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), primary_key=True)
    taken_at: Mapped[datetime] = mapped_column(TIME, primary_key=True)
    variant: Mapped[str] = mapped_column(String(64), primary_key=True)
    test: Mapped[str] = mapped_column(String(32))
    estimate: Mapped[float] = mapped_column(DOUBLE)
    p_value: Mapped[float] = mapped_column(DOUBLE)
    ci_low: Mapped[float | None] = mapped_column(DOUBLE, nullable=True)
    ci_high: Mapped[float | None] = mapped_column(DOUBLE, nullable=True)
