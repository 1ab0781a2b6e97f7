"""The SQL adapter (MySQL/MariaDB through PyMySQL, or SQLite): engine, migrations, queries.

Every sqlalchemy error leaves this module as StorageUnavailable, except the integrity errors
it resolves itself (a duplicate exposure means another process recorded it first).
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, func, insert, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from .errors import StorageUnavailable
from .experiments import Experiment as ExperimentValue, Variant as VariantValue
from .model_registry import ModelSpec
from .schema import Experiment, Exposure, ModelVersion, Variant

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def make_engine(url: str) -> Engine:
    """An engine for this URL; SQLite gets WAL and a busy timeout so several workers can write."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA foreign_keys=ON")

        return engine
    return create_engine(
        url, pool_pre_ping=True, pool_recycle=1800, pool_size=5, max_overflow=5,
        connect_args={"connect_timeout": 5, "read_timeout": 10, "write_timeout": 10,
                      "charset": "utf8mb4"},
    )


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade_schema(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    with engine.begin() as conn:
        config = _alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def schema_is_current(engine: Engine) -> bool:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() == head


class SqlStore:
    """Experiments, variants, the model registry and exposures in one relational database."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        try:
            yield
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise StorageUnavailable(f"database error while {what}: {exc.__class__.__name__}") \
                from exc

    def ping(self) -> None:
        with self._translated("pinging"), self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # --- experiments -----------------------------------------------------------------------

    def load_experiments(self) -> list[ExperimentValue]:
        with self._translated("loading experiments"), self.engine.connect() as conn:
            experiments = conn.execute(select(Experiment.__table__)).all()
            variants = conn.execute(
                select(Variant.__table__).order_by(Variant.experiment_id, Variant.position)
            ).all()
        by_experiment: dict[int, list[VariantValue]] = {}
        for v in variants:
            by_experiment.setdefault(v.experiment_id, []).append(
                VariantValue(v.name, v.model_key, v.weight))
        return [
            ExperimentValue(
                id=e.id, name=e.name, salt=e.salt, status=e.status, strategy=e.strategy,
                variants=tuple(by_experiment.get(e.id, ())), default_variant=e.default_variant,
                metric=e.metric, config=e.config or {},
            )
            for e in experiments
        ]

    def create_experiment(self, name: str, variants: Iterable[VariantValue], *,
                          status: str, salt: str | None = None, strategy: str = "hash",
                          metric: str = "conversion", config: dict | None = None) -> int:
        now = utcnow()
        with self._translated("creating an experiment"), self.engine.begin() as conn:
            experiment_id = conn.execute(insert(Experiment.__table__).values(
                name=name, salt=salt or name, status=status, strategy=strategy, metric=metric,
                config=config or {}, created_at=now, updated_at=now,
            )).inserted_primary_key[0]
            conn.execute(insert(Variant.__table__), [
                {"experiment_id": experiment_id, "name": v.name, "model_key": v.model_key,
                 "weight": v.weight, "position": i}
                for i, v in enumerate(variants)
            ])
        return experiment_id

    def experiment_exists(self, name: str) -> bool:
        with self._translated("reading an experiment"), self.engine.connect() as conn:
            return conn.execute(
                select(Experiment.id).where(Experiment.name == name)).first() is not None

    def set_weights(self, experiment_id: int, weights: dict[str, float]) -> None:
        with self._translated("changing weights"), self.engine.begin() as conn:
            for name, weight in weights.items():
                conn.execute(update(Variant.__table__).where(
                    Variant.experiment_id == experiment_id, Variant.name == name,
                ).values(weight=weight))
            conn.execute(update(Experiment.__table__).where(Experiment.id == experiment_id)
                         .values(updated_at=utcnow()))

    # --- model registry --------------------------------------------------------------------

    def sync_models(self, specs: Iterable[ModelSpec]) -> None:
        """Record every manifest entry in model_versions (new ones inserted, changed ones updated)."""
        table = ModelVersion.__table__
        with self._translated("registering models"), self.engine.begin() as conn:
            known = {(r.name, r.version): r.id for r in conn.execute(
                select(table.c.id, table.c.name, table.c.version))}
            for spec in specs:
                values = dict(sha256=spec.sha256, path=spec.path,
                              feature_names=list(spec.feature_names), metrics=spec.metrics,
                              trained_at=spec.trained_at)
                row_id = known.get((spec.name, spec.version))
                if row_id is None:
                    conn.execute(insert(table).values(
                        name=spec.name, version=spec.version, registered_at=utcnow(), **values))
                else:
                    conn.execute(update(table).where(table.c.id == row_id).values(**values))

    def registered_models(self) -> list[dict]:
        with self._translated("listing models"), self.engine.connect() as conn:
            rows = conn.execute(select(ModelVersion.__table__)).mappings().all()
        return [dict(r) for r in rows]

    # --- exposures -------------------------------------------------------------------------

    def record_exposure(self, experiment_id: int, uid: str, variant: str) -> str:
        """Record the first exposure; returns the variant held durably for this uid.

        The unique key (experiment_id, uid) makes the database the final arbiter: if another
        worker or replica recorded this uid first, its variant is returned instead.
        """
        try:
            with self._translated("recording an exposure"), self.engine.begin() as conn:
                conn.execute(insert(Exposure.__table__).values(
                    experiment_id=experiment_id, uid=uid, variant=variant,
                    first_seen=utcnow()))
            return variant
        except IntegrityError:
            existing = self.find_exposure(experiment_id, uid)
            if existing is None:
                raise StorageUnavailable("exposure insert conflicted but no row was found")
            return existing

    def find_exposure(self, experiment_id: int, uid: str) -> str | None:
        with self._translated("reading an exposure"), self.engine.connect() as conn:
            return conn.execute(select(Exposure.variant).where(
                Exposure.experiment_id == experiment_id, Exposure.uid == uid)).scalar()

    def exposure_counts(self, experiment_id: int) -> dict[str, int]:
        with self._translated("counting exposures"), self.engine.connect() as conn:
            rows = conn.execute(
                select(Exposure.variant, func.count()).where(
                    Exposure.experiment_id == experiment_id).group_by(Exposure.variant))
            return {variant: count for variant, count in rows}
