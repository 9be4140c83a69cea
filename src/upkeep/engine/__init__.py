"""The engine: runs checks (now) and schedules (later), evaluates results, hands them to the store."""
