"""The analyzer: baselines, anomalies, cross-service clusters and LLM reports."""
