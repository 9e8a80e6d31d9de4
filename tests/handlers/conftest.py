"""Handler tests' shared fixtures: a fake clock and services on a private SQLite store with one
local queue (a test file may define its own `svc` with another setup)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skypanda.domain.models import Queue
from skypanda.handlers.services import Services
from tests.support import FakeClock, sqlite_services


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def svc(tmp_path: Path, clock: FakeClock) -> Iterator[Services]:
    with sqlite_services(tmp_path, clock, Queue(name="local")) as services:
        yield services
