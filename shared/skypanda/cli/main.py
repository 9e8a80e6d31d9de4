"""The `skypanda` command."""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from skypanda import __version__
from skypanda.cli import (
    actions,
    audit,
    bench,
    flows,
    login,
    serve,
    tasklist,
    users,
    watch,
    webhooks,
)
from skypanda.cli.connect import (
    FINAL_TASK_STATES,
    call,
    client,
    hold_home,
    reader,
)
from skypanda.cli.lazy import LazyGroup
from skypanda.cli.render import print_failures, print_jobs, print_pilots, print_task
from skypanda.cli.serve import backend_opt, make_system, startup_error
from skypanda.domain.errors import InvalidInput, SkypandaError
from skypanda.domain.states import JobStatus, TaskStatus
from skypanda.pilot.client import ApiClient
from skypanda.runtime.home import default_home
from skypanda.wire.logs import configure as configure_logs

if TYPE_CHECKING:  # the pydantic models load when a file is read, not at every start
    from skypanda.domain.models import TaskSpec
    from skypanda.domain.workflow import WorkflowSpec

DAG_FORMATS = ("dot", "mermaid")
"""`domain.export.FORMATS`, named here so that `--help` imports no domain (tested equal)."""

server_opt = click.option(
    "--server",
    envvar="SKYPANDA_SERVER",
    help="Server URL (default: the one `skypanda up` started).",
)
json_opt = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _load(path: str) -> TaskSpec | WorkflowSpec:
    from skypanda.formats.taskfile import load_file

    try:
        return load_file(Path(path))
    except InvalidInput as e:
        click.echo(f"error: {e.message}", err=True)
        raise SystemExit(2) from e


@click.group(
    cls=LazyGroup,
    lazy={  # imported when run (or listed in --help): none is needed to start the others
        "deploy": "skypanda.cli.deploy:deploy",
        "monitor": "skypanda.cli.monitor:monitor",
        "publish": "skypanda.cli.publish:publish",
    },
)
@click.version_option(__version__)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """skypanda: tasks and workflows split into jobs, run by pilots, locally or on Google Cloud."""
    level = max(logging.WARNING - 10 * verbose, logging.DEBUG)
    configure_logs(level=logging.getLevelName(level))  # text; JSON on Google Cloud (wire.logs)


def outcome(task: dict[str, Any], seconds: float) -> dict[str, Any]:
    return {
        "id": task["id"],
        "name": task["spec"]["name"],
        "status": task["status"],
        "jobs": task["job_counts"],
        "reason": task["reason"],
        "seconds": round(seconds, 3),
    }


def _finish(
    result: dict[str, Any], as_json: bool, failed: list[dict[str, Any]], home: str | None = None
) -> None:
    """Print the outcome (and, when it failed, why: `failed` from `flows.failures`) and exit
    0 when it is done, else 1."""
    ok = result["status"] == "done"
    if as_json:
        click.echo(json.dumps({**result, "failures": failed} if not ok else result))
    else:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(result["jobs"].items()))
        kind = "workflow" if "tasks" in result else "task"
        click.echo(
            f"{kind} {result['id']} ({result['name']}): {result['status']} "
            f"in {result['seconds']} s: {counts}"
        )
        if result.get("tasks"):
            click.echo("  " + ", ".join(f"{n} {s}" for n, s in result["tasks"].items()))
        if not ok:
            click.echo(print_failures(result, failed, home))
    raise SystemExit(0 if ok else 1)


def _send_and_wait(
    api: ApiClient, spec: TaskSpec | WorkflowSpec, file: str, *, wait: bool, quiet: bool
) -> dict[str, Any] | None:
    """Submit a task or workflow file; with `wait`, wait for its end and return the outcome."""
    start = time.monotonic()
    if flows.is_workflow_spec(spec):
        view = flows.send(api, spec, Path(file))
        if not wait:
            return view
        if not quiet:
            click.echo(f"submitted workflow {view['id']} ({flows.total_jobs(view)} jobs)", err=True)
        return flows.outcome(flows.wait(api, view["id"], quiet=quiet), time.monotonic() - start)
    task = call(api, "POST", "/v1/tasks", spec.model_dump(mode="json", by_alias=True))
    if spec.start_after is not None and not quiet:
        click.echo(f"task {task['id']}: {task['status']} {task['reason']}".rstrip(), err=True)
    elif task.get("status") == "pending":
        # Stored, but no queue fits it yet: waiting could last until an operator applies one.
        click.echo(f"task {task['id']} is pending: {task['reason']}", err=True)
        if wait:
            raise click.ClickException(f"task {task['id']} waits for a queue; not waiting")
    if not wait:
        return dict(task)
    if not quiet:
        click.echo(f"submitted task {task['id']} ({task['n_jobs']} jobs)", err=True)
    return outcome(flows.wait_task(api, task["id"], quiet=quiet), time.monotonic() - start)


def _chained(
    spec: TaskSpec | WorkflowSpec, after: str | None, statuses: tuple[str, ...]
) -> TaskSpec | WorkflowSpec:
    """The spec with `start_after` from --after/--after-status (the file's field otherwise)."""
    if after is None:
        if statuses:
            raise click.UsageError("--after-status needs --after ID")
        return spec
    kind = "workflow" if flows.is_workflow_id(after) else "task"
    data = spec.model_dump(mode="json", by_alias=True)
    data["start_after"] = {kind: after, "status": list(statuses) or ["done"]}
    try:
        return type(spec).model_validate(data)
    except ValueError as e:
        raise click.UsageError(f"--after {after}: {e}") from e


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--wait", is_flag=True, help="Wait until it ends; exit 0 only if every job finished.")
@click.option("--after", metavar="ID", help="Start only once this task or workflow ends (a chain).")
@click.option(
    "--after-status",
    multiple=True,
    metavar="STATUS",
    help="With --after: the end statuses that start it (repeatable; default done); "
    "on any other end it is skipped, never started.",
)
@webhooks.NOTIFY
@webhooks.NOTIFY_ON
@json_opt
@server_opt
def submit(
    file: str,
    wait: bool,
    after: str | None,
    after_status: tuple[str, ...],
    notify: tuple[str, ...],
    notify_on: tuple[str, ...],
    as_json: bool,
    server: str | None,
) -> None:
    """Submit a task or workflow file (a workflow has `tasks:`) to a running server."""
    spec = webhooks.notifying(_chained(_load(file), after, after_status), notify, notify_on)
    api = client(server)
    result = _send_and_wait(api, spec, file, wait=wait, quiet=as_json)
    assert result is not None
    if not wait:
        click.echo(json.dumps(result) if as_json else result["id"])
        return
    failed = flows.failures(api, result) if result["status"] != "done" else []
    _finish(result, as_json, failed)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@json_opt
@click.option(
    "--home", type=click.Path(file_okay=False), help="Keep the private system's state here."
)
@backend_opt
def run(file: str, as_json: bool, home: str | None, backend: str) -> None:
    """Start a private local system, run FILE (task or workflow) to the end, print the outcome
    and shut down.

    A failure ends with its failed jobs (error, diagnosis, last log lines). The state stays in
    the run's home: `skypanda status|jobs|logs ... --home DIR` read it without a server.
    Exit 0 when every job finished, 1 when the task or workflow failed, 2 for bad input.
    """
    spec = _load(file)
    run_home = Path(home) if home else default_home() / "runs" / time.strftime("%Y%m%d-%H%M%S")
    lock = hold_home(run_home)
    system = make_system(backend, run_home)
    try:
        try:
            system.start()
        except Exception as e:
            raise click.ClickException(startup_error(e, "127.0.0.1", 0)) from e
        api = ApiClient(system.url, system.token)
        result = _send_and_wait(api, spec, file, wait=True, quiet=as_json)
        assert result is not None
        failed = flows.failures(api, result) if result["status"] != "done" else []
    except SkypandaError as e:
        raise click.ClickException(e.message) from e
    finally:
        system.stop()
        lock.close()
    if not as_json:
        click.echo(
            f"server stopped; state and logs kept in {run_home} "
            f"(`skypanda status {result['id']} --home {run_home}` reads them)",
            err=True,
        )
    _finish({**result, "home": str(run_home)}, as_json, failed, str(run_home))


home_opt = click.option(
    "--home",
    "read_home",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Read this home (e.g. a finished `skypanda run`'s) directly, without a server.",
)


@cli.command()
@click.argument("ident", metavar="ID")
@json_opt
@server_opt
@home_opt
def status(ident: str, as_json: bool, server: str | None, read_home: str | None) -> None:
    """Show a task (its jobs counted by state) or a workflow (each task's jobs by state)."""
    api = reader(server, read_home)
    if flows.is_workflow_id(ident):
        view = call(api, "GET", f"/v1/workflows/{ident}")
        click.echo(json.dumps(view, indent=2) if as_json else flows.render(view))
        return
    task = call(api, "GET", f"/v1/tasks/{ident}")
    if as_json:
        click.echo(json.dumps(task, indent=2))
        return
    click.echo(print_task(task, _queued_priority(api, task)))


def _queued_priority(api: Any, task: dict[str, Any]) -> int | None:
    """The priority a task's queued jobs have now (`skypanda priority` changes theirs, not the
    task's spec); None when none is queued. Asked only of a task that has not ended."""
    if task["status"] in FINAL_TASK_STATES:
        return None
    for state in (JobStatus.ACTIVATED, JobStatus.DEFINED):
        params = {"status": state, "limit": 1}
        queued = call(api, "GET", f"/v1/tasks/{task['id']}/jobs", params=params)["jobs"]
        if queued:
            return int(queued[0]["priority"])
    return None


@cli.command()
@click.argument("ident", metavar="ID")
@json_opt
@server_opt
def retry(ident: str, as_json: bool, server: str | None) -> None:
    """Rerun a failed or killed workflow or task: only its failed and cancelled jobs run
    again (finished ones are kept)."""
    kind = "workflows" if flows.is_workflow_id(ident) else "tasks"
    body = call(client(server), "POST", f"/v1/{kind}/{ident}/retry")
    if as_json:
        click.echo(json.dumps(body))
    else:
        click.echo(f"{kind[:-1]} {ident}: {body['status']}, {body['jobs_reset']} jobs to rerun")


@cli.command()
@click.argument("what", metavar="WORKFLOW")
@click.option("--format", "fmt", type=click.Choice(DAG_FORMATS), default="dot", show_default=True)
@server_opt
def dag(what: str, fmt: str, server: str | None) -> None:
    """Print a workflow's task graph as Graphviz DOT or Mermaid.

    WORKFLOW is a workflow id (states shown) or a workflow file (no server needed).
    """
    if Path(what).is_file():
        spec = _load(what)
        from skypanda.domain.export import export
        from skypanda.domain.workflow import compile_workflow

        if not flows.is_workflow_spec(spec):
            raise click.BadParameter(f"{what} is a task, not a workflow", param_hint="WORKFLOW")
        try:
            click.echo(export(compile_workflow(spec), fmt), nl=False)
        except InvalidInput as e:
            click.echo(f"error: {e.message}", err=True)
            raise SystemExit(2) from e
        return
    text = call(client(server), "GET", f"/v1/workflows/{what}/dag", params={"format": fmt})
    click.echo(text, nl=False)


@cli.command()
@click.argument("task_id")
@click.option("--status", "job_status", help="Only jobs in this state.")
@json_opt
@server_opt
@home_opt
def jobs(
    task_id: str, job_status: str | None, as_json: bool, server: str | None, read_home: str | None
) -> None:
    """List a task's jobs: id, state, attempt, exit code, error, pilot."""
    params = {"status": job_status}
    api = reader(server, read_home)
    body = call(api, "GET", f"/v1/tasks/{task_id}/jobs", params=params)
    found = body["jobs"]
    while body.get("next"):  # the server answers a page at a time
        params["cursor"] = body["next"]
        body = call(api, "GET", f"/v1/tasks/{task_id}/jobs", params=params)
        found.extend(body["jobs"])
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    paused = call(api, "GET", f"/v1/tasks/{task_id}")["status"] == TaskStatus.PAUSED
    click.echo(print_jobs(found, paused=paused))


@cli.command()
@click.argument("job_id")
@click.option("--attempt", type=int, help="Which attempt (default: the latest).")
@click.option(
    "--tail", type=click.IntRange(min=0), metavar="BYTES", help="Only the log's last BYTES."
)
@server_opt
@home_opt
def logs(
    job_id: str, attempt: int | None, tail: int | None, server: str | None, read_home: str | None
) -> None:
    """Print a job's log (capped per attempt by its queue's max_log_mb: a long one keeps its
    head and its tail, with a line saying how much was elided between them)."""
    params = {"attempt": attempt or None, "tail": tail}
    text = call(reader(server, read_home), "GET", f"/v1/jobs/{job_id}/log", params=params)
    click.echo(text, nl=False)


@cli.command()
@click.argument("ident", metavar="ID")
@json_opt
@server_opt
def kill(ident: str, as_json: bool, server: str | None) -> None:
    """Kill a task or a workflow: queued jobs are cancelled, running ones killed by pilots
    (`skypanda retry ID` reruns them later)."""
    kind = "workflow" if flows.is_workflow_id(ident) else "task"
    body = call(client(server), "POST", f"/v1/{kind}s/{ident}/kill")
    actions.say(body, f"{kind} {body['id']}: {body['status']}", as_json)


def _limits(q: dict[str, Any]) -> str:
    pilot = q["pilot_resources"]
    parts = [f"{pilot['memory_mb']}MB"]
    if q.get("max_memory_per_core_mb"):
        parts.append(f"{q['max_memory_per_core_mb']}MB/core")
    parts.append(f"{q.get('max_cores') or pilot['cores']}c")
    if q.get("max_walltime_s"):
        parts.append(f"{q['max_walltime_s']:g}s")
    if q.get("gpus"):
        parts.append(f"{q['gpus']}gpu")
    return " ".join(parts)


@cli.group(invoke_without_command=True)
@json_opt
@server_opt
@click.pass_context
def queues(ctx: click.Context, as_json: bool, server: str | None) -> None:
    """List queues: status, mode, limits, activated jobs, live pilots (`queues apply FILE`
    defines them)."""
    if ctx.invoked_subcommand is not None:
        return
    body = call(client(server), "GET", "/v1/queues")
    if as_json:
        click.echo(json.dumps(body["queues"], indent=2))
        return
    click.echo(f"{'name':<16} {'status':<8} {'mode':<5} {'limits':<28} activated pilots")
    for q in body["queues"]:
        click.echo(
            f"{q['name']:<16} {q['status']:<8} {q['mode']:<5} {_limits(q):<28} "
            f"{q['activated']:<9} {q['live_pilots']}/{q['max_pilots']}"
        )
        states = ", ".join(f"{n} {s}" for s, n in sorted(q.get("pilots", {}).items()))
        if states or q.get("last_decision"):
            click.echo(f"{'':<16} pilots: {states or 'none'}; scaler: {q.get('last_decision')}")


@queues.command("apply")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Only print what would change.")
@json_opt
@server_opt
def queues_apply(file: str, dry_run: bool, as_json: bool, server: str | None) -> None:
    """Add or replace the queues defined in FILE (a YAML list, see infra/queues.yaml).

    Every queue is validated before any is stored; exit 2 names each bad queue, field, line.
    """
    try:
        from skypanda.formats.queuefile import load_queue_file

        defined = load_queue_file(Path(file))
    except InvalidInput as e:
        click.echo(f"error: {e.message}", err=True)
        raise SystemExit(2) from e
    payload = {"queues": [q.model_dump(mode="json") for q in defined], "dry_run": dry_run}
    body = call(client(server), "POST", "/v1/queues", payload)
    if as_json:
        click.echo(json.dumps(body))
        return
    verb = "would " if dry_run else ""
    for c in body["changes"]:
        what = {"add": "add", "update": "update", "unchanged": "leave"}[c["action"]]
        fields = f" ({', '.join(c['fields'])})" if c["fields"] else ""
        click.echo(f"{c['name']}: {verb}{what}{' unchanged' if what == 'leave' else ''}{fields}")


@queues.command("reset-backoff")
@click.argument("queue")
@json_opt
@server_opt
def queues_reset_backoff(queue: str, as_json: bool, server: str | None) -> None:
    """Clear QUEUE's back-off (admins): pilots that failed so far no longer hold back new
    ones, and the scaler looks at the queue at once."""
    path = f"/v1/queues/{urllib.parse.quote(queue, safe='')}/reset-backoff"
    body = call(client(server), "POST", path)
    actions.say(body, f"queue {queue}: back-off reset", as_json)


@cli.command()
@click.option("--queue", help="Only pilots of this queue.")
@json_opt
@server_opt
def pilots(queue: str | None, as_json: bool, server: str | None) -> None:
    """List pilots: id, queue, state, host, last heartbeat, why it ended."""
    params = {"queue": queue} if queue else None
    body = call(client(server), "GET", "/v1/pilots", params=params)
    click.echo(json.dumps(body["pilots"], indent=2) if as_json else print_pilots(body["pilots"]))


@cli.command()
@click.argument("pilot_id")
@json_opt
@server_opt
def drain(pilot_id: str, as_json: bool, server: str | None) -> None:
    """Drain a pilot: it finishes the jobs it holds, takes no new one, and exits."""
    pilot = call(client(server), "POST", f"/v1/pilots/{pilot_id}/drain")
    actions.say(pilot, f"pilot {pilot['id']}: {pilot['status']}, draining", as_json)


@cli.command(
    context_settings={
        "ignore_unknown_options": True,
        "allow_extra_args": True,
        "help_option_names": [],
    }
)
@click.pass_context
def pilot(ctx: click.Context) -> None:
    """Run a pilot: `skypanda pilot --server URL --queue Q` (see `skypanda pilot --help`)."""
    from skypanda.pilot.agent import main as pilot_main

    raise SystemExit(pilot_main(list(ctx.args)))


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (click's): commands, options, choices.

    \b
    bash:  eval "$(skypanda completion bash)"        (in ~/.bashrc)
    zsh:   eval "$(skypanda completion zsh)"         (in ~/.zshrc)
    fish:  skypanda completion fish > ~/.config/fish/completions/skypanda.fish

    The same as `_SKYPANDA_COMPLETE=bash_source skypanda` (zsh_source, fish_source).
    """
    from click.shell_completion import get_completion_class

    complete = get_completion_class(shell)
    assert complete is not None  # the three choices are click's own
    click.echo(complete(cli, {}, "skypanda", "_SKYPANDA_COMPLETE").source(), nl=False)


@cli.command("pilot-zipapp")
@click.option(
    "-o", "--output", default="pilot.pyz", show_default=True, type=click.Path(dir_okay=False),
    help="Where to write it.",
)  # fmt: skip
def pilot_zipapp(output: str) -> None:
    """Write the pilot as one file (the server's /v1/pilot.pyz): `python3 pilot.pyz --help`."""
    from skypanda.api.zipapp import build_zipapp

    try:
        data = build_zipapp()
    except SkypandaError as e:
        raise click.ClickException(e.message) from e
    path = Path(output)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as e:
        raise click.ClickException(f"cannot write {path}: {e.strerror or e}") from e
    path.chmod(0o755)  # it starts with a shebang line: `./pilot.pyz` runs it too
    click.echo(f"wrote {path} ({len(data)} bytes, skypanda {__version__})", err=True)


bench.bench.lazy["dag"] = "skypanda.cli.bench_dag:dag"  # the SQLite stack: when run
bench.bench.lazy["chaos"] = "skypanda.cli.bench_chaos:chaos"  # loaded when run
bench.bench.lazy["cli"] = "skypanda.cli.bench_cli:cli"
cli.add_command(bench.bench)
cli.add_command(serve.up)
cli.add_command(users.users)
cli.add_command(audit.audit)
cli.add_command(watch.watch)
cli.add_command(webhooks.webhooks)
for _command in (*actions.COMMANDS, *login.COMMANDS, *tasklist.COMMANDS):
    cli.add_command(_command)


def main() -> int:
    try:
        cli.main(standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    return 0
