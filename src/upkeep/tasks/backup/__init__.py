"""Backups: sources, the repository, verification, retention and restore drills."""
