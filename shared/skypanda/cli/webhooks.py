"""`skypanda webhooks add|list|remove|secret|deliveries`: where your tasks' and workflows'
notifications (their ends, and what they opted in to) are POSTed (signed with your secret;
see `skypanda.notifications.verify`)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import click

from skypanda.cli.connect import call, client

if TYPE_CHECKING:  # annotations only: the models load when a file is read
    from skypanda.domain.models import TaskSpec
    from skypanda.domain.workflow import WorkflowSpec

SERVER = click.option(
    "--server",
    envvar="SKYPANDA_SERVER",
    help="Server URL (default: the one `skypanda up` started).",
)
AS_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
# `skypanda submit`'s notification options (`notifying` applies them to the file's spec)
NOTIFY = click.option(
    "--notify",
    multiple=True,
    metavar="URL",
    help="POST a signed CloudEvent to URL when it ends (repeatable; added to the file's "
    "`notify:`). Verify with your secret: `skypanda webhooks secret`.",
)
NOTIFY_ON_VALUES = ("end", "job_end", "state")
"""`domain.notifications.NotifyOn`, named here so that starting the CLI imports no domain model
(tests/unit/test_cli_startup.py checks they are equal)."""
NOTIFY_ON = click.option(
    "--notify-on",
    multiple=True,
    type=click.Choice(NOTIFY_ON_VALUES),
    help="What is told (repeatable; replaces the file's `notify_on:`; default end): its end, "
    "each job's end (job_end), each change of its status (state).",
)


def notifying(
    spec: TaskSpec | WorkflowSpec, urls: tuple[str, ...], on: tuple[str, ...] = ()
) -> TaskSpec | WorkflowSpec:
    """The spec with the --notify URLs added to its `notify:` (each once), and --notify-on
    (if given) as its `notify_on:`.

    Raises:
        click.UsageError: the result is not a valid spec (a bad URL, too many).
    """
    if not urls and not on:
        return spec
    data = spec.model_dump(mode="json", by_alias=True)
    data["notify"] = list(dict.fromkeys([*data.get("notify", []), *urls]))
    if on:
        data["notify_on"] = list(on)
    try:
        return type(spec).model_validate(data)
    except ValueError as e:
        raise click.UsageError(f"--notify: {e}") from e


@click.group()
def webhooks() -> None:
    """Webhooks: URLs told (signed CloudEvents) when your tasks and workflows end."""


@webhooks.command()
@click.argument("url")
@click.option("--owner", help="Another owner's (admins).")
@click.option("--task", "task_id", metavar="ID", help="Only for this task (yours).")
@click.option("--workflow", "workflow_id", metavar="ID", help="Only for this workflow (yours).")
@AS_JSON
@SERVER
def add(
    url: str,
    owner: str | None,
    task_id: str | None,
    workflow_id: str | None,
    as_json: bool,
    server: str | None,
) -> None:
    """Register URL for every notification of your tasks and workflows (or, with --task or
    --workflow, of that one, as if it were in its `notify:`); prints your signing secret."""
    if task_id and workflow_id:
        raise click.UsageError("--task or --workflow, not both")
    scope = {"task_id": task_id} if task_id else {"workflow_id": workflow_id} if workflow_id else {}
    body = {"url": url, **({"owner": owner} if owner else {}), **scope}
    hook = call(client(server), "POST", "/v1/webhooks", body)
    if as_json:
        click.echo(json.dumps(hook))
        return
    on = f" (only {hook['subject']})" if hook.get("subject") else ""
    click.echo(f"webhook {hook['id']} added: {hook['url']}{on}")
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
        click.echo(f"{h['id']:<16} {h['owner']:<12} {h.get('subject') or '*':<28} {h['url']}")


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
