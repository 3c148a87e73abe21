"""Code shared by every logpipe service: record schema, settings, logging, metrics, topics, health."""
