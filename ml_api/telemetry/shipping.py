"""Events shipped to Logstash off the request path.

Requests append their events to a bounded queue (see ml_api.http.observability); one daemon
thread per process wakes every `wake_seconds` (or at once when the queue is half full), runs
its wake hooks,
and sends batches with python-logstash-async's transports (TCP JSON lines, or UDP
datagrams) under a socket timeout, reconnecting with backoff. When the queue is full
(Logstash down, unreachable or stalled) the oldest events are dropped and counted
(`ml_api_log_events_dropped_total`). Without LOGSTASH_HOST, events go to stdout as JSON lines
through the same queue.
"""
from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import time
import weakref

import orjson
from logstash_async.constants import constants as logstash_constants
from logstash_async.transport import TcpTransport, UdpTransport

from ml_api.telemetry import prometheus

log = logging.getLogger(__name__)


class StdoutTransport:
    """JSON lines on the process's standard output (the embedded default's event log)."""

    def send(self, events: list[bytes], use_logging: bool = False) -> None:
        out = sys.__stdout__.buffer  # the process's stdout, whatever replaced sys.stdout
        out.write(b"".join(events))
        out.flush()

    def close(self) -> None:
        pass


class _QuietTcpTransport(TcpTransport):
    """The library's TCP transport, reporting close errors to our logger (debug) instead of
    printing one line per failed attempt while Logstash is down."""

    def _log_close_socket_error(self, message):
        log.debug(message)


def logstash_transport(host: str, port: int, protocol: str, timeout: float):
    # The transport waits for the kernel to drain its send buffer before closing a TCP
    # connection (30 s by default); a stalled Logstash would hold the shipper that long.
    logstash_constants.SOCKET_CLOSE_WAIT_TIMEOUT = timeout
    if protocol == "udp":
        return UdpTransport(host, port, timeout=timeout)
    return _QuietTcpTransport(host, port, ssl_enable=False, ssl_verify=False, ssl_verify_flags=None,
                        keyfile=None, certfile=None, ca_certs=None, timeout=timeout)


_SHIPPERS: weakref.WeakSet = weakref.WeakSet()


def _forget_threads_after_fork() -> None:
    for shipper in list(_SHIPPERS):
        shipper._thread = None  # threads do not survive a fork; the child starts its own


os.register_at_fork(after_in_child=_forget_threads_after_fork)


class EventShipper:
    """A bounded queue of JSON-line events and the daemon thread that sends them in batches."""

    def __init__(self, transport, max_queue: int = 10_000, batch_size: int = 200,
                 backoff_max: float = 5.0, on_tick=None, tick_seconds: float = 10.0,
                 wake_seconds: float = 0.2):
        self.transport = transport
        self._on_tick = on_tick
        self._tick_seconds = tick_seconds
        self.wake_seconds = wake_seconds  # read at every wait: a tool may lengthen it
        self._wake_hooks: list = []
        self._queue: collections.deque[bytes] = collections.deque()
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._wake_early_at = max_queue // 2
        self._backoff_max = backoff_max
        self._wakeup = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._in_flight = 0  # events taken from the queue and not yet sent or given back
        self.sent = 0
        self.dropped = 0
        _SHIPPERS.add(self)

    def add_wake_hook(self, hook) -> None:
        """hook() runs on the shipper's thread at every wake-up, before it sends."""
        self._wake_hooks.append(hook)

    def emit(self, event: dict) -> None:
        """Queue one event; never blocks, never raises."""
        self.emit_many([event])

    def emit_many(self, events: list[dict]) -> None:
        """Queue events (one lock for the lot); never blocks, never raises."""
        lines = []
        for event in events:
            try:
                lines.append(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
            except TypeError:
                lines.append(orjson.dumps({k: str(v) for k, v in event.items()},
                                          option=orjson.OPT_APPEND_NEWLINE))
        with self._lock:
            overflow = len(self._queue) + len(lines) - self._max_queue
            if overflow > 0:  # the oldest go first, these included if there are too many
                for _ in range(min(overflow, len(self._queue))):
                    self._queue.popleft()
                lines = lines[-self._max_queue:]
                self.dropped += overflow
                prometheus.LOG_EVENTS_DROPPED.inc(overflow)
            self._queue.extend(lines)
            filling_up = len(self._queue) >= self._wake_early_at
        self.ensure_running()
        # The shipper's next wake-up (within wake_seconds) takes the queue: waking it
        # sooner would cost every request thread a GIL hand-off and an Event.set(). Only a
        # queue half full, a burst that could overflow before that wake-up, is worth it.
        if filling_up and not self._wakeup.is_set():
            self._wakeup.set()

    def ensure_running(self) -> None:
        """Start the thread, lazily, in the process that uses it (cheap when it runs)."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="event-shipper",
                                                    daemon=True)
                    self._thread.start()

    def run_wake_hooks(self) -> None:
        for hook in self._wake_hooks:
            try:
                hook()
            except Exception:  # a broken hook must not stop the shipping of events
                log.exception("event shipper wake hook failed")

    def _take_batch(self) -> list[bytes]:
        with self._lock:
            count = min(self._batch_size, len(self._queue))
            self._in_flight = count
            return [self._queue.popleft() for _ in range(count)]

    def _give_back(self, batch: list[bytes]) -> None:
        with self._lock:
            room = self._max_queue - len(self._queue)
            kept = batch[-room:] if room > 0 else []
            lost = len(batch) - len(kept)
            self._queue.extendleft(reversed(kept))
            if lost:
                self.dropped += lost
                prometheus.LOG_EVENTS_DROPPED.inc(lost)

    def _run(self) -> None:
        backoff = 0.1
        next_tick = time.monotonic() + self._tick_seconds
        while True:
            self._wakeup.wait(timeout=self.wake_seconds)
            self._wakeup.clear()
            self.run_wake_hooks()
            if self._on_tick and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self._tick_seconds
                self._on_tick()
            while True:
                batch = self._take_batch()
                if not batch:
                    break
                try:
                    self.transport.send(batch, use_logging=False)
                    self.sent += len(batch)
                    self._in_flight = 0
                    backoff = 0.1
                except Exception as exc:  # any transport failure: keep the events, wait, retry
                    self._give_back(batch)
                    self._in_flight = 0
                    log.debug("event shipping failed, retrying in %.1fs: %s", backoff, exc)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, self._backoff_max)
                    break

    @property
    def pending(self) -> int:
        """Events queued or being sent, not yet sent."""
        return len(self._queue) + self._in_flight

    def flush(self, timeout: float = 10) -> bool:
        """Run the wake hooks here, then wait until every queued event has been sent (tests,
        shutdown); False on timeout."""
        self.run_wake_hooks()
        return self.wait_sent(timeout)

    def wait_sent(self, timeout: float) -> bool:
        """Wait until every queued event has been sent, the batch being sent included;
        False on timeout."""
        if self._queue:
            self.ensure_running()
        deadline = time.monotonic() + timeout
        while (self._queue or self._in_flight) and time.monotonic() < deadline:
            self._wakeup.set()
            time.sleep(0.01)
        return not (self._queue or self._in_flight)
