"""The /feedback use case: an outcome attributed to the variant the uid was assigned."""
from __future__ import annotations

from ml_api.assignment.sticky import StickyAssigner
from ml_api.errors import StorageUnavailable, UnknownAssignment, with_event_fields
from ml_api.experiments.catalog import ExperimentCatalog
from ml_api.records.exposures import ExposureStore, OutcomeReceipt
from ml_api.records.spool import Spool
from ml_api.validation import FeedbackRequest


class OutcomeService:
    """The /feedback use case: attributes an outcome to the uid's group and records it,
    spooling it while the database is down."""

    def __init__(self, catalog: ExperimentCatalog, exposures: ExposureStore,
                 default_experiment: str, assigner: StickyAssigner, spool: Spool):
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
            receipt = self._exposures.record_outcome(experiment.id, request.uid,
                                                     request.metric, request.value,
                                                     request.event_id)
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
