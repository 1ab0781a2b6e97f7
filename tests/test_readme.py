"""The README's quickstart curl works as printed (against a gunicorn on the embedded default)."""
import json
import re
import subprocess

from tests.helpers import ROOT, Gunicorn, settings_env

README = (ROOT / "README.md").read_text()


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def test_quickstart_curl_gets_a_real_prediction(embedded_settings, tmp_path):
    curl = next(block for block in bash_blocks() if block.startswith("curl") and "/predict" in block)
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
    for target in ("run", "test", "bench", "init-db"):
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
