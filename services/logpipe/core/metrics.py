"""Prometheus metrics: one registry per process, names `logpipe_<service>_<thing>_total|_seconds`."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

_cache: dict[str, object] = {}


def _get(kind, name: str, documentation: str, labelnames=(), registry: CollectorRegistry = REGISTRY, **kwargs):
    # Services created twice in one process (tests, `run all`) share their metric objects.
    key = name
    if key not in _cache:
        _cache[key] = kind(name, documentation, labelnames=labelnames, registry=registry, **kwargs)
    return _cache[key]


def counter(name: str, documentation: str, labelnames=()) -> Counter:
    return _get(Counter, name, documentation, labelnames)


def gauge(name: str, documentation: str, labelnames=()) -> Gauge:
    return _get(Gauge, name, documentation, labelnames)


def histogram(name: str, documentation: str, labelnames=(), buckets=Histogram.DEFAULT_BUCKETS) -> Histogram:
    return _get(Histogram, name, documentation, labelnames, buckets=buckets)


HTTP_REQUESTS = counter("logpipe_http_requests_total", "HTTP requests served",
                        ("service", "method", "route", "status"))
HTTP_SECONDS = histogram("logpipe_http_request_seconds", "HTTP request latency", ("service", "route"))
