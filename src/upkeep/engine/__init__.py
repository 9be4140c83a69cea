"""The engine: runs checks now (``runner``) and on their schedules (``scheduler``), turning
each probe's outcome into a result, runs runbooks (``runbooks``) and the ones alerts start
(``remediation``), elects the one daemon that schedules (``leader``), exports the daemon's
figures (``metrics``), and composes results → store → alerts → delivery once for every
command and the daemon (``pipeline``).
"""

__all__ = ["leader", "metrics", "pipeline", "remediation", "runbooks", "runner", "scheduler"]
