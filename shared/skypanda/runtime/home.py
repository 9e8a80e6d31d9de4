"""Where a user's skypanda state lives (the home), and making it private.

Light on purpose (standard library only): every everyday CLI command needs the home, and
importing `runtime.local` for it would load the whole embedded system (SQLite store, Flask
app, waitress), several times the start-up budget of `skypanda status`.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_home() -> Path:
    """`$SKYPANDA_HOME`, else `~/.skypanda`."""
    return Path(os.environ.get("SKYPANDA_HOME") or Path.home() / ".skypanda").expanduser()


def make_home(home: Path) -> None:
    """`home`, private: others may pass through it (0711: a pilot's payloads running as
    another user reach their job directories under `work/`) but not list it, and everything
    skypanda writes in it is 0600 (files) or 0700 (directories)."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if home.stat().st_uid == os.geteuid():
        home.chmod(0o711)
