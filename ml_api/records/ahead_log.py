"""New uids' first exposures, appended before their answer to files no other thread writes.

Each request thread appends to a file of its own, one write() per exposure, with no lock:
no thread waits for another to make an exposure durable (a shared writer made every new
uid of a worker queue behind whichever thread the scheduler had paused mid-write). What
write() took survives the process's SIGKILL; not a power cut.

The process's batch thread reads what its files gained (`read`), writes it to the database
and marks it done (`done`). A full file is replaced by a new one, and deleted once its
last line is done. Every file stays locked (flock) by its process for as long as that
process lives, so a file another process can lock was left by a dead one: `replay` writes
it and deletes it. Insert-or-get makes a line written twice harmless.
"""
from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson

from ml_api.errors import StorageUnavailable
from ml_api.records.exposures import ExposureStore
from ml_api.records.new_exposures import NewExposure

log = logging.getLogger(__name__)

ROTATE_BYTES = 1 << 20  # a thread starts a new file past this size
SUFFIX = ".jsonl"
# A new file is renamed moments after it is created under its hidden name; a hidden file
# this old, and lockable, was left by a process that died in between.
ABANDONED_SECONDS = 60.0


@dataclass(eq=False)
class _File:
    path: Path
    fd: int  # this process's append descriptor, which holds the file's lock
    pid: int
    size: int = 0  # bytes appended
    read: int = 0  # bytes done (in the database)
    sealed: bool = False  # replaced: its thread appends no more


@dataclass(frozen=True)
class Batch:
    """Exposures read from this process's files, and how far each file has been read."""

    exposures: list[NewExposure]
    ends: list[tuple[_File, int, bool]]  # each file, the offset read to, and if it is finished


def _parse(data: bytes, path: Path) -> list[NewExposure]:
    exposures = []
    for line in data.splitlines():
        try:
            exposures.append(NewExposure(**orjson.loads(line)))
        except (orjson.JSONDecodeError, TypeError):  # a write the disk cut short
            log.warning("unreadable line in %s skipped: %r", path, line[:200])
    return exposures


class AheadLog:
    """This process's append-only exposure files in `folder`, shared with the host's other
    workers (each writes only its own)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._files: list[_File] = []
        self._files_lock = threading.Lock()

    @staticmethod
    def beside(spool_path: Path) -> "AheadLog":
        """The host's folder of ahead files, next to its spool (both are per host)."""
        return AheadLog(spool_path.with_name(spool_path.stem + ".ahead"))

    def append(self, exposure: NewExposure) -> None:
        """Durable against the process's death once this returns; OSError if the disk
        refuses it."""
        file = getattr(self._local, "file", None)
        if (file is None or file.sealed or file.size >= ROTATE_BYTES
                or file.pid != os.getpid()):  # none yet, full, or the parent's before a fork
            file = self._start_file(file)
        # orjson writes the dataclass itself: no dict copy on the request path.
        line = orjson.dumps(exposure, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        written = os.write(file.fd, line)
        file.size += written
        if written != len(line):  # the next exposure goes to a new file
            file.sealed = True
            raise OSError(f"only {written} of {len(line)} bytes written to {file.path}")

    def _start_file(self, previous: _File | None) -> _File:
        if previous is not None and previous.pid == os.getpid():
            previous.sealed = True  # set after its last append: the batch may delete it
        # Created under a name replays ignore, locked, then renamed: no replay can take a
        # file between its creation and its lock.
        name = f"{os.getpid()}-{uuid.uuid4().hex}"
        hidden = self.folder / f".{name}"
        fd = os.open(hidden, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = self.folder / f"{name}{SUFFIX}"
        os.rename(hidden, path)
        file = _File(path, fd, os.getpid())
        with self._files_lock:
            self._files.append(file)
        self._local.file = file
        return file

    def read(self) -> Batch:
        """What this process's files gained since they were last marked done."""
        exposures, ends = [], []
        with self._files_lock:
            files = list(self._files)
        for file in files:
            sealed = file.sealed  # read before the data: a sealed file gains nothing more
            data = b""
            if file.size > file.read:
                with open(file.path, "rb") as handle:
                    handle.seek(file.read)
                    data = handle.read(file.size - file.read)
            # A line still being appended is left for the next read.
            complete = len(data) if sealed else data.rfind(b"\n") + 1
            exposures += _parse(data[:complete], file.path)
            ends.append((file, file.read + complete, sealed))
        return Batch(exposures, ends)

    def done(self, batch: Batch) -> None:
        """Mark a batch's exposures as in the database; delete the sealed files it finished."""
        for file, end, finished in batch.ends:
            file.read = max(file.read, end)
            if finished:
                self._delete(file)

    def _delete(self, file: _File) -> None:
        with self._files_lock:
            self._files.remove(file)
        os.unlink(file.path)
        os.close(file.fd)

    def pending(self) -> int:
        """Exposures in this process's files not yet marked done."""
        return len(self.read().exposures)

    def close(self) -> None:
        """Delete this process's files if all they hold is done (a worker's exit, after its
        last batch); otherwise leave them to a replay."""
        if not self.read().exposures:
            with self._files_lock:
                files = list(self._files)
            for file in files:
                self._delete(file)

    def replay(self, store: ExposureStore, batch: int = 500) -> int:
        """Write and delete the files of processes that died; returns how many exposures.
        A database error leaves the file to the next replay."""
        done = 0
        for path in sorted(self.folder.glob(f"*{SUFFIX}")):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:  # replayed by another process meanwhile
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # its process is alive and writes it itself
                    continue
                if not path.exists():  # deleted by the replay whose lock was just released
                    continue
                with open(fd, "rb", closefd=False) as handle:
                    exposures = _parse(handle.read(), path)
                try:
                    for start in range(0, len(exposures), batch):
                        store.record_exposures(exposures[start:start + batch])
                except StorageUnavailable as exc:
                    log.warning("exposures a dead worker wrote ahead wait on disk: %s", exc)
                    break
                os.unlink(path)
                done += len(exposures)
            finally:
                os.close(fd)
        self._remove_abandoned()
        return done

    def _remove_abandoned(self) -> None:
        """Delete hidden files that dead processes created and never renamed. Nothing was
        appended to them: a thread appends only once its file has its visible name."""
        for path in self.folder.glob(".*"):
            try:
                if time.time() - path.stat().st_mtime < ABANDONED_SECONDS:
                    continue
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:  # renamed, or removed by another process meanwhile
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                path.unlink(missing_ok=True)
            except BlockingIOError:  # its process is alive
                pass
            finally:
                os.close(fd)

    def elsewhere(self, experiment_id: int, uid: str) -> NewExposure | None:
        """This uid's exposure if another process of this host wrote it ahead (dead or
        alive; a live one still writes it itself)."""
        with self._files_lock:
            mine = {file.path for file in self._files}
        needle = orjson.dumps(uid)
        for path in self.folder.glob(f"*{SUFFIX}"):
            try:
                data = b"" if path in mine else path.read_bytes()
            except FileNotFoundError:
                continue
            if needle in data:
                for exposure in _parse(data[:data.rfind(b"\n") + 1], path):
                    if (exposure.experiment_id, exposure.uid) == (experiment_id, uid):
                        return exposure
        return None
