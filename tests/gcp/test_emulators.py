"""A missing emulator is reported with the path that was expected, not a stack trace later."""

from __future__ import annotations

from pathlib import Path

import pytest

from skypanda.runtime import emulators
from skypanda.runtime.emulators import EmulatorMissing


@pytest.mark.parametrize(
    ("start", "attr", "name"),
    [
        (emulators.firestore, "FIRESTORE_BIN", "firestore"),
        (emulators.pubsub, "PUBSUB_BIN", "pubsub"),
    ],
)
def test_missing_emulator_names_the_expected_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, start: object, attr: str, name: str
) -> None:
    # Given no emulator host in the environment and no emulator installed
    monkeypatch.delenv(f"{name.upper()}_EMULATOR_HOST", raising=False)
    missing = tmp_path / "nowhere" / name
    monkeypatch.setattr(emulators, attr, missing)
    # When it is asked for, Then the error names the path and how to get it
    assert callable(start)
    with pytest.raises(EmulatorMissing) as err:
        start()
    assert str(missing) in err.value.message and "Google Cloud CLI" in err.value.message
