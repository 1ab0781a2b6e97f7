"""The SQL adapter: engine and migrations, the experiment store, exposures and outcomes,
the local spool that holds them through an outage, and dead letters.

Knows SQLAlchemy; must not import the HTTP layer, the assignment tiers or the wiring.
"""
