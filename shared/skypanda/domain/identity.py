"""Who is asking: a principal (a user, a pilot, a launcher) and the roles it holds.

Roles (PanDA's model: a task's owner acts on it; a production role acts on any):
    user      submits tasks and workflows, acts on its own; reads everything (PanDA-style)
    admin     acts on any task, applies queues, drains pilots, manages users
    pilot     the dispatch protocol: register, acquire, report, heartbeat, logs, outputs
    launcher  may only register pilots (a launch credential: only the one pilot it names, once)
    monitor   reads everything and acts on nothing: a dashboard's or a metrics scraper's
              credential (`GET /metrics`)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from skypanda.domain.errors import InvalidInput

USER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$"


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"
    PILOT = "pilot"
    LAUNCHER = "launcher"
    MONITOR = "monitor"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its name (a task's owner is its submitter's name) and roles."""

    name: str
    roles: frozenset[Role]
    pilot: str | None = None
    """Set for a credential scoped to one pilot: it acts for that pilot only."""
    launch_for: str | None = None
    """Set for a launch credential (role launcher): it may register this pilot id alone, and
    only while the pilot has not registered yet (single use)."""

    def has_any(self, roles: frozenset[Role]) -> bool:
        return bool(self.roles & roles)

    @property
    def admin(self) -> bool:
        return Role.ADMIN in self.roles


def parse_role(value: str) -> Role:
    """Raises: InvalidInput naming the roles there are."""
    try:
        return Role(value)
    except ValueError as e:
        roles = ", ".join(r.value for r in Role)
        raise InvalidInput(f"unknown role {value!r}; use one of {roles}", field="role") from e
