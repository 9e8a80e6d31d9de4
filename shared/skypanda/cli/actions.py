"""Task actions on the command line: finish, pause, resume, reassign, priority (and `kill`,
`retry`, `drain` in main), and `kill-job`; each prints one line (a line per job), or with
--json the server's answer."""

from __future__ import annotations

import json
from typing import Any

import click

from skypanda.cli.connect import call, client

server_opt = click.option(
    "--server",
    envvar="SKYPANDA_SERVER",
    help="Server URL (default: the one `skypanda up` started).",
)
json_opt = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def say(body: Any, line: str, as_json: bool) -> None:
    """Print an action's result: `line`, or the answer as JSON."""
    click.echo(json.dumps(body) if as_json else line)


def _act(
    server: str | None,
    task_id: str,
    action: str,
    as_json: bool,
    body: dict[str, object] | None = None,
) -> None:
    """POST a task action and print the task's state."""
    task = call(client(server), "POST", f"/v1/tasks/{task_id}/{action}", body)
    say(task, f"task {task['id']}: {task['status']}", as_json)


@click.command()
@click.argument("task_id")
@click.option("--hard", is_flag=True, help="Also kill the running jobs (default: let them end).")
@json_opt
@server_opt
def finish(task_id: str, hard: bool, as_json: bool, server: str | None) -> None:
    """Finish a task early: no new job runs; running ones complete (or are killed with --hard)."""
    _act(server, task_id, "finish", as_json, {"hard": hard})


@click.command()
@click.argument("task_id")
@json_opt
@server_opt
def pause(task_id: str, as_json: bool, server: str | None) -> None:
    """Pause a task: none of its jobs is dispatched (running ones go on) until resumed."""
    _act(server, task_id, "pause", as_json)


@click.command()
@click.argument("task_id")
@json_opt
@server_opt
def resume(task_id: str, as_json: bool, server: str | None) -> None:
    """Resume a paused task: its jobs are dispatched again."""
    _act(server, task_id, "resume", as_json)


@click.command()
@click.argument("task_id")
@click.argument("queue")
@json_opt
@server_opt
def reassign(task_id: str, queue: str, as_json: bool, server: str | None) -> None:
    """Move a task's queued jobs to another queue."""
    body = call(client(server), "POST", f"/v1/tasks/{task_id}/reassign", {"queue": queue})
    moved = "its" if body["jobs_moved"] is None else body["jobs_moved"]  # None: moved in pages
    say(body, f"task {task_id}: {moved} queued jobs moved to {queue}", as_json)


@click.command()
@click.argument("task_id")
@click.argument("value", type=int)
@json_opt
@server_opt
def priority(task_id: str, value: int, as_json: bool, server: str | None) -> None:
    """Change the priority of a task's queued jobs (higher runs first)."""
    body = call(client(server), "POST", f"/v1/tasks/{task_id}/priority", {"priority": value})
    changed = "its" if body["jobs_changed"] is None else body["jobs_changed"]
    line = f"task {task_id}: {changed} queued jobs now at priority {value}"
    say(body, line, as_json)


@click.command("kill-job")
@click.argument("job_ids", metavar="JOB_ID...", nargs=-1, required=True)
@json_opt
@server_opt
def kill_job(job_ids: tuple[str, ...], as_json: bool, server: str | None) -> None:
    """Kill jobs, not their task: a queued job is cancelled at once, a running one killed by
    its pilot (it ends cancelled, never retried). Exit 1 if some job is not found or not
    yours."""
    body = call(client(server), "POST", "/v1/jobs/kill", {"job_ids": list(job_ids)})
    refused = [r for r in body["results"] if r["result"] in ("not_found", "not_yours")]
    if as_json:
        click.echo(json.dumps(body))
    else:
        for r in body["results"]:
            click.echo(r["message"], err=r in refused)
    if refused:
        raise SystemExit(1)


COMMANDS = (finish, pause, resume, reassign, priority, kill_job)
