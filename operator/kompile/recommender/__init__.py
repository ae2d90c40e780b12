"""The recommender: which hardware pool, compiled or not, how many replicas, at what cost per inference.

`cost` turns measurements into the seed's ranked table; `prometheus` takes the measurements
of a load test from Prometheus's HTTP API (never by scraping pods itself).
"""
