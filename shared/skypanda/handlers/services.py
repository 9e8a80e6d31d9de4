"""What a handler is given: the ports, wired by the backend (local runtime or Cloud Function)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from skypanda.ports import Blobs, Bus, Clock, Launcher, Store


def new_id(prefix: str) -> str:
    """A random id: `prefix` + 12 hex digits (48 random bits; never sequential)."""
    return f"{prefix}{secrets.token_hex(6)}"


@dataclass
class Services:
    store: Store
    bus: Bus
    blobs: Blobs
    clock: Clock
    launcher: Launcher | None = None
    settings: dict[str, object] = field(default_factory=dict)
