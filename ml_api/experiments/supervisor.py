"""Acts on running experiments without a human: auto-stop and canary ramps.

Each gunicorn worker runs one on a timer; their changes are compare-and-set on the
experiment's version, so when several act at once exactly one change lands (the others get
ConcurrentChange and look again next tick).

- auto_stop: stop when the sequential test (mSPRT) finds a winner after min_sample_size
  exposures per variant, or when max_duration_hours have passed. Never on the fixed-horizon
  p-value.
- canary: raise the challenger to the next ramp step after hold_seconds with its guards
  holding; roll back (promote the control) as soon as its error rate or p99 latency crosses
  a guard.
- guardrails (any experiment): roll back as soon as a challenger makes a guardrail metric
  worse than its tolerance, by the always-valid test of stats/guardrails.py.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Callable

from ml_api.domain.experiments import Experiment
from ml_api.errors import BackendUnavailable, Conflict
from ml_api.experiments.admin import ExperimentAdmin
from ml_api.experiments.canary import NO_TRAFFIC, next_action
from ml_api.experiments.traffic import TrafficRecorder
from ml_api.records.engine import utcnow
from ml_api.records.experiment_store import ExperimentStore
from ml_api.records.exposures import ExposureStore
from ml_api.records.labels import LabelStore
from ml_api.records.snapshots import SnapshotStore

log = logging.getLogger(__name__)
ACTOR = "supervisor"


class ExperimentSupervisor:
    """Runs on a timer in each worker: replays the spool, writes the traffic counts, stops
    experiments that reached a decision or their time limit, and steps or rolls back canaries."""

    def __init__(self, store: ExperimentStore, exposures: ExposureStore, admin: ExperimentAdmin,
                 traffic: TrafficRecorder, clock: Callable[[], datetime] = utcnow,
                 spool=None, snapshots: SnapshotStore | None = None,
                 labels: LabelStore | None = None, write_ahead=None):
        self._spool = spool
        self._write_ahead = write_ahead
        self._labels = labels
        self._snapshots = snapshots
        self._snapshotted: dict[int, datetime] = {}  # the last minute this worker wrote
        self._store = store
        self._exposures = exposures
        self._admin = admin
        self._traffic = traffic
        self._clock = clock
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def tick(self) -> list[str]:
        """One pass over the running experiments; returns what was done, for logs and tests."""
        now = self._clock()
        actions = []
        if self._spool is not None:
            replayed = self._spool.replay(self._exposures, self._labels)
            if self._write_ahead is not None:  # what dead workers wrote ahead
                replayed += self._write_ahead.replay()
            if replayed:
                actions.append(f"spool: {replayed} records written to the database")
        self._traffic.flush(now)
        for experiment in self._store.load_experiments():
            if not experiment.is_running:
                continue
            try:
                # One read of the results serves every check that needs them.
                results = self._snapshot(experiment, now)
                needed = experiment.setting("guardrails") or experiment.setting("auto_stop")
                if results is None and needed:
                    results = self._admin.results(experiment.name, model_quality=False)
                done = [self._guardrails(experiment, results)]
                if done[0] is None:
                    done += [self._settle(experiment, now, results),
                             self._auto_stop(experiment, now, results)]
                if not any(done) and experiment.strategy == "canary":
                    done.append(self._canary(experiment, now))
            except Conflict:
                continue  # another worker changed it first
            for action in filter(None, done):
                log.info("supervisor: %s: %s", experiment.name, action)
                actions.append(f"{experiment.name}: {action}")
        return actions

    def _snapshot(self, experiment: Experiment, now: datetime) -> dict | None:
        """The experiment's counters and a look at its comparisons once a minute (the first
        worker to try writes them); the results with that look, or None."""
        minute = now.replace(second=0, microsecond=0)
        if self._snapshots is None or self._snapshotted.get(experiment.id) == minute:
            return None
        exposures, _ = self._exposures.exposure_counters(experiment.id)
        sums = self._exposures.metric_sums(experiment.id, experiment.metric)
        self._snapshots.take(experiment.id, minute, exposures, sums)
        self._snapshotted[experiment.id] = minute
        return self._admin.take_look(experiment.name, minute)

    def _settle(self, experiment: Experiment, now: datetime, results: dict | None) -> str | None:
        """Keep a winner once the running values find one; withdraw it, with the reason in
        the audit log, only on a sample-ratio mismatch."""
        if results is None:
            return None
        decision, reached = results["decision"], experiment.config.get("decision")
        if reached is None and decision["outcome"] == "winner":
            self._admin.record_decision(experiment.name, decision, now, ACTOR)
            return f"decided: {decision['message']}"
        if reached is not None and decision["outcome"] == "sample_ratio_mismatch":
            self._admin.reverse_decision(experiment.name, decision["message"], ACTOR)
            return f"decision reversed: {decision['message']}"
        return None

    def _guardrails(self, experiment: Experiment, results: dict | None) -> str | None:
        """Roll back to the control as soon as a challenger breaches a guardrail."""
        if not experiment.setting("guardrails"):
            return None
        breached = [c for c in results["guardrails"] if c["breached"]]
        if not breached:
            return None
        reason = "; ".join(
            f"guardrail {c['metric']} crossed: {c['variant']} is worse ({c['worse']}) by "
            f"{c['harm']:.4g}, at least {c['harm_ci'][0]:.4g}, past the tolerance "
            f"{c['tolerance']:g}" for c in breached)
        if experiment.config.get("decision"):
            self._admin.reverse_decision(experiment.name, reason, ACTOR)
        self._admin.promote(experiment.name, {"variant": experiment.control.name}, ACTOR,
                            reason=reason, action="guardrail_rollback")
        return f"rolled back: {reason}"

    def _auto_stop(self, experiment: Experiment, now: datetime,
                   results: dict | None) -> str | None:
        if not experiment.setting("auto_stop"):
            return None
        hours = experiment.setting("max_duration_hours")
        if hours and experiment.started_at and now >= experiment.started_at + timedelta(
                hours=hours):
            reason = f"max_duration_hours ({hours}) reached"
            self._admin.transition(experiment.name, "stop", ACTOR, reason=reason)
            return f"stopped: {reason}"
        # Variants that take no uids (shadow models) see every exposure of the primary.
        serving = [v for v in results["variants"] if v["share"] != 0] or results["variants"]
        smallest = min(v["exposures"] for v in serving)
        decision = results["decision"]
        if smallest >= experiment.setting("min_sample_size") and decision["outcome"] == "winner":
            reason = f"sequential test decided: {decision['message']}"
            self._admin.transition(experiment.name, "stop", ACTOR, reason=reason)
            return f"stopped: {reason}"
        return None

    def _canary(self, experiment: Experiment, now: datetime) -> str | None:
        step = int(experiment.config.get("canary_step", 0))
        since_text = experiment.config.get("canary_step_started_at")
        since = datetime.fromisoformat(since_text) if since_text else experiment.started_at
        if since is None:
            return None
        traffic = self._traffic.since(experiment.id, since.replace(second=0, microsecond=0))
        seen = traffic.get(experiment.variants[1].name, NO_TRAFFIC)
        action = next_action(experiment.setting("canary"), step, since, now, seen)
        if action is None:
            return None
        if action.kind == "rollback":
            self._admin.promote(experiment.name, {"variant": experiment.control.name},
                                ACTOR, reason=action.reason, action="canary_rollback")
            return f"rolled back: {action.reason}"
        self._admin.set_canary_step(experiment.name, action.step, now, ACTOR)
        return action.reason

    def start(self, interval_seconds: float) -> None:
        """Run tick() every interval on a daemon thread (one per worker process)."""
        if interval_seconds <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_seconds):
                try:
                    self.tick()
                except BackendUnavailable as exc:
                    log.warning("supervisor: database unavailable: %s", exc)
                except Exception:  # keep supervising; the next tick may succeed
                    log.exception("supervisor tick failed")

        self._thread = threading.Thread(target=loop, name="experiment-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
