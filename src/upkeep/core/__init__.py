"""The foundations every other package stands on: the config model base, statuses, check
results, durations, secret redaction. It imports nothing else of upkeep."""
