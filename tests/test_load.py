"""Headless Locust against gunicorn, on the embedded default and on real Redis + MariaDB: no
failure, no consumer changing group, and the run's experiment names the better group."""
import csv
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, Gunicorn, settings_env


@pytest.mark.parametrize("backends", ["embedded", "real"])
def test_headless_locust_run(request, backends, tmp_path):
    settings = request.getfixturevalue(f"{backends}_settings")
    with Gunicorn(settings_env(settings), workers=2, log_path=tmp_path / "g.log") as server:
        env = {**os.environ, "ADMIN_TOKEN": settings.admin_token, "LOAD_USERS": "800",
               "LOAD_RATES": "control=0.05,variation=0.40"}
        run = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(ROOT / "load_test" / "locustfile.py"),
             "--host", server.url, "--headless", "-u", "20", "-r", "20", "-t", "15s",
             "--only-summary", "--csv", str(tmp_path / "run")],
            env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = {r["Name"]: r for r in csv.DictReader(open(tmp_path / "run_stats.csv"))}
    assert int(rows["Aggregated"]["Request Count"]) > 500
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert int(rows["/feedback"]["Request Count"]) > 0
    assert "decision: winner variation" in run.stdout + run.stderr
