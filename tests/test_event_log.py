"""The event fields computed without the standard formatting: timestamps from a table and
latencies rounded with integer arithmetic give what the standard library gives; and when the
shipper sends what is queued."""
import random
import threading
import time
from datetime import datetime

from ml_api.telemetry.request_log import round_ms, utc_timestamp
from ml_api.telemetry.shipping import EventShipper


def test_timestamps_are_iso_utc_milliseconds_never_ahead_of_the_time():
    rng = random.Random(7)
    for _ in range(20_000):
        at = rng.uniform(0, 4_102_444_800)  # 1970 to 2100
        text = utc_timestamp(at)
        assert len(text) == 24 and text.endswith("Z") and text[19] == "."
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        # truncated to the millisecond (1e-6: the float's resolution at this magnitude)
        assert at - 0.001 - 1e-6 < parsed <= at + 1e-6


def test_round_ms_is_round_to_three_places_except_at_exact_ties():
    rng = random.Random(11)
    for _ in range(100_000):
        latency_ms = rng.uniform(0, 5_000)
        assert round_ms(latency_ms) == round(latency_ms, 3)
    # An exact binary tie goes up where round() goes to even: 0.0625 is exact in binary.
    assert round_ms(0.0625) == 0.063 and round(0.0625, 3) == 0.062


class RecordingTransport:
    def __init__(self):
        self.lines: list[bytes] = []
        self.arrived = threading.Event()

    def send(self, events, use_logging=False):
        self.lines.extend(events)
        self.arrived.set()

    def close(self):
        pass


def test_the_shipper_wakes_early_only_for_a_queue_half_full():
    """Below half the queue, events wait for the timed wake-up (no hand-off per batch);
    at half, the shipper is woken at once so that a burst is not dropped."""
    transport = RecordingTransport()
    shipper = EventShipper(transport, max_queue=100, batch_size=10, wake_seconds=30)
    shipper.emit_many([{"n": n} for n in range(49)])
    assert not transport.arrived.wait(0.5)  # 49 of 100 queued: nothing sent before 30 s
    started = time.monotonic()
    shipper.emit({"n": 49})
    assert transport.arrived.wait(5) and time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    while len(transport.lines) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [line.strip() for line in transport.lines] == [
        b'{"n":%d}' % n for n in range(50)]
    assert shipper.dropped == 0


class SlowTransport(RecordingTransport):
    """Takes each batch off the queue, then needs a while to deliver it."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds
        self.sending = threading.Event()

    def send(self, events, use_logging=False):
        self.sending.set()
        time.sleep(self.seconds)
        super().send(events)


def test_flush_waits_for_the_batch_being_sent_not_only_for_an_empty_queue():
    transport = SlowTransport(0.5)
    shipper = EventShipper(transport, wake_seconds=30)
    shipper.emit_many([{"n": n} for n in range(3)])
    shipper.flush(timeout=0.05)  # wakes the shipper, which takes the batch and sends it
    assert transport.sending.wait(5)
    assert not shipper._queue  # the queue is empty, the events not yet delivered
    assert shipper.pending == 3
    assert shipper.flush(timeout=5)
    assert len(transport.lines) == 3 and shipper.pending == 0


def test_flush_gives_up_after_its_timeout_when_the_transport_fails():
    class Down:
        def send(self, events, use_logging=False):
            raise OSError("connection refused")

    shipper = EventShipper(Down(), wake_seconds=30)
    shipper.emit({"n": 1})
    started = time.monotonic()
    assert shipper.flush(timeout=0.5) is False
    assert time.monotonic() - started < 3
    assert shipper.dropped == 0 and shipper.pending == 1  # kept for a later attempt
