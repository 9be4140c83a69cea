"""The foundations every other package stands on: the config model base, statuses, check
results, durations, the text forms for people, secret redaction, the clock. It imports
nothing else of upkeep."""

__all__ = [
    "access",
    "clock",
    "durations",
    "models",
    "moments",
    "redaction",
    "results",
    "status",
    "text",
]
