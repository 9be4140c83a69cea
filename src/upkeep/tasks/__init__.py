"""Maintenance tasks: the contract in ``base``, the table in ``registry``, one module per kind."""
