"""The event fields computed without the standard formatting: timestamps from a table and
latencies rounded with integer arithmetic give what the standard library gives."""
import random
from datetime import datetime

from ml_api.event_log import round_ms, utc_timestamp


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
