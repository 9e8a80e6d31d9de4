"""How the CLI finds and talks to a server: URL and token from flags, environment or home."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from skypanda.domain.states import TASK_FINAL
from skypanda.pilot.client import ApiClient, ApiError
from skypanda.runtime.local import default_home

FINAL_TASK_STATES = {str(s) for s in TASK_FINAL}


def find_server(server: str | None, home: Path) -> str:
    if server:
        return server
    if os.environ.get("SKYPANDA_SERVER"):
        return os.environ["SKYPANDA_SERVER"]
    info = home / "server.json"
    if info.exists():
        return str(json.loads(info.read_text())["url"])
    raise click.ClickException(
        f"no server: start one with `skypanda up`, or pass --server / set SKYPANDA_SERVER "
        f"(looked for {info})"
    )


def find_token(home: Path) -> str | None:
    if os.environ.get("SKYPANDA_TOKEN"):
        return os.environ["SKYPANDA_TOKEN"]
    path = home / "token"
    return path.read_text().strip() if path.exists() else None


def client(server: str | None, home: Path | None = None) -> ApiClient:
    home = home or default_home()
    return ApiClient(find_server(server, home), find_token(home))


def call(api: ApiClient, method: str, path: str, body: Any = None, **kw: Any) -> Any:
    """An API call whose errors become a one-line CLI error (exit 1; 2 for bad input)."""
    try:
        return api.call(method, path, body, **kw)
    except ApiError as e:
        if e.status in (400, 422):
            raise BadInput(e.message) from e
        raise click.ClickException(e.message) from e


class BadInput(click.ClickException):
    """Refused input: exit code 2, like a bad task file."""

    exit_code = 2
