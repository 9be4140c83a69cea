"""Alerting: alert states from check results, routing, silences, escalation, incidents."""
