"""notify: being built (issue 15)."""

from __future__ import annotations

from typing import Any

from skypanda.handlers.services import Services


def handle(svc: Services, payload: Any) -> None:
    """Not built yet: accepts and drops the event."""
