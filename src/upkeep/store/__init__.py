"""The history store: SQLAlchemy 2 Core over SQLite (default) or PostgreSQL, Alembic
migrations; its tables for results, runs, alerts, the outbox, the backup catalog and the
accounts (users, sessions, stored API tokens); the spill that holds alerting state while
the database is away; and the encrypted backup repository on disk.
"""

__all__ = [
    "accounts",
    "alerts",
    "backups",
    "crypto",
    "locks",
    "outbox",
    "pings",
    "remediations",
    "repository",
    "runs",
    "schema",
    "spill",
    "store",
    "summaries",
    "updates",
]
