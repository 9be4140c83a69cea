"""The history store: SQLAlchemy 2 Core over SQLite (default) or PostgreSQL, Alembic
migrations; its tables for results, runs, alerts, the outbox and the backup catalog; the
spill that holds alerting state while the database is away; and the encrypted backup
repository on disk.
"""

__all__ = [
    "alerts",
    "backups",
    "crypto",
    "locks",
    "outbox",
    "repository",
    "runs",
    "schema",
    "spill",
    "store",
    "summaries",
]
