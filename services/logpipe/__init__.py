"""logpipe: Kubernetes-native, AI-powered log analysis."""

__version__ = "0.1.0"
