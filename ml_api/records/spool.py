"""A local, durable spool for records the database could not take: first exposures,
outcomes and labels accepted while MySQL is down are written here (fsync'd SQLite, shared by
the workers of one host) and replayed when it returns. Replays are idempotent: exposures are
insert-or-get, every spooled outcome carries an event id, and every label its request id.

An outcome whose exposure the database does not know yet may be waiting in another host's
spool: it is retried until `orphan_horizon` seconds after it was spooled, then moved to the
database's dead_letters table (DeadLetters), never dropped.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import orjson

from ml_api.errors import StorageUnavailable, UnknownAssignment
from ml_api.records.dead_letters import DeadLetters
from ml_api.records.exposures import ExposureStore
from ml_api.records.labels import LabelStore
from ml_api.records.new_exposures import NewExposure

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS spooled (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,            -- 'exposure', 'outcome' or 'label'
    payload TEXT NOT NULL          -- JSON arguments of the store's call
)
"""
# Added later; a spool file written before them gets them with their defaults.
COLUMNS = {"spooled_at": "REAL NOT NULL DEFAULT 0",  # time.time() when spooled
           "retry_at": "REAL NOT NULL DEFAULT 0",    # not replayed before this time
           "owner": "INTEGER NOT NULL DEFAULT 0"}    # non-zero: written ahead by an older release
# A replay leaves exposures written ahead this recently to the process that wrote them.
AHEAD_SECONDS = 2.0
RETRY_SECONDS = 5.0  # between tries of an outcome whose exposure is not in the database yet


def _json(payload: dict) -> str:
    """A record's payload as JSON text (numpy scalars, as models give them, included)."""
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _set_wal(conn: sqlite3.Connection, attempts: int = 100) -> None:
    """Switch to WAL. Changing the journal mode ignores the busy timeout, so workers that boot
    together (and open a new spool at once) retry instead of failing to start."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


class Spool:
    """The host's spool file: records added while the database is down, replayed in order."""

    def __init__(self, path: Path, dead_letters: DeadLetters | None = None,
                 orphan_horizon: float = 86400.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._dead_letters = dead_letters
        self._orphan_horizon = orphan_horizon
        self._local = threading.local()
        self._replay_lock = threading.Lock()
        with self._connection() as conn:
            conn.execute(SCHEMA)
            present = {row[1] for row in conn.execute("PRAGMA table_info(spooled)")}
            for name, definition in COLUMNS.items():
                if name not in present:
                    conn.execute(f"ALTER TABLE spooled ADD COLUMN {name} {definition}")
            if "spooled_at" not in present:  # the horizon of older records starts now
                conn.execute("UPDATE spooled SET spooled_at = ?", (time.time(),))

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection. It syncs every commit to disk: a record accepted during
        an outage survives a power cut."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            _set_wal(conn)
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    def _add(self, kind: str, payload: dict) -> None:
        # One statement, its own transaction (the connections are in autocommit mode).
        self._connection().execute("INSERT INTO spooled (kind, payload, spooled_at) "
                                   "VALUES (?, ?, ?)", (kind, _json(payload), time.time()))

    def add_exposure(self, experiment_id: int, uid: str, variant: str,
                     shares: dict[str, float], covariate: float | None = None) -> None:
        """Spool a first exposure accepted while the database is down."""
        self._add("exposure", {"experiment_id": experiment_id, "uid": uid, "variant": variant,
                               "shares": shares, "covariate": covariate,
                               "claimed_at": time.time()})

    def add_outcome(self, experiment_id: int, uid: str, metric: str, value: float,
                    event_id: str | None) -> str:
        """Spool an outcome; returns the event id it will be replayed with."""
        event_id = event_id or f"spool-{uuid.uuid4().hex}"
        self._add("outcome", {"experiment_id": experiment_id, "uid": uid, "metric": metric,
                              "value": value, "event_id": event_id})
        return event_id

    def add_label(self, experiment_id: int, request_id: str, variant: str, score: float,
                  label: int) -> None:
        self._add("label", {"experiment_id": experiment_id, "request_id": request_id,
                            "variant": variant, "score": score, "label": label})

    def pending(self, older_than: float = 0.0) -> int:
        """How many records wait, of those spooled more than `older_than` seconds ago."""
        return self._connection().execute("SELECT COUNT(*) FROM spooled WHERE spooled_at <= ?",
                                          (time.time() - older_than,)).fetchone()[0]

    def flush_exposures(self, exposures: ExposureStore, older_than: float = 0.0,
                        batch: int = 500) -> dict[tuple[int, str], str]:
        """Write spooled exposures to the database in one transaction, oldest first: those
        spooled during an outage, and those an older release wrote ahead more than
        `older_than` seconds ago. Returns each one's group as the database holds it. A
        database error raises StorageUnavailable and leaves them."""
        conn = self._connection()
        rows = conn.execute(
            "SELECT id, payload FROM spooled WHERE kind = 'exposure' "
            "AND (owner = 0 OR spooled_at <= ?) ORDER BY id LIMIT ?",
            (time.time() - older_than, batch)).fetchall()
        if not rows:
            return {}
        held = exposures.record_exposures([NewExposure(**orjson.loads(payload))
                                           for _, payload in rows])
        conn.execute(f"DELETE FROM spooled WHERE id IN ({','.join('?' * len(rows))})",
                     [row_id for row_id, _ in rows])
        return {key: variant for key, (variant, _) in held.items()}

    def replay(self, exposures: ExposureStore, labels: LabelStore | None = None,
               batch: int = 500) -> int:
        """Write spooled records to the database, oldest first; returns how many were done
        (written, or moved to the dead letters). Stops at the first database error (the rest
        waits for the next call)."""
        if not self._replay_lock.acquire(blocking=False):
            return 0
        done = 0
        try:
            try:
                done += len(self.flush_exposures(exposures, older_than=AHEAD_SECONDS,
                                                 batch=batch))
            except StorageUnavailable:
                return 0
            conn = self._connection()
            now = time.time()
            rows = conn.execute("SELECT id, kind, payload, spooled_at FROM spooled "
                                "WHERE retry_at <= ? AND (owner = 0 OR spooled_at <= ?) "
                                "ORDER BY id LIMIT ?",
                                (now, now - AHEAD_SECONDS, batch)).fetchall()
            for row_id, kind, payload, spooled_at in rows:
                args = orjson.loads(payload)
                try:
                    if kind == "exposure":
                        exposures.record_exposure(**args)
                    elif kind == "label":
                        if labels is None:
                            continue
                        labels.record(**args)
                    else:
                        exposures.record_outcome(**args)
                except UnknownAssignment:
                    try:
                        expired = self._orphan_expired(kind, args, spooled_at, now)
                    except StorageUnavailable:
                        break
                    if not expired:
                        conn.execute("UPDATE spooled SET retry_at = ? WHERE id = ?",
                                     (now + RETRY_SECONDS, row_id))
                        continue
                except StorageUnavailable:
                    break
                # Another host's worker may replay the same file only if it shares the path;
                # deleting by id keeps each record replayed once per spool.
                conn.execute("DELETE FROM spooled WHERE id = ?", (row_id,))
                done += 1
        finally:
            self._replay_lock.release()
        return done

    def _orphan_expired(self, kind: str, args: dict, spooled_at: float, now: float) -> bool:
        """Whether an outcome without a known exposure is past the horizon, and moved to the
        dead letters (a database error raises StorageUnavailable: it stays spooled)."""
        if now - spooled_at < self._orphan_horizon or self._dead_letters is None:
            return False
        self._dead_letters.add(kind, args, "its exposure never reached the database",
                               spooled_at)
        log.warning("spooled %s moved to dead_letters after %.0f s: %s", kind,
                    now - spooled_at, args)
        return True
