"""Model serving: the verified model registry, the fast single-row predictor, the demo
models' training, the /predict and /feedback use cases and their signed label tokens.

No Flask here: the HTTP layer calls these services with parsed requests.
"""
