"""The stack check reads the Logstash stand-in's file while it is appended to: a half-written
last line is left for the next read, any other bad line still fails."""
import json

import pytest

from tests.stack.sink import sink_events_of

EVENTS = [{"event_type": "request", "status": 200}, {"event_type": "metric", "requests": 3}]
TEXT = "".join(json.dumps(e) + "\n" for e in EVENTS)


def test_whole_lines_are_all_read():
    assert sink_events_of(TEXT) == EVENTS
    assert sink_events_of(TEXT.rstrip("\n")) == EVENTS
    assert sink_events_of("") == []


@pytest.mark.parametrize("cut", range(1, len(json.dumps(EVENTS[1]))))
def test_a_torn_last_line_is_left_for_the_next_read(cut):
    torn = TEXT[:len(json.dumps(EVENTS[0])) + 1 + cut]
    assert sink_events_of(torn) == EVENTS[:1]


def test_a_torn_line_before_the_last_still_fails():
    with pytest.raises(json.JSONDecodeError):
        sink_events_of('{"event_type": "req\n' + json.dumps(EVENTS[1]) + "\n")
