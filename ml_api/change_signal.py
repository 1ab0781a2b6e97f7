"""A change signal shared by the workers of one host: an 8-byte file mapped into memory.

An admin change (create, start, stop, ...) writes a new value; every worker's experiment
catalog compares it with the value it loaded under, once per request, and reloads when it
differs. Reading it is a memory read, no system call, so a change made through one gunicorn
worker takes effect on the next request in every other worker of the host. Workers on other
hosts still see it within EXPERIMENT_REFRESH_SECONDS.
"""
from __future__ import annotations

import mmap
import os
import struct
import time
from pathlib import Path

_SIZE = 8
_VALUE = struct.Struct("<Q")


class ChangeSignal:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size < _SIZE:
                os.ftruncate(fd, _SIZE)  # extends with zeros; never clears a written value
            self._map = mmap.mmap(fd, _SIZE)
        finally:
            os.close(fd)  # the mapping keeps the file

    def value(self) -> int:
        return _VALUE.unpack_from(self._map)[0]

    def notify(self) -> None:
        """Tell every worker of this host that something changed."""
        previous = self.value()
        stamp = time.time_ns()
        _VALUE.pack_into(self._map, 0, stamp if stamp != previous else stamp + 1)

    @staticmethod
    def beside(spool_path: Path) -> "ChangeSignal":
        """The host's signal file, next to its spool (both are per host)."""
        return ChangeSignal(spool_path.with_name(spool_path.stem + ".changes"))


class LocalSignal:
    """The signal of a single process (no file): the catalog's default."""

    def __init__(self):
        self._value = 0

    def value(self) -> int:
        return self._value

    def notify(self) -> None:
        self._value += 1
