"""Probes: the contract in ``base``, the table of target kinds in ``registry``, one module
per kind. Other packages reach a kind through the registry; the target models of ``backup``, ``http``,
``logs``, ``mysql``, ``postgres`` and ``redis`` (and the log listing of ``logs``) are shared
with the tasks and commands that work on the same targets.
"""

__all__ = ["backup", "base", "heartbeat", "http", "logs", "mysql", "postgres", "redis", "registry"]
