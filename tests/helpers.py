"""Shared test helpers: demo feature rows; the gunicorn runner and its environment; a light
JSON client for many requests; headless Chromium."""
from __future__ import annotations

import http.client
import json
import subprocess
import threading
import urllib.parse

from load_test.processes import ROOT, Gunicorn, settings_env  # noqa: F401 (re-exported)
from ml_api.serving.training import demo_dataset

_X, _Y, FEATURE_NAMES = demo_dataset()
FEATURES = [float(v) for v in _X[0]]


def settle(services) -> None:
    """Write the exposures this process wrote ahead now (its thread does so moments later),
    for a test that reads the database right after the answers."""
    if services.write_ahead is not None:
        services.write_ahead.flush()


class JsonClient:
    """POSTs JSON on one keep-alive connection per thread, for tests that send thousands of
    requests: the standard library's http.client costs the test process about a fifth of
    the CPU a requests.Session does (0.43 against 2.1 ms a request, measured on this 2-core
    machine), CPU the server under test shares."""

    def __init__(self, url: str, timeout: float = 30):
        address = urllib.parse.urlsplit(url)
        self._host, self._port, self._timeout = address.hostname, address.port, timeout
        self._local = threading.local()

    def post(self, path: str, payload: dict) -> tuple[int, dict]:
        """(status, decoded JSON body). A connection the server closed while idle is opened
        again once (both endpoints tested this way are safe to repeat)."""
        body = json.dumps(payload)
        try:
            return self._post(path, body)
        except ConnectionError:
            self._local.connection.close()
            self._local.connection = None
            return self._post(path, body)

    def _post(self, path: str, body: str) -> tuple[int, dict]:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = http.client.HTTPConnection(
                self._host, self._port, timeout=self._timeout)
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())


def headless(url: str, profile, *extra: str) -> subprocess.CompletedProcess:
    """Headless Chromium on url with a fresh profile (skipped without it; CI: a failure)."""
    from tests.conftest import require_tool

    return subprocess.run(
        [require_tool("chromium", "chromium"), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
         "--virtual-time-budget=5000", *extra, url], capture_output=True, text=True, timeout=120)
