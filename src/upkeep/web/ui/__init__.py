"""The operator's dashboard: server-rendered pages (Jinja2, autoescaped) over the store,
with small scripts that call the ``/api`` routes and poll ``/ui/live`` for new results."""
