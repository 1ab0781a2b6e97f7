"""gunicorn's logger as the service configures it: no access-log line unless one is asked for."""
import logging
import runpy
from datetime import timedelta
from types import SimpleNamespace

from gunicorn.config import Config
from gunicorn.glogging import Logger

from ml_api.gunicorn_worker import ServiceLogger
from tests.helpers import ROOT

REQUEST = SimpleNamespace(headers=[], method="POST", path="/predict", query="", version=(1, 1))
RESPONSE = SimpleNamespace(status="200 OK", headers=[], sent=42, response_length=42)
ENVIRON = {"REQUEST_METHOD": "POST", "RAW_URI": "/predict", "PATH_INFO": "/predict",
           "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1"}


def test_the_service_runs_gunicorn_with_its_own_logger(monkeypatch, tmp_path):
    # Set, so that reading the config file leaves this process's environment as it was.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    conf = runpy.run_path(str(ROOT / "ml_api" / "gunicorn_conf.py"))
    config = Config()
    config.set("logger_class", conf["logger_class"])
    assert config.logger_class is ServiceLogger


def test_no_access_log_fields_are_built_unless_an_access_log_is_asked_for(monkeypatch, tmp_path):
    # Stock gunicorn builds them whenever a logging config dict is set, as the service's is.
    monkeypatch.setattr(Logger, "access_log_enabled", True)
    built = []
    real_atoms = Logger.atoms
    monkeypatch.setattr(Logger, "atoms", lambda self, *args: built.append(1) or real_atoms(
        self, *args))
    unasked = Config()
    ServiceLogger(unasked).access(RESPONSE, REQUEST, ENVIRON, timedelta(milliseconds=3))
    assert built == []

    asked = Config()
    asked.set("accesslog", str(tmp_path / "access.log"))
    logger = ServiceLogger(asked)
    try:
        logger.access(RESPONSE, REQUEST, ENVIRON, timedelta(milliseconds=3))
    finally:
        for handler in list(logger.access_log.handlers):
            handler.close()
            logger.access_log.removeHandler(handler)
    assert built == [1]
    assert '"POST /predict HTTP/1.1" 200' in (tmp_path / "access.log").read_text()
    assert logging.getLogger("gunicorn.access").handlers == []
