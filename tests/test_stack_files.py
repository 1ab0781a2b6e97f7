"""The container stack's files, checked without an engine: docker-compose's own validation,
files that exist, names and ports that agree. `make stack-test` (tests/stack/) runs the stack
itself."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from load_test.processes import GUNICORN_CONF, ROOT
from tests.conftest import require_tool

API_ENV = dict(line.split("=", 1) for line in (ROOT / "api.env").read_text().splitlines()
               if line and not line.startswith("#"))


def mounts(service: dict) -> dict[str, str]:
    """target -> host path of a service's bind mounts (either volume syntax)."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                found[volume["target"]] = volume["source"]
        else:
            source, target = volume.split(":")[:2]
            if source.startswith(("/", ".")):
                found[target] = source
    return found


def compose_binary() -> str:
    return require_tool("docker-compose", "docker-compose")


def compose(*args, token="a-secret-of-the-test"):
    env = {k: v for k, v in os.environ.items() if k != "ADMIN_TOKEN"}
    if token:
        env["ADMIN_TOKEN"] = token
    return subprocess.run([compose_binary(), "-f", str(ROOT / "docker-compose.yml"), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def config() -> dict:
    result = compose("config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_file_is_valid_with_or_without_an_admin_token(config):
    """`down`, `ps` and `logs` work in a shell without the token; the api then gets an empty
    one, which it refuses at start (Settings.check)."""
    assert compose("config", "-q").returncode == 0
    missing = compose("config", token=None)
    assert missing.returncode == 0, missing.stderr
    assert yaml.safe_load(missing.stdout)["services"]["api"]["environment"]["ADMIN_TOKEN"] in (
        "", None)
    assert config["services"]["api"]["environment"]["ADMIN_TOKEN"] == "a-secret-of-the-test"


def test_every_service_of_the_design_is_there_with_healthchecks(config):
    services = config["services"]
    assert {"api", "redis", "mysql", "elasticsearch", "logstash", "kibana", "kibana-setup",
            "locust", "nginx", "migrate"} <= set(services)
    for name in ("mysql", "redis", "elasticsearch", "kibana", "logstash"):
        assert services[name]["healthcheck"]["test"]
    api = services["api"]["depends_on"]
    assert api["mysql"]["condition"] == "service_healthy"
    assert api["redis"]["condition"] == "service_healthy"
    assert api["migrate"]["condition"] == "service_completed_successfully"
    assert {"mysql-data", "es-data", "api-var"} <= set(config["volumes"])
    assert "ports" not in services["api"]  # replicas sit behind nginx: --scale api=N works
    assert services["api"]["build"] == services["migrate"]["build"]  # no image without a build
    published = [p.split(":") for s in services.values() for p in s.get("ports", [])]
    assert {int(port) for _ip, port, _target in published} == {8000, 8089, 5601}
    assert {ip for ip, _port, _target in published} == {"127.0.0.1"}  # loopback only


def test_elastic_images_are_on_the_last_8x_line(config):
    for name in ("elasticsearch", "logstash", "kibana"):
        assert config["services"][name]["image"].rsplit(":", 1)[1].startswith("8.19.")


@pytest.mark.parametrize("local", [False, True], ids=["docker", "local-engine"])
def test_build_contexts_dockerfiles_mounts_and_env_files_exist(local):
    override = ["-f", str(ROOT / "docker-compose.local.yml")] if local else []
    result = compose(*override, "config")
    assert result.returncode == 0, result.stderr
    for name, service in yaml.safe_load(result.stdout)["services"].items():
        build = service.get("build")
        if build:
            context = Path(build["context"])
            assert context.is_dir(), name
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), name
            for source in re.findall(r"^COPY (.+) \S+$", dockerfile.read_text(), flags=re.M):
                for part in source.split():
                    assert (context / part).exists(), f"{dockerfile}: COPY {part}"
        for source in mounts(service).values():
            assert Path(source).exists(), f"{name}: {source}"
    assert (ROOT / "api.env").is_file()


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".venv", ".git", ".stack", "var", "models", "bench-results"):
        assert path in ignored


def test_names_and_ports_agree_across_the_files(config):
    services = config["services"]
    assert API_ENV["LOGSTASH_HOST"] in services
    assert API_ENV["LOGSTASH_PORT"] == services["logstash"]["environment"]["LOGSTASH_PORT"]
    pipeline = (ROOT / "logstash" / "pipeline" / "ml_api.conf").read_text()
    assert set(re.findall(r'port => "\$\{LOGSTASH_PORT:(\d+)\}"', pipeline)) == \
        {API_ENV["LOGSTASH_PORT"]}
    redis_url = urlparse(API_ENV["REDIS_URL"])
    assert redis_url.hostname in services and redis_url.port == 6379
    database = urlparse(API_ENV["DATABASE_URL"])
    mysql = services["mysql"]["environment"]
    assert database.hostname in services
    assert (database.username, database.password, database.path.strip("/")) == \
        (mysql["MARIADB_USER"], mysql["MARIADB_PASSWORD"], mysql["MARIADB_DATABASE"])
    bind_port = API_ENV["BIND"].rsplit(":", 1)[1]
    nginx = (ROOT / "ml_api" / "nginx.conf").read_text()
    assert f"set $api_replicas api:{bind_port};" in nginx and "listen 80;" in nginx
    assert f"EXPOSE {bind_port}" in (ROOT / "ml_api" / "Dockerfile").read_text()
    assert services["locust"]["environment"]["LOCUST_HOST"] == "http://nginx:80"
    setup = services["kibana-setup"]["environment"]
    assert urlparse(setup["KIBANA_URL"]).hostname == "kibana"
    setup_dir = mounts(services["kibana-setup"])["/setup"]
    assert (Path(setup_dir) / Path(setup["SAVED_OBJECTS"]).name).is_file()
    logstash_mounts = mounts(services["logstash"])
    for path in re.findall(r'template => "([^"]+)"', pipeline):
        folder = str(Path(path).parent)
        assert (Path(logstash_mounts[folder]) / Path(path).name).is_file()


def test_nginx_answers_its_own_errors_in_the_services_json_shape():
    """What nginx answers itself (no replica answered, a body over its limit) is a JSON
    error with a code docs/api.md lists, never nginx's HTML page."""
    nginx = (ROOT / "ml_api" / "nginx.conf").read_text()
    api_doc = (ROOT / "docs" / "api.md").read_text()
    handlers = dict(re.findall(r"location (@\w+) \{(.*?)\n    \}", nginx, flags=re.S))
    routes = re.findall(r"error_page ([\d ]+) =(\d{3}) (@\w+);", nginx)
    assert {name for _, _, name in routes} == set(handlers)
    assert {"502", "504", "413"} <= {code for codes, _, _ in routes for code in codes.split()}
    for _, status, name in routes:
        block = handlers[name]
        returned, body = re.search(r"return (\d{3}) '(.*)';", block).groups()
        answer = json.loads(body.replace("\\n", "\n"))
        assert returned == status and set(answer) == {"error", "message"}
        assert "default_type application/json" in block
        assert re.search(rf"\| {status} \|[^\n]*`{answer['error']}`", api_doc), name


def test_images_run_the_same_gunicorn_config_as_the_tests():
    dockerfile = (ROOT / "ml_api" / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, flags=re.M).group(1))
    module = GUNICORN_CONF.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
    assert cmd == ["gunicorn", "-c", f"python:{module}"]
    assert "USER mlapi" in dockerfile and "HEALTHCHECK" in dockerfile and "/health" in dockerfile
    assert "check-models" in dockerfile and "VOLUME /app/var" in dockerfile


def test_workers_freeze_their_start_up_heap():
    """post_worker_init moves what the app built at start-up out of the collector's reach."""
    script = ("import gc, runpy; conf = runpy.run_path(%r); gc.unfreeze();"
              "conf['post_worker_init'](None); print(gc.get_freeze_count())" % str(GUNICORN_CONF))
    frozen = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": "/tmp"})
    assert int(frozen.stdout) > 1000
