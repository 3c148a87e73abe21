"""Prometheus metrics of the operator (served by `logpipe operator` on OPERATOR_METRICS_PORT)."""

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter("logpipe_operator_reconciles_total", "Reconciles of LogPipelines", ["result"])
ERRORS = Counter("logpipe_operator_errors_total", "Failed reconcile steps", ["step"])
RECONCILE_SECONDS = Histogram("logpipe_operator_reconcile_seconds", "Time of one reconcile")
SCALING = Counter("logpipe_operator_scaling_decisions_total", "Replica changes made by the lag scaler",
                  ["component", "direction"])
LAG = Gauge("logpipe_operator_consumer_lag", "Consumer lag seen by the scaler", ["pipeline", "component"])
RATE = Gauge("logpipe_operator_incoming_records_per_second",
             "Records per second arriving on a consumer's topic between two scaler passes", ["pipeline", "component"])
