"""`logpipe operator`: run the LogPipeline operator (Kopf), with liveness and Prometheus metrics."""

from __future__ import annotations

import argparse
import logging


def register(subparsers) -> None:
    parser = subparsers.add_parser("operator", help="run the LogPipeline operator (Kubernetes)")
    parser.add_argument("--namespace", action="append", default=[],
                        help="watch this namespace (repeatable; default: OPERATOR_NAMESPACES, else all)")
    parser.add_argument("--standalone", action="store_true",
                        help="no peering with other operator replicas (one replica only)")
    parser.set_defaults(func=cmd_operator)


def cmd_operator(args: argparse.Namespace) -> None:
    import kopf
    import prometheus_client

    from logpipe.core.logging import configure_logging
    from logpipe_operator.handlers import pipeline
    from logpipe_operator.settings import Settings

    settings = Settings()
    configure_logging("operator", settings.log_level, settings.log_format)
    namespaces = args.namespace or [name.strip() for name in settings.namespaces.split(",") if name.strip()]
    if settings.metrics_port:
        prometheus_client.start_http_server(settings.metrics_port, addr=settings.host)
    logging.getLogger(__name__).info("operator starting", extra={"namespaces": namespaces or "all",
                                                                 "finalizer": pipeline.FINALIZER})
    kopf.run(standalone=args.standalone, clusterwide=not namespaces, namespaces=namespaces,
             liveness_endpoint=f"http://{settings.host}:{settings.health_port}/healthz")
