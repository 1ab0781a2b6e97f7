"""Deterministic bucketing of (experiment salt, uid) into weighted variants. Pure: no I/O.

The hash follows PlanOut: sha1("<salt>.<uid>"), first 15 hex digits (60 bits), scaled to
10,000 buckets. 10,000 buckets give weights a 0.01% resolution while the integer range keeps
rounding out of the split. Python's hash() is never used: it is salted per interpreter, so
it would move users on every restart.
"""
from __future__ import annotations

import hashlib
from bisect import bisect_right
from functools import lru_cache
from typing import Sequence

BUCKETS = 10_000
_HASH_BITS = 60  # 15 hex digits


def bucket(salt: str, uid: str) -> int:
    """Bucket in [0, BUCKETS) for this uid under this experiment salt."""
    digest = hashlib.sha1(f"{salt}.{uid}".encode("utf-8")).hexdigest()
    return (int(digest[:15], 16) * BUCKETS) >> _HASH_BITS


def bucket_bounds(weights: Sequence[float]) -> list[int]:
    """Cumulative upper bucket bounds for the weights, summing exactly to BUCKETS.

    Weights are normalised; leftover buckets go to the largest remainders, so the split is
    as close to the weights as 10,000 buckets allow. A zero weight gets an empty range.
    """
    if not weights or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("weights must be non-negative with a positive sum")
    total = float(sum(weights))
    exact = [w * BUCKETS / total for w in weights]
    sizes = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: exact[i] - sizes[i], reverse=True)
    for i in by_remainder[: BUCKETS - sum(sizes)]:
        sizes[i] += 1
    bounds, running = [], 0
    for size in sizes:
        running += size
        bounds.append(running)
    return bounds


@lru_cache(maxsize=1024)
def cached_bounds(weights: tuple[float, ...]) -> tuple[int, ...]:
    """bucket_bounds remembered per weights: an experiment's new uids reuse its split."""
    return tuple(bucket_bounds(weights))


def choose_variant(bucket_index: int, bounds: Sequence[int]) -> int:
    """Index of the variant whose bucket range holds bucket_index."""
    return bisect_right(bounds, bucket_index)


def assign(salt: str, uid: str, weights: Sequence[float]) -> int:
    """Index of the variant this uid falls into for these weights."""
    return choose_variant(bucket(salt, uid), bucket_bounds(weights))
