"""The pure assignment module: golden vectors pin the hash; a binomial test checks the split."""
import json
from pathlib import Path

import pytest
from scipy import stats

from ml_api.assignment.hashing import (
    BUCKETS,
    assign,
    bucket,
    bucket_bounds,
    cached_bounds,
    choose_variant,
)

GOLDEN = json.loads((Path(__file__).parent / "golden_assignment.json").read_text())


@pytest.mark.parametrize("case", GOLDEN["buckets"], ids=lambda c: f"{c['salt']}.{c['uid']}")
def test_bucket_matches_golden_vector(case):
    assert bucket(case["salt"], case["uid"]) == case["bucket"]


@pytest.mark.parametrize("case", GOLDEN["bounds"], ids=lambda c: str(c["weights"]))
def test_bucket_bounds_match_golden_vector(case):
    assert bucket_bounds(case["weights"]) == case["bounds"]
    assert cached_bounds(tuple(case["weights"])) == tuple(case["bounds"])


@pytest.mark.parametrize("case", GOLDEN["assignments"], ids=lambda c: c["uid"])
def test_assign_matches_golden_vector(case):
    assert assign(case["salt"], case["uid"], case["weights"]) == case["variant"]


def test_bucket_is_sha1_planout_style():
    import hashlib
    digest = hashlib.sha1(b"demo.user-42").hexdigest()
    assert bucket("demo", "user-42") == int(digest[:15], 16) * BUCKETS // 16**15


def test_bounds_cover_all_buckets_and_respect_zero_weights():
    assert bucket_bounds([1, 0, 1]) == [5000, 5000, 10000]
    assert choose_variant(4999, [5000, 5000, 10000]) == 0
    assert choose_variant(5000, [5000, 5000, 10000]) == 2
    assert bucket_bounds([1, 1, 1])[-1] == BUCKETS
    assert sorted(bucket_bounds([1, 1, 1])) == bucket_bounds([1, 1, 1])


@pytest.mark.parametrize("weights", [[], [0, 0], [-1, 2]])
def test_bounds_reject_bad_weights(weights):
    with pytest.raises(ValueError):
        bucket_bounds(weights)


def test_salt_changes_the_split_on_purpose():
    moved = sum(assign("exp-a", f"u{i}", [1, 1]) != assign("exp-b", f"u{i}", [1, 1])
                for i in range(2000))
    assert 800 < moved < 1200  # independent re-randomisation moves about half


@pytest.mark.parametrize("weights", [[50, 50], [90, 10], [50, 30, 20], [1, 1, 1, 1]])
def test_100k_uids_split_to_the_weights(weights):
    counts = [0] * len(weights)
    for i in range(100_000):
        counts[assign("split-test", f"user-{i}", weights)] += 1
    total = sum(weights)
    expected = [100_000 * w / total for w in weights]
    assert stats.chisquare(counts, expected).pvalue > 0.001
    for observed, w in zip(counts, weights):
        # Each arm on its own: a two-sided exact binomial test at the same level.
        assert stats.binomtest(observed, 100_000, w / total).pvalue > 0.001


def test_weight_change_only_moves_the_buckets_that_change_hands():
    before, after = bucket_bounds([50, 50]), bucket_bounds([80, 20])
    moved = sum(choose_variant(b, before) != choose_variant(b, after) for b in range(BUCKETS))
    assert moved == 3000
