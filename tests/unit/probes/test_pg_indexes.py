"""The pure rules of the PostgreSQL ``indexes`` probe: which index is kept of duplicates,
what counts as redundant, and which foreign keys an index supports."""

from __future__ import annotations

from typing import Any

from upkeep.probes.postgres import (
    ForeignKey,
    IndexInfo,
    duplicate_indexes,
    redundant_indexes,
    unsupported_foreign_keys,
)


def index(name: str, keys: tuple[int, ...], **fields: Any) -> IndexInfo:
    """Given a name, key columns and any other fields, return a valid btree index on t."""
    values: dict[str, Any] = {
        "name": name,
        "schema": "public",
        "table": "public.t",
        "table_oid": 1,
        "method": "btree",
        "keys": keys,
        "columns": keys,
        "opclasses": (10,) * len(keys),
        "collations": (0,) * len(keys),
        "options": (0,) * len(keys),
        "expressions": None,
        "predicate": None,
        "unique": False,
        "constraint": False,
        "valid": True,
        "building": False,
        "scans": 0,
        "size": 8192,
    }
    return IndexInfo(**(values | fields))


def test_of_duplicates_the_constraint_index_is_kept() -> None:
    plain = index("a_plain", (1,))
    primary = index("t_pkey", (1,), unique=True, constraint=True)
    unique = index("b_unique", (1,), unique=True)

    pairs = duplicate_indexes([plain, primary, unique])

    assert {(extra.name, kept.name) for extra, kept in pairs} == {
        ("a_plain", "t_pkey"),
        ("b_unique", "t_pkey"),
    }


def test_different_predicates_sort_orders_or_tables_are_not_duplicates() -> None:
    base = index("a", (1,))
    others = [
        index("b", (1,), predicate="(x > 0)"),
        index("c", (1,), options=(3,)),
        index("d", (1,), table_oid=2),
        index("e", (1,), valid=False),
    ]

    assert duplicate_indexes([base, *others]) == []


def test_a_leading_prefix_is_redundant_unless_unique_partial_or_different() -> None:
    wide = index("ab", (1, 2))
    covered = index("a", (1,))
    unique = index("a_unique", (1,), unique=True)
    desc = index("a_desc", (1,), options=(3,))
    second = index("b", (2,))
    partial_wide = index("ac_partial", (1, 3), predicate="(x > 0)")

    pairs = redundant_indexes([wide, covered, unique, desc, second, partial_wide])

    assert [(a.name, b.name) for a, b in pairs] == [("a", "ab")]


def test_a_foreign_key_is_supported_by_leading_columns_in_any_order() -> None:
    key = ForeignKey("fk", "public.t", 1, (2, 3), ("x", "y"))
    lone = ForeignKey("fk_lone", "public.t", 1, (4,), ("z",))
    indexes = [index("yx", (3, 2, 1)), index("z_partial", (4,), predicate="(z > 0)")]

    assert unsupported_foreign_keys([key, lone], indexes) == [lone]
