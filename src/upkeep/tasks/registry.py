"""The one explicit table of task kinds.

Adding a task means: write ``tasks/<area>/<name>.py`` with its ``Params`` model and its
``Task`` class, then list it here. Nothing is discovered implicitly.
"""

from __future__ import annotations

from typing import Any

from upkeep.tasks.backup.tasks import BackupCreate, BackupDrill, BackupPrune, BackupVerify
from upkeep.tasks.base import Task
from upkeep.tasks.files.cleanup import FilesCleanup
from upkeep.tasks.http.request import HttpRequest
from upkeep.tasks.logs.retain import LogsRetain
from upkeep.tasks.logs.rotate import LogsRotate
from upkeep.tasks.mysql.tables import MysqlAnalyze, MysqlOptimize
from upkeep.tasks.postgres.autovacuum import PostgresAutovacuum
from upkeep.tasks.postgres.reindex import PostgresReindex
from upkeep.tasks.postgres.terminate import PostgresTerminate
from upkeep.tasks.postgres.vacuum import PostgresAnalyze, PostgresVacuum
from upkeep.tasks.redis.cleanup import RedisCleanup
from upkeep.tasks.redis.memory_purge import RedisMemoryPurge
from upkeep.tasks.reports.send import ReportSend
from upkeep.tasks.service.restart import ServiceRestart
from upkeep.tasks.sql.retention import SqlRetention

TASK_KINDS: dict[str, type[Task[Any, Any]]] = {
    task.name: task
    for task in (
        BackupCreate,
        BackupDrill,
        BackupPrune,
        BackupVerify,
        FilesCleanup,
        HttpRequest,
        LogsRetain,
        LogsRotate,
        MysqlAnalyze,
        MysqlOptimize,
        PostgresAnalyze,
        PostgresAutovacuum,
        PostgresReindex,
        PostgresTerminate,
        PostgresVacuum,
        RedisCleanup,
        RedisMemoryPurge,
        ReportSend,
        ServiceRestart,
        SqlRetention,
    )
}
