"""OpenTelemetry traces: configured by the standard `OTEL_*` variables, off unless configured.

One trace follows a log from the gateway's ingest route through ingest to the vectorizer: the
W3C trace context travels in Kafka record headers (`traceparent`, `tracestate`), injected where
we produce (core/kafka.py `send_values`) and extracted where a batch is handled. A batch of
records from many requests gets one span whose parent is the first record's context and which
links to the others. The maintained instrumentations add their own spans: aiokafka's `send`
(a producer span whose context it injects instead of ours), confluent-kafka's consume (a
`recv` root per poll with a `<topic> process` child linked to every record's context).

Off (the default) every helper returns at once without touching OpenTelemetry, so the ingest
hot path pays one boolean test per batch. On when `OTEL_TRACES_EXPORTER` or an OTLP endpoint
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set and
`OTEL_SDK_DISABLED` is not true; `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and the
`OTEL_TRACES_SAMPLER*` variables are read by the SDK itself.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

log = logging.getLogger(__name__)

_enabled = False
# The test installs its own provider (an in-memory exporter); the SDK refuses a second global one.
_provider: Any = None
# Exporters given to `configure` (tests, bench/ingest.py): turning tracing on again with the same
# one must not export every span twice.
_exporters: list[Any] = []
_instrumented: list[Any] = []

Headers = Sequence[tuple[str, bytes]]
_NO_HEADERS: tuple = ()


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the OTEL_* variables ask for traces."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(exporter or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or
                environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def enabled() -> bool:
    return _enabled


def configure(service: str, environ: Mapping[str, str] = os.environ, exporter: Any = None) -> bool:
    """Install a tracer provider for `service` when the environment asks for one (or when an
    `exporter` is given, as tests do); instrument httpx, Redis, SQLAlchemy, aiokafka and
    confluent-kafka. Idempotent."""
    global _enabled, _provider
    if exporter is None and not wanted(environ):
        return False
    if _provider is not None and exporter is not None and exporter not in _exporters:
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        _provider.add_span_processor(SimpleSpanProcessor(exporter))
        _exporters.append(exporter)
    if _provider is None:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or service})
        provider = TracerProvider(resource=resource)
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            _exporters.append(exporter)
        else:
            provider.add_span_processor(BatchSpanProcessor(_exporter_from_environment(environ)))
        trace.set_tracer_provider(provider)
        _provider = provider
    if not _instrumented:
        _instrument_libraries()
    _enabled = True
    return True


def _exporter_from_environment(environ: Mapping[str, str]) -> Any:
    name = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={name!r} is not supported (otlp, console or none)")
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") \
        or "http/protobuf"
    if protocol != "http/protobuf":
        raise ValueError(f"OTLP protocol {protocol!r} is not supported here; use http/protobuf (port 4318)")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout: from OTEL_EXPORTER_OTLP_* itself


def _instrument_libraries() -> None:
    # The maintained instrumentations; each is optional so a slim install still starts.
    # aiokafka: wraps `AIOKafkaProducer.send` (a producer span, the context injected into the
    # record's headers) and `AIOKafkaConsumer.getone/getmany`; `send_batch`, our keyless hot
    # path in core/kafka.py, is not wrapped, so `send_values` still carries the context itself.
    # Its reads make one span per record (plus one per poll and topic): the gateway's live tail
    # reads raw-logs at the full ingest rate, so every log would become a span sent to the
    # collector. The reads are unwrapped again (`_unwrap_aiokafka_reads`); the sends stay.
    # confluent-kafka: `instrument()` swaps `confluent_kafka.Consumer`/`Producer` for traced
    # subclasses; core/consumer.py looks the class up when it creates its client, after
    # `configure`, so it gets them. Its per-instance proxies cannot serve BatchConsumer:
    # they skip the client's constructor and lack assignment/pause/resume/position/seek.
    for module, name in (("opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor"),
                         ("opentelemetry.instrumentation.redis", "RedisInstrumentor"),
                         ("opentelemetry.instrumentation.sqlalchemy", "SQLAlchemyInstrumentor"),
                         ("opentelemetry.instrumentation.aiokafka", "AIOKafkaInstrumentor"),
                         ("opentelemetry.instrumentation.confluent_kafka", "ConfluentKafkaInstrumentor")):
        try:
            instrumentor = getattr(__import__(module, fromlist=[name]), name)()
            if not instrumentor.is_instrumented_by_opentelemetry:
                # The SQLAlchemy instrumentation declares `sqlalchemy<2.1` and would refuse 2.1
                # (ours) with a warning; the engine events it hooks are unchanged in 2.1, and
                # tests/core/test_tracing.py checks its spans, so its version check is skipped.
                instrumentor.instrument(skip_dep_check=name == "SQLAlchemyInstrumentor")
                _instrumented.append(instrumentor)
                if name == "AIOKafkaInstrumentor":
                    _unwrap_aiokafka_reads()
        except ImportError as exc:
            log.info("tracing without %s (%s)", module, exc)


def _unwrap_aiokafka_reads() -> None:
    import aiokafka
    from opentelemetry.instrumentation.utils import unwrap

    # Its `_uninstrument` unwraps them again, which is a no-op on a plain method.
    unwrap(aiokafka.AIOKafkaConsumer, "getone")
    unwrap(aiokafka.AIOKafkaConsumer, "getmany")


def _aiokafka_injects() -> bool:
    return any(type(i).__name__ == "AIOKafkaInstrumentor" for i in _instrumented)


def for_send(headers: Headers) -> Headers:
    """`headers` for one `AIOKafkaProducer.send`: while the aiokafka instrumentation is on it
    injects the context of its own producer span, so ours is left out (a record carries one
    `traceparent`)."""
    if not _enabled or not headers or not _aiokafka_injects():
        return headers
    return tuple((key, value) for key, value in headers if key not in ("traceparent", "tracestate"))


def instrument_app(app: Any) -> None:
    """Server spans for every request of a FastAPI app (probes and scrapes excluded)."""
    if not _enabled:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="health,metrics")


def shutdown() -> None:
    """Flush finished spans (called when a process stops)."""
    if _provider is not None:
        _provider.force_flush()


def reset() -> None:
    """Tests only: tracing off again, libraries uninstrumented (the provider stays installed:
    the SDK allows one per process)."""
    global _enabled
    _enabled = False
    while _instrumented:
        instrumentor = _instrumented.pop()
        if type(instrumentor).__name__ == "SQLAlchemyInstrumentor":
            _uninstrument_sqlalchemy(instrumentor)
            continue
        instrumentor.uninstrument()
        if type(instrumentor).__name__ == "ConfluentKafkaInstrumentor":
            # Its uninstrument (0.66b1) leaves consume/close wrapped: the next configure would
            # wrap them again and every poll would make its spans twice.
            from opentelemetry.instrumentation.confluent_kafka import AutoInstrumentedConsumer
            from opentelemetry.instrumentation.utils import unwrap

            unwrap(AutoInstrumentedConsumer, "consume")
            unwrap(AutoInstrumentedConsumer, "close")


def _uninstrument_sqlalchemy(instrumentor: Any) -> None:
    """Its uninstrument (0.66b1) raises on SQLAlchemy 2.1 for a listener the engine dropped by
    itself; the wrappers are gone by then, so the remaining listeners are removed one by one."""
    try:
        instrumentor.uninstrument()
        return
    except Exception:  # noqa: BLE001 - sqlalchemy.exc.InvalidRequestError, see above
        pass
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from sqlalchemy import event

    for target, identifier, function in list(EngineTracer._remove_event_listener_params):
        if target() is not None and event.contains(target(), identifier, function):
            event.remove(target(), identifier, function)
    EngineTracer._remove_event_listener_params.clear()
    instrumentor._is_instrumented_by_opentelemetry = False


def _tracer():
    from opentelemetry import trace

    return trace.get_tracer("logpipe")


@contextlib.contextmanager
def span(name: str, parent: Any = None, links: Iterable[Any] = (), **attributes: Any) -> Iterator[Any]:
    """A span of our own (ClickHouse insert/query, Qdrant call, embedding, an analyzer stage),
    child of `parent` (a context from `extract`) or of the current span. Off: nothing."""
    if not _enabled:
        yield None
        return
    from opentelemetry import trace

    span_links = [trace.Link(trace.get_current_span(c).get_span_context()) for c in links]
    with _tracer().start_as_current_span(name, context=parent, links=span_links,
                                         attributes={k: v for k, v in attributes.items() if v is not None}) as current:
        yield current


Function = TypeVar("Function", bound=Callable[..., Any])


def traced(name: str, **attributes: Any) -> Callable[[Function], Function]:
    """Decorator: the function (sync or async) runs in a span `name` while tracing is on.
    For ClickHouse queries, Qdrant calls, embedding and the analyzer's stages."""

    def decorate(function: Function) -> Function:
        if inspect.iscoroutinefunction(function):
            @functools.wraps(function)
            async def run_async(*args, **kwargs):
                if not _enabled:
                    return await function(*args, **kwargs)
                with span(name, **attributes):
                    return await function(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(function)
        def run(*args, **kwargs):
            if not _enabled:
                return function(*args, **kwargs)
            with span(name, **attributes):
                return function(*args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate


def kafka_headers() -> Headers:
    """Headers carrying the current trace context, for records produced now."""
    if not _enabled:
        return _NO_HEADERS
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return tuple((key, value.encode()) for key, value in carrier.items())


def extract(headers: Iterable[tuple[str, bytes | str | None]] | None) -> Any:
    """The trace context carried by one record's headers, or None."""
    if not _enabled or not headers:
        return None
    carrier = {}
    for key, value in headers:
        if key in ("traceparent", "tracestate") and value is not None:
            carrier[key] = value.decode() if isinstance(value, (bytes, bytearray)) else value
    if "traceparent" not in carrier:
        return None
    from opentelemetry import propagate

    return propagate.extract(carrier)


def contexts_of(messages: Iterable[Any], limit: int = 32) -> list[Any]:
    """Trace contexts of consumed records (aiokafka `ConsumerRecord.headers` or confluent
    `Message.headers()`), at most `limit` distinct ones. Off: an empty list, nothing read."""
    if not _enabled:
        return []
    found, seen, parsed = [], set(), set()
    for message in messages:
        headers = message.headers() if callable(getattr(message, "headers", None)) else getattr(message, "headers", None)
        # The records of one request carry the same header: parse each distinct one once
        # (bench/ingest.py --tracing-rounds: a tenth less CPU for ingest with tracing on).
        raw = next((value for key, value in headers or () if key == "traceparent"), None)
        if raw is None or raw in parsed:
            continue
        parsed.add(raw)
        context = extract(headers)
        if context is None:
            continue
        from opentelemetry import trace

        key = trace.get_current_span(context).get_span_context().trace_id
        if key not in seen:
            seen.add(key)
            found.append(context)
            if len(found) >= limit:
                break
    return found


def contexts_of_chunks(chunks: Iterable[Any], limit: int = 32) -> list[Any]:
    """The trace contexts a batch consumer's decode step left on each chunk
    (`chunk.trace_contexts`), at most `limit`: the batch span's parent and links."""
    if not _enabled:
        return []
    found: list[Any] = []
    for chunk in chunks:
        found.extend(getattr(chunk, "trace_contexts", ()))
        if len(found) >= limit:
            break
    return found[:limit]


@contextlib.contextmanager
def batch_span(name: str, contexts: Sequence[Any], **attributes: Any) -> Iterator[Any]:
    """One span for a batch: child of the first record's trace, linked to the others."""
    if not _enabled:
        yield None
        return
    parent = contexts[0] if contexts else None
    with span(name, parent=parent, links=contexts[1:], **attributes) as current:
        yield current


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in hex of the current span, for our own log lines."""
    if not _enabled:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
