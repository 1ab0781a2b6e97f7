"""What the service reports about itself: request events shipped to Logstash off the
request path, and Prometheus metrics.

Imports nothing else of ml_api: the records and the use cases report through it.
"""
