"""Config: ``upkeep.yaml`` parsed with positions, secrets expanded, validated as a whole."""
