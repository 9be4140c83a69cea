"""The daemon's HTTP side: the application (``/healthz``, ``/metrics``, the REST API), the
guard in front of it, and the server that runs it.
"""

__all__ = ["app", "guard", "runbooks", "server"]
