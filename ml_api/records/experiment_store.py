"""Experiment definitions, their variants, the model registry and the audit log in SQL."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable

from sqlalchemy import insert, select, text, update
from sqlalchemy.engine import Engine

from ml_api.domain.experiments import RUNNING
from ml_api.domain.experiments import Experiment as ExperimentValue
from ml_api.domain.experiments import Variant as VariantValue
from ml_api.domain.models import ModelSpec
from ml_api.errors import ConcurrentChange
from ml_api.records.engine import SHARDS, translated, utcnow
from ml_api.records.schema import AuditEntry, Experiment, ModelVersion, Variant, VariantCounter


class ExperimentStore:
    """Experiments, variants, the model registry and the audit log."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def ping(self) -> None:
        with translated("pinging"), self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # --- experiments -----------------------------------------------------------------------

    def load_experiments(self) -> list[ExperimentValue]:
        with translated("loading experiments"), self.engine.connect() as conn:
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
                metric=e.metric, config=e.config or {}, version=e.version,
                started_at=e.started_at,
                # MariaDB's DATETIME keeps whole seconds: a change within the start's second
                # may have come after it, so it counts as a reweighting.
                reweighted=e.weights_changed_at is not None and (
                    e.started_at is None or e.weights_changed_at >= e.started_at),
            )
            for e in experiments
        ]

    def load_experiment(self, name: str) -> ExperimentValue | None:
        return next((e for e in self.load_experiments() if e.name == name), None)

    def create_experiment(self, name: str, variants: Iterable[VariantValue], *,
                          status: str, salt: str | None = None, strategy: str = "hash",
                          metric: str = "conversion", config: dict | None = None,
                          actor: str | None = None, audit_after: dict | None = None) -> int:
        """Insert the experiment, its variants and zeroed counters (and an audit entry)."""
        now = utcnow()
        variants = list(variants)
        with translated("creating an experiment"), self.engine.begin() as conn:
            experiment_id = conn.execute(insert(Experiment.__table__).values(
                name=name, salt=salt or name, status=status, strategy=strategy, metric=metric,
                config=config or {}, created_at=now, updated_at=now, version=0,
                started_at=now if status == RUNNING else None,
            )).inserted_primary_key[0]
            conn.execute(insert(Variant.__table__), [
                {"experiment_id": experiment_id, "name": v.name, "model_key": v.model_key,
                 "weight": v.weight, "position": i}
                for i, v in enumerate(variants)
            ])
            conn.execute(insert(VariantCounter.__table__), [
                {"experiment_id": experiment_id, "variant": v.name, "shard": shard,
                 "exposures": 0, "expected": 0.0}
                for v in variants for shard in range(SHARDS)
            ])
            if actor:
                self._audit(conn, experiment_id, actor, "create", None, audit_after)
        return experiment_id

    def experiment_exists(self, name: str) -> bool:
        with translated("reading an experiment"), self.engine.connect() as conn:
            return conn.execute(
                select(Experiment.id).where(Experiment.name == name)).first() is not None

    def update_experiment(self, experiment: ExperimentValue, *, actor: str, action: str,
                          before: dict, after: dict, columns: dict | None = None,
                          weights: dict[str, float] | None = None) -> None:
        """Apply a change if nobody changed the experiment since `experiment` was read.

        Compare-and-set on the version column; the audit entry is written in the same
        transaction, so every change that happened is in the log and nothing else is.
        """
        now = utcnow()
        values = dict(columns or {}, version=experiment.version + 1, updated_at=now)
        if weights:
            values["weights_changed_at"] = now
        with translated("changing an experiment"), self.engine.begin() as conn:
            changed = conn.execute(update(Experiment.__table__).where(
                Experiment.id == experiment.id, Experiment.version == experiment.version,
            ).values(**values)).rowcount
            if changed != 1:
                raise ConcurrentChange(
                    f"experiment {experiment.name!r} was changed meanwhile; read it and retry")
            for name, weight in (weights or {}).items():
                conn.execute(update(Variant.__table__).where(
                    Variant.experiment_id == experiment.id, Variant.name == name,
                ).values(weight=weight))
            self._audit(conn, experiment.id, actor, action, before, after)

    def set_weights(self, experiment_id: int, weights: dict[str, float]) -> None:
        """Change weights directly (tests and scripts; the admin API uses update_experiment)."""
        with translated("changing weights"), self.engine.begin() as conn:
            for name, weight in weights.items():
                conn.execute(update(Variant.__table__).where(
                    Variant.experiment_id == experiment_id, Variant.name == name,
                ).values(weight=weight))
            now = utcnow()
            conn.execute(update(Experiment.__table__).where(Experiment.id == experiment_id)
                         .values(updated_at=now, weights_changed_at=now,
                                 version=Experiment.version + 1))

    def experiment_times(self, experiment_id: int) -> dict:
        with translated("reading an experiment"), self.engine.connect() as conn:
            row = conn.execute(select(Experiment.created_at, Experiment.updated_at,
                                      Experiment.started_at)
                               .where(Experiment.id == experiment_id)).one()
        return {"created_at": _iso(row.created_at), "updated_at": _iso(row.updated_at),
                "started_at": _iso(row.started_at)}

    # --- audit -----------------------------------------------------------------------------

    @staticmethod
    def _audit(conn, experiment_id: int, actor: str, action: str, before, after) -> None:
        conn.execute(insert(AuditEntry.__table__).values(
            experiment_id=experiment_id, actor=actor[:128], action=action, before=before,
            after=after, created_at=utcnow()))

    def audit_entries(self, experiment_id: int) -> list[dict]:
        with translated("reading the audit log"), self.engine.connect() as conn:
            rows = conn.execute(select(AuditEntry.__table__).where(
                AuditEntry.experiment_id == experiment_id).order_by(AuditEntry.id)).mappings()
            return [{"id": r["id"], "actor": r["actor"], "action": r["action"],
                     "before": r["before"], "after": r["after"], "at": _iso(r["created_at"])}
                    for r in rows]

    # --- model registry --------------------------------------------------------------------

    def sync_models(self, specs: Iterable[ModelSpec]) -> None:
        """Record every manifest entry in model_versions (insert new ones, update changed ones)."""
        table = ModelVersion.__table__
        with translated("registering models"), self.engine.begin() as conn:
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
        with translated("listing models"), self.engine.connect() as conn:
            rows = conn.execute(select(ModelVersion.__table__)).mappings().all()
        return [dict(r) for r in rows]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.replace(tzinfo=timezone.utc).isoformat()
