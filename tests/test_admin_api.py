"""The admin API: auth, create/list/get/patch, the status machine, promote/rollback, audit,
and /feedback. Each test runs on the embedded default and on real Redis + MariaDB."""
import pytest

from tests.helpers import FEATURES, settle

SPEC = {"name": "checkout", "metric": "conversion",
        "variants": [{"name": "champion", "model": "logreg@1", "weight": 50},
                     {"name": "challenger", "model": "gboost@1", "weight": 50}]}


def create(client, headers, **changes):
    return client.post("/experiments", json={**SPEC, **changes}, headers=headers)


def predict(client, uid, experiment="checkout"):
    return client.post("/predict", json={"uid": uid, "features": FEATURES,
                                         "experiment": experiment})


@pytest.mark.parametrize("method,path", [
    ("get", "/experiments"), ("post", "/experiments"), ("get", "/experiments/demo"),
    ("patch", "/experiments/demo"), ("post", "/experiments/demo/start"),
    ("post", "/experiments/demo/pause"), ("post", "/experiments/demo/stop"),
    ("post", "/experiments/demo/promote"), ("get", "/experiments/demo/results"),
    ("get", "/experiments/demo/audit")])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic dGVzdA==",
                                           "Bearer test-admin-token-and-more"])
def test_every_admin_route_needs_the_token(client, method, path, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = getattr(client, method)(path, json={}, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"


def test_predict_and_feedback_stay_open(client):
    assert predict(client, "open", "demo").status_code == 200
    assert client.post("/feedback", json={"uid": "open", "experiment": "demo"}).status_code == 202


def test_lifecycle_draft_running_paused_stopped(client, admin_headers):
    created = create(client, admin_headers)
    assert created.status_code == 201
    body = created.get_json()
    assert body["status"] == "draft" and body["variants"][0]["name"] == "champion"
    assert body["settings"]["alpha"] == 0.05

    # Draft: everyone gets the control, and nothing is recorded.
    assert predict(client, "u1").get_json()["group"] == "champion"
    results = client.get("/experiments/checkout/results", headers=admin_headers).get_json()
    assert [v["exposures"] for v in results["variants"]] == [0, 0]

    assert client.post("/experiments/checkout/start", headers=admin_headers).get_json()[
        "status"] == "running"
    groups = {predict(client, f"u{i}").get_json()["group"] for i in range(40)}
    assert groups == {"champion", "challenger"}
    assert client.post("/experiments/checkout/pause", headers=admin_headers).get_json()[
        "status"] == "paused"
    assert {predict(client, f"u{i}").get_json()["group"] for i in range(40)} == {"champion"}
    assert client.post("/experiments/checkout/start", headers=admin_headers).status_code == 200
    assert client.post("/experiments/checkout/stop", headers=admin_headers).get_json()[
        "status"] == "stopped"
    for action in ("start", "pause", "stop"):
        illegal = client.post(f"/experiments/checkout/{action}", headers=admin_headers)
        assert illegal.status_code == 409
        assert illegal.get_json()["error"] == "illegal_transition"
    settle(client.application.extensions["ml_api"])
    results = client.get("/experiments/checkout/results", headers=admin_headers).get_json()
    assert sum(v["exposures"] for v in results["variants"]) == 40


def test_illegal_transitions_from_draft(client, admin_headers):
    create(client, admin_headers)
    for action in ("pause", "stop"):
        assert client.post(f"/experiments/checkout/{action}",
                           headers=admin_headers).status_code == 409


def test_promote_serves_one_variant_to_all_and_rollback_is_promoting_the_control(
        client, admin_headers):
    create(client, admin_headers)
    client.post("/experiments/checkout/start", headers=admin_headers)
    promoted = client.post("/experiments/checkout/promote", json={"variant": "challenger"},
                           headers=admin_headers)
    assert promoted.status_code == 200 and promoted.get_json()["status"] == "stopped"
    assert {predict(client, f"p{i}").get_json()["group"] for i in range(30)} == {"challenger"}
    client.post("/experiments/checkout/promote", json={"variant": "champion"},
                headers=admin_headers)
    assert {predict(client, f"p{i}").get_json()["group"] for i in range(30)} == {"champion"}
    bad = client.post("/experiments/checkout/promote", json={"variant": "nobody"},
                      headers=admin_headers)
    assert bad.status_code == 422


def test_patch_changes_weights_and_settings_and_everything_is_audited(client, admin_headers):
    create(client, admin_headers)
    client.post("/experiments/checkout/start", headers=admin_headers)
    patched = client.patch("/experiments/checkout", headers=admin_headers,
                           json={"weights": {"champion": 10, "challenger": 90},
                                 "auto_stop": True})
    assert patched.status_code == 200
    body = patched.get_json()
    assert [v["weight"] for v in body["variants"]] == [10, 90]
    assert body["settings"]["auto_stop"] is True
    client.post("/experiments/checkout/promote", json={"variant": "champion"},
                headers=admin_headers)
    audit = client.get("/experiments/checkout/audit", headers=admin_headers).get_json()
    entries = audit["entries"]
    assert [e["action"] for e in entries] == ["create", "start", "update", "promote"]
    assert all(e["actor"] == "tester" and e["at"] for e in entries)
    update = entries[2]
    assert update["before"]["weights"] == {"champion": 50, "challenger": 50}
    assert update["after"]["weights"] == {"champion": 10, "challenger": 90}
    assert entries[3]["after"] == {"status": "stopped", "default_variant": "champion"}


@pytest.mark.parametrize("changes,status,code", [
    ({"variants": [{"name": "a", "model": "nope@1", "weight": 1},
                   {"name": "b", "model": "logreg@1", "weight": 1}]}, 422, "invalid_experiment"),
    ({"variants": [{"name": "a", "model": "logreg@1", "weight": 0},
                   {"name": "b", "model": "gboost@1", "weight": 0}]}, 422, "invalid_experiment"),
    ({"variants": [{"name": "a", "model": "logreg@1", "weight": -1},
                   {"name": "b", "model": "gboost@1", "weight": 2}]}, 422, "invalid_experiment"),
    ({"variants": [{"name": "a", "model": "logreg@1", "weight": 1}]}, 422, "invalid_experiment"),
    ({"variants": [{"name": "a", "model": "logreg@1", "weight": 1},
                   {"name": "a", "model": "gboost@1", "weight": 1}]}, 422, "invalid_experiment"),
    ({"name": "bad name!"}, 422, "invalid_experiment"),
    ({"strategy": "coin"}, 422, "invalid_experiment"),
    ({"alpha": 2}, 422, "invalid_experiment"),
    ({"surprise": 1}, 422, "invalid_experiment"),
    ({"canary": {"steps": [50, 5]}, "strategy": "canary"}, 422, "invalid_experiment"),
])
def test_bad_experiment_specs(client, admin_headers, changes, status, code):
    response = create(client, admin_headers, **changes)
    assert response.status_code == status and response.get_json()["error"] == code
    names = [e["name"] for e in client.get("/experiments", headers=admin_headers)
             .get_json()["experiments"]]
    assert names == ["demo"]


def test_duplicate_name_is_409_and_unknown_is_404(client, admin_headers):
    assert create(client, admin_headers).status_code == 201
    duplicate = create(client, admin_headers)
    assert duplicate.status_code == 409 and duplicate.get_json()["error"] == "duplicate_experiment"
    for method, path in [("get", "/experiments/ghost"), ("post", "/experiments/ghost/start"),
                         ("get", "/experiments/ghost/results")]:
        response = getattr(client, method)(path, headers=admin_headers)
        assert response.status_code == 404
        assert response.get_json()["error"] == "unknown_experiment"
    body = client.post("/experiments", data="{", content_type="application/json",
                       headers=admin_headers)
    assert body.status_code == 400


def test_feedback_attribution_and_idempotency(client, admin_headers):
    group = predict(client, "buyer", "demo").get_json()["group"]
    first = client.post("/feedback", json={"uid": "buyer", "event_id": "order-1"})
    assert first.status_code == 202
    assert first.get_json() == {"status": "accepted", "experiment": "demo", "group": group}
    again = client.post("/feedback", json={"uid": "buyer", "event_id": "order-1"})
    assert again.status_code == 202 and again.get_json()["status"] == "duplicate"
    client.post("/feedback", json={"uid": "buyer", "metric": "revenue", "value": 12.5})
    unknown = client.post("/feedback", json={"uid": "never-seen"})
    assert unknown.status_code == 404 and unknown.get_json()["error"] == "unknown_assignment"
    results = client.get("/experiments/demo/results", headers=admin_headers).get_json()
    by_name = {v["name"]: v for v in results["variants"]}
    assert by_name[group]["converting_uids"] == 1 and by_name[group]["events"] == 1


@pytest.mark.parametrize("body", [
    {"uid": ""}, {"uid": "x", "value": "1"}, {"uid": "x", "value": True},
    {"uid": "x", "metric": "bad metric"}, {"uid": "x", "event_id": ""}, [1],
    {"uid": "x", "experiment": 3}])
def test_bad_feedback_is_400_and_stores_nothing(client, services, body):
    predict(client, "x", "demo")
    response = client.post("/feedback", json=body)
    assert response.status_code == 400
    assert services.exposures.outcome_count(services.catalog.get("demo").id) == 0


def test_paused_experiment_can_be_stopped(client, admin_headers):
    create(client, admin_headers)
    for action, status in [("start", "running"), ("pause", "paused"), ("stop", "stopped")]:
        response = client.post(f"/experiments/checkout/{action}", headers=admin_headers)
        assert response.get_json()["status"] == status


@pytest.mark.parametrize("body,code", [
    ({"weights": {"nobody": 1}}, "invalid_experiment"),
    ({"weights": {"champion": 0, "challenger": 0}}, "invalid_experiment"),
    ({"weights": {"champion": -1}}, "invalid_experiment"),
    ({"weights": [1, 2]}, "invalid_experiment"),
    ({"strategy": "thompson"}, "invalid_experiment"),
    ({"name": "renamed"}, "invalid_experiment"),
    ({"alpha": 0}, "invalid_experiment"),
    ({"auto_stop": "yes"}, "invalid_experiment"),
])
def test_bad_patches_are_422_and_change_nothing(client, admin_headers, body, code):
    create(client, admin_headers)
    response = client.patch("/experiments/checkout", json=body, headers=admin_headers)
    assert response.status_code == 422 and response.get_json()["error"] == code
    described = client.get("/experiments/checkout", headers=admin_headers).get_json()
    assert [v["weight"] for v in described["variants"]] == [50, 50]
    assert described["version"] == 0
    actions = [e["action"] for e in client.get("/experiments/checkout/audit",
                                                headers=admin_headers).get_json()["entries"]]
    assert actions == ["create"]


@pytest.mark.parametrize("setting,value", [("alpha", 0.01), ("tau", 0.1), ("mde", 0.05),
                                           ("metric_type", "mean"), ("quality_tau", 0.1),
                                           ("quality_mde", 0.1)])
def test_a_setting_that_defines_the_test_is_fixed_once_the_experiment_started(
        client, admin_headers, setting, value):
    """Before, alpha, tau, mde and the metric type could change between looks, mixing two
    tests in one running minimum and a tau chosen after seeing the data."""
    create(client, admin_headers)
    assert client.patch("/experiments/checkout", json={setting: value},
                        headers=admin_headers).status_code == 200  # a draft may change it
    client.post("/experiments/checkout/start", headers=admin_headers)
    response = client.patch("/experiments/checkout", json={setting: value},
                            headers=admin_headers)
    assert response.status_code == 422 and response.get_json()["error"] == "invalid_experiment"
    assert setting in response.get_json()["message"]
