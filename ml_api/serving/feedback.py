"""The /feedback use case: an outcome attributed to the variant the uid was assigned, or the
true label of one answered prediction."""
from __future__ import annotations

from ml_api.assignment.sticky import StickyAssigner
from ml_api.assignment.write_ahead import WriteAhead
from ml_api.errors import (
    InvalidLabelToken,
    StorageUnavailable,
    UnknownAssignment,
    UnknownExperiment,
    with_event_fields,
)
from ml_api.experiments.catalog import ExperimentCatalog
from ml_api.records.exposures import ExposureStore, OutcomeReceipt
from ml_api.records.labels import LabelStore
from ml_api.records.spool import Spool
from ml_api.serving.label_tokens import LabelSigner
from ml_api.validation import FeedbackRequest, LabelRequest


class OutcomeService:
    """The /feedback use case: attributes an outcome to the uid's group, or a label to the
    prediction its token names, and records it, spooling it while the database is down."""

    def __init__(self, catalog: ExperimentCatalog, exposures: ExposureStore,
                 default_experiment: str, assigner: StickyAssigner, spool: Spool,
                 labels: LabelStore, signer: LabelSigner, write_ahead: WriteAhead | None = None):
        self._write_ahead = write_ahead
        self._labels = labels
        self._signer = signer
        self._catalog = catalog
        self._exposures = exposures
        self._default_experiment = default_experiment
        self._assigner = assigner
        self._spool = spool

    def record(self, request: FeedbackRequest) -> tuple[str, OutcomeReceipt]:
        """(the experiment's name, what became of the outcome). An error carries the
        experiment and a null group for its event: the uid's group was not known."""
        experiment = self._catalog.get(request.experiment or self._default_experiment)
        try:
            try:
                receipt = self._record_outcome(experiment.id, request)
            except UnknownAssignment:
                if self._write_ahead is None:
                    raise
                # Its exposure may have been written ahead a moment ago, by this process or
                # another of this host: write it now (or let a batch in flight finish
                # first), then look again.
                self._write_ahead.flush(wanted=(experiment.id, request.uid))
                receipt = self._record_outcome(experiment.id, request)
        except (UnknownAssignment, StorageUnavailable) as exc:
            # The exposure is not in the database: assigned during an outage, it may still
            # wait in a spool (this host's or another's), or the database is down. If the
            # caches know the uid's group, the outcome waits in this host's durable spool;
            # otherwise it cannot be checked (404, or 503 while the database is down).
            group = self._assigner.known_group(experiment, request.uid)
            if group is None:
                raise with_event_fields(exc, experiment=experiment.name, group=None)
            self._spool.add_outcome(experiment.id, request.uid, request.metric, request.value,
                                    request.event_id)
            receipt = OutcomeReceipt(group, duplicate=False, queued=True)
        return experiment.name, receipt

    def metric_role(self, experiment_name: str, metric: str) -> dict:
        """What `metric` is to the experiment, for the outcome's event: `metric_role`
        ("primary", "guardrail" or "other") and, for a guardrail, its 1-based place among
        the experiment's guardrails (`guardrail`), so dashboards need no metric names."""
        experiment = self._catalog.get(experiment_name)
        if metric == experiment.metric:
            return {"metric_role": "primary"}
        guarded = [g["metric"] for g in experiment.setting("guardrails") or []]
        if metric in guarded:
            return {"metric_role": "guardrail", "guardrail": guarded.index(metric) + 1}
        return {"metric_role": "other"}

    def _record_outcome(self, experiment_id: int, request: FeedbackRequest) -> OutcomeReceipt:
        return self._exposures.record_outcome(experiment_id, request.uid, request.metric,
                                              request.value, request.event_id)

    def record_label(self, request: LabelRequest) -> tuple[str, OutcomeReceipt]:
        """(the experiment's name, what became of the label): stored with the variant and
        score its token carries; once per request_id."""
        claim = self._signer.verify(request.token)
        if claim.request_id != request.request_id:
            raise InvalidLabelToken("'label_token' was issued for another request_id")
        experiment = self._catalog.get(claim.experiment)
        if experiment.id != claim.experiment_id:
            raise UnknownExperiment(f"experiment {claim.experiment!r} was replaced since "
                                    "this prediction")
        args = (experiment.id, claim.request_id, claim.variant, claim.score, request.label)
        try:
            duplicate = self._labels.record(*args)
        except StorageUnavailable:
            self._spool.add_label(*args)
            return experiment.name, OutcomeReceipt(claim.variant, duplicate=False, queued=True)
        return experiment.name, OutcomeReceipt(claim.variant, duplicate=duplicate)
