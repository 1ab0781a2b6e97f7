"""Model serving: the verified model registry, the fast single-row predictor, the demo
models' training, and the /predict and /feedback use cases.

No Flask here: the HTTP layer calls these services with parsed requests.
"""
