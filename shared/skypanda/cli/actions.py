"""Task actions on the command line: finish, pause, resume, reassign, priority."""

from __future__ import annotations

import click

from skypanda.cli.connect import call, client

server_opt = click.option("--server", envvar="SKYPANDA_SERVER", help="Server URL.")


def _act(
    server: str | None, task_id: str, action: str, body: dict[str, object] | None = None
) -> None:
    """POST a task action and print the task's state."""
    task = call(client(server), "POST", f"/v1/tasks/{task_id}/{action}", body)
    click.echo(f"task {task['id']}: {task['status']}")


@click.command()
@click.argument("task_id")
@click.option("--hard", is_flag=True, help="Also kill the running jobs (default: let them end).")
@server_opt
def finish(task_id: str, hard: bool, server: str | None) -> None:
    """Finish a task early: no new job runs; running ones complete (or are killed with --hard)."""
    _act(server, task_id, "finish", {"hard": hard})


@click.command()
@click.argument("task_id")
@server_opt
def pause(task_id: str, server: str | None) -> None:
    """Pause a task: none of its jobs is dispatched (running ones go on) until resumed."""
    _act(server, task_id, "pause")


@click.command()
@click.argument("task_id")
@server_opt
def resume(task_id: str, server: str | None) -> None:
    """Resume a paused task: its jobs are dispatched again."""
    _act(server, task_id, "resume")


@click.command()
@click.argument("task_id")
@click.argument("queue")
@server_opt
def reassign(task_id: str, queue: str, server: str | None) -> None:
    """Move a task's queued jobs to another queue."""
    body = call(client(server), "POST", f"/v1/tasks/{task_id}/reassign", {"queue": queue})
    click.echo(f"task {task_id}: {body['jobs_moved']} queued jobs moved to {queue}")


@click.command()
@click.argument("task_id")
@click.argument("value", type=int)
@server_opt
def priority(task_id: str, value: int, server: str | None) -> None:
    """Change the priority of a task's queued jobs (higher runs first)."""
    body = call(client(server), "POST", f"/v1/tasks/{task_id}/priority", {"priority": value})
    click.echo(f"task {task_id}: {body['jobs_changed']} queued jobs now at priority {value}")


COMMANDS = (finish, pause, resume, reassign, priority)
