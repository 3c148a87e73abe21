"""The gateway's routes, one module per area; handlers stay thin (logic in service.py and core)."""

from logpipe.gateway.routers import dashboard, ingest, insights, live, logs, ops, pipeline

ALL = (dashboard.router, logs.router, ingest.router, live.router, insights.router, ops.router, pipeline.router)
