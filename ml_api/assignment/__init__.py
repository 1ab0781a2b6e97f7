"""Which group a uid is in: deterministic hashing, and the sticky tiers (process memory,
Redis, the database) that keep a uid's first group for good, and the write-ahead of new
uids' first exposures.

No HTTP here; the records it writes go through `ml_api.records`.
"""
