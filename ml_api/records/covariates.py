"""The sums CUPED reads, from the exposure and metric counters: O(variants) to read."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from ml_api.records.engine import translated
from ml_api.records.schema import VariantCounter, VariantMetric
from ml_api.stats.cuped import CovariateSums
from ml_api.stats.results import MetricSums


def covariate_sums(engine: Engine, experiment_id: int, metric: str, sums: dict[str, MetricSums],
                   conversion: bool) -> dict[str, CovariateSums]:
    """Per variant, the sums CUPED needs: every exposed uid's metric (y is the uid's
    conversion, 0 or 1, with `conversion`, else its total; `sums` are the metric's, from
    metric_sums), the covariates' sums over the uids that came with one, and the count
    and y-sum of those that did not."""
    with translated("reading covariate counters"), engine.connect() as conn:
        counters = conn.execute(select(
            VariantCounter.variant, func.sum(VariantCounter.exposures),
            func.sum(VariantCounter.covariates), func.sum(VariantCounter.covariate_sum),
            func.sum(VariantCounter.covariate_sq),
        ).where(VariantCounter.experiment_id == experiment_id)
            .group_by(VariantCounter.variant)).all()
        product, covered = ((VariantMetric.covariate_converting,
                             VariantMetric.covered_converting) if conversion
                            else (VariantMetric.covariate_total, VariantMetric.covered_total))
        metrics = {v: (xy, y) for v, xy, y in conn.execute(
            select(VariantMetric.variant, func.sum(product), func.sum(covered))
            .where(VariantMetric.experiment_id == experiment_id,
                   VariantMetric.metric == metric).group_by(VariantMetric.variant)).all()}
    result = {}
    for v, n, seen, x, x2 in counters:
        s = sums.get(v, MetricSums())
        y, y2 = (s.users, s.users) if conversion else (s.total, s.total_sq)
        xy, y_seen = metrics.get(v, (0, 0))
        result[v] = CovariateSums(
            n=int(n or 0), y=float(y), y2=float(y2), x=float(x or 0), x2=float(x2 or 0),
            xy=float(xy or 0), missing=int(n or 0) - int(seen or 0),
            y_missing=float(y) - float(y_seen or 0))
    return result
