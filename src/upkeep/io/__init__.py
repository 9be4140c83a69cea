"""The process's seams to the outside world: outbound HTTP, subprocesses (under a
supervisor that ends their whole tree), SFTP, signals to other processes, files in
directories upkeep does not own, and blocking calls made from async code.
"""

__all__ = ["http", "process", "safefs", "sftp", "signals", "threads"]
