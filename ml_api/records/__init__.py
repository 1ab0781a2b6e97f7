"""The SQL adapter: engine and migrations, the experiment store, exposures, outcomes and
labels (new uids' exposures in batches), the local spool that holds records through an
outage and exposures written ahead, and dead letters.

Knows SQLAlchemy; must not import the HTTP layer, the assignment tiers or the wiring.
"""
