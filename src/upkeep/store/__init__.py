"""The history store: SQLAlchemy 2 Core over SQLite (default) or PostgreSQL, Alembic migrations."""
