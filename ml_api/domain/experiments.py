"""Experiments as every layer sees them: immutable values, their statuses, strategies and
settings with defaults."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

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
    "cuped": False,                 # a covariate is declared: CUPED's test decides (creation only)
    "quality_mde": 0.05,            # minimum detectable log-loss difference, nats (labels)
    "quality_tau": None,            # mSPRT mixing sd of log-loss differences; None: quality_mde
    "epsilon": 0.1,                 # epsilon_greedy exploration share
    "min_share": 0.05,              # bandits: smallest share any arm keeps
    "canary": None,                 # canary ramp: steps, hold_seconds, guards (see supervisor.py)
    "guardrails": None,             # [{metric, worse, tolerance}] (see stats/guardrails.py)
}


@dataclass(frozen=True)
class Variant:
    """One arm of an experiment: its name, its model (name@version) and its weight."""

    name: str
    model_key: str
    weight: float


@dataclass(frozen=True)
class Experiment:
    """An experiment as stored: variants (the first is the control), status, strategy,
    metric and settings. Immutable; a change makes a new value."""

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
    def _by_name(self) -> dict[str, Variant]:
        return {v.name: v for v in self.variants}

    def variant(self, name: str) -> Variant | None:
        return self._by_name.get(name)

    @property
    def serving_variant(self) -> Variant:
        """What a not-running experiment serves to everyone: the promoted variant, else control."""
        return self.variant(self.default_variant or "") or self.control
