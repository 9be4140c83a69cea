"""Maintenance tasks on PostgreSQL targets: VACUUM, ANALYZE, REINDEX CONCURRENTLY."""
