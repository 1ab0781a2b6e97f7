# The commands of the README. `make run` serves the embedded default on http://127.0.0.1:5000;
# `make test` runs the whole suite on the real Redis and MariaDB of this machine, then
# `make stack-test`: the container stack built and run on a local podman engine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test test-fast stack-test bench locust services train init-db clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files: reinstall only when pyproject.toml changes.
$(VENV)/.run-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.run-deps

train: $(VENV)/.run-deps
	$(BIN)/python -m ml_api train-demo --if-missing

init-db: train
	$(BIN)/python -m ml_api init-db

# A development token, so the README's admin examples work locally; set your own elsewhere.
run: export ADMIN_TOKEN ?= dev-admin-token
run: init-db
	$(BIN)/gunicorn -c ml_api/gunicorn_conf.py

# Locust's web UI on http://127.0.0.1:8089, aimed at `make run` (start that first);
# LOCUST_HOST aims it elsewhere, LOCUST_ARGS adds Locust's own options.
locust: export ADMIN_TOKEN ?= dev-admin-token
locust: $(VENV)/.test-deps
	$(BIN)/locust -f load_test/locustfile.py --host $(or $(LOCUST_HOST),http://127.0.0.1:5000) \
	  $(LOCUST_ARGS)

services:
	bash tests/ensure-services.sh

test: $(VENV)/.test-deps services
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MAKE) stack-test

# The quick loop, on every core: unit and in-process tests, no servers, gunicorn, Locust,
# Chromium or containers (markers in pyproject.toml; conftest.py marks what needs the real
# servers).
test-fast: $(VENV)/.test-deps
	$(BIN)/python -m pytest -m "not integration and not slow" -q -n auto $(PYTEST_ARGS)

# Builds every image of docker-compose.yml (over base images made from Debian packages), runs
# the stack with two API replicas behind nginx and checks it end to end (tests/stack/run.py).
# Needs root for podman; installs podman, debootstrap and docker-compose when missing.
# STACK_KEEP=1 keeps the built images in .stack/ for the next run.
stack-test: $(VENV)/.test-deps
	$(BIN)/python -m tests.stack.run

# /predict on four servers (full path, embedded default, bare scikit-learn, hello-world) with
# returning and new uids, and results cost from 10^4 to 10^7 exposures (docs/performance.md).
bench: $(VENV)/.test-deps services
	$(BIN)/python -m load_test.bench $(BENCH_ARGS)
	$(BIN)/python -m load_test.bench_results

clean:
	rm -rf $(VENV) var bench-results test-output .stack
