"""New uids' first exposures, written ahead: durable in the host's spool before the uid is
answered, then written to the database in batches by one thread in each process.

A new uid's answer thus waits for one Redis round trip (SET NX, which tells a new uid from a
returning one) and a local append, instead of a database transaction; concurrent new uids
share one transaction. It is used where the hash alone decides every uid's first group
(Experiment.hash_gives_first_groups), so the group needs no database arbitration: every
worker and host computes the same one. Until its exposure is in the database, a uid's Redis
value carries the provisional mark; the batch replaces it with the database's group.

The promise is the synchronous path's: an answered exposure survives the worker's SIGKILL
(the spool is on disk; a surviving worker's replay writes what the dead one left). It does not
survive a power cut of the host in the moments before its batch is written.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time

from ml_api.assignment.caches import AssignmentCache
from ml_api.errors import StorageUnavailable
from ml_api.experiments.values import Experiment
from ml_api.records.exposures import ExposureStore
from ml_api.records.spool import Spool

log = logging.getLogger(__name__)

# A batch waits this long for more new uids. Larger batches cost the database and this
# process less per exposure (one transaction, one spool delete, one Redis pipeline each);
# the price is how late results and the results page count a new uid.
LINGER_SECONDS = 0.25
BATCH = 500
RETRY_SECONDS = 1.0  # between tries while the database is down


class WriteAhead:
    """Exposures spooled before their answer, then written in batches off the request path."""

    def __init__(self, spool: Spool, store: ExposureStore, shared: AssignmentCache,
                 linger: float = LINGER_SECONDS):
        self._spool = spool
        self._store = store
        self._shared = shared
        self._linger = linger
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def add(self, experiment: Experiment, uid: str, variant: str,
            covariate: float | None) -> None:
        """Make a first exposure durable; this process writes it to the database soon.
        sqlite3.Error if the spool cannot take it."""
        self._spool.add_exposure(experiment.id, uid, variant, experiment.shares, covariate,
                                 ahead=True)
        if self._thread is None:
            self._start()
        if not self._ready.is_set():  # set() takes a lock; the thread clears it before flushing
            self._ready.set()

    def flush(self, everyone: bool = False) -> int:
        """Write this process's spooled exposures (every process's with `everyone`) to the
        database now; returns how many. StorageUnavailable leaves the rest spooled."""
        done = 0
        while True:
            held = self._spool.flush_exposures(
                self._store, owner=None if everyone else os.getpid(), batch=BATCH)
            for (experiment_id, uid), variant in held.items():
                self._shared.put_later(experiment_id, uid, variant)  # final: no mark
            done += len(held)
            if len(held) < BATCH:
                return done

    def stop(self) -> None:
        """Stop the thread; what it has not written stays spooled, for any replay."""
        self._stopping.set()
        self._ready.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def close(self) -> None:
        """Stop the thread and write what this process still holds (a worker's exit)."""
        self.stop()
        self.flush()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="exposure-write-ahead")
                self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._ready.wait()
            self._ready.clear()
            time.sleep(self._linger)
            try:
                self.flush()
            except (StorageUnavailable, sqlite3.Error) as exc:
                # They stay spooled; this thread tries again, and so does every replay.
                log.warning("exposures written ahead wait in the spool: %s", exc)
                self._stopping.wait(RETRY_SECONDS)
                self._ready.set()
