"""Redis maintenance: ``redis.memory_purge`` and ``redis.cleanup``."""
