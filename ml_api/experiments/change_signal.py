"""A change signal shared by the workers of one host: an 8-byte file mapped into memory.

An admin change (create, start, stop, ...) writes a new value; every worker's experiment
catalog compares it with the value it loaded under, once per request, and reloads when it
differs. Reading it is a memory read, no system call, so a change made through one gunicorn
worker takes effect on the next request in every other worker of the host.

Between hosts, RelayedSignal carries the change over Redis pub/sub: each worker subscribes,
and a message moves its host's signal. While Redis is down, other hosts see a change within
EXPERIMENT_REFRESH_SECONDS, by polling.
"""
from __future__ import annotations

import logging
import mmap
import os
import struct
import threading
import time
from pathlib import Path

import redis

log = logging.getLogger(__name__)

_SIZE = 8
_VALUE = struct.Struct("<Q")
POLL_SECONDS = 0.5  # how often the relay's listener looks whether it should stop


class ChangeSignal:
    """A counter in a file mapped by every worker of a host: bumped on a change, read per
    request."""

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


class RelayedSignal:
    """A host's signal that also travels to every other host sharing the Redis server."""

    def __init__(self, local: ChangeSignal, redis_url: str, channel: str):
        self._local = local
        self._url, self._channel = redis_url, channel
        self._client = redis.Redis.from_url(redis_url, socket_connect_timeout=0.5,
                                            socket_timeout=0.5)
        self._stopping = threading.Event()

    def value(self) -> int:
        return self._local.value()

    def notify(self) -> None:
        """Move this host's signal, and publish the change to the other hosts."""
        self._local.notify()
        try:
            self._client.publish(self._channel, b"changed")
        except redis.RedisError as exc:
            log.warning("change not published (other hosts will poll): %s", exc)

    def start(self) -> None:
        """Listen for other hosts' changes on a daemon thread, until stop()."""
        threading.Thread(target=self._listen, name="change-relay", daemon=True).start()

    def stop(self) -> None:
        """Stop listening: the listener sees it within POLL_SECONDS and disconnects."""
        self._stopping.set()

    def _listen(self) -> None:
        while not self._stopping.is_set():
            pubsub = None
            try:
                client = redis.Redis.from_url(self._url, socket_connect_timeout=1,
                                              health_check_interval=10)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self._channel)
                # Messages may have been missed while not subscribed: reload once.
                self._local.notify()
                while not self._stopping.is_set():
                    # Returns as soon as a message arrives; the timeout only bounds how
                    # long a stop() waits.
                    if pubsub.get_message(timeout=POLL_SECONDS) is not None:
                        self._local.notify()
            except (redis.RedisError, OSError):
                if not self._stopping.wait(1.0):
                    log.info("change relay reconnecting to Redis")
            finally:
                if pubsub is not None:
                    pubsub.close()
