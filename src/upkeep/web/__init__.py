"""The daemon's HTTP side: /healthz, /metrics and the REST API."""
