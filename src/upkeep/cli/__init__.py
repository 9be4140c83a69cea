"""The command-line interface (typer + rich); heavy modules are imported inside commands."""
