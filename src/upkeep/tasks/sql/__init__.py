"""Tasks on application databases (PostgreSQL, MySQL/MariaDB targets)."""
