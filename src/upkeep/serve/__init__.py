"""The daemon (``upkeep serve``): the engine and the web face in one long-running process."""

__all__ = ["daemon"]
