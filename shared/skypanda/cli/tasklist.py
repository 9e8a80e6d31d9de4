"""`skypanda tasks` and `skypanda workflows`: find your work (PanDA pbook's `show`).

Yours by default (the server says who you are: GET /v1/whoami), newest first, one page at a
time (`--cursor` from the previous page's last line), filtered by state, name prefix, owner
and age on the server (GET /v1/tasks and /v1/workflows with `owner`, `status`, `name`,
`since`, `until`, `cursor`, `limit`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import click

from skypanda.cli.audit import parse_since
from skypanda.cli.connect import call, client
from skypanda.cli.render import _when


def _options(states: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def apply(f: Callable[..., None]) -> Callable[..., None]:
        decorators = [
            click.option(
                "--status", "statuses", multiple=True, metavar="STATE",
                help=f"Only in this state (repeatable): {states}.",
            ),
            click.option("--name", metavar="PREFIX", help="Only those whose name starts so."),
            click.option(
                "--owner", metavar="NAME",
                help="Someone else's (default: yours, as the server knows you).",
            ),
            click.option("--all", "everyone", is_flag=True, help="Everyone's, not only yours."),
            click.option(
                "--since", metavar="AGE",
                help="Only those made this recently: 30m, 2h, 7d, or a date.",
            ),
            click.option(
                "--until", metavar="AGE", help="Only those made before: 2h (ago), or a date."
            ),
            click.option(
                "--limit", default=20, show_default=True, type=click.IntRange(1, 1000),
                help="How many per page.",
            ),
            click.option("--cursor", metavar="CURSOR", help="The next page (from the last line)."),
            click.option(
                "--json", "as_json", is_flag=True, help="Print JSON: the page and `next`."
            ),
            click.option(
                "--server", envvar="SKYPANDA_SERVER",
                help="Server URL (default: the one `skypanda up` started).",
            ),
        ]  # fmt: skip
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


def fetch(kind: str, server: str | None, **opts: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """One page of `kind` ("tasks" or "workflows") and the query parameters asked."""
    api = client(server)
    if opts["owner"] and opts["everyone"]:
        raise click.UsageError("--owner and --all: choose one")
    owner = opts["owner"]
    if owner is None and not opts["everyone"]:
        owner = call(api, "GET", "/v1/whoami")["name"]
    now = time.time()
    params: dict[str, Any] = {
        "owner": owner,
        "status": ",".join(opts["statuses"]) or None,
        "name": opts["name"],
        "since": _moment(opts["since"], now, "--since"),
        "until": _moment(opts["until"], now, "--until"),
        "limit": opts["limit"],
        "cursor": opts["cursor"],
    }
    return call(api, "GET", f"/v1/{kind}", params=params), params


def _moment(value: str | None, now: float, flag: str) -> str | None:
    if value is None:
        return None
    try:
        return str(int(parse_since(value, now)))
    except click.BadParameter as e:
        raise click.BadParameter(e.message, param_hint=flag) from e


def _more(page: dict[str, Any]) -> str:
    if not page.get("next"):
        return ""
    return f"more: the same command with --cursor {page['next']}"


@click.command()
@_options("pending, registered, ready, running, paused, done, finished, failed, aborted, ...")
def tasks(server: str | None, as_json: bool, **opts: Any) -> None:
    """List tasks: yours by default, newest first, a page at a time."""
    page, params = fetch("tasks", server, **opts)
    if as_json:
        click.echo(json.dumps({"tasks": page["tasks"], "next": page.get("next")}))
        return
    who = params["owner"] or "everyone"
    rows = [
        f"{'TASK':<14} {'NAME':<24} {'STATUS':<10} {'PRIO':>4} {'JOBS':>6} {'CREATED':<19} OWNER"
    ]
    for t in page["tasks"]:
        rows.append(
            f"{t['id']:<14} {t['spec']['name'][:24]:<24} {t['status']:<10} "
            f"{t['spec']['priority']:>4} {t['n_jobs']:>6} {_when(t['created_at']):<19} {t['owner']}"
        )
    if not page["tasks"]:
        rows = [f"no task of {who} matches"]
    click.echo("\n".join(r for r in [*rows, _more(page)] if r))


@click.command()
@_options("registered, running, done, failed, aborted, skipped")
def workflows(server: str | None, as_json: bool, **opts: Any) -> None:
    """List workflows: yours by default, newest first, a page at a time."""
    page, params = fetch("workflows", server, **opts)
    if as_json:
        click.echo(json.dumps({"workflows": page["workflows"], "next": page.get("next")}))
        return
    who = params["owner"] or "everyone"
    rows = [f"{'WORKFLOW':<14} {'NAME':<24} {'STATUS':<10} {'TASKS':>5} {'CREATED':<19} OWNER"]
    for w in page["workflows"]:
        rows.append(
            f"{w['id']:<14} {w['spec']['name'][:24]:<24} {w['status']:<10} "
            f"{len(w['spec']['tasks']):>5} {_when(w['created_at']):<19} {w['owner']}"
        )
    if not page["workflows"]:
        rows = [f"no workflow of {who} matches"]
    click.echo("\n".join(r for r in [*rows, _more(page)] if r))


COMMANDS = (tasks, workflows)
