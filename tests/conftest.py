"""Session-wide emulators for the tests that need Google Cloud services.

Each emulator starts on 127.0.0.1 the first time a test asks for it and stops at the end of the
session. When an emulator is not installed, the tests that need it fail with a message naming
the expected path (they are not skipped: CI must not pass silently without them).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skypanda.runtime import emulators
from skypanda.runtime.emulators import Emulator


def _serve(start: object) -> Iterator[Emulator]:
    assert callable(start)
    emu: Emulator = start()
    saved = {k: os.environ.get(k) for k in ("GOOGLE_CLOUD_PROJECT", emu.env_var)}
    os.environ.update(emulators.env_for(emu))
    try:
        yield emu
    finally:
        emu.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[Emulator]:
    yield from _serve(emulators.firestore)


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[Emulator]:
    yield from _serve(emulators.pubsub)


@pytest.fixture(scope="session")
def storage_emulator() -> Iterator[Emulator]:
    yield from _serve(emulators.storage)


# --- how scripts/check spreads the tests over processes (pytest-xdist, --dist loadgroup) -------

SLOW_FIRST: tuple[str, ...] = (
    "tests/e2e/test_panda_pilot.py",
    "tests/chaos/test_chaos.py",
    "tests/e2e/test_outage.py",
    "tests/functions/test_bundle.py",
    "tests/e2e/test_panda_client.py",
)
"""Modules that take longest, started first so that no worker is left with one at the end
(the rest keep their collection order). Only the order changes: every test still runs."""

_WIDE_SCOPES = re.compile(r"""scope\s*=\s*["'](module|class|package)["']""")


@functools.cache
def _shares_fixtures(path: Path) -> bool:
    """Whether a test module, or a conftest.py above it, defines a fixture wider than a test."""
    sources = [path, *(d / "conftest.py" for d in path.parents if d.name != "")]
    return any(p.is_file() and _WIDE_SCOPES.search(p.read_text()) for p in sources)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With `--dist loadgroup` (scripts/check): a module whose tests share a fixture wider than
    one test (a module's system, a bundle built once) runs on one worker, so that the fixture
    is made once; every other test is a work unit of its own. (xdist's own `xdist_group`
    marks do not group under pytest 9: it renames a node id that pytest 9 no longer reads.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    root = config.rootpath

    class ModuleFixturesTogether(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::")[0]
            return path if _shares_fixtures(root / path) else nodeid

    return ModuleFixturesTogether(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker, the slowest modules (`SLOW_FIRST`) first: the scheduler hands work
    out in this order (`--no-loadscope-reorder`). A run in one process is left as collected."""
    if not hasattr(config, "workerinput"):
        return

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return SLOW_FIRST.index(path) if path in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order
