"""Assignment caches: a bounded dict in each process, and Redis shared by all of them.

Both implement the same operations. A cache only speeds up the database's answer: the
exposures table stays the durable record, so a flushed or evicted key loses nothing.
Every redis-py error leaves this module as CacheUnavailable.
"""
from __future__ import annotations

import collections
import os
import threading
import time
from typing import Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ml_api.errors import CacheUnavailable
from ml_api.telemetry import prometheus

_REDIS_ERRORS = prometheus.BACKEND_ERRORS.labels("redis")
WRITE_BEHIND_SECONDS = 0.002


def _unavailable(what: str, exc: Exception) -> CacheUnavailable:
    _REDIS_ERRORS.inc()
    return CacheUnavailable(f"redis {what} failed: {exc}")


class AssignmentCache(Protocol):
    """A cache of confirmed assignments, experiment id and uid to group."""

    def get(self, experiment_id: int, uid: str) -> str | None: ...

    def claim(self, experiment_id: int, uid: str, variant: str) -> tuple[str, bool]:
        """Store variant unless a value exists (first writer wins); return the stored value,
        and whether this call stored it."""

    def put(self, experiment_id: int, uid: str, variant: str) -> None: ...

    def put_later(self, experiment_id: int, uid: str, variant: str) -> None:
        """put, soon, off the caller's thread; a failure only leaves the key unset."""

    def ping(self) -> None: ...


class RedisAssignmentCache:
    """Confirmed assignments in Redis, shared by every worker and host; errors become
    CacheUnavailable."""

    def __init__(self, url: str, prefix: str, timeout_ms: int, ttl_seconds: int):
        timeout = timeout_ms / 1000
        # No retries: a stalled Redis must cost one timeout per request, not eleven (the default).
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0), decode_responses=True,
        )
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._own = threading.local()  # each thread's connection for the per-request commands
        self._later: collections.deque[tuple[str, str]] = collections.deque()
        self._later_ready = threading.Event()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()

    def _key(self, experiment_id: int, uid: str) -> str:
        return f"{self._prefix}assign:{experiment_id}:{uid}"

    def get(self, experiment_id: int, uid: str) -> str | None:
        return self._command("GET", "GET", self._key(experiment_id, uid))

    def claim(self, experiment_id: int, uid: str, variant: str) -> tuple[str, bool]:
        # SET NX GET is one atomic command: of all workers and replicas racing for a new uid,
        # exactly one writes, and every one learns the winner's value in the same round-trip.
        previous = self._command("SET NX", "SET", self._key(experiment_id, uid), variant,
                                 "NX", "GET", "EX", self._ttl)
        return (variant, True) if previous is None else (previous, False)

    def _command(self, what: str, *args):
        """One command on this thread's own connection; its reply."""
        return self._round_trip(what, [args])[0]

    def _round_trip(self, what: str, commands: list[tuple]) -> list:
        """Commands sent together on this thread's own connection, in one round trip; their
        replies. The requests' commands skip the client's pool: it checks a connection out
        and back in, and health-checks it, around every command, which costs more than the
        command's own round trip. The write-behind's batches skip redis-py's Pipeline, whose
        bookkeeping per command costs more than Redis's work on it."""
        own = self._own
        if getattr(own, "pid", None) != os.getpid():  # none yet, or the parent's before a fork
            pool = self._client.connection_pool
            own.connection, own.pid = pool.connection_class(**pool.connection_kwargs), os.getpid()
            own.used = False
        connection = own.connection
        # A connection that served before may have been closed by the server meanwhile (a
        # restart, an idle timeout): then the commands go once more, on a new connection.
        for last_try in (not own.used, True):
            try:
                if len(commands) == 1:
                    connection.send_command(*commands[0])
                else:
                    connection.send_packed_command(connection.pack_commands(commands))
                replies = [connection.read_response() for _ in commands]
                own.used = True
                return replies
            except redis.RedisError as exc:
                connection.disconnect()  # unread replies go with it; the next try connects again
                own.used = False
                if last_try or not isinstance(exc, redis.ConnectionError):
                    raise _unavailable(what, exc) from exc

    def put(self, experiment_id: int, uid: str, variant: str) -> None:
        try:
            self._client.set(self._key(experiment_id, uid), variant, ex=self._ttl)
        except redis.RedisError as exc:
            raise _unavailable("SET", exc) from exc

    def put_later(self, experiment_id: int, uid: str, variant: str) -> None:
        self._later.append((self._key(experiment_id, uid), variant))
        if self._writer is None:
            with self._writer_lock:
                if self._writer is None:
                    self._writer = threading.Thread(target=self._write_behind, daemon=True,
                                                    name="redis-write-behind")
                    self._writer.start()
        if not self._later_ready.is_set():  # the writer clears it before it drains the queue
            self._later_ready.set()

    def _write_behind(self) -> None:
        """Sends the waiting puts together (one round trip) every WRITE_BEHIND_SECONDS at
        most: a new uid's cache fill costs its request no Redis round trip."""
        while True:
            self._later_ready.wait()
            self._later_ready.clear()
            time.sleep(WRITE_BEHIND_SECONDS)  # let a few more gather
            commands = []
            for _ in range(len(self._later)):
                key, variant = self._later.popleft()
                commands.append(("SET", key, variant, "EX", self._ttl))
            if not commands:
                continue
            try:
                self._round_trip("pipelined SET", commands)
            except CacheUnavailable:  # the keys stay unset: the database has them
                pass

    def ping(self) -> None:
        try:
            self._client.ping()
        except redis.RedisError as exc:
            raise _unavailable("PING", exc) from exc


class InProcessAssignmentCache:
    """This process's memory tier (the only cache of the embedded default). Bounded: the oldest
    entries go first, and the database still holds them."""

    def __init__(self, max_entries: int = 1_000_000):
        self._data: dict[tuple[int, str], str] = {}
        self._lock = threading.Lock()
        self._max_entries = max_entries

    def get(self, experiment_id: int, uid: str) -> str | None:
        return self._data.get((experiment_id, uid))

    def claim(self, experiment_id: int, uid: str, variant: str) -> tuple[str, bool]:
        with self._lock:
            held = self._data.get((experiment_id, uid))
            if held is not None:
                return held, False
            self._make_room()
            self._data[(experiment_id, uid)] = variant
            return variant, True

    def put(self, experiment_id: int, uid: str, variant: str) -> None:
        with self._lock:
            self._make_room()
            self._data[(experiment_id, uid)] = variant

    put_later = put

    def _make_room(self) -> None:
        if len(self._data) >= self._max_entries:
            self._data.pop(next(iter(self._data)))  # oldest insertion; the database still has it

    def ping(self) -> None:
        return None
