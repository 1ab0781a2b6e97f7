"""New uids' first exposures, written in batches: the rows, and one counter update per
experiment and batch, in one transaction.

The counter increments of a batch go to the shard of its first uid: shards only spread the
row locks of concurrent writers, and results add all of an experiment's shards up.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy.engine import Engine

from ml_api.records.engine import SHARDS, utcnow
from ml_api.records.statements import FIND_EXPOSURES, INSERT_EXPOSURE, counter_update


def _naive_utc(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, timezone.utc).replace(tzinfo=None)


def shard_of(uid: str) -> int:
    return zlib.crc32(uid.encode("utf-8")) % SHARDS


@dataclass(frozen=True)
class NewExposure:
    """A uid's first exposure, to be recorded: its group, each variant's share of new uids
    when it was given (for the SRM check), its covariate if it came with one, and when it
    was claimed (time.time()), which becomes its first_seen however late the row is written;
    None means when it is written."""

    experiment_id: int
    uid: str
    variant: str
    shares: dict[str, float]
    covariate: float | None = None
    claimed_at: float | None = None


def _counted(experiment_id: int, exposures: list[NewExposure]):
    """The counter update statement and its values for these new exposures."""
    names = list(dict.fromkeys(name for e in exposures for name in (*e.shares, e.variant)))
    values = {"p_experiment": experiment_id, "p_shard": shard_of(exposures[0].uid)}
    for i, name in enumerate(names):
        mine = [e for e in exposures if e.variant == name]
        covariates = [e.covariate for e in mine if e.covariate is not None]
        values.update({
            f"p_name_{i}": name, f"p_exposures_{i}": len(mine),
            f"p_expected_{i}": float(sum(e.shares.get(name, 0.0) for e in exposures)),
            f"p_covariates_{i}": len(covariates), f"p_covariate_sum_{i}": float(sum(covariates)),
            f"p_covariate_sq_{i}": float(sum(c * c for c in covariates))})
    return counter_update(len(names)), values


def held_groups(engine: Engine, firsts: dict[tuple[int, str], NewExposure]
                ) -> dict[tuple[int, str], str]:
    """The groups the database already holds for these (experiment_id, uid) keys."""
    by_experiment: dict[int, list[str]] = {}
    for experiment_id, uid in firsts:
        by_experiment.setdefault(experiment_id, []).append(uid)
    with engine.connect() as conn:
        return {(experiment_id, uid): variant
                for experiment_id, uids in by_experiment.items()
                for uid, variant in conn.execute(FIND_EXPOSURES, {
                    "p_experiment": experiment_id, "p_uids": uids})}


def insert_exposures(engine: Engine, new: list[NewExposure]) -> None:
    """Insert the exposure rows and, per experiment, one counter update, in one transaction
    (IntegrityError if one of the uids was recorded before: nothing is written)."""
    if not new:
        return
    now = utcnow()
    by_experiment: dict[int, list[NewExposure]] = {}
    for exposure in new:
        by_experiment.setdefault(exposure.experiment_id, []).append(exposure)
    with engine.begin() as conn:
        conn.execute(INSERT_EXPOSURE, [
            {"experiment_id": e.experiment_id, "uid": e.uid, "variant": e.variant,
             "first_seen": now if e.claimed_at is None else _naive_utc(e.claimed_at),
             "covariate": e.covariate} for e in new])
        for experiment_id, exposures in by_experiment.items():
            conn.execute(*_counted(experiment_id, exposures))
