"""The gunicorn worker and logger the service runs. The worker: gthread, with a stop that
refuses instead of resets.

On SIGTERM a stock gthread worker stops accepting, but it keeps its copy of the listening
socket open while its kept-alive connections linger. The kernel goes on completing
handshakes into that socket's queue, nobody accepts them, and when the socket is finally
closed those clients are reset after a hang. Here a stopping worker takes what is already
queued (those clients are answered, with `Connection: close`) and closes its listeners at
once. Once every process has closed them, a new connection is refused at once, which a load
balancer or client retries elsewhere.

The workers also share keep-alive clients evenly. They all poll one listening socket, and when
a client opens its pool at once, whichever worker wakes first can accept every connection;
each then stays with that worker for its whole life, and the other worker idles. Here a worker
holding its share (as many connections as it has threads) stops polling the listener, leaving
the next connection to a worker below its share. gunicorn's own limit, `worker_connections`,
is no substitute: gthread also counts it as room for kept-alive connections
(`worker_connections - threads`), so set as low as the thread count it closes every
connection after one request. A connection that no worker below its share takes within
OVERFLOW_WAIT (all are full: more clients than threads) is taken by a full worker anyway,
so it is served, never left waiting until a kept-alive connection closes.
"""
from __future__ import annotations

import select
import time

from gunicorn.glogging import Logger
from gunicorn.workers.gthread import TConn, ThreadWorker


# How long a connection beyond a worker's share waits in the listen queue for a worker below
# its share before a full worker takes it: long enough for a loaded sibling to wake and accept.
OVERFLOW_WAIT = 0.1


class GracefulThreadWorker(ThreadWorker):
    """gthread whose listening sockets close as soon as the worker starts stopping, and
    which accepts beyond its share of connections only what no other worker takes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.share = self.cfg.threads
        self._queued_since: float | None = None  # when a waiting connection was first seen
        self._listen_queue: select.poll | None = None  # readable: a connection waits

    # gthread's run loop accepts while nr_conns < worker_connections, read on every turn.
    @property
    def worker_connections(self) -> int:
        """How many connections the worker takes now: up to gunicorn's limit below its
        share or when a connection has waited OVERFLOW_WAIT, else none beyond those held."""
        if self.nr_conns < self.share:
            self._queued_since = None  # a wait seen while full is not this turn's wait
            return self._connection_limit
        if self._overflow_waited():
            return self._connection_limit
        return self.nr_conns

    @worker_connections.setter
    def worker_connections(self, limit: int) -> None:
        self._connection_limit = limit

    def _overflow_waited(self) -> bool:
        if self._listen_queue is None:
            self._listen_queue = select.poll()
            for listener in self.sockets:
                self._listen_queue.register(listener, select.POLLIN)
        if not self._listen_queue.poll(0):  # nobody waits to be accepted
            self._queued_since = None
            return False
        now = time.monotonic()
        if self._queued_since is None:
            self._queued_since = now
        return now - self._queued_since >= OVERFLOW_WAIT

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        # Wake to look again while running; a stopping worker waits on its connections only.
        if self.alive and self._queued_since is not None and not self._accepting:
            timeout = min(timeout, max(self._queued_since + OVERFLOW_WAIT - time.monotonic(),
                                       0.0))
        super().wait_for_and_dispatch_events(timeout)

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:  # the run loop has ended: this is the stop
            self.release_listeners()

    def release_listeners(self) -> None:
        """Accept what the kernel already queued, then close every listener."""
        self._queued_since = None
        for listener in self.sockets:
            while True:
                try:
                    client, address = listener.accept()
                except OSError:  # nothing left in the queue (EAGAIN), or already closed
                    break
                client.setblocking(True)
                self.nr_conns += 1
                self.enqueue_req(TConn(self.cfg, client, address, listener.getsockname()))
            listener.close()


class ServiceLogger(Logger):
    """gunicorn's logger, writing access-log lines only where an access log is asked for
    (`--access-logfile`). The service logs every request as its own event; stock gunicorn,
    given a logging config dict, formats every request's access-log fields only for the
    logging config to drop them."""

    def access(self, resp, req, environ, request_time) -> None:
        if self.cfg.accesslog is not None:
            super().access(resp, req, environ, request_time)
