"""Statistics for experiment results: tests and intervals, per-experiment results and the
decision, CUPED, guardrails, model quality from labels, and the A/A and power studies.
Pure functions of counts and sums: no I/O, no other ml_api package apart from the
domain values.
"""
