"""The gateway's routes, one module per area; handlers stay thin (logic in service.py and core)."""

from logpipe.gateway.routers import ingest, insights, live, logs, ops

ALL = (logs.router, ingest.router, live.router, insights.router, ops.router)
