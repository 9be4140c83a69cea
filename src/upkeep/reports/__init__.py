"""The presentation layer: the views the dashboard, the status page and reports share,
and the charts they draw."""

__all__ = ["charts"]
