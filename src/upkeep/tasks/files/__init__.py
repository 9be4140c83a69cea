"""File tasks: cleanup of old files inside one root."""
