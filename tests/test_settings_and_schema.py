"""Settings from the environment, and a schema that only migrations create."""
import subprocess
import sys

import pytest

from ml_api import create_app
from ml_api.errors import SchemaNotInitialised
from ml_api.records.engine import make_engine, schema_is_current, upgrade_schema
from ml_api.settings import Settings


def test_settings_from_env_and_embedded_default():
    settings = Settings.from_env({})
    assert settings.uses_embedded_defaults
    assert settings.effective_database_url.startswith("sqlite:///")
    real = Settings.from_env({"DATABASE_URL": "mysql+pymysql://u:p@h/db",
                              "REDIS_URL": "redis://h:6379/0", "REDIS_TIMEOUT_MS": "20",
                              "MAX_BODY_BYTES": "1000"})
    assert not real.uses_embedded_defaults
    assert (real.redis_timeout_ms, real.max_body_bytes) == (20, 1000)


def test_service_refuses_an_uninitialised_database(models_dir, tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'empty.sqlite3'}",
                        models_dir=models_dir, admin_token="t", spool_path=tmp_path / "s")
    with pytest.raises(SchemaNotInitialised, match="init-db"):
        create_app(settings)


def test_migrations_run_on_mariadb_and_are_idempotent(mysql_url):
    engine = make_engine(mysql_url)
    assert not schema_is_current(engine)
    upgrade_schema(engine)
    upgrade_schema(engine)
    assert schema_is_current(engine)
    with engine.connect() as conn:
        collation = conn.exec_driver_sql(
            "SELECT COLLATION_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'exposures' "
            "AND COLUMN_NAME = 'uid'").scalar()
    assert collation == "utf8mb4_nopad_bin"


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
def test_the_covered_outcome_counters_are_backfilled_from_the_raw_rows(backend, tmp_path,
                                                                        request):
    """Migration 0009 fills the new CUPED counters of existing experiments: the totals and
    conversions of the uids that came with a covariate, from user_metrics and exposures."""
    from sqlalchemy import text

    url = (f"sqlite:///{tmp_path / 'm.sqlite3'}" if backend == "sqlite"
           else request.getfixturevalue("mysql_url"))
    engine = make_engine(url)
    upgrade_schema(engine, "0008")
    now = "2026-01-01 00:00:00"
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO experiments (id, name, salt, status, strategy, metric, config, "
            "created_at, updated_at, version) VALUES (1, 'old', 's', 'running', 'hash', "
            "'conversion', '{}', :t, :t, 0)"), {"t": now})
        uids = [("u1", "a", 2.0, 5.0), ("u2", "a", None, 3.0), ("u3", "a", 1.0, 0.0),
                ("u4", "b", 4.0, 2.5), ("u5", "b", None, 1.0)]
        for uid, variant, covariate, total in uids:
            conn.execute(text(
                "INSERT INTO exposures (experiment_id, uid, variant, first_seen, covariate) "
                "VALUES (1, :u, :v, :t, :c)"), {"u": uid, "v": variant, "t": now, "c": covariate})
            conn.execute(text(
                "INSERT INTO user_metrics (experiment_id, uid, metric, variant, total, events) "
                "VALUES (1, :u, 'conversion', :v, :total, 1)"),
                {"u": uid, "v": variant, "total": total})
        for variant, shard in (("a", 3), ("a", 7), ("b", 5)):
            conn.execute(text(
                "INSERT INTO variant_metrics (experiment_id, variant, metric, shard, users, "
                "events, total, total_sq, covariate_total, covariate_converting) "
                "VALUES (1, :v, 'conversion', :s, 0, 0, 0, 0, 0, 0)"), {"v": variant, "s": shard})
    upgrade_schema(engine)
    with engine.connect() as conn:
        covered = {v: (float(t), int(c)) for v, t, c in conn.execute(text(
            "SELECT variant, SUM(covered_total), SUM(covered_converting) FROM variant_metrics "
            "GROUP BY variant"))}
    assert covered == {"a": (5.0, 1), "b": (2.5, 1)}  # u2 and u5 sent no covariate


def test_demo_experiment_exists_from_the_first_start(embedded_settings):
    services = create_app(embedded_settings).extensions["ml_api"]
    demo = services.catalog.get("demo")
    assert demo.is_running
    assert [(v.name, v.model_key, v.weight) for v in demo.variants] == \
        [("control", "logreg@1", 50), ("variation", "gboost@1", 50)]


def test_production_refuses_to_start_without_an_admin_token(embedded_settings, tmp_path):
    from ml_api.errors import ConfigurationError
    with pytest.raises(ConfigurationError, match="ADMIN_TOKEN"):
        create_app(embedded_settings.with_overrides(admin_token=""))
    app = create_app(embedded_settings.with_overrides(admin_token="", ml_api_env="development"))
    assert app.test_client().get("/experiments").status_code == 401  # admin API disabled


@pytest.mark.slow
def test_gunicorn_refuses_to_start_without_an_admin_token(embedded_settings, tmp_path):
    from tests.helpers import Gunicorn, settings_env
    env = {**settings_env(embedded_settings), "ADMIN_TOKEN": ""}
    server = Gunicorn(env, log_path=tmp_path / "g.log")
    with pytest.raises(RuntimeError, match="exited"):
        server.start(timeout=20)
    assert "ADMIN_TOKEN is not set" in (tmp_path / "g.log").read_text()


def test_a_sqlite_writer_holds_the_hosts_turn_until_its_connection_is_back(tmp_path):
    """Writers of one SQLite file take turns on a flock beside it: another process cannot
    take the turn while a transaction is open, and can once it committed or failed."""
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")

    def turn_is_free() -> bool:
        other = subprocess.run([sys.executable, "-c", (
            "import fcntl, os, sys\n"
            f"fd = os.open({str(tmp_path / 'db.sqlite3.writer')!r}, os.O_RDWR)\n"
            "try: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
            "except BlockingIOError: sys.exit(1)")])
        return other.returncode == 0

    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        assert not turn_is_free()
    assert turn_is_free()
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        raise RuntimeError("the transaction fails")
    assert turn_is_free()
    with engine.connect() as conn:  # the rollback undid the insert; this thread takes it again
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
