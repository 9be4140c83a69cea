"""postgres.terminate against the real local PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from pydantic import ValidationError

from upkeep.probes.postgres import PostgresTarget
from upkeep.tasks.base import TaskContext
from upkeep.tasks.postgres.terminate import PostgresTerminate, TerminateParams

pytestmark = pytest.mark.postgres


@pytest.fixture
async def opened() -> AsyncIterator[list[psycopg.AsyncConnection[object]]]:
    """The test's own sessions, closed afterwards however the test ended."""
    connections: list[psycopg.AsyncConnection[object]] = []
    yield connections
    for connection in connections:
        await connection.close()


async def _idle_in_transaction(
    opened: list[psycopg.AsyncConnection[object]], dsn: str, application: str
) -> psycopg.AsyncConnection[object]:
    connection = await psycopg.AsyncConnection.connect(dsn, application_name=application)
    opened.append(connection)
    await connection.execute("SELECT 1")  # opens the transaction, then sits idle in it
    return connection


async def _alive(connection: psycopg.AsyncConnection[object]) -> bool:
    """Whether the server still has the session (asked from another one: a statement on
    the session itself would reset its idle time)."""
    async with await psycopg.AsyncConnection.connect(
        psycopg.conninfo.make_conninfo(connection.info.dsn, user="postgres"), autocommit=True
    ) as admin:
        cursor = await admin.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (connection.info.backend_pid,)
        )
        return await cursor.fetchone() is not None


async def test_ends_the_old_idle_session_and_leaves_the_young_one(
    postgres_dsn: str, task_context: TaskContext, opened: list[psycopg.AsyncConnection[object]]
) -> None:
    old_app = f"old_{uuid.uuid4().hex[:8]}"
    young_app = f"young_{uuid.uuid4().hex[:8]}"
    # A non-superuser role: the task never ends a superuser's session.
    role = f"term_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
    user_dsn = psycopg.conninfo.make_conninfo(postgres_dsn, user=role)
    try:
        old = await _idle_in_transaction(opened, user_dsn, old_app)
        superuser_old = await _idle_in_transaction(opened, postgres_dsn, old_app)
        await asyncio.sleep(1.2)
        young = await _idle_in_transaction(opened, user_dsn, young_app)
        target = PostgresTarget(dsn=postgres_dsn)
        params = TerminateParams.model_validate(
            {"idle_longer_than": "1s", "applications": [old_app, young_app]}
        )

        plan = await PostgresTerminate().plan(target, params, task_context)
        (change,) = plan.changes
        assert change.subject == str(old.info.backend_pid)
        assert change.detail.startswith(
            f"pid {old.info.backend_pid} {role}@{old.info.dbname} (application {old_app}), "
            "idle in transaction for "
        )
        assert "SELECT 1" not in change.detail
        assert await _alive(old)  # the dry run changed nothing

        outcome = await PostgresTerminate().run(target, params, task_context)
        assert outcome.figures["sessions_found"] == 1
        assert outcome.figures["sessions_ended"] == 1
        assert outcome.figures["sessions_not_ended"] == 0
        assert [c.subject for c in outcome.changes] == [str(old.info.backend_pid)]
        assert not await _alive(old)
        assert await _alive(young)
        assert await _alive(superuser_old)
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            admin.execute(f"DROP ROLE {role}")


async def test_a_session_it_may_not_end_is_recorded_not_failed(
    postgres_dsn: str, task_context: TaskContext, opened: list[psycopg.AsyncConnection[object]]
) -> None:
    app = f"priv_{uuid.uuid4().hex[:8]}"
    victim_role = f"victim_{uuid.uuid4().hex[:8]}"
    runner_role = f"runner_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {victim_role} LOGIN")
        # It may read every session (as a monitoring role) but not signal them.
        admin.execute(f"CREATE ROLE {runner_role} LOGIN IN ROLE pg_read_all_stats")
    try:
        victim = await _idle_in_transaction(
            opened, psycopg.conninfo.make_conninfo(postgres_dsn, user=victim_role), app
        )
        await asyncio.sleep(1.1)
        target = PostgresTarget(dsn=psycopg.conninfo.make_conninfo(postgres_dsn, user=runner_role))
        params = TerminateParams.model_validate({"idle_longer_than": "1s", "applications": [app]})
        outcome = await PostgresTerminate().run(target, params, task_context)
        assert outcome.figures["sessions_not_ended"] == 1
        assert outcome.changes[0].action == "not ended"
        assert await _alive(victim)
        strict = params.model_copy(update={"fail_if_not_ended": True})
        with pytest.raises(Exception, match="not ended: pid"):
            await PostgresTerminate().run(target, strict, task_context)
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (victim_role,),
            )
            admin.execute(f"DROP ROLE {victim_role}")
            admin.execute(f"DROP ROLE {runner_role}")


def test_the_limit_is_at_least_a_second() -> None:
    with pytest.raises(ValidationError, match="at least 1s"):
        TerminateParams.model_validate({"idle_longer_than": "500ms"})
    with pytest.raises(ValidationError, match="idle_longer_than"):
        TerminateParams.model_validate({})
