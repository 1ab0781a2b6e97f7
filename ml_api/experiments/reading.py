"""Reading an experiment's results: the counters, covariates, labels, shadow records and
the stored looks assembled into the results document, and the looks taken and stored.
No Flask here; ExperimentAdmin answers with it."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from ml_api.domain.experiments import Experiment
from ml_api.experiments.strategies import with_live_weights
from ml_api.records.engine import utcnow
from ml_api.records.exposures import ExposureStore
from ml_api.records.labels import LabelStore
from ml_api.records.looks import LookStore
from ml_api.records.shadow import ShadowStore
from ml_api.records.snapshots import SnapshotStore
from ml_api.stats.guardrails import guardrail_checks
from ml_api.stats.model_quality import model_quality as quality_block
from ml_api.stats.always_valid import Look
from ml_api.stats.decision import decisive_test
from ml_api.stats.results import current_look, effect_over_time, experiment_results
from ml_api.stats.shadow_decision import paired_look, shadow_decision


class ResultsReader:
    """Results, history and looks of experiments, from the stores that hold their records."""

    def __init__(self, exposures: ExposureStore, shadow_records: ShadowStore,
                 labels: LabelStore | None = None, snapshots: SnapshotStore | None = None,
                 looks: LookStore | None = None):
        self._exposures = exposures
        self._shadow_records = shadow_records
        self._labels = labels
        self._snapshots = snapshots
        self._looks = looks

    def results(self, experiment: Experiment, model_quality: bool = True) -> dict:
        """Everything the results page shows; `model_quality=False` skips reading labels.
        The running values are over the stored looks only, so a read never shows what a
        later one takes back; a read whose own look would change the decision stores that
        look first, and then shows it."""
        return self._read(experiment, model_quality, look_at=None)

    def take_look(self, experiment: Experiment, at: datetime) -> dict:
        """Store each comparison's decisive test as it stands now as the look at `at` (the
        first worker to try stores it), and return the results with it."""
        return self._read(experiment, False, look_at=at)

    def _read(self, experiment: Experiment, model_quality: bool,
              look_at: datetime | None) -> dict:
        data = self._gather(experiment, model_quality)
        if self._looks is None:
            return _assemble(experiment, data, None, include_now=True)
        stored = self._looks.looks(experiment.id)
        with_now = _assemble(experiment, data, stored, include_now=True)
        if look_at is None:
            without = _assemble(experiment, data, stored, include_now=False)
            if _outcome(without) == _outcome(with_now):
                return without
            look_at = utcnow()
        # Whether this worker stores the look or another stored one at that time first, the
        # answer is read back from the stored looks: no decision rests on an unstored look.
        self._looks.record(experiment.id, look_at,
                           {name: replace(look, at=look_at)
                            for name, look in _now_looks(experiment, with_now).items()})
        return _assemble(experiment, data, self._looks.looks(experiment.id), include_now=False)

    def _gather(self, experiment: Experiment, model_quality: bool) -> dict:
        """The records the results are computed from, read once per request."""
        exposures, expected = self._exposures.exposure_counters(experiment.id)
        sums = self._exposures.metric_sums(experiment.id, experiment.metric)
        live = with_live_weights(experiment, exposures, {v: s.users for v, s in sums.items()})
        data = {"experiment": live, "exposures": exposures, "expected": expected, "sums": sums,
                "covariates": self._exposures.covariate_sums(
                    experiment.id, experiment.metric, sums,
                    conversion=experiment.setting("metric_type") == "conversion"),
                "guarded": {g["metric"]: self._exposures.metric_sums(experiment.id, g["metric"])
                            for g in experiment.setting("guardrails") or []}}
        shadow = experiment.strategy == "shadow"
        if shadow:
            data["shadow"] = self._shadow_report(experiment)
        if self._labels is not None and (model_quality or shadow):  # shadows decide on labels
            data["scored"] = self._labels.scored(experiment.id)
            data["paired"] = self._labels.paired(experiment.id) if shadow else None
        return data

    def history(self, experiment: Experiment) -> list[dict]:
        """Each challenger's effect and its always-valid interval at each counter snapshot."""
        if self._snapshots is None:
            return []
        return effect_over_time(experiment, self._snapshots.series(experiment.id))

    def _shadow_report(self, experiment: Experiment) -> list[dict]:
        report = []
        for name, c in self._shadow_records.summary(experiment.id).items():
            n = c["comparisons"]
            report.append({"variant": name, "against": experiment.control.name,
                           "comparisons": n, "agreement_rate": c["agreements"] / n if n else None,
                           "primary_mean_ms": c["primary_ms_sum"] / n if n else None,
                           "shadow_mean_ms": c["shadow_ms_sum"] / n if n else None})
        return report


def _assemble(experiment: Experiment, data: dict, looks: dict | None,
              include_now: bool) -> dict:
    """The results document from the gathered records and the looks (pure)."""
    experiment = data["experiment"]
    results = experiment_results(experiment, data["exposures"], data["expected"], data["sums"],
                                 data["covariates"], looks, include_now)
    results["guardrails"] = guardrail_checks(experiment, data["exposures"], data["guarded"])
    if "shadow" in data:
        results["shadow"] = data["shadow"]
    if "scored" in data:
        results["model_quality"] = quality_block(
            experiment.control.name, data["scored"], data["paired"],
            experiment.setting("quality_tau") or experiment.setting("quality_mde"),
            experiment.setting("alpha"))
        if "shadow" in data:
            results["decision"] = shadow_decision(
                experiment, results["model_quality"]["paired"], looks or {}, include_now)
    return results


def _now_looks(experiment: Experiment, results: dict) -> dict[str, Look]:
    """Each comparison's decisive test as it stands in these results."""
    if experiment.strategy == "shadow":
        blocks = (results.get("model_quality") or {}).get("paired") or {}
        looks = {name: paired_look(block) for name, block in blocks.items()}
    else:
        test = decisive_test(experiment)
        looks = {c["variant"]: current_look(c, test) for c in results["comparisons"]}
    return {name: look for name, look in looks.items() if look}


def _outcome(results: dict) -> tuple:
    decision = results.get("decision") or {}
    return decision.get("outcome"), decision.get("winner")
