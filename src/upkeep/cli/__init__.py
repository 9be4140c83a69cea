"""The command-line interface (typer + rich); heavy modules are imported inside commands.
Nothing else imports it: ``main`` is the ``upkeep`` entry point.
"""

__all__ = ["main"]
