"""How the CLI finds and talks to a server: URL and token from flags, environment or home."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import IO, Any

import click

from skypanda.cli import oidc_client
from skypanda.cli.lazy import load_module
from skypanda.domain.states import TASK_FINAL
from skypanda.pilot.client import ApiClient, ApiError
from skypanda.runtime.home import default_home, make_home

FINAL_TASK_STATES = {str(s) for s in TASK_FINAL}


SERVER_FILE = "server.json"
LOCK_FILE = "server.lock"


class HomeInUse(click.ClickException):
    """Another skypanda server (or `skypanda run`) holds this home."""


def hold_home(home: Path) -> IO[str]:
    """Take the home's lock for as long as the returned file stays open (the process's life:
    the kernel drops an flock when its holder exits, even killed, so a crash leaves no stale
    lock). One server per home: two would share one SQLite store and one `server.json`.

    Raises:
        HomeInUse: naming the running server's URL and pid.
    """
    try:
        make_home(home)
    except OSError as e:
        raise click.ClickException(f"cannot use home {home}: {e.strerror or e}") from e
    path = home / LOCK_FILE
    try:
        f = open(path, "a+")  # noqa: SIM115 (held open on purpose: the lock lives with it)
    except OSError as e:
        raise click.ClickException(f"cannot use home {home}: {e.strerror or e}") from e
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise HomeInUse(
            f"{home} is in use by a skypanda server: {holder}. Stop it first (Ctrl-C in its "
            f"terminal), talk to it (every command finds it), or use another home "
            f"(SKYPANDA_HOME=DIR)"
        ) from e
    _describe_holder(f, f"pid {os.getpid()}, starting")
    return f


def _describe_holder(lock: IO[str], text: str) -> None:
    lock.seek(0)
    lock.truncate()
    lock.write(text + "\n")
    lock.flush()


def publish_server(lock: IO[str], home: Path, info: dict[str, Any]) -> Path:
    """Write `<home>/server.json` (how the other commands find the server), and name the
    server in the lock file (what a second `skypanda up` reports)."""
    path = home / SERVER_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(path)
    _describe_holder(lock, f"{info['url']} (pid {info['pid']})")
    return path


def find_server(server: str | None, home: Path) -> str:
    if server:
        return server
    if os.environ.get("SKYPANDA_SERVER"):
        return os.environ["SKYPANDA_SERVER"]
    info = home / SERVER_FILE
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


def home_is_live(home: Path) -> bool:
    """Whether a server (or a `skypanda run`) holds `home` now."""
    path = home / LOCK_FILE
    if not path.exists():
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
    return False


def reader(server: str | None, home: str | None) -> Any:
    """The client of a command that only reads: the server's; with `home` (--home), the
    server running on that home, else the home read directly, without a server (saying so on
    stderr).

    Raises:
        click.ClickException: `home` holds no skypanda state.
    """
    if home is None:
        return client(server)
    path = Path(home)
    if server is None and (path / SERVER_FILE).exists() and home_is_live(path):
        return client(None, path)
    offline = load_module("skypanda.cli.offline", "reading a home")
    try:
        found = offline.HomeReader(path, find_token(path))
    except ApiError as e:
        raise click.ClickException(e.message) from e
    click.echo(f"(read from {path} directly, without a server: read-only)", err=True)
    return found


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
