"""Fixtures shared by the function tests: services on a fresh SQLite store with one queue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skypanda.domain.models import Queue
from skypanda.handlers.services import Services
from tests.support import FakeClock, sqlite_services


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    """Services on a fresh SQLite store, fake clock, queue `local`."""
    with sqlite_services(tmp_path, FakeClock(), Queue(name="local")) as services:
        yield services
