"""Model quality from true labels: the metrics equal scikit-learn's, the always-valid tests
equal an independent computation, and labels travel from /predict's token through /feedback
into the results, once each, for plain and shadow experiments."""
import json

import numpy as np
import pytest
from scipy import integrate, stats
from sklearn import metrics
from sklearn.calibration import calibration_curve

from ml_api.serving.label_tokens import LabelSigner
from ml_api.serving.training import demo_dataset
from ml_api.stats.model_quality import (
    compare_log_loss,
    log_losses,
    paired_log_loss,
    quality_metrics,
)

X, Y, _ = demo_dataset()


def scored_sample(n, seed, ties=False):
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 3, n)
    if ties:  # repeated scores, and the extremes a model may give
        p = np.round(p, 1)
        p[:3] = [0.0, 1.0, 0.5]
    y = (rng.random(n) < p).astype(int)
    return p, y


@pytest.mark.parametrize("n,ties", [(40, False), (1000, False), (500, True)])
def test_each_variants_metrics_equal_scikit_learns(n, ties):
    p, y = scored_sample(n, n, ties)
    got = quality_metrics(list(p), list(y))
    assert got["n"] == n and got["positives"] == y.sum()
    assert got["log_loss"] == pytest.approx(metrics.log_loss(y, p, labels=[0, 1]), rel=1e-9)
    assert got["brier_score"] == pytest.approx(metrics.brier_score_loss(y, p), rel=1e-9)
    assert got["accuracy"] == pytest.approx(metrics.accuracy_score(y, (p > 0.5).astype(int)))
    assert got["roc_auc"] == pytest.approx(metrics.roc_auc_score(y, p), rel=1e-9)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    filled = [b for b in got["calibration"] if b["n"]]
    assert [b["positive_rate"] for b in filled] == pytest.approx(list(prob_true), rel=1e-9)
    assert [b["mean_score"] for b in filled] == pytest.approx(list(prob_pred), rel=1e-9)
    assert sum(b["n"] for b in got["calibration"]) == n


def test_auc_is_absent_when_only_one_class_was_labelled():
    assert quality_metrics([0.2, 0.9], [1, 1])["roc_auc"] is None


def mixture_pvalue(diff, variance, tau):
    """1 / the normal-mixture likelihood ratio, integrated numerically (not the closed form)."""
    numerator = integrate.quad(lambda theta: stats.norm.pdf(diff, theta, np.sqrt(variance))
                               * stats.norm.pdf(theta, 0, tau), -np.inf, np.inf,
                               epsabs=0, epsrel=1e-12)[0]
    return min(1.0, stats.norm.pdf(diff, 0, np.sqrt(variance)) / numerator)


def test_the_unpaired_log_loss_comparison_is_welchs_difference_with_a_mixture_test():
    p_c, y_c = scored_sample(400, 1)
    p_t, y_t = scored_sample(300, 2)
    control, treatment = log_losses(p_c, y_c), log_losses(p_t, y_t)
    got = compare_log_loss(control, treatment, tau=0.05)
    welch = stats.ttest_ind(treatment, control, equal_var=False)
    assert got["difference"] / got["standard_error"] == pytest.approx(welch.statistic, rel=1e-9)
    expected = mixture_pvalue(got["difference"], got["standard_error"] ** 2, 0.05)
    assert got["sequential"]["p_value"] == pytest.approx(expected, rel=1e-6)


def test_the_paired_test_is_the_paired_t_statistic_under_a_mixture_test_and_its_interval():
    rng = np.random.default_rng(7)
    p, y = scored_sample(600, 3)
    shadow = np.clip(p + rng.normal(0.03, 0.05, len(p)) * (y * 2 - 1), 0.01, 0.99)
    primary_losses, shadow_losses = log_losses(p, y), log_losses(shadow, y)
    got = paired_log_loss(primary_losses, shadow_losses, tau=0.05)
    paired_t = stats.ttest_rel(shadow_losses, primary_losses)
    assert got["difference"] / got["standard_error"] == pytest.approx(paired_t.statistic,
                                                                      rel=1e-9)
    variance = got["standard_error"] ** 2
    assert got["sequential"]["p_value"] == pytest.approx(
        mixture_pvalue(got["difference"], variance, 0.05), rel=1e-6)
    low, high = got["sequential"]["ci"]  # the effects the same test cannot reject, at alpha
    for edge in (low, high):
        assert mixture_pvalue(got["difference"] - edge, variance, 0.05) == pytest.approx(
            0.05, rel=1e-6)


def test_a_token_is_refused_when_altered_or_signed_with_another_secret():
    from ml_api.errors import InvalidLabelToken

    signer = LabelSigner("one secret")
    token = signer.issue(1, "demo", "control", 0.25, "r" * 32)
    assert signer.verify(token).score == 0.25
    forged = token.replace("0.25", "0.99")
    for bad in (forged, token[:-2], token + "0", "l1|abc", "nonsense", "l1|\ud800|x",
                "|" + token.rsplit("|", 1)[1], "l1|1|demo|control|0.25|" + "r" * 32 + "|ü",
                LabelSigner("other").issue(1, "demo", "control", 0.25, "r" * 32)):
        with pytest.raises(InvalidLabelToken):
            signer.verify(bad)


def predict_and_label(client, uid, row, label, experiment=None):
    body = {"uid": uid, "features": [float(v) for v in row]}
    if experiment:
        body["experiment"] = experiment
    answer = client.post("/predict", json=body).get_json()
    response = client.post("/feedback", json={"request_id": answer["request_id"],
                                              "label": label,
                                              "label_token": answer["label_token"]})
    assert response.status_code == 202, response.get_json()
    return answer, response.get_json()


def test_labels_sent_back_with_their_tokens_give_each_groups_metrics(client, services):
    seen: dict[str, tuple[list, list]] = {}
    for i in range(240):
        answer, receipt = predict_and_label(client, f"q{i % 150}", X[i], int(Y[i]))
        assert receipt == {"status": "accepted", "experiment": "demo", "group": answer["group"]}
        scores, labels = seen.setdefault(answer["group"], ([], []))
        scores.append(answer["score"])
        labels.append(int(Y[i]))
    quality = services.admin.results("demo")["model_quality"]
    assert set(quality["variants"]) == set(seen) == {"control", "variation"}
    for group, (scores, labels) in seen.items():
        got = quality["variants"][group]
        assert got["n"] == len(labels)
        assert got["log_loss"] == pytest.approx(metrics.log_loss(labels, scores), rel=1e-9)
        assert got["roc_auc"] == pytest.approx(metrics.roc_auc_score(labels, scores), rel=1e-9)
    comparison = quality["log_loss_vs_control"]["variation"]
    difference = (metrics.log_loss(seen["variation"][1], seen["variation"][0])
                  - metrics.log_loss(seen["control"][1], seen["control"][0]))
    assert comparison["difference"] == pytest.approx(difference, rel=1e-9)


def test_a_label_counts_once_and_a_bad_token_stores_nothing(client, services):
    answer, _ = predict_and_label(client, "once", X[0], 1)
    again = client.post("/feedback", json={"request_id": answer["request_id"], "label": 0,
                                           "label_token": answer["label_token"]})
    assert again.status_code == 202 and again.get_json()["status"] == "duplicate"
    other = client.post("/predict", json={"uid": "once", "features": [float(v) for v in X[1]]})
    refused = [
        {"request_id": answer["request_id"], "label": 1,
         "label_token": other.get_json()["label_token"]},  # another request's token
        {"request_id": answer["request_id"], "label": 1, "label_token": "l1|e30|AAAA"},
        {"request_id": answer["request_id"], "label": 2, "label_token": answer["label_token"]},
        {"request_id": answer["request_id"], "label": 0.5,
         "label_token": answer["label_token"]},
    ]
    for body in refused:
        response = client.post("/feedback", data=json.dumps(body),
                               content_type="application/json")
        assert response.status_code == 400 and response.get_json()["error"], body
    variants = services.admin.results("demo")["model_quality"]["variants"]
    assert sum(v["n"] for v in variants.values()) == 1


def test_a_shadow_experiment_pairs_each_label_with_both_models_scores(client, services):
    """The paired block equals scipy's paired t statistic on the per-request log-losses of
    the two real models, recomputed here from the features."""
    services.admin.create({"name": "shadow-q", "strategy": "shadow", "quality_tau": 0.05,
                           "variants": [{"name": "a", "model": "logreg@1"},
                                        {"name": "b", "model": "gboost@1"}]}, "t")
    services.admin.transition("shadow-q", "start", "t")
    rows = range(300, 420)
    for i in rows:
        predict_and_label(client, f"s{i}", X[i], int(Y[i]), "shadow-q")
    services.shadow.drain()
    primary = services.registry.get("logreg@1").estimator.predict_proba(X[rows.start:rows.stop])
    shadow = services.registry.get("gboost@1").estimator.predict_proba(X[rows.start:rows.stop])
    labels = Y[rows.start:rows.stop].astype(int)
    primary_losses, shadow_losses = log_losses(primary[:, 1], labels), log_losses(
        shadow[:, 1], labels)
    paired = services.admin.results("shadow-q")["model_quality"]["paired"]["b"]
    assert paired["n"] == len(labels)
    assert paired["difference"] == pytest.approx((shadow_losses - primary_losses).mean(),
                                                 rel=1e-6)
    assert paired["difference"] / paired["standard_error"] == pytest.approx(
        stats.ttest_rel(shadow_losses, primary_losses).statistic, rel=1e-6)
    assert paired["sequential"]["tau"] == 0.05


def test_a_shadow_experiment_decides_on_the_paired_test_and_lists_every_model(client,
                                                                           services):
    """Before, the paired test was computed but the decision always read "keep running",
    and model_quality listed the primary model only. Now the supervisor's looks at the
    paired test decide, auto_stop stops on it, and the shadow model has its own metrics
    (scikit-learn's on the scores it gave the same requests)."""
    from datetime import timedelta

    from sqlalchemy import text

    from ml_api.experiments.supervisor import ExperimentSupervisor
    from ml_api.records.engine import utcnow
    from ml_api.records.snapshots import SnapshotStore

    services.admin.create({"name": "shadow-d", "strategy": "shadow", "quality_tau": 0.1,
                           "auto_stop": True, "min_sample_size": 50,
                           "variants": [{"name": "a", "model": "logreg@1"},
                                        {"name": "b", "model": "gboost@1"}]}, "t")
    services.admin.transition("shadow-d", "start", "t")
    now = [utcnow()]
    supervisor = ExperimentSupervisor(services.store, services.exposures, services.admin,
                                      services.traffic, lambda: now[0],
                                      snapshots=SnapshotStore(services.store.engine))
    rows = range(0, 300)
    for i in rows:
        predict_and_label(client, f"sd{i}", X[i], int(Y[i]), "shadow-d")
    services.shadow.drain()
    actions = supervisor.tick()
    assert any("decided: shadow model b is better than a" in a for a in actions), actions
    assert any(a.startswith("shadow-d: stopped: sequential test decided") for a in actions)
    results = services.admin.results("shadow-d")
    decision = results["decision"]
    assert (decision["outcome"], decision["winner"]) == ("winner", "b")
    assert decision["test"] == "paired log-loss sequential test"
    paired = results["model_quality"]["paired"]["b"]
    with services.store.engine.connect() as conn:
        stored = conn.execute(text(
            "SELECT test, p_value FROM sequential_looks sl JOIN experiments e "
            "ON e.id = sl.experiment_id WHERE e.name = 'shadow-d'")).all()
    assert [t for t, _ in stored] == ["paired"]
    assert paired["running"]["p_value"] == min(p for _, p in stored) <= 0.05
    shadow = services.registry.get("gboost@1").estimator.predict_proba(X[rows.start:rows.stop])
    quality = results["model_quality"]
    assert set(quality["variants"]) == {"a", "b"}
    labels = Y[rows.start:rows.stop].astype(int)
    assert quality["variants"]["b"]["log_loss"] == pytest.approx(
        metrics.log_loss(labels, shadow[:, 1]), rel=1e-6)
    assert quality["variants"]["b"]["brier_score"] == pytest.approx(
        metrics.brier_score_loss(labels, shadow[:, 1]), rel=1e-6)
    assert quality["log_loss_vs_control"]["b"]["difference"] == pytest.approx(
        quality["variants"]["b"]["log_loss"] - quality["variants"]["a"]["log_loss"], rel=1e-9)
    assert services.store.load_experiment("shadow-d").status == "stopped"
    now[0] += timedelta(minutes=1)


def test_quality_tau_defaults_to_the_declared_minimum_detectable_log_loss_difference(
        client, services):
    variants = [{"name": "a", "model": "logreg@1"}, {"name": "b", "model": "gboost@1"}]
    services.admin.create({"name": "q-mde", "quality_mde": 0.1, "variants": variants}, "t")
    services.admin.create({"name": "q-tau", "quality_mde": 0.1, "quality_tau": 0.03,
                           "variants": variants}, "t")
    for name in ("q-mde", "q-tau", "demo"):
        if name != "demo":
            services.admin.transition(name, "start", "t")
        for i in range(40):
            predict_and_label(client, f"{name}{i}", X[i], int(Y[i]), name)
    taus = {name: [c["sequential"]["tau"] for c in services.admin.results(name)
                   ["model_quality"]["log_loss_vs_control"].values() if c]
            for name in ("q-mde", "q-tau", "demo")}
    assert taus == {"q-mde": [0.1], "q-tau": [0.03], "demo": [0.05]}


def test_a_label_sent_while_the_database_is_down_is_spooled_then_stored_once(
        models_dir, mysql_url, redis_prefix, tmp_path):
    from ml_api.settings import Settings
    from ml_api.validation import LabelRequest, PredictRequest
    from ml_api.wiring import build_services, init_database
    from tests.conftest import MYSQL_HOST, MYSQL_PASSWORD, MYSQL_PORT, MYSQL_USER, REDIS_URL
    from tests.listeners import TcpProxy

    proxy = TcpProxy(MYSQL_PORT, MYSQL_HOST)
    database = mysql_url.rsplit("/", 1)[1]
    settings = Settings(
        database_url=f"mysql+pymysql://{MYSQL_USER}:{MYSQL_PASSWORD}@127.0.0.1:{proxy.port}/"
                     f"{database}", redis_url=REDIS_URL, redis_prefix=redis_prefix,
        models_dir=models_dir, admin_token="t", supervisor_interval_seconds=0,
        spool_path=tmp_path / "spool.sqlite3")
    init_database(settings)
    services = build_services(settings)
    try:
        answer = services.prediction.predict(PredictRequest("down", list(X[5]), None))
        label = LabelRequest(answer.request_id, int(Y[5]), answer.label_token)
        proxy.cut()
        assert services.outcomes.record_label(label)[1].queued
        proxy.restore()
        assert services.spool.replay(services.exposures, services.labels) == 1
        assert not services.outcomes.record_label(label)[1].queued
        assert services.outcomes.record_label(label)[1].duplicate
        scored = services.labels.scored(services.catalog.get("demo").id)
    finally:
        proxy.close()
    assert scored == {answer.group: ([answer.score], [int(Y[5])])}
