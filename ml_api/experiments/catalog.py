"""The catalog of experiments each process serves from: loaded from the records with the
weights their strategies set now, and refreshed on a timer or a change signal."""
from __future__ import annotations

import threading
import time
from typing import Callable

from ml_api.domain.experiments import Experiment
from ml_api.errors import BackendUnavailable, UnknownExperiment
from ml_api.experiments.change_signal import ChangeSignal, LocalSignal, RelayedSignal
from ml_api.experiments.strategies import BANDITS, with_live_weights
from ml_api.records.experiment_store import ExperimentStore
from ml_api.records.exposures import ExposureStore


def live_experiments(store: ExperimentStore, exposures: ExposureStore) -> list[Experiment]:
    """Experiments with the weights their strategies set now (bandits read their counters)."""
    live = []
    for experiment in store.load_experiments():
        if experiment.strategy in BANDITS and experiment.is_running:
            counts, _ = exposures.exposure_counters(experiment.id)
            sums = exposures.metric_sums(experiment.id, experiment.metric)
            experiment = with_live_weights(experiment, counts,
                                           {v: s.users for v, s in sums.items()})
        else:
            experiment = with_live_weights(experiment)
        live.append(experiment)
    return live


UNKNOWN_RECHECK = 0.5  # seconds


class ExperimentCatalog:
    """In-process view of all experiments, reloaded at most every `refresh_seconds`, and at
    once when `signal` (the host's ChangeSignal) moves: an admin change through any worker of
    the host takes effect on the next request of every worker.

    Keeps serving the last good view when storage is unreachable: a database outage must not
    take /predict down.
    """

    def __init__(self, load: Callable[[], list[Experiment]], refresh_seconds: float = 2.0,
                 clock: Callable[[], float] = time.monotonic,
                 signal: ChangeSignal | RelayedSignal | None = None):
        self._load = load
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._signal = signal or LocalSignal()
        self._lock = threading.Lock()
        self._by_name: dict[str, Experiment] = {}
        self._loaded_at: float | None = None
        self._loaded_change = self._signal.value()
        self._rechecked: dict[str, float] = {}
        self._last_recheck = float("-inf")

    def refresh(self) -> None:
        change = self._signal.value()  # read first: a change during the load reloads again
        experiments = self._load()
        self._by_name = {e.name: e for e in experiments}
        self._loaded_at = self._clock()
        self._loaded_change = change

    def changed(self) -> None:
        """After an admin change: tell the host's other workers, and reload here at once."""
        self._signal.notify()
        self.refresh()

    def _maybe_refresh(self) -> None:
        now = self._clock()
        changed = self._signal.value() != self._loaded_change
        if not changed and self._loaded_at is not None \
                and now - self._loaded_at < self._refresh_seconds:
            return
        # After a signalled change every thread waits for the new view: serving the old one
        # would, say, answer for a just-started experiment without assigning.
        if not self._lock.acquire(blocking=self._loaded_at is None or changed):
            return  # another thread is refreshing; serve the current view meanwhile
        try:
            if changed and self._signal.value() == self._loaded_change:
                return  # another thread loaded it while this one waited
            self.refresh()
        except BackendUnavailable:
            if self._loaded_at is None:
                raise
            self._loaded_at = now  # retry after another interval, keep the last good view
            self._loaded_change = self._signal.value()
        finally:
            self._lock.release()

    def get(self, name: str) -> Experiment:
        self._maybe_refresh()
        experiment = self._by_name.get(name)
        if experiment is None and self._may_recheck(name):
            # Perhaps created a moment ago through another worker: look once more.
            self._loaded_at = None
            self._maybe_refresh()
            experiment = self._by_name.get(name)
        if experiment is None:
            raise UnknownExperiment(f"no experiment named {name!r}")
        return experiment

    def _may_recheck(self, name: str) -> bool:
        """At most one reload per unknown name every UNKNOWN_RECHECK seconds, and at most 20 a
        second in all, so that a flood of unknown names cannot hammer the database."""
        now = self._clock()
        if now - self._rechecked.get(name, -UNKNOWN_RECHECK) < UNKNOWN_RECHECK:
            return False
        if now - self._last_recheck < 0.05:
            return False
        self._last_recheck = now
        if len(self._rechecked) > 10_000:
            self._rechecked.clear()
        self._rechecked[name] = now
        return True
