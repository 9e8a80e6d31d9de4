"""The everyday commands start light: importing the CLI loads no server stack and no domain
model (the budget `skypanda bench cli` measures: 0.3 s)."""

from __future__ import annotations

import subprocess
import sys

SERVER_STACK = (
    "pydantic",
    "yaml",
    "skypanda.domain.models",
    "skypanda.domain.events",
    "flask",
    "werkzeug",
    "waitress",
    "sqlite3",
    "skypanda.runtime.local",
    "skypanda.adapters.local.sqlite",
    "skypanda.api.app",
    "skypanda.handlers.pipeline",
)


def test_importing_the_cli_loads_no_server_stack() -> None:
    # When the CLI module is imported (every `skypanda status` and `--version` does it)
    code = (
        "import sys, skypanda.cli.main\n"
        f"print(','.join(m for m in {SERVER_STACK!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    # Then none of them was loaded (they load when a file is read or a system started)
    assert done.stdout.strip() == ""


def test_the_choices_named_in_the_cli_are_the_domains() -> None:
    # The CLI names a few choices itself, so that its --help needs no domain module
    from skypanda.cli.main import DAG_FORMATS
    from skypanda.cli.webhooks import NOTIFY_ON_VALUES
    from skypanda.domain.export import FORMATS
    from skypanda.domain.notifications import NotifyOn

    assert DAG_FORMATS == FORMATS
    assert tuple(str(n) for n in NotifyOn) == NOTIFY_ON_VALUES
