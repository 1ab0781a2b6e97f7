"""Shared test helpers: demo feature rows; the gunicorn runner and its environment; headless
Chromium."""
from __future__ import annotations

import subprocess

from load_test.processes import ROOT, Gunicorn, settings_env  # noqa: F401 (re-exported)
from ml_api.training import demo_dataset

_X, _Y, FEATURE_NAMES = demo_dataset()
FEATURES = [float(v) for v in _X[0]]



def headless(url: str, profile, *extra: str) -> subprocess.CompletedProcess:
    """Headless Chromium on url with a fresh profile (skipped without it; CI: a failure)."""
    from tests.conftest import require_tool

    return subprocess.run(
        [require_tool("chromium", "chromium"), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
         "--virtual-time-budget=5000", *extra, url], capture_output=True, text=True, timeout=120)
