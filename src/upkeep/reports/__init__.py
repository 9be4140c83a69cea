"""The presentation layer: the views the dashboard, the status page and reports share,
the report sections and their rendering, and the charts they draw."""

__all__ = ["charts", "model", "render", "sections", "service", "views"]
