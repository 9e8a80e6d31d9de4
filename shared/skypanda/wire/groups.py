"""The process groups a pilot's payloads run in, recorded as files, so that whoever outlives a
dead pilot (the local launcher) can kill what it left running."""

from __future__ import annotations

import os
import signal
from pathlib import Path

GROUPS_DIR = ".payload-groups"
"""Under a pilot's work directory: one empty file per live payload process group, named by
its id."""


def kill_recorded_groups(groups: Path) -> int:
    """SIGKILL the process groups a dead pilot recorded in `groups`; returns how many lived."""
    killed = 0
    if not groups.is_dir():
        return 0
    for entry in groups.iterdir():
        if entry.name.isdigit():
            try:
                os.killpg(int(entry.name), signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        entry.unlink(missing_ok=True)
    return killed
