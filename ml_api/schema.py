"""SQLAlchemy 2 tables: model registry, experiments, variants, exposures.

The schema itself is created by the Alembic migrations in migrations/, never by create_all.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON, BigInteger, DateTime, Float, ForeignKey, Integer, String, UniqueConstraint,
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
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=False).with_variant(
        mysql.DATETIME(fsp=6), "mysql", "mariadb"))
