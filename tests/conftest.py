"""Session-wide emulators for the tests that need Google Cloud services.

Each emulator starts on 127.0.0.1 the first time a test asks for it and stops at the end of the
session. When an emulator is not installed, the tests that need it fail with a message naming
the expected path (they are not skipped: CI must not pass silently without them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

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
