"""The HTTP layer: blueprints, request observation and JSON in and out.

Thin: each view parses, calls one service and renders. It receives its services from the
app factory; nothing below `ml_api.http` imports Flask or this package.
"""
