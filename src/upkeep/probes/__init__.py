"""Probes: one module per target kind; ``registry.TARGET_KINDS`` lists them all."""
