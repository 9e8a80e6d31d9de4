"""`skypanda webhooks add|list|remove|secret|deliveries`: where your tasks' and workflows'
ends are POSTed (signed with your secret; see `skypanda.notifications.verify`)."""

from __future__ import annotations

import json
import time

import click

from skypanda.cli.connect import call, client

SERVER = click.option(
    "--server", envvar="SKYPANDA_SERVER", help="Server URL (default: `skypanda up`'s)."
)
AS_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group()
def webhooks() -> None:
    """Webhooks: URLs told (signed CloudEvents) when your tasks and workflows end."""


@webhooks.command()
@click.argument("url")
@click.option("--owner", help="Another owner's (admins).")
@AS_JSON
@SERVER
def add(url: str, owner: str | None, as_json: bool, server: str | None) -> None:
    """Register URL for every end of your tasks and workflows; prints your signing secret."""
    body = {"url": url, **({"owner": owner} if owner else {})}
    hook = call(client(server), "POST", "/v1/webhooks", body)
    if as_json:
        click.echo(json.dumps(hook))
        return
    click.echo(f"webhook {hook['id']} added: {hook['url']}")
    click.echo(f"signing secret of {hook['owner']} (keep it private): {hook['secret']}")


@webhooks.command(name="list")
@click.option("--owner", help="Another owner's (admins; without it an admin sees all).")
@AS_JSON
@SERVER
def list_(owner: str | None, as_json: bool, server: str | None) -> None:
    """Your webhooks."""
    hooks = call(client(server), "GET", "/v1/webhooks", params={"owner": owner} if owner else {})
    if as_json:
        click.echo(json.dumps(hooks))
        return
    for h in hooks:
        click.echo(f"{h['id']:<16} {h['owner']:<12} {h['url']}")


@webhooks.command()
@click.argument("hook_id", metavar="ID")
@SERVER
def remove(hook_id: str, server: str | None) -> None:
    """Remove a webhook."""
    call(client(server), "DELETE", f"/v1/webhooks/{hook_id}")
    click.echo(f"webhook {hook_id} removed")


@webhooks.command()
@click.option("--rotate", is_flag=True, help="Make a new secret (the old one stops at once).")
@click.option("--owner", help="Another owner's (admins).")
@SERVER
def secret(rotate: bool, owner: str | None, server: str | None) -> None:
    """Print your signing secret (the same for all your webhooks and `notify:` URLs)."""
    body = {"rotate": rotate, **({"owner": owner} if owner else {})}
    click.echo(call(client(server), "POST", "/v1/webhooks/secret", body)["secret"])


@webhooks.command()
@click.option("--subject", help="Only for tasks/ID or workflows/ID.")
@click.option("--limit", type=int, default=20, show_default=True)
@AS_JSON
@SERVER
def deliveries(subject: str | None, limit: int, as_json: bool, server: str | None) -> None:
    """The latest deliveries with their attempts (time, HTTP status or error, duration)."""
    params: dict[str, str] = {"limit": str(limit), **({"subject": subject} if subject else {})}
    found = call(client(server), "GET", "/v1/webhooks/deliveries", params=params)
    if as_json:
        click.echo(json.dumps(found))
        return
    for d in found:
        click.echo(f"{d['subject']:<28} {d['state']:<9} {d['url']}")
        for a in d["attempts"]:
            when = time.strftime("%H:%M:%S", time.localtime(a["at"]))
            got = a["status"] if a["status"] is not None else a["error"]
            click.echo(f"    {when}  {got}  {a['duration_s']:.3f} s")
