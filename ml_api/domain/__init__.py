"""The values every layer shares: experiments and their variants, statuses, strategies and
settings (`experiments`), and model specs with what the experiments ask of a model
(`models`).

The bottom layer: imports the standard library only, nothing of ml_api.
"""
