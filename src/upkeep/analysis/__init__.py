"""Analysis of logs: what a log says (levels, patterns, security events, access
figures), its line timestamps, a window over live logs, and what rotation leaves beside it.
"""

__all__ = ["logs", "rotated", "tail", "timestamps"]
