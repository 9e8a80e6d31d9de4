"""The pilot's command line in the look of the `skypanda` click commands, with argparse.

The pilot needs only the Python standard library (it ships as one file, `pilot.pyz`, that any
`python3` runs), so it cannot use click like the rest of the CLI. `ClickLookParser` gives
argparse click's look: `Usage:` and `Options:` headings, indented text, `[default: X]` and
`[env var: NAME]` after each option's help, and click's error format (usage, a hint, then
`Error: ...`, exit 2).

Standard library only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import textwrap
from typing import Any, NoReturn

WIDTH = min(shutil.get_terminal_size((80, 24)).columns, 80) - 2


class ClickLookFormatter(argparse.HelpFormatter):
    """Help laid out like click's: headings capitalised, text indented by two spaces."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, indent_increment=2, max_help_position=30, width=WIDTH)

    def add_usage(self, usage: Any, actions: Any, groups: Any, prefix: str | None = None) -> None:
        super().add_usage(usage, actions, groups, "Usage: ")

    def _format_text(self, text: str) -> str:  # description and epilog: indented paragraphs
        paragraphs = [" ".join(p.split()) for p in text.strip().split("\n\n")]
        wrapped = (
            textwrap.fill(p, WIDTH, initial_indent="  ", subsequent_indent="  ") for p in paragraphs
        )
        return "\n\n".join(wrapped) + "\n\n"


class ClickLookParser(argparse.ArgumentParser):
    """An ArgumentParser whose help and errors look like the click commands'. Add options with
    `option()`: it shows each default and environment variable, as click's `show_default`."""

    def __init__(self, prog: str, description: str, epilog: str) -> None:
        super().__init__(
            prog=prog, usage="%(prog)s [OPTIONS]", description=description, epilog=epilog,
            formatter_class=ClickLookFormatter, add_help=False,
        )  # fmt: skip
        self.options = self.add_argument_group("Options")

    def option(
        self, *flags: str, env: str | None = None, default: Any = None, help: str, **kw: Any
    ) -> None:
        """Add an option whose default is `$env` when set, else `default`; its help ends with
        `[env var: ENV; default: DEFAULT]` (each part when there is one)."""
        notes = [f"env var: {env}"] if env else []
        if default is not None:
            notes.append(
                f"default: {default:g}" if isinstance(default, float) else f"default: {default}"
            )
        value = (os.environ.get(env) if env else None) or default
        text = f"{help}  [{'; '.join(notes)}]" if notes else help
        self.options.add_argument(*flags, default=value, help=text, **kw)

    def finish(self) -> None:
        """Add --help last (click lists it last)."""
        self.options.add_argument("--help", action="help", help="Show this message and exit.")

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"Try '{self.prog} --help' for help.\n\nError: {message}\n")
