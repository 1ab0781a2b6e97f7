"""8,000 simulated users through the real HTTP API (gunicorn, 2 workers, real Redis and
MariaDB): true conversion 10% (control) vs 15% (variation); the results must name the variation."""
import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.helpers import FEATURES, Gunicorn, JsonClient, settings_env

pytestmark = pytest.mark.slow

TRUE_RATES = {"control": 0.10, "variation": 0.15}
USERS = 8_000


def test_results_name_the_variation_with_the_higher_true_rate(real_settings, admin_headers,
                                                              tmp_path):
    with Gunicorn(settings_env(real_settings), workers=2, log_path=tmp_path / "g.log") as server:
        created = requests.post(f"{server.url}/experiments", headers=admin_headers, json={
            "name": "simulation", "mde": 0.02,
            "variants": [{"name": "control", "model": "logreg@1", "weight": 50},
                         {"name": "variation", "model": "gboost@1", "weight": 50}]})
        assert created.status_code == 201, created.text
        requests.post(f"{server.url}/experiments/simulation/start", headers=admin_headers)
        client = JsonClient(server.url)

        def user(i):
            uid = f"sim-{i}"
            status, answer = client.post("/predict", {
                "uid": uid, "features": FEATURES, "experiment": "simulation"})
            assert status == 200, answer
            group = answer["group"]
            # Each user's coin is seeded by its uid: the run is the same whatever the order.
            if random.Random(uid).random() < TRUE_RATES[group]:
                status, receipt = client.post("/feedback", {
                    "uid": uid, "experiment": "simulation", "event_id": f"{uid}-order"})
                assert status == 202, receipt
            return group

        with ThreadPoolExecutor(16) as pool:
            groups = list(pool.map(user, range(USERS)))
        # The last new uids' exposures reach the database in a batch just after their answers.
        deadline = time.monotonic() + 10
        while True:
            results = requests.get(f"{server.url}/experiments/simulation/results",
                                   headers=admin_headers).json()
            if (sum(v["exposures"] for v in results["variants"]) == USERS
                    or time.monotonic() > deadline):
                break
            time.sleep(0.1)
    exposures = {v["name"]: v["exposures"] for v in results["variants"]}
    assert exposures == {"control": groups.count("control"),
                         "variation": groups.count("variation")}
    assert not results["srm"]["mismatch"]
    assert results["decision"]["outcome"] == "winner"
    assert results["decision"]["winner"] == "variation"
    comparison = results["comparisons"][0]
    assert comparison["sequential"]["p_value_adjusted"] <= 0.05
    assert comparison["prob_to_beat_control"] > 0.99
    low, high = comparison["sequential"]["absolute_lift_ci"]
    assert low < 0.05 < high  # the always-valid interval covers the true difference
