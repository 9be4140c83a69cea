"""The presentation layer: the views the dashboard, the status page and reports share."""

__all__ = ["charts", "model", "render", "sections", "service"]
