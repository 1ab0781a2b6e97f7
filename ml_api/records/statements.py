"""The statements written on every new uid and every outcome, built once with bound
parameters and executed with a dict of values: building a statement such as the counter
update from its columns and operators costs more CPU than executing it."""
from __future__ import annotations

import functools

from sqlalchemy import Float, bindparam, case, insert, select, update

from ml_api.records.schema import Exposure, Outcome, UserMetric, VariantCounter, VariantMetric

_exposures = Exposure.__table__
_counters = VariantCounter.__table__
_outcomes = Outcome.__table__
_user_metrics = UserMetric.__table__
_variant_metrics = VariantMetric.__table__

# Bound parameters are named p_*: SQLAlchemy keeps columns' own names for its SET and VALUES.
INSERT_EXPOSURE = insert(_exposures)
FIND_EXPOSURE = select(_exposures.c.variant, _exposures.c.covariate,
                       _exposures.c.first_seen).where(
    _exposures.c.experiment_id == bindparam("p_experiment"),
    _exposures.c.uid == bindparam("p_uid"))
FIND_EXPOSURES = select(_exposures.c.uid, _exposures.c.variant).where(
    _exposures.c.experiment_id == bindparam("p_experiment"),
    _exposures.c.uid.in_(bindparam("p_uids", expanding=True)))
INSERT_OUTCOME = insert(_outcomes)
INSERT_USER_METRIC = insert(_user_metrics)
INSERT_VARIANT_METRIC = insert(_variant_metrics)
_USER_METRIC_KEY = (_user_metrics.c.experiment_id == bindparam("p_experiment"),
                    _user_metrics.c.uid == bindparam("p_uid"),
                    _user_metrics.c.metric == bindparam("p_metric"))
LOCK_USER_METRIC = select(_user_metrics.c.total).where(*_USER_METRIC_KEY).with_for_update()
ADD_USER_METRIC = update(_user_metrics).where(*_USER_METRIC_KEY).values(
    total=_user_metrics.c.total + bindparam("p_value", type_=Float),
    events=_user_metrics.c.events + 1)
ADD_VARIANT_METRIC = update(_variant_metrics).where(
    _variant_metrics.c.experiment_id == bindparam("p_experiment"),
    _variant_metrics.c.variant == bindparam("p_variant"),
    _variant_metrics.c.metric == bindparam("p_metric"),
    _variant_metrics.c.shard == bindparam("p_shard"),
).values(users=_variant_metrics.c.users + bindparam("p_users"),
         events=_variant_metrics.c.events + bindparam("p_events"),
         total=_variant_metrics.c.total + bindparam("p_total", type_=Float),
         total_sq=_variant_metrics.c.total_sq + bindparam("p_total_sq", type_=Float),
         covariate_total=_variant_metrics.c.covariate_total
         + bindparam("p_covariate_total", type_=Float),
         covariate_converting=_variant_metrics.c.covariate_converting
         + bindparam("p_covariate_converting", type_=Float),
         covered_total=_variant_metrics.c.covered_total
         + bindparam("p_covered_total", type_=Float),
         covered_converting=_variant_metrics.c.covered_converting
         + bindparam("p_covered_converting"))


@functools.lru_cache(maxsize=32)
def counter_update(variants: int):
    """The counter update of one shard of an experiment of this many variants, for a batch
    of new uids: variant p_name_i gains p_exposures_i exposures, p_expected_i expected ones
    (the sum of its share of new uids when each was exposed, for the SRM check), and the
    covariate sums of those exposures that came with one (p_covariates_i, p_covariate_sum_i,
    p_covariate_sq_i)."""
    def added(column: str, param: str, zero: int | float):
        typed = {"type_": Float} if isinstance(zero, float) else {}
        return getattr(_counters.c, column) + case(
            *[(_counters.c.variant == bindparam(f"p_name_{i}"),
               bindparam(f"{param}_{i}", **typed)) for i in range(variants)], else_=zero)

    return update(_counters).where(
        _counters.c.experiment_id == bindparam("p_experiment"),
        _counters.c.shard == bindparam("p_shard"),
    ).values(exposures=added("exposures", "p_exposures", 0),
             expected=added("expected", "p_expected", 0.0),
             covariates=added("covariates", "p_covariates", 0),
             covariate_sum=added("covariate_sum", "p_covariate_sum", 0.0),
             covariate_sq=added("covariate_sq", "p_covariate_sq", 0.0))
