"""Kopf handlers; importing this package registers them (`kopf run -m logpipe_operator.handlers`)."""

from logpipe_operator.handlers import pipeline  # noqa: F401
