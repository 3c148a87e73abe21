"""ingest: raw-logs -> ClickHouse `logs` (+ WARN/ERROR/FATAL -> vectorization-queue, bad input -> raw-logs-dlq)."""
