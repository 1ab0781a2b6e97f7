"""Reading what the Logstash stand-in has received: its file is appended to while the checks
read it, so the last line may be half written."""
from __future__ import annotations

import json


def sink_events_of(text: str) -> list[dict]:
    """The events of the sink's JSON-lines `text`. A last line that does not parse is one
    still being written and is left for the next read; any other line that does not parse
    raises json.JSONDecodeError."""
    lines = text.splitlines()
    events = [json.loads(line) for line in lines[:-1]]
    if lines:
        try:
            events.append(json.loads(lines[-1]))
        except json.JSONDecodeError:
            pass
    return events
