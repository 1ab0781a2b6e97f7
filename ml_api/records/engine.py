"""The SQL engine (MySQL/MariaDB through PyMySQL, or SQLite), the Alembic migrations, and
the error translation and retry every store of ml_api.records uses.

Every sqlalchemy error leaves the stores as StorageUnavailable, except the integrity errors
they resolve themselves.
"""
from __future__ import annotations

import fcntl
import functools
import os
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from ml_api.errors import StaleConnection, StorageUnavailable, TransientConflict
from ml_api.telemetry import prometheus

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SHARDS = 16  # counter rows per variant and metric; see new_exposures.shard_of


# MySQL/MariaDB: deadlock found, lock wait timeout. The transaction may simply be run again.
RETRYABLE_MYSQL_ERRORS = {1213, 1205}


@contextmanager
def translated(what: str) -> Iterator[None]:
    """sqlalchemy errors become StorageUnavailable (TransientConflict when a retry of the
    whole transaction may succeed); IntegrityError is left to the caller."""
    try:
        yield
    except IntegrityError:
        raise
    except OperationalError as exc:
        prometheus.BACKEND_ERRORS.labels("database").inc()
        code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
        # A connection the server dropped (a restart, say) is replaced by the pool at once:
        # a write on it is worth one more try.
        error = (TransientConflict if code in RETRYABLE_MYSQL_ERRORS else StaleConnection
                 if exc.connection_invalidated else StorageUnavailable)
        raise error(f"database error while {what}: {exc.orig!r}") from exc
    except SQLAlchemyError as exc:
        prometheus.BACKEND_ERRORS.labels("database").inc()
        raise StorageUnavailable(f"database error while {what}: {exc.__class__.__name__}") \
            from exc


def retrying(attempts: int = 4):
    """Run a write transaction again when it lost a deadlock or a lock wait, or once when
    its pooled connection had been dropped."""
    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            for attempt in range(attempts):
                try:
                    return func(*args, **kwargs)
                except TransientConflict as exc:
                    if attempt == attempts - 1 or (isinstance(exc, StaleConnection) and attempt):
                        raise
                    time.sleep(0.005 * (attempt + 1))
        return wrapper
    return decorate


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class WriterTurns:
    """SQLite's one writer at a time, queued in the kernel (flock on a file beside the
    database) instead of in SQLite's busy handler. A writer that finds SQLite's lock taken
    sleeps for ever longer steps (1, 2, 5, 10 ms ...) however soon the lock is free again;
    a flock waiter wakes as it is released. One turn per process at a time (a lock), so
    the process's threads share its descriptor."""

    def __init__(self, path: Path):
        self._path = path
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid: int | None = None

    def take(self) -> None:
        self._lock.acquire()
        try:
            if self._pid != os.getpid():  # none yet, or the parent's before a fork
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self._pid = os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._lock.release()
            raise

    def give_back(self) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()


def make_engine(url: str) -> Engine:
    """An engine for this URL. SQLite gets WAL, a busy timeout and writers that take turns
    on a flock (WriterTurns), so several workers can write."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL syncs at checkpoints, not at every commit: a commit survives
            # the process's death (the OS holds it), though not a power cut.
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")
            dbapi_conn.execute("PRAGMA foreign_keys=ON")
            dbapi_conn.isolation_level = None  # transactions begin below, not in pysqlite

        turns = WriterTurns(Path(f"{path}.writer")) if path and path != ":memory:" else None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # The turn is held until the connection goes back to the pool, after its COMMIT.
            if turns is not None and not conn.info.get("writer_turn"):
                turns.take()
                conn.info["writer_turn"] = True
            # Take the write lock up front: with several gunicorn workers, a read-then-write
            # transaction would otherwise fail at once when another worker wrote meanwhile.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        @event.listens_for(engine, "checkin")
        def _sqlite_checkin(_dbapi_conn, record):
            if record.info.pop("writer_turn", False):
                turns.give_back()

        return engine
    # READ COMMITTED: no gap locks, so concurrent first outcomes of different uids cannot
    # deadlock on the empty index range between them; every invariant here rests on unique
    # keys and single-row updates, which this level keeps. No pre-ping (a round trip per
    # checkout): a dropped connection fails its first statement, the pool replaces all of
    # its connections, and writes try once more (`translated`, `retrying`).
    return create_engine(
        url, pool_recycle=1800, pool_size=5, max_overflow=5,
        isolation_level="READ COMMITTED",
        connect_args={"connect_timeout": 5, "read_timeout": 10, "write_timeout": 10,
                      "charset": "utf8mb4"},
    )


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to the newest migration, or to `revision` (idempotent)."""
    with engine.begin() as conn:
        config = _alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def schema_is_current(engine: Engine) -> bool:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() == head
