"""The logpipe operator: a LogPipeline resource becomes a running, isolated log pipeline."""

GROUP = "logpipe.io"
VERSION = "v1alpha1"
PLURAL = "logpipelines"
FINALIZER = "logpipe.io/finalizer"
