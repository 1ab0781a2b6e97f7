"""The gunicorn worker and logger the service runs. The worker: gthread, with a stop that
refuses instead of resets.

On SIGTERM a stock gthread worker stops accepting, but it keeps its copy of the listening
socket open while its kept-alive connections linger. The kernel goes on completing
handshakes into that socket's queue, nobody accepts them, and when the socket is finally
closed those clients are reset after a hang. Here a stopping worker takes what is already
queued (those clients are answered, with `Connection: close`) and closes its listeners at
once. Once every process has closed them, a new connection is refused at once, which a load
balancer or client retries elsewhere.
"""
from __future__ import annotations

from gunicorn.glogging import Logger
from gunicorn.workers.gthread import TConn, ThreadWorker


class GracefulThreadWorker(ThreadWorker):
    """gthread whose listening sockets close as soon as the worker starts stopping."""

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:  # the run loop has ended: this is the stop
            self.release_listeners()

    def release_listeners(self) -> None:
        """Accept what the kernel already queued, then close every listener."""
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
