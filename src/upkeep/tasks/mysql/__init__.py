"""MySQL/MariaDB maintenance: ``mysql.analyze`` and ``mysql.optimize``."""
