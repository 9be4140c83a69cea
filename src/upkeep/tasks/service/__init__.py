"""Service tasks: restart by command or pidfile, then verify."""
