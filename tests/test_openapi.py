"""/openapi.json describes exactly the routes the app has."""
import re

from ml_api import create_app


def test_openapi_paths_and_methods_match_the_routes(embedded_settings):
    app = create_app(embedded_settings)
    spec = app.test_client().get("/openapi.json").get_json()
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
