"""Application logs as structured JSON lines (`event_type: "log"`), for gunicorn and the
service alike (gunicorn_conf's logconfig_dict), and shipped with the request events when
Logstash is configured. Imports nothing of the service: gunicorn's master loads it.

The supervisor's auto-stops and canary rollbacks are logged at INFO; the `ml_api` loggers
log from INFO up, so those lines are kept and reach Kibana.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

import orjson


def log_event(record: logging.LogRecord) -> dict:
    """The event of one log record: when, how bad, where from, and what (with its traceback
    when there is one)."""
    message = record.getMessage()
    if record.exc_info:
        message = f"{message}\n{logging.Formatter().formatException(record.exc_info)}"
    at = datetime.fromtimestamp(record.created, timezone.utc)
    return {"@timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "event_type": "log",
            "service": "ml_api", "level": record.levelname, "logger": record.name,
            "message": message}


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps(log_event(record)).decode()


class ShippedLogHandler(logging.Handler):
    """Hands each record to an event shipper (never blocks, never raises)."""

    def __init__(self, shipper, level: int = logging.INFO):
        super().__init__(level)
        self.shipper = shipper

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.shipper.emit(log_event(record))
        except Exception:  # logging must not fail the caller
            self.handleError(record)


def ship_logs(shipper) -> None:
    """Send the `ml_api` loggers' records with the events too (once per process: a previous
    shipper's handler is replaced)."""
    logger = logging.getLogger("ml_api")
    for handler in [h for h in logger.handlers if isinstance(h, ShippedLogHandler)]:
        logger.removeHandler(handler)
    logger.addHandler(ShippedLogHandler(shipper))
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
