"""Experiments: their catalog, the admin use cases (specs, status machine, promote), the
strategies that set weights, canaries, shadow runs and the supervisor. Their values are in
`ml_api.domain`.

No HTTP here; storage goes through `ml_api.records`; models are reached through
`ml_api.domain.models.Models`, never through `ml_api.serving` (which sits above).
"""
