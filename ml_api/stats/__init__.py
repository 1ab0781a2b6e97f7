"""Statistics for experiment results: tests and intervals, per-experiment results and the
decision, and the A/A study. Pure functions of counts and sums: no I/O, no other ml_api
package apart from the experiment values.
"""
