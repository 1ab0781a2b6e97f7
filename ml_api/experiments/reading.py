"""Reading an experiment's results: the counters, covariates, labels, shadow records and
the stored looks assembled into the results document, and the looks taken and stored.
No Flask here; ExperimentAdmin answers with it."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from ml_api.domain.experiments import Experiment
from ml_api.experiments.strategies import with_live_weights
from ml_api.records.exposures import ExposureStore
from ml_api.records.labels import LabelStore
from ml_api.records.looks import LookStore
from ml_api.records.shadow import ShadowStore
from ml_api.records.snapshots import SnapshotStore
from ml_api.stats.guardrails import guardrail_checks
from ml_api.stats.model_quality import model_quality as quality_block
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
        """Everything the results page shows; `model_quality=False` skips reading labels."""
        exposures, expected = self._exposures.exposure_counters(experiment.id)
        sums = self._exposures.metric_sums(experiment.id, experiment.metric)
        experiment = with_live_weights(experiment, exposures,
                                       {v: s.users for v, s in sums.items()})
        covariates = self._exposures.covariate_sums(
            experiment.id, experiment.metric, sums,
            conversion=experiment.setting("metric_type") == "conversion")
        looks = self._looks.looks(experiment.id) if self._looks is not None else None
        results = experiment_results(experiment, exposures, expected, sums, covariates, looks)
        guarded = {g["metric"] for g in experiment.setting("guardrails") or []}
        results["guardrails"] = guardrail_checks(experiment, exposures, {
            metric: self._exposures.metric_sums(experiment.id, metric) for metric in guarded})
        shadow = experiment.strategy == "shadow"
        if shadow:
            results["shadow"] = self._shadow_report(experiment)
        if self._labels is not None and (model_quality or shadow):  # shadows decide on labels
            results["model_quality"] = quality_block(
                experiment.control.name, self._labels.scored(experiment.id),
                self._labels.paired(experiment.id) if shadow else None,
                experiment.setting("quality_tau") or experiment.setting("quality_mde"),
                experiment.setting("alpha"))
            if shadow:
                results["decision"] = shadow_decision(
                    experiment, results["model_quality"]["paired"], looks or {})
        return results

    def take_look(self, experiment: Experiment, at: datetime) -> dict:
        """Store each comparison's decisive test as it stands now as the look at `at` (the
        first worker to try stores it), and return the results with it."""
        results = self.results(experiment, model_quality=False)
        if self._looks is not None:
            now = {c["variant"]: current_look(c, c["running"]["test"])
                   for c in results["comparisons"] if c["running"]}
            if experiment.strategy == "shadow" and "model_quality" in results:
                now = {name: paired_look(block) for name, block
                       in results["model_quality"]["paired"].items()}
            self._looks.record(experiment.id, at, {name: replace(look, at=at)
                                                   for name, look in now.items() if look})
        return results

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
