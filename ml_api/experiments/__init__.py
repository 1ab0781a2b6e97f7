"""Experiments: their values and catalog, the admin use cases (specs, status machine,
promote), the strategies that set weights, canaries, shadow runs and the supervisor.

No HTTP here; storage goes through `ml_api.records`.
"""
