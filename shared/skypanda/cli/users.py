"""`skypanda users add|list|revoke`: the users of this machine's skypanda (`$SKYPANDA_HOME`).

They edit `$SKYPANDA_HOME/users.json` directly (only its owner can: mode 0600); a running
server sees the change at its next request. A new user's token is printed once.
"""

from __future__ import annotations

import json
import time

import click

from skypanda.adapters.local.tokens import LocalTokens
from skypanda.domain.errors import SkypandaError
from skypanda.domain.identity import parse_role
from skypanda.runtime.home import default_home


def _tokens() -> LocalTokens:
    from skypanda.runtime.local import ensure_identity  # the whole embedded system: when used

    return ensure_identity(default_home())[0]


@click.group()
def users() -> None:
    """Who may use this skypanda: users, admins, pilots and launchers, by token."""


@users.command("add")
@click.argument("name")
@click.option(
    "--role",
    default="user",
    show_default=True,
    help="user (own tasks), admin (everything), pilot, launcher (register pilots only), "
    "monitor (reads, and GET /metrics: a Prometheus scraper).",
)
def add(name: str, role: str) -> None:
    """Make a user and print its token (shown this once; only its hash is kept)."""
    try:
        token = _tokens().add(name, parse_role(role))
    except SkypandaError as e:
        raise click.ClickException(e.message) from e
    click.echo(token)
    click.echo(
        f"user {name} ({role}) added; give them this token (SKYPANDA_TOKEN, or their "
        "$SKYPANDA_HOME/token): it is not shown again",
        err=True,
    )


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(as_json: bool) -> None:
    """Users, their roles, and whether they were revoked (tokens are never shown)."""
    found = _tokens().users()
    if as_json:
        keep = ("name", "role", "created_at", "revoked_at")
        click.echo(json.dumps([{k: getattr(u, k) for k in keep} for u in found]))
        return
    for u in found:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(u.created_at))
        state = "revoked" if u.revoked_at is not None else "active"
        click.echo(f"{u.name:<24} {u.role!s:<9} {state:<8} since {when}")


@users.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke a user's token (at the server's next request)."""
    try:
        _tokens().revoke(name)
    except SkypandaError as e:
        raise click.ClickException(e.message) from e
    click.echo(f"user {name} revoked", err=True)
