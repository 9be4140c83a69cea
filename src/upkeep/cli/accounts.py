"""``upkeep user`` and ``upkeep token``: the accounts of the web face, in the store.

A password is never an argument (it would land in the shell's history and in ``ps``): it
is asked for twice at the terminal, or read from the first line of standard input with
``--password-stdin``. A token is printed once, alone on stdout (so ``TOKEN=$(upkeep token
add ci --scope read)`` works); only its SHA-256 is kept. Changes are recorded as made by
``cli:<login name>``.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from upkeep.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    config_and_store,
    console,
    print_error,
    print_json,
    who,
)

if TYPE_CHECKING:
    from upkeep.config.loader import LoadedConfig


def cli_actor() -> str:
    """Return who a change made at this terminal is recorded as: ``cli:<login name>``."""
    return f"cli:{who()}"


def read_password(*, from_stdin: bool, prompt: str = "Password") -> str | None:
    """Return a new password: the first line of stdin with ``from_stdin``, else asked twice
    at the terminal; print why and return None if there is no terminal or the two differ."""
    import getpass

    if from_stdin:
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not sys.stdin.isatty():
        print_error("no terminal to ask for the password: pass it with --password-stdin")
        return None
    try:
        first = getpass.getpass(f"{prompt}: ")
        second = getpass.getpass(f"{prompt} (again): ")
    except (EOFError, KeyboardInterrupt):
        print_error("no password given")
        return None
    if first != second:
        print_error("the two passwords differ; nothing was changed")
        return None
    return first


def add_user(config_path: Path | None, name: str, role: str, *, password_stdin: bool) -> int:
    """Add a user with a role and a password; return 0, or 2 if refused."""
    from upkeep.core.access import Role
    from upkeep.store.accounts import AccountError, check_name

    try:
        chosen = Role(role.strip().lower())
        check_name(name, "a user's name")
    except ValueError as error:
        known = ", ".join(r.value for r in Role)
        print_error(str(error) if isinstance(error, AccountError) else f"--role is one of {known}")
        return EXIT_USAGE
    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        _, store = opened
        if store.accounts.get_user(name) is not None:
            print_error(f"there is already a user {name!r}")
            return EXIT_USAGE
        password = read_password(from_stdin=password_stdin)
        if password is None:
            return EXIT_USAGE
        try:
            store.accounts.add_user(name, chosen, password, created_by=cli_actor())
        except AccountError as error:
            print_error(str(error))
            return EXIT_USAGE
    console().print(f"user {name} added ({chosen.value})", markup=False)
    return 0


def list_users(config_path: Path | None, *, json_output: bool) -> int:
    """Print every user (name, role, state, made by and when); return 0 or 2."""
    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        loaded, store = opened
        records = store.accounts.list_users()
    if json_output:
        print_json([record.to_json() for record in records])
        return 0
    from upkeep.cli.output import Column, print_table

    rows = [
        (
            record.name,
            record.role.value,
            "disabled" if record.disabled else "active",
            record.created_by,
            _local(loaded, record.created_at),
        )
        for record in records
    ]
    columns = (
        Column("user"),
        Column("role"),
        Column("state"),
        Column("added by"),
        Column("added"),
    )
    print_table(console(), columns, rows)
    return 0


def remove_user(config_path: Path | None, name: str) -> int:
    """Remove a user and end their sessions; return 0, or 2 if there is none."""
    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        _, store = opened
        removed = store.accounts.remove_user(name)
    if not removed:
        print_error(f"no user {name!r}")
        return EXIT_USAGE
    console().print(f"user {name} removed; their sessions ended", markup=False)
    return 0


def change_password(config_path: Path | None, name: str, *, password_stdin: bool) -> int:
    """Set a user's password (ending their sessions); return 0, or 2 if refused."""
    from upkeep.store.accounts import AccountError

    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        _, store = opened
        if store.accounts.get_user(name) is None:
            print_error(f"no user {name!r}")
            return EXIT_USAGE
        password = read_password(from_stdin=password_stdin, prompt=f"New password for {name}")
        if password is None:
            return EXIT_USAGE
        try:
            changed = store.accounts.set_password(name, password)
        except AccountError as error:
            print_error(str(error))
            return EXIT_USAGE
    if not changed:  # removed meanwhile
        print_error(f"no user {name!r}")
        return EXIT_FAILED
    console().print(f"password of {name} changed; their sessions ended", markup=False)
    return 0


def add_token(
    config_path: Path | None, name: str, scopes: str, *, expires_in: str | None = None
) -> int:
    """Make an API token and print it once on stdout; return 0, or 2 if refused."""
    from upkeep.core.access import parse_scopes
    from upkeep.core.durations import parse_duration
    from upkeep.store.accounts import AccountError, check_name

    try:
        chosen = parse_scopes(scopes)
        check_name(name, "a token's name")
        lifetime = parse_duration(expires_in) if expires_in else None
    except ValueError as error:
        print_error(str(error))
        return EXIT_USAGE
    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        loaded, store = opened
        from upkeep.web.guard import named_tokens

        if name in named_tokens(loaded.config.engine):
            print_error(f"engine.api_tokens has a token {name!r} already: choose another name")
            return EXIT_USAGE
        expires_at = datetime.now(UTC) + lifetime if lifetime else None
        try:
            token, _ = store.accounts.add_token(
                name, chosen, created_by=cli_actor(), expires_at=expires_at
            )
        except AccountError as error:
            print_error(str(error))
            return EXIT_USAGE
    sys.stdout.write(token + "\n")
    sys.stdout.flush()
    scope_list = ",".join(sorted(scope.value for scope in chosen))
    console(stderr=True).print(
        f"token {name} ({scope_list}) made: it is shown this once only, keep it now",
        markup=False,
    )
    return 0


def list_tokens(config_path: Path | None, *, json_output: bool) -> int:
    """Print every stored token (name, scopes, made, last used, expiry; never the token or
    its digest); return 0 or 2."""
    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        loaded, store = opened
        records = store.accounts.list_tokens()
    if json_output:
        print_json([record.to_json() for record in records])
        return 0
    from upkeep.cli.output import Column, print_table

    rows = [
        (
            record.name,
            ",".join(sorted(scope.value for scope in record.scopes)),
            record.created_by,
            _local(loaded, record.created_at),
            _local(loaded, record.last_used_at),
            _local(loaded, record.expires_at),
        )
        for record in records
    ]
    columns = (
        Column("token"),
        Column("scopes"),
        Column("made by"),
        Column("made"),
        Column("last used"),
        Column("expires"),
    )
    print_table(console(), columns, rows)
    return 0


def remove_token(config_path: Path | None, name: str) -> int:
    """Revoke a stored token; return 0, or 2 if there is none."""
    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        _, store = opened
        removed = store.accounts.remove_token(name)
    if not removed:
        print_error(f"no stored token {name!r}")
        return EXIT_USAGE
    console().print(f"token {name} revoked", markup=False)
    return 0


def _local(loaded: LoadedConfig, moment: datetime | None) -> str:
    from zoneinfo import ZoneInfo

    from upkeep.cli.common import local_time

    return local_time(moment, ZoneInfo(loaded.config.timezone))
