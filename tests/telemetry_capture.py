"""The events an app emits, captured where the Logstash transport would send them."""
from __future__ import annotations

import contextlib
import json


@contextlib.contextmanager
def capture_events(app):
    """Yields the list the app's events are appended to, decoded, as its shipper sends
    them; on exit, everything pending is sent (the shipper's flush)."""
    events = app.extensions["ml_api"].request_events
    sent: list[dict] = []

    class Collect:  # stands where the Logstash transport would
        def send(self, lines, use_logging=False):
            sent.extend(json.loads(line) for line in lines)

    events.shipper.transport = Collect()
    yield sent
    assert events.shipper.flush()
