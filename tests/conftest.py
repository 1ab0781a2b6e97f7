"""Fixtures: trained demo models, a private MariaDB database and Redis key prefix per run.

Integration tests use the real MariaDB and Redis of the machine. Outside CI a missing service
skips them; with CI=true it fails the run. A test that asks for the real servers is marked
`integration` here, so `make test-fast` (`-m "not integration and not slow"`) leaves it out.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pymysql
import pytest
import redis

from ml_api import create_app
from ml_api.serving.training import train_demo_models
from ml_api.settings import Settings
from ml_api.wiring import init_database

MYSQL_HOST = os.environ.get("TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("TEST_MYSQL_PORT", "3306"))
MYSQL_USER = os.environ.get("TEST_MYSQL_USER", "root")
MYSQL_PASSWORD = os.environ.get("TEST_MYSQL_PASSWORD", "")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"
ADMIN_TOKEN = "test-admin-token"


REAL_SERVER_FIXTURES = {"mysql_server", "mysql_url", "redis_prefix", "redis_client",
                        "real_settings", "real_services", "backends"}


def pytest_collection_modifyitems(items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        real_param = callspec is not None and "real" in callspec.params.values()
        if real_param or REAL_SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def _unavailable(what: str, exc: Exception):
    message = f"{what} is not reachable: {exc}"
    if IN_CI:
        pytest.fail(message + " (CI=true: a missing service is a failure)", pytrace=False)
    pytest.skip(message)


def require_tool(command: str, package: str) -> str:
    """The tool's path; skipped without it, or a failure under CI=true."""
    import shutil
    path = shutil.which(command)
    if not path:
        message = f"{command} is not installed (Debian package {package})"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("models")
    train_demo_models(directory)
    return directory


@pytest.fixture(scope="session")
def mysql_server():
    try:
        conn = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER,
                               password=MYSQL_PASSWORD, connect_timeout=3)
    except pymysql.MySQLError as exc:
        _unavailable(f"MariaDB at {MYSQL_HOST}:{MYSQL_PORT}", exc)
    created = []

    def new_database() -> str:
        name = f"ml_api_test_{uuid.uuid4().hex[:12]}"
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        created.append(name)
        return (f"mysql+pymysql://{MYSQL_USER}:{MYSQL_PASSWORD}@{MYSQL_HOST}:{MYSQL_PORT}/{name}")

    yield new_database
    with conn.cursor() as cur:
        for name in created:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


@pytest.fixture
def mysql_url(mysql_server) -> str:
    """A fresh, empty MariaDB database for this test (dropped at the end of the run)."""
    return mysql_server()


@pytest.fixture
def redis_prefix():
    """A key prefix of this test's own on the real Redis; its keys are deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable(f"Redis at {REDIS_URL}", exc)
    prefix = f"ml_api_test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def real_settings(models_dir, mysql_url, redis_prefix, tmp_path) -> Settings:
    """Settings for the real MariaDB and Redis, initialised with the demo experiment."""
    settings = Settings(database_url=mysql_url, redis_url=REDIS_URL, redis_prefix=redis_prefix,
                        models_dir=models_dir, experiment_refresh_seconds=0,
                        supervisor_interval_seconds=0,
                        admin_token=ADMIN_TOKEN, spool_path=tmp_path / "spool.sqlite3")
    init_database(settings)
    return settings


def embedded(models_dir, tmp_path) -> Settings:
    """The embedded default (in-process cache, SQLite file) on these models, initialised."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'ml_api.sqlite3'}",
                        models_dir=models_dir, experiment_refresh_seconds=0,
                        supervisor_interval_seconds=0,
                        admin_token=ADMIN_TOKEN, spool_path=tmp_path / "spool.sqlite3")
    init_database(settings)
    return settings


@pytest.fixture
def embedded_settings(models_dir, tmp_path) -> Settings:
    """The embedded default (in-process cache, SQLite file), initialised."""
    return embedded(models_dir, tmp_path)


@pytest.fixture(params=["embedded", "real"])
def any_settings(request) -> Settings:
    """Each test using this runs on the embedded default and on real Redis + MariaDB."""
    name = "embedded_settings" if request.param == "embedded" else "real_settings"
    return request.getfixturevalue(name)


@pytest.fixture
def app(any_settings):
    return create_app(any_settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def services(app):
    return app.extensions["ml_api"]


@pytest.fixture
def admin_headers():
    return {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Actor": "tester"}
