"""The SQL adapter: engine and migrations, the experiment store, exposures, outcomes and
labels, the local spool that holds them through an outage, and dead letters.

Knows SQLAlchemy; must not import the HTTP layer, the assignment tiers or the wiring.
"""
