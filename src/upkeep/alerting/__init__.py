"""Alerting: alert states from check results, routing, silences, maintenance windows,
escalation, incidents and their figures, and the dispatcher that delivers the outbox.
"""

__all__ = ["delivery", "guard", "manager", "messages", "notices", "routing", "stats", "windows"]
