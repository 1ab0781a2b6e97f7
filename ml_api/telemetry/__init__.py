"""What the service reports about itself: request events shipped to Logstash off the
request path, and Prometheus metrics.

Must not import the HTTP layer, the domain packages or the records.
"""
