"""`skypanda audit`: who did what to which task or workflow, when and from where (admins)."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from typing import Any

import click

from skypanda.cli.connect import call, client

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
PAGE = 500


def parse_since(value: str, now: float) -> float:
    """`30m`, `2h`, `7d` ago, or an ISO date/time (local time unless it says otherwise).

    Raises:
        click.BadParameter: naming the forms accepted.
    """
    if m := re.fullmatch(r"(\d+)([smhd])", value.strip()):
        return now - int(m[1]) * UNITS[m[2]]
    try:
        return dt.datetime.fromisoformat(value).timestamp()
    except ValueError as e:
        raise click.BadParameter(
            f"{value!r}: give an age (30m, 2h, 7d) or a date (2026-12-01, 2026-12-01T08:00)"
        ) from e


def _line(e: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"]))
    target = f"{e['target_kind']} {e['target_id']}" if e["target_id"] else "-"
    return (
        f"{when}  {e['actor']:<16} {e['action']:<15} {target:<34} "
        f"{e['outcome']:<7} {e['status']}  {e['remote'] or '-':<15} {e['detail'][:80]}"
    )


@click.command()
@click.option("--target", "--task", "--workflow", "target", help="Only entries about this id.")
@click.option("--actor", help="Only what this user did.")
@click.option("--since", help="Only entries this recent: 30m, 2h, 7d, or a date.")
@click.option("--limit", default=50, show_default=True, help="How many entries (newest first).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines, one entry each.")
@click.option(
    "--server",
    envvar="SKYPANDA_SERVER",
    help="Server URL (default: the one `skypanda up` started).",
)
def audit(
    target: str | None,
    actor: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
    server: str | None,
) -> None:
    """The audit trail, newest first: every submit, kill, retry, finish, pause, resume,
    reassign, priority change, queue change and drain, done or refused (admins only)."""
    if limit < 1:
        raise click.BadParameter("must be at least 1", param_hint="--limit")
    params: dict[str, str] = {}
    if target:
        params["target"] = target
    if actor:
        params["actor"] = actor
    if since:
        params["since"] = str(int(parse_since(since, time.time())))
    api = client(server)
    shown = 0
    before: str | None = None
    while shown < limit:
        page_size = min(PAGE, limit - shown)
        query = {**params, "limit": str(page_size), **({"before": before} if before else {})}
        entries = call(api, "GET", "/v1/audit", params=query)["entries"]
        for e in entries:
            click.echo(json.dumps(e) if as_json else _line(e))
        shown += len(entries)
        if len(entries) < page_size:
            break
        before = entries[-1]["id"]
    if shown == 0 and not as_json:
        click.echo("no audit entries match", err=True)
