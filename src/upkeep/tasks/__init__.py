"""Maintenance tasks: the contract in ``base``, the table in ``registry``, one module (or
subpackage) per kind. ``backup`` is also the backup service the CLI drives directly.
"""

__all__ = ["backup", "base", "registry"]
