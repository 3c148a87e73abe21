"""generator: realistic logs with scheduled incidents, produced to raw-logs."""
