"""gunicorn as the service configures it: its logger (no access-log line unless one is asked
for), and its worker's share of new connections."""
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


def make_worker(listener):
    from gunicorn.config import Config
    from ml_api.gunicorn_worker import GracefulThreadWorker

    config = Config()
    config.set("threads", 4)
    return GracefulThreadWorker(0, 0, [listener], None, 30, config, None)


def test_a_worker_holding_its_share_leaves_a_new_connection_to_the_others_a_while():
    """The gthread run loop accepts while nr_conns < worker_connections: below its share
    (its thread count) a worker accepts; at it, it holds, until a connection has waited in
    the listen queue OVERFLOW_WAIT (no other worker took it), then takes it too."""
    import socket
    import time

    from ml_api import gunicorn_worker

    with socket.create_server(("127.0.0.1", 0)) as listener:
        worker = make_worker(listener)
        try:
            worker.nr_conns = 3
            assert worker.nr_conns < worker.worker_connections  # below its share of 4
            worker.nr_conns = 4
            assert not worker.nr_conns < worker.worker_connections  # nobody waits: holds
            with socket.create_connection(listener.getsockname()):  # now in the listen queue
                assert not worker.nr_conns < worker.worker_connections  # left to others
                time.sleep(gunicorn_worker.OVERFLOW_WAIT)
                assert worker.nr_conns < worker.worker_connections  # nobody did: takes it
                listener.accept()[0].close()
            assert not worker.nr_conns < worker.worker_connections  # queue empty: holds
        finally:
            worker.tmp.close()


def test_a_wait_seen_before_the_worker_dropped_below_its_share_does_not_count_later():
    """A connection left waiting while the worker was full, then taken when it dropped below
    its share, must not let the next connection skip its own OVERFLOW_WAIT."""
    import socket
    import time

    from ml_api import gunicorn_worker

    with socket.create_server(("127.0.0.1", 0)) as listener:
        worker = make_worker(listener)
        try:
            worker.nr_conns = 4
            with socket.create_connection(listener.getsockname()):
                assert not worker.nr_conns < worker.worker_connections  # its wait starts
                worker.nr_conns = 3  # a connection closed: below its share, it accepts
                assert worker.nr_conns < worker.worker_connections
                listener.accept()[0].close()
            time.sleep(gunicorn_worker.OVERFLOW_WAIT)
            worker.nr_conns = 4
            with socket.create_connection(listener.getsockname()):  # a new wait, from now
                assert not worker.nr_conns < worker.worker_connections
                listener.accept()[0].close()
        finally:
            worker.tmp.close()


def test_a_stopping_worker_waits_on_its_connections_without_spinning():
    """Once the run loop has ended, a connection seen waiting before the stop no longer
    shortens the worker's waits to zero (which would spin a core while it drains)."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as listener:
        worker = make_worker(listener)
        waits = []

        class Poller:  # records how long the worker asks to wait for events
            def select(self, timeout):
                waits.append(timeout)
                return []

        worker.poller = Poller()
        try:
            worker.nr_conns = 4
            with socket.create_connection(listener.getsockname()):
                assert not worker.nr_conns < worker.worker_connections  # a wait is seen
                worker._accepting = False
                worker.alive = False  # the run loop has ended: the stop
                worker.wait_for_and_dispatch_events(timeout=1.0)
        finally:
            worker.tmp.close()
        assert waits == [1.0]
