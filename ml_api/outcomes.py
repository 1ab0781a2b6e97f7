"""The /feedback use case: an outcome attributed to the variant the uid was assigned."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import InvalidRequest, StorageUnavailable, UnknownAssignment
from .event_store import EventStore, OutcomeReceipt
from .experiments import ExperimentCatalog
from .lifecycle import NAME
from .payloads import parse_experiment_name, parse_uid
from .spool import Spool
from .sticky import StickyAssigner


@dataclass(frozen=True)
class FeedbackRequest:
    uid: str
    experiment: str | None
    metric: str
    value: float
    event_id: str | None


def parse_feedback(body) -> FeedbackRequest:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    uid = parse_uid(body)
    experiment = parse_experiment_name(body)
    metric = body.get("metric", "conversion")
    if not isinstance(metric, str) or not NAME.match(metric):
        raise InvalidRequest("'metric' must be a name like 'conversion'")
    value = body.get("value", 1)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest("'value' must be a number")
    try:
        value = float(value)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise InvalidRequest("'value' must be a finite number")
    event_id = body.get("event_id")
    if event_id is not None and (not isinstance(event_id, str) or not 0 < len(event_id) <= 128
                                 or not event_id.isprintable()):
        raise InvalidRequest("'event_id' must be a printable string of 1-128 characters")
    return FeedbackRequest(uid, experiment, metric, value, event_id)


class OutcomeService:
    def __init__(self, catalog: ExperimentCatalog, events: EventStore, default_experiment: str,
                 assigner: StickyAssigner, spool: Spool):
        self._catalog = catalog
        self._events = events
        self._default_experiment = default_experiment
        self._assigner = assigner
        self._spool = spool

    def record(self, request: FeedbackRequest) -> tuple[str, OutcomeReceipt]:
        experiment = self._catalog.get(request.experiment or self._default_experiment)
        try:
            receipt = self._events.record_outcome(experiment.id, request.uid, request.metric,
                                                  request.value, request.event_id)
        except UnknownAssignment:
            # Assigned during a database outage, its exposure may still wait in a spool, this
            # host's or another's: the outcome waits in this host's spool until it is there.
            group = self._assigner.known_group(experiment, request.uid)
            if group is None:
                raise
            self._spool.add_outcome(experiment.id, request.uid, request.metric, request.value,
                                    request.event_id)
            receipt = OutcomeReceipt(group, duplicate=False, queued=True)
        except StorageUnavailable:
            # The database is down: accept the outcome into the durable local spool if the
            # uid's group is known from the caches; otherwise it cannot be checked (503).
            group = self._assigner.known_group(experiment, request.uid)
            if group is None:
                raise
            self._spool.add_outcome(experiment.id, request.uid, request.metric, request.value,
                                    request.event_id)
            receipt = OutcomeReceipt(group, duplicate=False, queued=True)
        return experiment.name, receipt
