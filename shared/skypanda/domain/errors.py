"""The skypanda exception tree, drawn once.

    SkypandaError                 base; `retryable` says whether trying again may help
    ├── InvalidInput              bad task file, bad body, bad argument (HTTP 400/422, exit 2)
    ├── NotFound                  unknown task, job, pilot or queue id (HTTP 404)
    ├── Unauthorized              missing or wrong bearer token (HTTP 401)
    ├── Forbidden                 acting on another owner's task (HTTP 403)
    ├── Conflict                  a compare-and-set lost: the state was not what the writer expected
    │   └── IllegalTransition     a state machine refused a transition (HTTP 409)
    ├── BackendUnavailable        a store, bus or blob backend failed (retryable; HTTP 503)
    ├── QuotaExceeded             an owner's unended tasks or jobs would pass their limit
    │                             (retryable once some end; HTTP 429)
    └── pilot.zipapp.PilotNotPortable   the pilot imports a non-standard library (no zipapp)

Every error carries a message that names the problem; callers `raise ... from e`.
"""

from __future__ import annotations

from typing import Any

MAX_PROBLEMS = 20
"""Problems listed in one message at most; then "and N more"."""


def clip(text: str, limit: int = 200) -> str:
    """`text`, cut to `limit` characters with an ellipsis (messages stay readable and small)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summarise(problems: list[str], total: int | None = None, sep: str = "; ") -> str:
    """The first MAX_PROBLEMS of `problems`, each clipped, then how many more there were (of
    `total`, when the caller described only the first ones)."""
    shown = [clip(p, 300) for p in problems[:MAX_PROBLEMS]]
    more = (len(problems) if total is None else total) - len(shown)
    return sep.join(shown) + (f"{sep}and {more:,} more" if more > 0 else "")


class SkypandaError(Exception):
    """Root of every error skypanda raises on purpose."""

    retryable: bool = False
    http_status: int = 500

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": type(self).__name__, "message": self.message}
        if self.context:
            body["context"] = {k: v for k, v in self.context.items() if v is not None}
        return body


class InvalidInput(SkypandaError):
    """Input failed validation; nothing was stored."""

    http_status = 422


class NotFound(SkypandaError):
    """No object with that id."""

    http_status = 404


class Unauthorized(SkypandaError):
    """The request did not carry a valid bearer token."""

    http_status = 401


class Forbidden(SkypandaError):
    """The caller may not act on this object (it belongs to another owner)."""

    http_status = 403


class Conflict(SkypandaError):
    """A compare-and-set write found another state than it expected."""

    http_status = 409


class IllegalTransition(Conflict):
    """A state machine does not allow this transition."""

    def __init__(self, machine: str, current: str, target: str) -> None:
        super().__init__(
            f"{machine}: cannot go from {current!r} to {target!r}",
            machine=machine,
            current=current,
            target=target,
        )


class BackendUnavailable(SkypandaError):
    """A backend (database, bus, blob store) failed; trying again may help."""

    retryable = True
    http_status = 503


class QuotaExceeded(SkypandaError):
    """A submission would take its owner past the tasks or jobs they may have unended at once
    (`domain.quota`); nothing was stored. Trying again once some of them ended may work."""

    retryable = True
    http_status = 429
