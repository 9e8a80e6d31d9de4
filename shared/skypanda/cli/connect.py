"""How the CLI finds and talks to a server: URL and token from flags, environment or home."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from skypanda.cli import oidc_client
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
    """The bearer token to send: `SKYPANDA_TOKEN`; else the OIDC login in `<home>/oidc.json`
    (refreshed first when it is about to expire); else the token in `<home>/token`.

    Raises:
        click.ClickException: the OIDC login expired and could not be refreshed.
    """
    return find_credential(home)[0]


def find_credential(home: Path) -> tuple[str | None, str]:
    """The token `find_token` picks, and where it came from (for `skypanda whoami`)."""
    if os.environ.get("SKYPANDA_TOKEN"):
        return os.environ["SKYPANDA_TOKEN"], "the SKYPANDA_TOKEN variable"
    try:
        token = oidc_client.current_token(home)
    except oidc_client.LoginError as e:
        raise click.ClickException(e.message) from e
    if token is not None:
        return token, f"the OIDC login in {home / oidc_client.SESSION_FILE}"
    path = home / "token"
    if path.exists():
        return path.read_text().strip(), f"the token in {path}"
    return None, "no token"


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
