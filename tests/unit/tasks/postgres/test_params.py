"""The params of the PostgreSQL maintenance tasks: what they accept and refuse."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from upkeep.tasks.postgres.autovacuum import AutovacuumParams, TableChange, restored_changes
from upkeep.tasks.postgres.common import human_bytes
from upkeep.tasks.postgres.reindex import LEFTOVER, ReindexParams
from upkeep.tasks.postgres.vacuum import VacuumParams
from upkeep.tasks.registry import TASK_KINDS


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "name at least one of `indexes` or `tables`"),
        ({"tables": ["a; DROP TABLE b"]}, "plain name or schema.name"),
        ({"indexes": ["x.y.z"]}, "plain name or schema.name"),
        ({"tables": ["a", "a"]}, "given twice"),
        ({"tables": ["a"], "lock_timeout": "0s"}, "longer than 0s"),
    ],
)
def test_reindex_params_refuse(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ReindexParams.model_validate(values)


def test_vacuum_full_is_refused_and_limits_are_capped_by_the_step() -> None:
    with pytest.raises(ValidationError, match="full"):
        VacuumParams.model_validate({"tables": ["t"], "full": True})
    params = VacuumParams.model_validate({"tables": ["t"], "full": False})
    assert (
        params.limits_sql(60.0) == "SET lock_timeout = '5000ms'; SET statement_timeout = '60000ms'"
    )
    assert params.statement_s(1e6) == 1800.0


def test_leftover_names_and_registry() -> None:
    assert [
        LEFTOVER.fullmatch(name) is not None
        for name in ("i_ccnew", "i_ccnew12", "i_ccold", "i_ccnewer")
    ] == [True, True, True, False]
    assert {"postgres.reindex", "postgres.vacuum", "postgres.analyze"} <= set(TASK_KINDS)
    assert [human_bytes(size) for size in (999, 1500, 2_500_000, 3_000_000_000)] == [
        "999 B",
        "1.5 kB",
        "2.5 MB",
        "3.0 GB",
    ]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "name at least one table in `tables`"),
        ({"tables": {"a; DROP": {"autovacuum_enabled": True}}}, "plain name or schema.name"),
        ({"tables": {"t": {}}}, "sets no option"),
        ({"tables": {"t": {"autovacuum_vacuum_scale_factor": -0.1}}}, "greater than or equal"),
        ({"tables": {"t": {"toast.autovacuum_analyze_threshold": 5}}}, "Extra inputs"),
        ({"tables": {"t": {"toast_autovacuum_enabled": False}}}, "Extra inputs"),
    ],
)
def test_autovacuum_params_refuse(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AutovacuumParams.model_validate(values)


def test_recorded_values_are_restored_with_set_and_reset_and_checked_again() -> None:
    (change,) = restored_changes(
        {
            "rollback": False,
            "previous:public.t:autovacuum_vacuum_scale_factor": "0.2",
            "previous:public.t:toast.autovacuum_enabled": "unset",
            "tables_done": 1,
        }
    )
    assert change == TableChange(
        "public.t", {"autovacuum_vacuum_scale_factor": "0.2"}, ("toast.autovacuum_enabled",)
    )
    with pytest.raises(ValueError, match="not an autovacuum option"):
        restored_changes({"previous:public.t:fillfactor": "70"})
    with pytest.raises(ValueError, match="not valid"):
        restored_changes({"previous:public.t:autovacuum_vacuum_threshold": "1); DROP TABLE x"})
    assert {"postgres.autovacuum", "postgres.terminate"} <= set(TASK_KINDS)
