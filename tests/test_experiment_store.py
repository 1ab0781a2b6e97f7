"""The experiment store: what the serving path learns from the stored timestamps."""
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from ml_api.records.schema import Experiment
from ml_api.wiring import init_database

START = datetime(2026, 1, 1, 12, 0, 0)


@pytest.mark.parametrize("changed_at,reweighted", [
    (None, False),
    (START - timedelta(seconds=1), False),   # weights set while it was a draft
    (START, True),                           # DATETIME's whole second: may be after the start
    (START + timedelta(seconds=1), True),
])
def test_only_weights_changed_since_the_start_make_the_hash_unreliable(
        embedded_settings, changed_at, reweighted):
    store = init_database(embedded_settings)  # the demo experiment, running
    with store.engine.begin() as conn:
        conn.execute(update(Experiment).where(Experiment.name == "demo").values(
            started_at=START, weights_changed_at=changed_at))
    demo = next(e for e in store.load_experiments() if e.name == "demo")
    assert demo.reweighted is reweighted
    assert demo.hash_gives_first_groups is not reweighted
