"""`skypanda bench cli`: how long the installed command takes to start and answer.

Each figure is the median of several runs of the real `skypanda` command in a subprocess (the
console script a user runs, so interpreter start, imports and, for `status`, one HTTP call to a
server are all counted). `status ID` asks a private server started here, in process, on a temp
home, about a task submitted to it. The budget (0.3 s on an idle machine) is kept by importing
little at start-up: see `skypanda.cli.lazy` and the import-linter contract on the everyday
commands.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from skypanda.domain.models import Queue, TaskSpec
from skypanda.handlers.submit import submit
from skypanda.runtime.local import LocalOptions, LocalSystem

TARGET_S = 0.3


def skypanda_command() -> str:
    """The installed `skypanda` script: next to this Python, else on PATH.

    Raises:
        click.ClickException: it is not installed.
    """
    beside = Path(sys.executable).parent / "skypanda"
    found = str(beside) if beside.exists() else shutil.which("skypanda")
    if found is None:
        raise click.ClickException("the `skypanda` command is not installed (pip install -e .)")
    return found


def time_runs(argv: list[str], env: dict[str, str], runs: int) -> dict[str, float]:
    """Run `argv` `runs` times (after one warm-up run: the page cache, not the code, would
    otherwise be measured first). Seconds per run, wall clock (median, min, max) and CPU
    (median of user + system: what the run costs, nearly unchanged on a busy machine).

    Raises:
        click.ClickException: a run failed.
    """
    walls: list[float] = []
    cpus: list[float] = []
    for i in range(runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise click.ClickException(f"{' '.join(argv[1:])} failed: {done.stderr.strip()}")
        if i:
            walls.append(elapsed)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return {
        "median_s": round(statistics.median(walls), 3),
        "min_s": round(min(walls), 3),
        "max_s": round(max(walls), 3),
        "cpu_median_s": round(statistics.median(cpus), 3),
    }


def run_cli_bench(runs: int, home: Path) -> dict[str, Any]:
    """Time `skypanda --version` and `skypanda status ID` against a private server."""
    exe = skypanda_command()
    base = {k: v for k, v in os.environ.items() if not k.startswith("SKYPANDA_")}
    idle = Queue(name="local", min_pilots=0, max_pilots=0)  # nothing runs: only status is read
    with LocalSystem(LocalOptions(home=home, queue=idle, launch_pilots=False)) as system:
        spec = TaskSpec(name="bench-cli", command=["true"], n_jobs=10, max_attempts=1)
        task = submit(system.svc, spec, owner="bench")
        env = {**base, "SKYPANDA_HOME": str(home), "SKYPANDA_SERVER": system.url}
        env["SKYPANDA_TOKEN"] = system.token
        version = time_runs([exe, "--version"], env, runs)
        status = time_runs([exe, "status", task.id], env, runs)
    return {
        "runs": runs,
        "version": version,
        "status": status,
        "target_s": TARGET_S,
        "within_target": max(version["median_s"], status["median_s"]) <= TARGET_S,
        "cpus": os.cpu_count(),
        "load_1m": round(os.getloadavg()[0], 2),
    }


@click.command("cli")
@click.option(
    "--runs", default=7, show_default=True, type=click.IntRange(1, 100), help="Runs each."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def cli(runs: int, as_json: bool) -> None:
    """Start-up time of the installed command: `skypanda --version` and `skypanda status ID`
    (median of RUNS subprocess runs; target under 0.3 s on an idle machine)."""
    with tempfile.TemporaryDirectory(prefix="skypanda-bench-cli-") as tmp:
        result = run_cli_bench(runs, Path(tmp))
    if as_json:
        click.echo(json.dumps(result))
        return
    for name in ("version", "status"):
        r = result[name]
        command = "skypanda --version" if name == "version" else "skypanda status ID"
        click.echo(
            f"{command:<20} median {r['median_s']:.3f} s  (min {r['min_s']:.3f}, "
            f"max {r['max_s']:.3f}; CPU {r['cpu_median_s']:.3f} s; {runs} runs)"
        )
    verdict = "within" if result["within_target"] else "OVER"
    click.echo(
        f"target {TARGET_S} s: {verdict} (load {result['load_1m']} on {result['cpus']} cpus)"
    )
