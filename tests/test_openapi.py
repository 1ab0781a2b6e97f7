"""/openapi.json is the contract: its paths and methods are the app's routes, every answer the
service gives has a documented status and matches that status's schema, a body missing a
required field or carrying a wrongly typed one is refused with a documented 4xx, and every
body the schemas allow (required fields only, or every field) is accepted."""
import copy
import re

import pytest
from openapi_schema_validator import OAS30Validator

from ml_api import create_app
from tests.helpers import FEATURES

TOKEN = {"Authorization": "Bearer test-admin-token"}


def inline(node, root):
    """The schema with every local $ref replaced by what it points to."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = root
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return inline(target, root)
        return {key: inline(value, root) for key, value in node.items()}
    if isinstance(node, list):
        return [inline(item, root) for item in node]
    return node


@pytest.fixture
def contract(embedded_settings):
    app = create_app(embedded_settings)
    client = app.test_client()
    spec = client.get("/openapi.json").get_json()
    return app, client, inline(spec, spec)


def check_answer(spec, method: str, template: str, response) -> None:
    """The response's status is documented for the operation, and its JSON body (if the
    operation documents one) validates against that status's schema."""
    responses = spec["paths"][template][method]["responses"]
    status = str(response.status_code)
    assert status in responses, f"{method.upper()} {template} answered {status}: not documented"
    content = responses[status].get("content", {}).get("application/json")
    if content is not None:
        OAS30Validator(content["schema"]).validate(response.get_json())


def call(client, spec, method, template, body=None, name="demo", headers=TOKEN):
    path = template.replace("{name}", name)
    response = client.open(path, method=method.upper(), json=body, headers=headers)
    check_answer(spec, method, template, response)
    return response


def test_openapi_paths_and_methods_match_the_routes(contract):
    app, _, spec = contract
    assert spec["openapi"].startswith("3.")
    routes = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        methods = {m.lower() for m in rule.methods - {"HEAD", "OPTIONS"}}
        if "{action}" in path:  # one Flask rule serves start, pause and stop
            for action in ("start", "pause", "stop"):
                routes.setdefault(path.replace("{action}", action), set()).update(methods)
        else:
            routes.setdefault(path, set()).update(methods)
    documented = {path: set(ops) for path, ops in spec["paths"].items()}
    assert documented == routes
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            secured = bool(op.get("security"))
            assert secured == path.startswith("/experiments"), (method, path)


def valid_bodies():
    """A body with only the required fields, and one with every documented field, for each
    operation that takes a body."""
    spec_required = {"name": "contract-min", "variants": [
        {"name": "a", "model": "logreg@1"}, {"name": "b", "model": "gboost@1"}]}
    spec_full = {"name": "contract-full", "strategy": "hash", "metric": "conversion",
                 "salt": "s", "metric_type": "conversion", "alpha": 0.05,
                 "min_sample_size": 10, "max_duration_hours": None, "auto_stop": False,
                 "mde": 0.02, "epsilon": 0.1, "min_share": 0.05,
                 "guardrails": [{"metric": "cancellation", "worse": "higher", "tolerance": 0}],
                 "variants": [{"name": "a", "model": "logreg@1", "weight": 1},
                              {"name": "b", "model": "gboost@1", "weight": 1}]}
    return [
        ("post", "/predict", {"uid": "u1", "features": FEATURES}, 200),
        ("post", "/predict", {"uid": "u2", "features": FEATURES, "experiment": "demo",
                              "covariate": 12.5}, 200),
        ("post", "/feedback", {"uid": "u1"}, 202),
        ("post", "/feedback", {"uid": "u1", "experiment": "demo", "metric": "conversion",
                               "value": 1, "event_id": "e-1"}, 202),
        # request_id and label_token are filled in from a /predict answer
        ("post", "/feedback", {"request_id": "", "label": 1, "label_token": ""}, 202),
        ("post", "/experiments", spec_required, 201),
        ("post", "/experiments", spec_full, 201),
        ("patch", "/experiments/{name}", {}, 200),
        ("patch", "/experiments/{name}", {"weights": {"control": 60, "variation": 40},
                                          "min_sample_size": 5,
                                          "auto_stop": False, "max_duration_hours": None,
                                          "epsilon": 0.1, "min_share": 0.05},
         200),
        # the demo experiment runs: the settings that define its test are fixed
        ("patch", "/experiments/{name}", {"alpha": 0.05, "mde": 0.02}, 422),
        ("post", "/experiments/{name}/promote", {"variant": "control"}, 200),
    ]


@pytest.mark.parametrize("method,template,body,status", valid_bodies())
def test_every_body_the_schema_allows_is_accepted_with_its_documented_answer(
        contract, method, template, body, status):
    _, client, spec = contract
    schema = spec["paths"][template][method]["requestBody"]["content"]["application/json"]
    if template == "/feedback":  # an outcome needs the uid's exposure, a label its answer
        answer = call(client, spec, "post", "/predict",
                      {"uid": body.get("uid", "u-label"), "features": FEATURES}).get_json()
        if "label" in body:
            body = {**body, "request_id": answer["request_id"],
                    "label_token": answer["label_token"]}
    OAS30Validator(schema["schema"]).validate(body)  # the example is itself valid
    assert call(client, spec, method, template, body).status_code == status


WRONG_TYPE = {"string": 12345, "number": "12", "integer": "12", "boolean": "yes",
              "array": {"not": "a list"}, "object": ["not", "an object"]}


def test_a_body_missing_a_required_field_or_of_the_wrong_type_is_refused(contract):
    """For each operation with a body: each required field left out, each documented field
    given a value of the wrong JSON type, and a body that is not an object."""
    _, client, spec = contract
    call(client, spec, "post", "/predict", {"uid": "u1", "features": FEATURES})
    refused = 0
    for method, template, body, _ in valid_bodies():
        schema = spec["paths"][template][method]["requestBody"]["content"]["application/json"]
        schema = schema["schema"]
        if "oneOf" in schema:  # the alternative this body is an example of
            schema = next(s for s in schema["oneOf"] if set(s["required"]) <= set(body))
        variants = [{k: v for k, v in body.items() if k != field}
                    for field in schema.get("required", [])]
        for field, prop in schema["properties"].items():
            kind = prop.get("type") or prop.get("oneOf", [{}])[0].get("type")
            if kind in WRONG_TYPE:
                wrong = copy.deepcopy(body)
                wrong[field] = WRONG_TYPE[kind]
                variants.append(wrong)
        variants.append(["not", "an", "object"])
        for bad in variants:
            response = call(client, spec, method, template, bad)
            assert 400 <= response.status_code < 500, (method, template, bad, response.json)
            assert response.get_json()["error"], bad
            refused += 1
    assert refused > 40


def test_every_other_answer_is_documented_and_matches_its_schema(contract):
    _, client, spec = contract
    call(client, spec, "get", "/health")
    call(client, spec, "get", "/ready")
    call(client, spec, "post", "/predict", {"uid": "x", "features": [1, 2]})  # 422
    call(client, spec, "post", "/predict", {"uid": "x", "features": FEATURES,
                                            "experiment": "nope"})  # 404
    call(client, spec, "post", "/feedback", {"uid": "never-seen"})  # 404
    for template in ("/experiments", "/experiments/{name}", "/experiments/{name}/results",
                     "/experiments/{name}/audit"):
        call(client, spec, "get", template)
        call(client, spec, "get", template, headers={})  # 401
    call(client, spec, "get", "/experiments/{name}", name="nope")  # 404
    call(client, spec, "post", "/experiments/{name}/pause")
    call(client, spec, "post", "/experiments/{name}/pause")  # 409: not running
    call(client, spec, "post", "/experiments/{name}/start")
    call(client, spec, "post", "/experiments/{name}/stop")
    spec_body = {"name": "demo", "variants": [{"name": "a", "model": "logreg@1"},
                                              {"name": "b", "model": "gboost@1"}]}
    call(client, spec, "post", "/experiments", spec_body)  # 409: exists
    response = client.post("/predict", data="{}", headers={"Content-Type": "text/plain"})
    check_answer(spec, "post", "/predict", response)  # 415
    response = client.post("/predict", data=b"{" * 70_000,
                           headers={"Content-Type": "application/json"})
    check_answer(spec, "post", "/predict", response)  # 413
