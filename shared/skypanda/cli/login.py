"""`skypanda login | logout | whoami`: the credential the CLI sends, kept in `$SKYPANDA_HOME`.

Two kinds of login:

- a token (`skypanda login --token`): a local user's token (printed by `skypanda users add`)
  or any bearer token the server accepts. It is read from standard input when that is not a
  terminal, else asked for without echo (never an argument: those show in `ps` and shell
  history), checked against the server, and only then kept in `<home>/token`.
- an OIDC login (`skypanda login --oidc`, the default when SKYPANDA_OIDC_ISSUER is set): the
  device authorization grant with the issuer (`oidc_client`), kept in `<home>/oidc.json` and
  refreshed by every command when it is about to expire.

Each command sends SKYPANDA_TOKEN if it is set, else the OIDC login, else the token file
(`connect.find_token`). Both files are written atomically with mode 0600.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from skypanda.adapters.local.private import write_private
from skypanda.cli import oidc_client
from skypanda.cli.connect import BadInput, find_credential, find_server
from skypanda.cli.oidc_client import Client, LoginError
from skypanda.pilot.client import ApiClient, ApiError
from skypanda.runtime.home import default_home

SLEEP: Callable[[float], None] = time.sleep
"""How the device login waits between polls (tests replace it: they never sleep)."""

server_opt = click.option(
    "--server",
    envvar="SKYPANDA_SERVER",
    help="Server URL (default: the one `skypanda up` started).",
)


class Refused(click.ClickException):
    """The server refused the token (HTTP 401)."""


def _describe(me: dict[str, Any]) -> str:
    return f"{me.get('name')} ({', '.join(me.get('roles') or []) or 'no role'})"


def _usage(usage: dict[str, Any], limits: dict[str, Any]) -> str:
    """What the caller has under way against the limits, e.g. "under way: 3 tasks of at most
    5,000, 120 jobs of at most 5,000,000"."""

    def part(what: str) -> str:
        n, limit = usage.get(what, 0), limits.get(what)
        return f"{n:,} {what}" + ("" if limit is None else f" of at most {limit:,}")

    return f"under way: {part('tasks')}, {part('jobs')}"


def check(url: str, token: str) -> str:
    """Who the server at `url` takes `token` for, e.g. "alice (user)".

    Raises:
        Refused: the server answered 401 (every route authenticates, even /v1/health).
        ApiError: any other failure, e.g. the server cannot be reached (status 0).
    """
    api = ApiClient(url, token, timeout=10, retries=2, retry_budget_s=10)
    try:
        api.call("GET", "/v1/health")
    except ApiError as e:
        if e.status == 401:
            raise Refused(f"the server at {url} refused the token: {e.message}") from e
        raise
    try:
        return _describe(api.call("GET", "/v1/whoami"))
    except ApiError as e:
        if e.status == 404:  # an older server: the token works, the name is unknown
            return "a user this server does not name"
        raise


def _warn_if_overridden() -> None:
    if os.environ.get("SKYPANDA_TOKEN"):
        click.echo(
            "note: SKYPANDA_TOKEN is set: commands send it instead until you unset it", err=True
        )


def _forget_oidc(home: Path) -> bool:
    """Delete `<home>/oidc.json` after asking the issuer to revoke its refresh token (best
    effort); True when there was one."""
    try:
        session = oidc_client.load(home)
    except LoginError:
        session = None  # unreadable: delete it all the same
    path = home / oidc_client.SESSION_FILE
    if session is not None and oidc_client.revoke(session):
        click.echo(f"the issuer {session.issuer} revoked the refresh token", err=True)
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


def _read_token() -> str:
    if sys.stdin.isatty():
        token = str(click.prompt("Token", hide_input=True, err=True)).strip()
    else:
        token = sys.stdin.readline().strip()
    if not token or any(c.isspace() for c in token):
        raise BadInput("no token given (one line, on standard input or at the prompt)")
    return token


def login_with_token(home: Path, server: str | None) -> None:
    """Check a token with the server, then keep it in `<home>/token` (see the module doc)."""
    url = find_server(server, home)  # first: no token typed in vain
    token = _read_token()
    try:
        who = check(url, token)
    except Refused as e:
        raise click.ClickException(f"{e.message}; nothing stored") from e
    except ApiError as e:
        raise click.ClickException(
            f"cannot check the token with the server at {url}: {e.message}; nothing stored"
        ) from e
    path = home / "token"
    if path.exists() and path.read_text().strip() != token:
        click.echo(
            f"replacing the token that was in {path} (if it was this machine's first admin's, "
            "`skypanda users add NAME --role admin` makes another)",
            err=True,
        )
    write_private(path, token + "\n")
    if _forget_oidc(home):  # it would be sent before the token file
        click.echo("the OIDC login was removed: this token is used from now on", err=True)
    click.echo(f"logged in as {who} at {url}; token kept in {path}")
    _warn_if_overridden()


def _device_login(client: Client, scopes: list[str], use_id_token: bool | None,
                  audience: str) -> oidc_client.Session:  # fmt: skip
    endpoints = oidc_client.discover(client.issuer)
    code = oidc_client.request_device_code(client, endpoints, scopes)
    click.echo(f"To log in, open this page and approve the code {code.user_code}:", err=True)
    click.echo(f"  {code.verification_uri_complete or code.verification_uri}", err=True)
    click.echo(f"Waiting for the approval (the code expires in {code.expires_in:g} s)", err=True)
    answer = oidc_client.poll_token(
        code, lambda: oidc_client.token_request(client, endpoints, code), sleep=SLEEP
    )
    use = oidc_client.choose_token(answer, audience, use_id_token)
    return oidc_client.new_session(client, endpoints, answer, use, time.time())


def login_with_oidc(home: Path, server: str | None, client: Client, scopes: list[str],
                    use_id_token: bool | None, audience: str) -> None:  # fmt: skip
    """Log in at the issuer, check the token with the server when one is known, keep it."""
    try:
        session = _device_login(client, scopes, use_id_token, audience)
    except LoginError as e:
        raise click.ClickException(e.message) from e
    try:
        url: str | None = find_server(server, home)
    except click.ClickException:
        url = None
    who = "(not checked: no server known)"
    if url is not None:
        try:
            who = check(url, session.bearer)
        except Refused as e:
            hint = "--use-access-token" if session.use == "id_token" else "--use-id-token"
            raise click.ClickException(
                f"{e.message}; nothing stored (does SKYPANDA_OIDC_AUDIENCE match the server's? "
                f"try {hint})"
            ) from e
        except ApiError as e:
            who = f"(not checked: {e.message})"
    path = oidc_client.save(home, session)
    at = f" at {url}" if url else ""
    click.echo(f"logged in as {who}{at} with {session.issuer}; kept in {path}")
    _warn_if_overridden()


@click.command()
@click.option("--token", "mode", flag_value="token",
              help="Log in with a token (from `skypanda users add`, or any bearer token the "
                   "server accepts), read from standard input or asked for.")  # fmt: skip
@click.option("--oidc", "mode", flag_value="oidc",
              help="Log in at the OIDC issuer with a code approved in a browser "
                   "(the default when an issuer is configured).")  # fmt: skip
@click.option("--issuer", envvar="SKYPANDA_OIDC_ISSUER", help="The OIDC issuer URL.")
@click.option("--client-id", envvar="SKYPANDA_OIDC_CLIENT_ID",
              help="This CLI's client id at the issuer (default: the audience).")  # fmt: skip
@click.option("--client-secret", envvar="SKYPANDA_OIDC_CLIENT_SECRET",
              help="Only for an issuer that wants one; prefer the variable (arguments show in "
                   "`ps`). Kept in oidc.json (0600) to refresh.")  # fmt: skip
@click.option("--audience", envvar="SKYPANDA_OIDC_AUDIENCE",
              help="The server's audience (its SKYPANDA_OIDC_AUDIENCE).")  # fmt: skip
@click.option("--scope", "scopes", multiple=True, envvar="SKYPANDA_OIDC_SCOPES",
              help="Another scope than `openid profile offline_access` (repeatable).")  # fmt: skip
@click.option("--use-id-token/--use-access-token", default=None,
              help="Which token to send (default: the access token when it is a JWT for the "
                   "audience, else the ID token).")  # fmt: skip
@server_opt
def login(
    mode: str | None,
    issuer: str | None,
    client_id: str | None,
    client_secret: str | None,
    audience: str | None,
    scopes: tuple[str, ...],
    use_id_token: bool | None,
    server: str | None,
) -> None:
    """Log in: with the OIDC issuer (a code approved in a browser), or with a token.

    The login is kept in $SKYPANDA_HOME (oidc.json or token, mode 0600) and sent by every
    command; SKYPANDA_TOKEN, when set, goes first. A token is checked with the server before
    it is kept; `--token` also ends an OIDC login.

    \b
      skypanda login                       # OIDC, when SKYPANDA_OIDC_ISSUER is set
      skypanda users add bob | skypanda login --token
    """
    home = default_home()
    if (mode or ("oidc" if issuer else "token")) == "token":
        login_with_token(home, server)
        return
    if not issuer:
        raise click.UsageError("no OIDC issuer: pass --issuer or set SKYPANDA_OIDC_ISSUER")
    client_id = client_id or audience
    if not client_id:
        raise click.UsageError(
            "no client id: pass --client-id or set SKYPANDA_OIDC_CLIENT_ID (or _AUDIENCE)"
        )
    client = Client(issuer, client_id, client_secret or None)
    login_with_oidc(home, server, client, list(scopes), use_id_token, audience or client_id)


@click.command()
@click.option("--all", "everything", is_flag=True,
              help="Also delete $SKYPANDA_HOME/token (see above).")  # fmt: skip
def logout(everything: bool) -> None:
    """Forget the OIDC login: delete $SKYPANDA_HOME/oidc.json, after asking the issuer to
    revoke its refresh token.

    The token file ($SKYPANDA_HOME/token) is kept unless --all: on the machine where
    `skypanda up` first ran it is the first admin's token, and once deleted no command can act
    as that admin (`skypanda users add NAME --role admin` there makes a new one). SKYPANDA_TOKEN
    is not touched: unset it yourself.
    """
    home = default_home()
    forgot = _forget_oidc(home)
    click.echo(f"{'removed' if forgot else 'no'} OIDC login in {home / 'oidc.json'}", err=True)
    token = home / "token"
    if everything and token.exists():
        token.unlink()
        click.echo(f"removed the token in {token}", err=True)
    elif token.exists():
        click.echo(f"kept the token in {token} (--all removes it)", err=True)
    if os.environ.get("SKYPANDA_TOKEN"):
        click.echo("SKYPANDA_TOKEN is still set: commands still send it", err=True)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@server_opt
def whoami(as_json: bool, server: str | None) -> None:
    """Who the server takes you for: your name, your roles, and which credential said so."""
    home = default_home()
    token, source = find_credential(home)
    url = find_server(server, home)
    try:
        me = ApiClient(url, token).call("GET", "/v1/whoami")
    except ApiError as e:
        hint = "; run `skypanda login`" if e.status == 401 else ""
        raise click.ClickException(f"{url} with {source}: {e.message}{hint}") from e
    if as_json:
        click.echo(json.dumps({**me, "server": url, "credential": source}))
    else:
        click.echo(f"{_describe(me)} at {url}, by {source}")
        if isinstance(me.get("usage"), dict):
            click.echo(_usage(me["usage"], me.get("limits") or {}))


COMMANDS = (login, logout, whoami)
