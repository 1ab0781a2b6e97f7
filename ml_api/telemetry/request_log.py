"""Request events and per-endpoint latency summaries, in the documented shape
(logstash/README.md), handed to an EventShipper."""
from __future__ import annotations

import hashlib
import threading
import time
from datetime import datetime, timezone

from ml_api.telemetry.shipping import EventShipper

# The last formatted second, as one tuple (replaced whole, so threads never see half of it):
# formatting a datetime costs more than the rest of the event.
_last_second: tuple[int, str] = (-1, "")


def _second_text(second: int) -> str:
    """'2026-11-22T07:20:05' for a whole second since the epoch, UTC."""
    global _last_second
    cached_second, text = _last_second
    if second != cached_second:
        text = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (second, text)
    return text


_MILLIS = [f".{ms:03d}Z" for ms in range(1000)]  # indexing is cheaper than formatting


def utc_timestamp(now: float | None = None) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-22T07:20:05.123Z."""
    now = time.time() if now is None else now
    second = int(now)
    return _second_text(second) + _MILLIS[int((now - second) * 1000)]


def naive_utc_timestamp(at: datetime | None) -> str | None:
    """utc_timestamp of a naive UTC datetime (the database's), None for None."""
    return None if at is None else utc_timestamp(at.replace(tzinfo=timezone.utc).timestamp())


def round_ms(milliseconds: float) -> float:
    """To the microsecond, as round(milliseconds, 3) does (but for an exact binary tie, which
    goes up), more cheaply: round() of a float goes through a decimal conversion."""
    return int(milliseconds * 1000 + 0.5) / 1000


def uid_field(uid: str, mode: str, salt: str) -> dict:
    """The uid as logged: plain, a keyed hash (BLAKE2b with the salt as key), or nothing."""
    if mode == "plain":
        return {"uid": uid}
    if mode == "hashed":
        return {"uid_hash": hashlib.blake2b(uid.encode(), key=salt.encode()[:64],
                                            digest_size=16).hexdigest()}
    return {}


UID_HASH_CACHE = 100_000  # uids whose hash a process remembers

# A request's event as it starts: the observability middleware gives each logged request a
# copy, views add their fields (uid, experiment, group, ...), requests() fills in the rest.
# One dict from start to end: no second dict per event, the keys already in order.
REQUEST_EVENT = {"@timestamp": "", "event_type": "request", "service": "ml_api",
                 "endpoint": "", "status": 0, "latency_ms": 0.0}


class RequestEvents:
    """Builds the documented request and metric events and hands them to a shipper."""

    def __init__(self, shipper: EventShipper, uid_mode: str, uid_salt: str):
        self.shipper = shipper
        self._uid_mode = uid_mode
        self._uid_salt = uid_salt
        self._lock = threading.Lock()
        self._latencies: dict[str, list[float]] = {}
        self._errors: dict[str, int] = {}
        self._window_started = time.monotonic()
        self._uid_hashes: dict[str, dict] = {}

    def requests(self, records: list[tuple[float, str, int, float, dict]]) -> None:
        """Request events for (time.time(), endpoint, status, latency in seconds, event)
        records, each event a copy of REQUEST_EVENT with the view's fields, none of them
        None (observability.log_fields drops them); completed in place."""
        uid_of = self._uid_field
        events = []
        latencies: dict[str, list[float]] = {}
        errors: dict[str, int] = {}
        for at, endpoint, status, latency, event in records:
            latency_ms = round_ms(latency * 1000)
            event["@timestamp"] = stamp = utc_timestamp(at)
            if event.get("first_exposure"):  # the consumer's cohort time (see docs)
                event["exposed_at"] = stamp
            event["endpoint"] = endpoint
            event["status"] = status
            event["latency_ms"] = latency_ms
            uid = event.pop("uid", None)
            if uid is not None:
                event.update(uid_of(uid))
            events.append(event)
            by_endpoint = latencies.get(endpoint)
            if by_endpoint is None:
                latencies[endpoint] = [latency_ms]
            else:
                by_endpoint.append(latency_ms)
            if status >= 500:
                errors[endpoint] = errors.get(endpoint, 0) + 1
        self.shipper.emit_many(events)
        with self._lock:
            for endpoint, values in latencies.items():
                self._latencies.setdefault(endpoint, []).extend(values)
            for endpoint, count in errors.items():
                self._errors[endpoint] = self._errors.get(endpoint, 0) + count

    def _uid_field(self, uid: str) -> dict:
        if self._uid_mode != "hashed":
            return uid_field(uid, self._uid_mode, self._uid_salt)
        # Returning uids come back often: their keyed hash is remembered (bounded).
        cached = self._uid_hashes.get(uid)
        if cached is None:
            if len(self._uid_hashes) >= UID_HASH_CACHE:
                self._uid_hashes.clear()
            cached = self._uid_hashes[uid] = uid_field(uid, "hashed", self._uid_salt)
        return cached

    def flush(self, timeout: float = 5.0) -> bool:
        """Send everything this process holds (a worker's exit): the pending request records
        as events (the shipper's wake hooks), the last metric window, then the queue; False
        when the transport did not take it all within `timeout`."""
        self.shipper.run_wake_hooks()
        self.emit_latency_summary()
        return self.shipper.wait_sent(timeout)

    def emit_latency_summary(self) -> None:
        """One `metric` event (latency percentiles, errors) per endpoint for the window since
        the last call."""
        with self._lock:
            latencies, self._latencies = self._latencies, {}
            errors, self._errors = self._errors, {}
            window = time.monotonic() - self._window_started
            self._window_started = time.monotonic()
        for endpoint, values in latencies.items():
            values.sort()
            pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
            self.shipper.emit({
                "@timestamp": utc_timestamp(), "event_type": "metric", "service": "ml_api",
                "endpoint": endpoint, "requests": len(values), "errors": errors.get(endpoint, 0),
                "window_seconds": round(window, 3), "latency_p50_ms": round(pick(0.50), 3),
                "latency_p95_ms": round(pick(0.95), 3), "latency_p99_ms": round(pick(0.99), 3),
            })

    def action(self, *, experiment: str, action: str, actor: str, reason: str | None = None,
               **details) -> None:
        """One `action` event: a change to an experiment (create, start, ramp, promote,
        auto-stop, canary step or rollback), who made it and why."""
        event = {"@timestamp": utc_timestamp(), "event_type": "action", "service": "ml_api",
                 "experiment": experiment, "action": action, "actor": actor, **details}
        if reason:
            event["reason"] = reason
        self.shipper.emit(event)
