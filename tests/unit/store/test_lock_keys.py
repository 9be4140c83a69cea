"""Advisory lock keys: one per purpose and store, each a valid PostgreSQL bigint."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

from upkeep.store.locks import (
    ALERTING_LOCK_KEY,
    LEADER_LOCK_KEY,
    MIGRATION_LOCK_KEY,
    OUTBOX_CLAIM_LOCK_KEY,
    lock_key,
)

PURPOSES = (ALERTING_LOCK_KEY, OUTBOX_CLAIM_LOCK_KEY, MIGRATION_LOCK_KEY, LEADER_LOCK_KEY)


def test_every_purpose_and_schema_has_its_own_key_within_a_bigint() -> None:
    schemas = ("upkeep", "tenant_a", "tenant_b", "public")
    keys = {lock_key(purpose, schema) for purpose in PURPOSES for schema in schemas}
    assert len(keys) == len(PURPOSES) * len(schemas)
    assert all(-(2**63) <= key < 2**63 for key in keys)


def test_a_key_is_the_same_in_every_process() -> None:
    """Processes of one store must agree on its keys: str hashes differ per process
    (PYTHONHASHSEED), a digest does not."""
    code = "from upkeep.store.locks import lock_key; print(lock_key(1, 'tenant_a'))"
    keys = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert keys == {str(lock_key(1, "tenant_a"))}


def test_without_a_schema_the_key_is_the_purpose_earlier_versions_used() -> None:
    for purpose, other in itertools.combinations(PURPOSES, 2):
        assert lock_key(purpose, None) == purpose != lock_key(other, None)
