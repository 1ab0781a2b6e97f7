"""The SQL adapter: engine and migrations, the experiment store, exposures, outcomes and
labels (new uids' exposures in batches), the local spool that holds records through an
outage and exposures written ahead, and dead letters.

Knows SQLAlchemy and stores the values of `ml_api.domain`; imports no use case (assignment,
experiments, serving), no HTTP and no wiring.
"""
