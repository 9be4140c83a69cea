"""The public status page: the figures of each component (``figures``), the snapshot every
format shares (``page``), its HTML, feeds and badges (``render``) and its routes
(``routes``).
"""

__all__ = ["figures", "page", "render", "routes"]
