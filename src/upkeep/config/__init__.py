"""Config: ``upkeep.yaml`` parsed with positions, secrets expanded, validated as a whole.
``loader`` is the way in; ``models`` is the shape it returns; ``conditions`` and
``schedule`` are the compiled forms of ``warn:``/``crit:`` and of schedules; ``errors``
are the errors it reports.
"""

__all__ = ["conditions", "errors", "loader", "models", "schedule"]
