"""/predict, /health and /ready through the Flask app, on the embedded default and on the real
Redis + MariaDB (each test runs on both)."""
import io
import json
import shutil

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from werkzeug.exceptions import ClientDisconnected
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from ml_api import create_app
from ml_api.http.jsonio import read_body, read_json_body
from ml_api.serving.registry import register_model
from ml_api.serving.training import demo_dataset
from tests.conftest import embedded
from tests.helpers import FEATURE_NAMES, FEATURES, settle


def post(client, body, content_type="application/json"):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post("/predict", data=data, content_type=content_type)


def test_predict_answers_with_the_groups_real_model(client, services):
    response = post(client, {"uid": "alice", "features": FEATURES})
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"request_id", "experiment", "group", "in_experiment", "model",
                         "prediction", "score", "label_token", "latency_ms"}
    assert body["in_experiment"] is True
    assert body["experiment"] == "demo" and body["group"] in {"control", "variation"}
    expected_model = {"control": "logreg", "variation": "gboost"}[body["group"]]
    assert body["model"] == {"name": expected_model, "version": "1"}
    # The answer is the real estimator's, not a constant.
    estimator = services.registry.get(f"{expected_model}@1").estimator
    assert body["score"] == pytest.approx(estimator.predict_proba([FEATURES])[0][1])
    assert body["prediction"] == int(estimator.predict([FEATURES])[0])


def test_predictions_vary_with_the_features(client):
    x, y, _ = demo_dataset()
    predictions = {post(client, {"uid": "u", "features": list(map(float, x[i]))})
                   .get_json()["prediction"] for i in range(0, 60)}
    assert predictions == {0, 1}


def test_features_by_name_equal_features_by_position(client):
    by_name = dict(zip(FEATURE_NAMES, FEATURES))
    a = post(client, {"uid": "carol", "features": FEATURES}).get_json()
    b = post(client, {"uid": "carol", "features": by_name}).get_json()
    assert (a["group"], a["score"]) == (b["group"], b["score"])


def test_returning_uid_keeps_its_group_and_one_exposure_is_recorded(client, services):
    groups = {post(client, {"uid": f"user-{i}", "features": FEATURES}).get_json()["group"]
              for i in range(40)}
    assert groups == {"control", "variation"}
    first = [post(client, {"uid": f"user-{i}", "features": FEATURES}).get_json()["group"]
             for i in range(40)]
    again = [post(client, {"uid": f"user-{i}", "features": FEATURES}).get_json()["group"]
             for i in range(40)]
    assert first == again
    experiment = services.catalog.get("demo")
    settle(services)
    assert sum(services.exposures.exposure_counts(experiment.id).values()) == 40


def test_uids_are_case_and_space_exact(client, services):
    experiment = services.catalog.get("demo")
    for uid in ("Bob", "bob", "bob "):
        assert post(client, {"uid": uid, "features": FEATURES}).status_code == 200
    settle(services)
    assert sum(services.exposures.exposure_counts(experiment.id).values()) == 3


def test_health_and_ready(client, any_settings):
    assert client.get("/health").get_json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    expected = {"models": "ok", "database": "ok", "spool": "ok"}
    if any_settings.redis_url:
        expected["cache"] = "ok"
    assert ready.get_json()["checks"] == expected


TOO_LONG_UID = "u" * 257
ERROR_CASES = [
    # (body or raw text, content type, status, error code)
    ("{not json", "application/json", 400, "malformed_json"),
    ("", "application/json", 400, "malformed_json"),
    ("[" * 5000 + "]" * 5000, "application/json", 400, "malformed_json"),
    ([1, 2], "application/json", 400, "invalid_request"),
    ({"features": FEATURES}, "application/json", 400, "invalid_request"),
    ({"uid": "", "features": FEATURES}, "application/json", 400, "invalid_request"),
    ({"uid": "   ", "features": FEATURES}, "application/json", 400, "invalid_request"),
    ({"uid": 12, "features": FEATURES}, "application/json", 400, "invalid_request"),
    ({"uid": TOO_LONG_UID, "features": FEATURES}, "application/json", 400, "invalid_request"),
    ({"uid": "a\nb", "features": FEATURES}, "application/json", 400, "invalid_request"),
    ({"uid": "a"}, "application/json", 400, "invalid_request"),
    ({"uid": "a", "features": "1,2,3"}, "application/json", 400, "invalid_request"),
    ({"uid": "a", "features": ["1"] * 10}, "application/json", 400, "invalid_request"),
    ({"uid": "a", "features": [True] * 10}, "application/json", 400, "invalid_request"),
    ({"uid": "a", "features": [None] * 10}, "application/json", 400, "invalid_request"),
    ({"uid": "a", "features": FEATURES, "experiment": 5}, "application/json", 400,
     "invalid_request"),
    ({"uid": "a", "features": FEATURES}, "text/plain", 415, "unsupported_media_type"),
    ({"uid": "a", "features": FEATURES}, "application/x-www-form-urlencoded", 415,
     "unsupported_media_type"),
    ({"uid": "a", "features": FEATURES[:9]}, "application/json", 422, "invalid_features"),
    ({"uid": "a", "features": FEATURES + [1.0]}, "application/json", 422, "invalid_features"),
    ({"uid": "a", "features": {"mean_radius": 1.0}}, "application/json", 422,
     "invalid_features"),
    ('{"uid": "a", "features": [NaN, 1, 1, 1, 1, 1, 1, 1, 1, 1]}', "application/json", 422,
     "invalid_features"),
    ('{"uid": "a", "features": [Infinity, 1, 1, 1, 1, 1, 1, 1, 1, 1]}', "application/json", 422,
     "invalid_features"),
    ('{"uid": "a", "features": [1e999, 1, 1, 1, 1, 1, 1, 1, 1, 1]}', "application/json", 422,
     "invalid_features"),
    ('{"uid": "a", "features": [1' + "0" * 400 + ', 1, 1, 1, 1, 1, 1, 1, 1, 1]}',
     "application/json", 422, "invalid_features"),
    # Beyond float32, which the variation's trees compare: refused by scikit-learn.
    ({"uid": "a", "features": [1e39] + FEATURES[1:]}, "application/json", 422,
     "invalid_features"),
    ({"uid": "a", "features": FEATURES, "experiment": "nope"}, "application/json", 404,
     "unknown_experiment"),
]


@pytest.mark.parametrize("body,content_type,status,code", ERROR_CASES,
                         ids=[f"{c[2]}-{i}" for i, c in enumerate(ERROR_CASES)])
def test_bad_input_gets_a_json_error_and_stores_nothing(client, services, body, content_type,
                                                        status, code):
    response = post(client, body, content_type)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    payload = response.get_json()
    assert payload["error"] == code and payload["message"]
    experiment = services.catalog.get("demo")
    assert services.exposures.exposure_counts(experiment.id) == {}


@pytest.mark.filterwarnings("ignore:invalid value encountered in log1p:RuntimeWarning")
def test_row_a_model_without_fast_path_refuses_gets_422_and_stores_nothing(models_dir,
                                                                           tmp_path):
    """A control that logs its features gives -2 no finite score: the row is refused before
    the uid gets a group, whichever group that would be, and no exposure is stored."""
    directory = tmp_path / "models"
    shutil.copytree(models_dir, directory)
    x, y, names = demo_dataset()
    joblib.dump(make_pipeline(FunctionTransformer(np.log1p), LogisticRegression(max_iter=5000))
                .fit(x, y), tmp_path / "log.joblib")
    register_model(directory, tmp_path / "log.joblib", "logreg", "1", names)
    app = create_app(embedded(directory, tmp_path))
    services, client = app.extensions["ml_api"], app.test_client()
    assert services.registry.get("logreg@1").fast_path is None
    for i in range(8):
        response = post(client, {"uid": f"user-{i}", "features": [-2.0] + FEATURES[1:]})
        assert response.status_code == 422
        assert response.get_json()["error"] == "invalid_features"
    settle(services)
    experiment = services.catalog.get("demo")
    assert services.exposures.exposure_counts(experiment.id) == {}
    assert post(client, {"uid": "user-0", "features": FEATURES}).status_code == 200
    settle(services)
    assert sum(services.exposures.exposure_counts(experiment.id).values()) == 1


def test_body_over_the_limit_is_413(client, services):
    huge = json.dumps({"uid": "a", "features": FEATURES, "pad": "x" * 70_000})
    response = post(client, huge)
    assert response.status_code == 413
    assert response.get_json()["error"] == "request_entity_too_large"
    assert services.exposures.exposure_counts(services.catalog.get("demo").id) == {}


class CountingReads(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.sizes = []

    def read(self, size=-1):
        self.sizes.append(size)
        return super().read(size)


@pytest.mark.parametrize("terminated", [False, True])
def test_a_body_with_a_length_is_read_in_one_read_of_that_length(terminated):
    # Under gunicorn (wsgi.input_terminated) werkzeug's get_data() reads 64 KiB at a time
    # into new buffers, twice for a small body: read_body() reads exactly what was announced.
    body = json.dumps({"uid": "a", "features": FEATURES}).encode()
    environ = EnvironBuilder(method="POST", path="/predict", data=body,
                             content_type="application/json").get_environ()
    stream = CountingReads(body)
    environ.update({"wsgi.input": stream, "wsgi.input_terminated": terminated})
    assert read_body(Request(environ), 64 * 1024) == body
    assert stream.sizes == [len(body)]


def test_a_body_shorter_than_its_length_is_a_client_error():
    environ = EnvironBuilder(method="POST", path="/predict", data=b'{"uid": "a"}',
                             content_type="application/json").get_environ()
    environ["CONTENT_LENGTH"] = "100"
    with pytest.raises(ClientDisconnected):
        read_body(Request(environ), 64 * 1024)


@pytest.mark.parametrize("content_type,length,extra", [
    ("application/json", None, {}),
    ("application/json; charset=utf-8", None, {}),
    ("Application/JSON", None, {}),
    ("application/problem+json", None, {}),
    ("application/json", " {n} ", {}),
    ("application/json", "0{n}", {}),
    ("application/json", "999", {"HTTP_TRANSFER_ENCODING": "chunked",
                                 "wsgi.input_terminated": True}),
])
def test_json_bodies_are_read_whatever_form_their_type_and_length_take(content_type, length,
                                                                       extra):
    """The plain type and length are read off the environ; every other form of them goes
    through werkzeug's parsing and still reads the body (a chunked body's length is not the
    one announced)."""
    body = json.dumps({"uid": "a", "features": FEATURES}).encode()
    environ = EnvironBuilder(method="POST", path="/predict", data=body).get_environ()
    environ.update({"CONTENT_TYPE": content_type, "wsgi.input": io.BytesIO(body), **extra})
    if length is not None:
        environ["CONTENT_LENGTH"] = length.format(n=len(body))
    assert read_json_body(Request(environ), 64 * 1024) == {"uid": "a", "features": FEATURES}


@pytest.mark.parametrize("method,path,status,code", [
    ("get", "/predict", 405, "method_not_allowed"),
    ("put", "/predict", 405, "method_not_allowed"),
    ("get", "/nowhere", 404, "not_found"),
    ("post", "/health", 405, "method_not_allowed"),
])
def test_routing_errors_are_json(client, method, path, status, code):
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.get_json()["error"] == code
