"""The daemon's HTTP side: the application (``/healthz``, ``/metrics``, the REST API), the
guard in front of it, the server that runs it, and the public status page (``status``).
"""

__all__ = ["app", "guard", "runbooks", "server", "status"]
