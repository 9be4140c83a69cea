"""upkeep: a team's maintenance guide as runbooks as code."""

__version__ = "0.1.0"
