"""Who may do what: roles, scopes and the principal a request acts as.

A *scope* names one kind of thing a caller may do; a *role* is a fixed set of scopes
given to a user; an API token carries the scopes it was made with. Every HTTP route names
the one scope it needs, so "a viewer cannot change anything" is a property of this table
and of each route's declaration, never of a check written inside a handler.

=========  ==========================================================================
scope      allows
=========  ==========================================================================
read       every page and every ``GET`` of the API (outputs are masked, never secret)
ack        acknowledge alerts, add notes to incidents, add and remove silences and
           maintenance windows
run        run checks now, run a runbook (dry run or for real), create and verify
           backups, run restore drills, test a channel
approve    approve or reject a runbook step that waits for approval
admin      manage users and API tokens
=========  ==========================================================================

viewer: read. operator: read, ack, run. admin: everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Scope(StrEnum):
    """One kind of thing a caller may do (see the module's table)."""

    READ = "read"
    ACK = "ack"
    RUN = "run"
    APPROVE = "approve"
    ADMIN = "admin"


class Role(StrEnum):
    """A user's role: a fixed set of scopes (``ROLE_SCOPES``)."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


ALL_SCOPES: frozenset[Scope] = frozenset(Scope)
ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.VIEWER: frozenset({Scope.READ}),
    Role.OPERATOR: frozenset({Scope.READ, Scope.ACK, Scope.RUN}),
    Role.ADMIN: ALL_SCOPES,
}
"""What each role may do."""

PrincipalKind = Literal["user", "token"]


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a signed-in user or an API token, and what it may do."""

    kind: PrincipalKind
    name: str
    scopes: frozenset[Scope]
    role: Role | None = None
    """A user's role; None for a token (a token has scopes, not a role)."""

    @property
    def actor(self) -> str:
        """The name recorded with every change this principal makes: ``user:<name>`` or
        ``api:<name>``."""
        return f"{'user' if self.kind == 'user' else 'api'}:{self.name}"

    def allows(self, scope: Scope) -> bool:
        """Given a scope, return whether this principal may use it."""
        return scope in self.scopes

    @classmethod
    def user(cls, name: str, role: Role) -> Principal:
        """Given a user's name and role, return the principal a session of theirs acts as."""
        return cls(kind="user", name=name, scopes=ROLE_SCOPES[role], role=role)

    @classmethod
    def token(cls, name: str, scopes: frozenset[Scope] = ALL_SCOPES) -> Principal:
        """Given a token's name and scopes, return the principal it acts as."""
        return cls(kind="token", name=name, scopes=scopes)


def parse_scopes(text: str) -> frozenset[Scope]:
    """Given scopes separated by commas (``read,ack``), return them; raise ValueError
    naming the first unknown one."""
    found: set[Scope] = set()
    for part in text.split(","):
        word = part.strip().lower()
        if not word:
            continue
        try:
            found.add(Scope(word))
        except ValueError:
            known = ", ".join(scope.value for scope in Scope)
            raise ValueError(f"unknown scope {word!r} (known: {known})") from None
    if not found:
        raise ValueError("name at least one scope")
    return frozenset(found)
