"""New uids' first exposures, written ahead: durable in a local file before the uid is
answered (records/ahead_log.py), then written to the database in batches by one thread in
each process.

A new uid's answer thus waits for one Redis round trip (SET NX, which tells a new uid from a
returning one) and a local append, instead of a database transaction; concurrent new uids
share one transaction. It is used where the hash alone decides every uid's first group
(Experiment.hash_gives_first_groups), so the group needs no database arbitration: every
worker and host computes the same one. Until its exposure is in the database, a uid's Redis
value carries the provisional mark; the batch replaces it with the database's group.

The promise is the synchronous path's: an answered exposure survives the worker's SIGKILL
(the file is on disk; a surviving worker's replay writes what the dead one left). It does not
survive a power cut of the host in the moments before its batch is written.
"""
from __future__ import annotations

import logging
import threading
import time

from ml_api.assignment.caches import AssignmentCache
from ml_api.domain.experiments import Experiment
from ml_api.errors import StorageUnavailable
from ml_api.records.ahead_log import AheadLog
from ml_api.records.exposures import ExposureStore
from ml_api.records.new_exposures import NewExposure

log = logging.getLogger(__name__)

# A batch waits this long for more new uids. Larger batches cost the database and this
# process less per exposure (one transaction and one Redis pipeline each);
# the price is how late results and the results page count a new uid.
LINGER_SECONDS = 0.25
BATCH = 500
RETRY_SECONDS = 1.0  # between tries while the database is down


class WriteAhead:
    """Exposures made durable before their answer, then written in batches off the request
    path."""

    def __init__(self, log: AheadLog, store: ExposureStore, shared: AssignmentCache,
                 linger: float = LINGER_SECONDS):
        self._log = log
        self._store = store
        self._shared = shared
        self._linger = linger
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._flush_lock = threading.Lock()

    def add(self, experiment: Experiment, uid: str, variant: str,
            covariate: float | None) -> None:
        """Make a first exposure durable; this process writes it to the database soon.
        OSError if the disk cannot take it."""
        self._log.append(NewExposure(experiment.id, uid, variant, experiment.shares, covariate,
                                     time.time()))
        if self._thread is None:
            self._start()
        if not self._ready.is_set():  # set() takes a lock; the thread clears it before flushing
            self._ready.set()

    def flush(self, wanted: tuple[int, str] | None = None) -> int:
        """Write this process's exposures written ahead to the database now; returns how many.
        With `wanted` (experiment id, uid), also that uid's exposure if another process of
        this host wrote it ahead (that one writes it too: a repeat is harmless).
        StorageUnavailable leaves them for a later flush or replay."""
        with self._flush_lock:  # a caller's flush waits for the batch thread's, and vice versa
            batch = self._log.read()
            for start in range(0, len(batch.exposures), BATCH):
                held = self._store.record_exposures(batch.exposures[start:start + BATCH])
                for (experiment_id, uid), (variant, _) in held.items():
                    self._shared.put_later(experiment_id, uid, variant)  # final: no mark
            self._log.done(batch)
        other = self._log.elsewhere(*wanted) if wanted is not None else None
        if other is not None:
            self._store.record_exposures([other])
        return len(batch.exposures)

    def pending(self) -> int:
        """Exposures this process wrote ahead and has not yet written to the database."""
        return self._log.pending()

    def replay(self) -> int:
        """Write the exposures that dead processes wrote ahead; returns how many."""
        return self._log.replay(self._store, BATCH)

    def stop(self) -> None:
        """Stop the thread; what it has not written stays in its files, for a later flush or
        a replay."""
        self._stopping.set()
        self._ready.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def close(self) -> None:
        """Stop the thread and write what this process still holds (a worker's exit);
        StorageUnavailable leaves it to a surviving worker's replay."""
        self.stop()
        self.flush()
        self._log.close()

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
            except (StorageUnavailable, OSError) as exc:
                # They stay in their files; this thread tries again.
                log.warning("exposures written ahead wait on disk: %s", exc)
                self._stopping.wait(RETRY_SECONDS)
                self._ready.set()
