"""The engine: runs checks now (``runner``) and on their schedules (``scheduler``), turning
each probe's outcome into a result, runs runbooks (``runbooks``), elects the one daemon that
schedules (``leader``), and exports the daemon's figures (``metrics``).
"""

__all__ = ["leader", "metrics", "runbooks", "runner", "scheduler"]
