"""The README's quickstart curl works as printed (against a gunicorn on the embedded default)."""
import json
import re
import subprocess

import pytest

from tests.helpers import ROOT, Gunicorn, settings_env

README = (ROOT / "README.md").read_text()


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


@pytest.mark.slow
def test_quickstart_curl_gets_a_real_prediction(embedded_settings, tmp_path):
    curl = next(block for block in bash_blocks()
                if block.startswith("curl") and "/predict" in block)
    assert "http://127.0.0.1:5000/predict" in curl
    with Gunicorn(settings_env(embedded_settings), log_path=tmp_path / "g.log") as server:
        command = curl.replace("http://127.0.0.1:5000", server.url)
        out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True)
    body = json.loads(out.stdout)
    assert body["experiment"] == "demo"
    assert body["group"] == "control" and body["model"] == {"name": "logreg", "version": "1"}
    assert body["prediction"] == 0 and 0 <= body["score"] < 0.01


def test_readme_names_the_two_commands_the_makefile_has():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("run", "test", "bench", "locust", "init-db"):
        assert f"make {target}" in README
        assert re.search(rf"^{target}:", makefile, flags=re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_setting_is_in_the_readme_table():
    from dataclasses import fields

    from ml_api.settings import Settings
    table = {m for m in re.findall(r"^\| `([A-Z_]+)` \|", README, flags=re.M)}
    for field in fields(Settings):
        assert field.name.upper() in table, field.name
    env_names = {line.split("=", 1)[0] for line in (ROOT / "api.env").read_text().splitlines()
                 if line and not line.startswith("#")}
    assert env_names <= table


def section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


@pytest.mark.slow
def test_lifecycle_curls_work_as_printed_in_order(embedded_settings, tmp_path):
    blocks = re.findall(r"```bash\n(.*?)```", section("Running an experiment"), flags=re.S)
    assert len(blocks) == 3
    env = {**settings_env(embedded_settings), "ADMIN_TOKEN": "dev-admin-token"}
    with Gunicorn(env, log_path=tmp_path / "g.log") as server:
        # -f: any HTTP error fails the script; everything else is the README's text.
        script = "set -euo pipefail\n" + "\n".join(blocks).replace(
            "http://127.0.0.1:5000", server.url).replace("curl -s ", "curl -sf ")
        out = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + out.stdout
    documents = [json.loads(line) for line in re.findall(r"^\{.*\}$|^\[.*\]$",
                                                         out.stdout.replace("}{", "}\n{"),
                                                         flags=re.M)]
    audit = documents[-1]
    assert [e["action"] for e in audit["entries"]] == ["create", "start", "update", "promote",
                                                       "promote"]
    assert audit["entries"][0]["actor"] == "jane"
    results = next(d for d in documents if "decision" in d)
    assert results["variants"][0]["name"] == "champion"
    assert sum(v["converting_uids"] for v in results["variants"]) == 1


def test_makefile_run_sets_the_documented_development_token():
    assert "ADMIN_TOKEN ?= dev-admin-token" in (ROOT / "Makefile").read_text()
    assert "TOKEN=dev-admin-token" in section("Running an experiment")
