"""Experiments as the serving path sees them: immutable values, refreshed from storage."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Callable

from .assignment import bucket_bounds
from .change_signal import ChangeSignal, LocalSignal, RelayedSignal
from .errors import BackendUnavailable, UnknownExperiment

DRAFT, RUNNING, PAUSED, STOPPED = "draft", "running", "paused", "stopped"
STRATEGIES = ("hash", "epsilon_greedy", "thompson", "shadow", "canary")

# Settings of an experiment (its `config`), with their defaults. Described in the README.
DEFAULT_SETTINGS = {
    "metric_type": "conversion",    # "conversion" (rate per exposed user) or "mean"
    "alpha": 0.05,                  # family-wise error rate of the decision
    "min_sample_size": 0,           # exposures per variant before auto-stop may decide
    "max_duration_hours": None,     # auto-stop after this long running
    "auto_stop": False,
    "mde": 0.02,                    # minimum detectable effect (absolute) for the sample size
    "tau": None,                    # mSPRT mixing standard deviation; None means mde
    "epsilon": 0.1,                 # epsilon_greedy exploration share
    "min_share": 0.05,              # bandits: smallest share any arm keeps
    "canary": None,                 # canary ramp: steps, hold_seconds, guards (see canary.py)
}


@dataclass(frozen=True)
class Variant:
    name: str
    model_key: str
    weight: float


@dataclass(frozen=True)
class Experiment:
    id: int
    name: str
    salt: str
    status: str
    variants: tuple[Variant, ...]
    strategy: str = "hash"
    default_variant: str | None = None
    metric: str = "conversion"
    config: dict = field(default_factory=dict, compare=False)
    version: int = 0
    started_at: datetime | None = None
    reweighted: bool = False  # the weights changed after the start
    # Weights in force now when a strategy sets them (bandits, canary, shadow); else None.
    live_weights: tuple[float, ...] | None = field(default=None, compare=False)

    def setting(self, key: str):
        value = self.config.get(key)
        return DEFAULT_SETTINGS[key] if value is None else value

    @property
    def weights(self) -> tuple[float, ...]:
        return self.live_weights or tuple(v.weight for v in self.variants)

    @cached_property
    def shares(self) -> dict[str, float]:
        """Each variant's share of new uids now (for the expected counts of the SRM check)."""
        total = sum(self.weights)
        return {v.name: w / total for v, w in zip(self.variants, self.weights)}

    @property
    def control(self) -> Variant:
        """The first variant is the control (the champion)."""
        return self.variants[0]

    @property
    def hash_gives_first_groups(self) -> bool:
        """Whether the hash under the current weights gives every uid the group it was first
        given: a hash split whose weights never changed since the start."""
        return self.strategy == "hash" and not self.reweighted

    @property
    def is_running(self) -> bool:
        return self.status == RUNNING

    @cached_property
    def bounds(self) -> list[int]:
        return bucket_bounds(self.weights)

    @cached_property
    def _by_name(self) -> dict[str, Variant]:
        return {v.name: v for v in self.variants}

    def variant(self, name: str) -> Variant | None:
        return self._by_name.get(name)

    @property
    def serving_variant(self) -> Variant:
        """What a not-running experiment serves to everyone: the promoted variant, else control."""
        return self.variant(self.default_variant or "") or self.control


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
