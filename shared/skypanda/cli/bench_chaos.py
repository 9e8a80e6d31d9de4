"""`skypanda bench chaos`: the embedded system under faults, and what it kept of its promises.

The real thing, on a fresh home: `skypanda up` as a process of its own (so it can be SIGKILLed)
with its local pilots, a few hundred jobs whose payloads (`chaos_payload`) record every run.
While they run, on a schedule drawn from `--seed` and paced by the jobs' progress (a fault
fires once that share of the jobs ended), the bench

- SIGKILLs a pilot holding jobs (its jobs are lost: a counted attempt, 9002),
- SIGTERMs a pilot holding jobs (it stops its payloads and reports them: never counted, 1201),
- SIGKILLs the server and starts a new one on the same home and port after `--outage` seconds
  (the pilots ride the outage out: it must cost no attempt),
- redelivers events: marks delivered outbox rows pending again, so their handlers run twice.

Then it waits for every job to end, stops everything (pilots, then the server, then whatever
is left of the process groups it started), and checks the payloads' records and the database
(`chaos_checks`). Figures: faults by kind, jobs, finished and failed, duplicates, overlaps,
attempts counted and their causes, attempts counted from outages, integrity, wall time.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from skypanda.cli import chaos_payload
from skypanda.cli.chaos_checks import (
    FAULT_KINDS,
    PILOT_SIGKILL,
    PILOT_SIGTERM,
    REDELIVER,
    SERVER_SIGKILL,
    Fault,
    analyse,
    read_database,
    read_runs,
)
from skypanda.domain.models import Queue, QueueStatus, Resources, TaskSpec
from skypanda.domain.states import JOB_FINAL, JOB_LIVE, PilotStatus
from skypanda.pilot.client import ApiClient, ApiError
from skypanda.wire.groups import GROUPS_DIR, kill_recorded_groups

QUEUE = "chaos"
LAST_FAULT_AT = 0.75
"""No fault is planned later than this share of the jobs ended: some work is left to hit."""


@dataclass
class ChaosOptions:
    """One run: its size, its faults, its pace. `outage_s` is how long the server stays down
    after each SIGKILL; `timeout_s` bounds the whole run."""

    jobs: int = 300
    seed: int = 1
    pilots: int = 3
    pilot_kills: int = 4
    pilot_terms: int = 4
    server_kills: int = 3
    redeliveries: int = 4
    events_per_redelivery: int = 10
    outage_s: float = 35.0
    min_s: float = 0.2
    max_s: float = 2.0
    max_attempts: int = 5
    jobs_per_task: int = 100
    heartbeat_interval_s: float = 2.0
    heartbeat_timeout_s: float = 20.0
    timeout_s: float = 600.0
    min_gap_s: float = 2.0
    schedule: tuple[tuple[float, str], ...] | None = None
    """The faults, each with the share of jobs ended at which it fires; None: drawn (`plan`)."""


def plan(opts: ChaosOptions, rng: random.Random) -> list[tuple[float, str]]:
    """The faults in order, each with the share of jobs ended at which it fires: shuffled by
    `rng`, spread evenly (with jitter) between 5% and LAST_FAULT_AT; or `opts.schedule`."""
    if opts.schedule is not None:
        return list(opts.schedule)
    kinds = (
        [PILOT_SIGKILL] * opts.pilot_kills
        + [PILOT_SIGTERM] * opts.pilot_terms
        + [SERVER_SIGKILL] * opts.server_kills
        + [REDELIVER] * opts.redeliveries
    )
    rng.shuffle(kinds)
    span = LAST_FAULT_AT - 0.05
    return [(0.05 + span * (i + rng.random()) / len(kinds), k) for i, k in enumerate(kinds)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


class Server:
    """`skypanda up` on `home` and `port`, in a process group of its own."""

    def __init__(self, home: Path, port: int, logs: Path) -> None:
        self.home, self.port, self.logs = home, port, logs
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> float:
        """Start it and wait until it answers; returns when it did (epoch seconds)."""
        self.starts += 1
        env = {**os.environ, "SKYPANDA_HOME": str(self.home)}
        argv = [sys.executable, "-m", "skypanda", "up", "--port", str(self.port)]
        with open(self.logs / f"server-{self.starts}.log", "ab") as log:
            self.proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        wait_until(self._answers, 60, f"the server to answer on {self.url}")
        return time.time()

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            tail = (self.logs / f"server-{self.starts}.log").read_text()[-2000:]
            raise click.ClickException(f"the server exited with {self.proc.returncode}: {tail}")
        if not (self.home / "token").is_file():
            return False
        try:
            self.api(retry_budget_s=0).call("GET", "/v1/health")
        except ApiError as e:
            if e.unreachable:
                return False
            raise
        return True

    def api(self, retry_budget_s: float = 60.0) -> ApiClient:
        token = (self.home / "token").read_text().strip()
        return ApiClient(self.url, token, retry_budget_s=retry_budget_s)

    def kill(self) -> None:
        """SIGKILL it (its pilots, in sessions of their own, live on)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._reap(10)

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM it (it stops its pilots, then itself), SIGKILL its group if it lingers."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._reap(10)

    def _reap(self, timeout: float) -> None:
        if self.proc is not None:
            self.proc.wait(timeout=timeout)


def pilot_alive(pid: int, pilot_id: str) -> bool:
    """Whether process `pid` is alive and is pilot `pilot_id` (not a pid reused since)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return pilot_id.encode() in argv and b"--pilot-id" in argv


class Chaos:
    """One run of the bench in `workdir` (home, records, logs); `run()` returns its figures."""

    def __init__(self, opts: ChaosOptions, workdir: Path) -> None:
        self.opts = opts
        self.rng = random.Random(opts.seed)
        self.home = workdir / "home"
        self.records = workdir / "records"
        self.logs = workdir / "logs"
        for path in (self.records, self.logs):
            path.mkdir(parents=True, exist_ok=True)
        self.server = Server(self.home, free_port(), self.logs)
        self.faults: list[Fault] = []
        self.skipped: list[str] = []
        self._db: sqlite3.Connection | None = None
        self._deadline = 0.0

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started, t0 = time.monotonic(), time.time()
        self._deadline = started + self.opts.timeout_s
        try:
            self.server.start()
            self._submit()
            ended = 0
            for share, kind in plan(self.opts, self.rng):
                if not self._wait_progress(share, after=ended):
                    break
                ended = self._ended()
                self._inject(kind)
            self._wait_progress(1.0)
        finally:
            self._shut_down()
        wall_s = time.monotonic() - started
        grace_s = self.opts.heartbeat_timeout_s + 30.0
        found = analyse(read_database(self.home / "skypanda.db"), read_runs(self.records),
                        self.faults, grace_s)  # fmt: skip
        return {
            **found.figures,
            "fault_log": [f"{f.at - t0:.1f} s {f.kind} {f.target}" for f in self.faults],
            "faults_skipped": self.skipped,
            "server_starts": self.server.starts,
            "problems": found.problems,
            "options": asdict(self.opts),
            "wall_s": round(wall_s, 1),
        }

    def _submit(self) -> None:
        o = self.opts
        queue = Queue(
            name=QUEUE, min_pilots=o.pilots, max_pilots=o.pilots, max_new_per_cycle=o.pilots,
            max_queued=o.pilots, pilot_resources=Resources(memory_mb=4096, cores=4),
            jobs_per_acquire=4, heartbeat_interval_s=o.heartbeat_interval_s,
            heartbeat_timeout_s=o.heartbeat_timeout_s, idle_timeout_s=600.0,
        )  # fmt: skip
        api = self.server.api()
        api.call("POST", "/v1/queues", {"queues": [queue.model_dump(mode="json")]})
        script = Path(chaos_payload.__file__).resolve()
        command = [sys.executable, "-I", "-S", str(script), str(self.records), str(o.seed),
                   str(o.min_s), str(o.max_s)]  # fmt: skip
        left, index = o.jobs, 0
        while left > 0:
            n = min(left, o.jobs_per_task)
            spec = TaskSpec(
                name=f"chaos-{index}", command=command, n_jobs=n, queue=QUEUE,
                max_attempts=o.max_attempts,
                resources=Resources(memory_mb=256, cores=1, walltime_s=300.0),
            )  # fmt: skip
            api.call("POST", "/v1/tasks", spec.model_dump(mode="json", by_alias=True))
            left, index = left - n, index + 1

    # -- the database, read (and for redelivery written) beside the server ------------------

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = sqlite3.connect(self.home / "skypanda.db", timeout=30,
                                       isolation_level=None)  # fmt: skip
        return self._db

    def _ended(self) -> int:
        final = [str(s) for s in JOB_FINAL]
        marks = ",".join("?" * len(final))
        row = self.db.execute(f"SELECT COUNT(*) FROM jobs WHERE status IN ({marks})", final)
        return int(row.fetchone()[0])

    def _wait_progress(self, share: float, after: int = 0) -> bool:
        """Wait until `share` of the jobs, and more than `after` of them, ended, and
        `min_gap_s` passed (faults are spaced: the system works between two); False when
        every job ended (or time is up)."""
        goal = min(self.opts.jobs, max(after + 1, round(share * self.opts.jobs)))
        earliest = time.monotonic() + self.opts.min_gap_s
        while time.monotonic() < self._deadline:
            ended = self._ended()
            if ended >= self.opts.jobs:
                return False
            if ended >= goal and time.monotonic() >= earliest:
                return True
            time.sleep(0.2)
        return False

    def _pilots(self, holding: bool) -> list[tuple[str, int]]:
        """Running pilots (id, pid), alive on this machine; with `holding`, those that hold
        jobs."""
        sql = ("SELECT id, json_extract(record, '$.pid') FROM pilots WHERE status = ? "
               "AND json_extract(record, '$.pid') IS NOT NULL")  # fmt: skip
        args: list[str] = [str(PilotStatus.RUNNING)]
        if holding:
            live = [str(s) for s in JOB_LIVE]
            marks = ",".join("?" * len(live))
            sql += f" AND id IN (SELECT pilot_id FROM jobs WHERE status IN ({marks}))"
            args += live
        rows = self.db.execute(sql + " ORDER BY id", args).fetchall()
        return [(str(i), int(p)) for i, p in rows if pilot_alive(int(p), str(i))]

    def _every_pilot(self) -> Iterator[tuple[str, int]]:
        """Every pilot ever launched on this home, with its pid (registered, or launched)."""
        rows = self.db.execute(
            "SELECT id, json_extract(record, '$.pid'), json_extract(record, '$.launcher_ref') "
            "FROM pilots"
        ).fetchall()
        for pilot_id, pid, ref in rows:
            if pid is None and isinstance(ref, str) and ref.startswith("pid:"):
                pid = ref[4:]
            if pid is not None:
                yield str(pilot_id), int(pid)

    # -- faults ------------------------------------------------------------------------------

    def _inject(self, kind: str) -> None:
        if kind in (PILOT_SIGKILL, PILOT_SIGTERM):
            self._signal_pilot(kind)
        elif kind == SERVER_SIGKILL:
            self._restart_server()
        else:
            self._redeliver()

    def _signal_pilot(self, kind: str) -> None:
        """SIGKILL or SIGTERM a pilot that holds jobs (waiting up to 30 s for one)."""
        found: list[tuple[str, int]] = []

        def holding() -> bool:
            found[:] = self._pilots(holding=True)
            return bool(found) or self._ended() >= self.opts.jobs

        with contextlib.suppress(TimeoutError):
            wait_until(holding, 30, "a pilot holding jobs")
        if not found:
            self.skipped.append(f"{kind}: no pilot held jobs")
            return
        pilot_id, pid = self.rng.choice(found)
        sig = signal.SIGKILL if kind == PILOT_SIGKILL else signal.SIGTERM
        at = time.time()
        try:
            os.kill(pid, sig)  # the pilot alone: its payloads are in sessions of their own
        except ProcessLookupError:
            self.skipped.append(f"{kind}: pilot {pilot_id} exited first")
            return
        self.faults.append(Fault(kind, at, pilot_id))

    def _restart_server(self) -> None:
        at = time.time()
        target = str(self.server.proc.pid if self.server.proc else "")
        self._close_db()
        self.server.kill()
        time.sleep(self.opts.outage_s)  # an outage is a length of time, not a condition
        back_at = self.server.start()
        self.faults.append(Fault(SERVER_SIGKILL, at, target, back_at=back_at))

    def _redeliver(self) -> None:
        """Mark delivered outbox rows pending again: the router delivers them a second time."""
        delivered = [r[0] for r in self.db.execute(
            "SELECT seq FROM outbox WHERE delivered_at IS NOT NULL AND dead = 0 ORDER BY seq"
        )]  # fmt: skip
        chosen = self.rng.sample(delivered, min(len(delivered), self.opts.events_per_redelivery))
        if not chosen:
            self.skipped.append("redeliver: no event delivered yet")
            return
        marks = ",".join("?" * len(chosen))
        kinds = self.db.execute(
            f"SELECT type, COUNT(*) FROM outbox WHERE seq IN ({marks}) GROUP BY type", chosen
        ).fetchall()
        self.db.execute(f"UPDATE outbox SET delivered_at = NULL WHERE seq IN ({marks})", chosen)
        what = ", ".join(f"{n} {kind.removeprefix('dev.skypanda.')}" for kind, n in kinds)
        self.faults.append(Fault(REDELIVER, time.time(), what, count=len(chosen)))

    # -- the end -----------------------------------------------------------------------------

    def _shut_down(self) -> None:
        """Pilots first (SIGTERM, while the server is up to hear them), then the server, then
        whatever is left: pilots' process groups, then the payload groups they recorded."""
        pilots: list[tuple[str, int]] = []
        if (self.home / "skypanda.db").is_file():
            self._quiet_queue()
            with contextlib.suppress(sqlite3.Error):
                pilots = list(self._every_pilot())
        for pilot_id, pid in pilots:
            if pilot_alive(pid, pilot_id):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not any(pilot_alive(p, i) for i, p in pilots), 30, "pilots")
        self._close_db()
        self.server.stop()
        for pilot_id, pid in pilots:
            if pilot_alive(pid, pilot_id):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)  # a pilot is its own group's leader
        work = self.home / "work"
        if work.is_dir():
            for pilot_dir in work.iterdir():
                kill_recorded_groups(pilot_dir / GROUPS_DIR)

    def _quiet_queue(self) -> None:
        """Take the queue offline (no pilot starts), if the server still answers."""
        with contextlib.suppress(ApiError, OSError, ValueError):
            queue = Queue(name=QUEUE, status=QueueStatus.OFFLINE, min_pilots=0, max_pilots=0)
            body = {"queues": [queue.model_dump(mode="json")]}
            self.server.api(retry_budget_s=5).call("POST", "/v1/queues", body)

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def run_chaos(opts: ChaosOptions, workdir: Path | None = None) -> dict[str, Any]:
    """Run the bench (in `workdir`, kept; else in a temporary directory) and return its
    figures, with `problems`: what its checks found (empty: all passed)."""
    if workdir is not None:
        return Chaos(opts, workdir).run()
    with tempfile.TemporaryDirectory(prefix="skypanda-bench-chaos-") as tmp:
        return Chaos(opts, Path(tmp)).run()


def parse_schedule(text: str) -> tuple[tuple[float, str], ...]:
    """`KIND@SHARE,...` as a schedule (ChaosOptions.schedule).

    Raises:
        click.BadParameter: an unknown kind, or a share that is not a number in [0, 1].
    """
    out = []
    for item in text.split(","):
        kind, _, share = item.strip().partition("@")
        try:
            value = float(share)
        except ValueError:
            value = -1.0
        if kind not in FAULT_KINDS or not 0.0 <= value <= 1.0:
            raise click.BadParameter(
                f"{item.strip()!r}: expected KIND@SHARE, KIND one of {', '.join(FAULT_KINDS)}, "
                "SHARE between 0 and 1",
                param_hint="--schedule",
            )
        out.append((value, kind))
    return tuple(out)


def render(result: dict[str, Any]) -> str:
    """The figures as a table (problems listed after it, at most 20)."""
    lines = []
    for key, value in result.items():
        if key in ("problems", "options"):
            continue
        if isinstance(value, list):
            lines.append(f"{key:<24} {len(value) or '-'}")
            lines += [f"  {item}" for item in value]
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
        lines.append(f"{key:<24} {value}")
    problems = result["problems"]
    lines.append(f"{'problems':<24} {len(problems)}")
    lines += [f"  {p}" for p in problems[:20]]
    if len(problems) > 20:
        lines.append(f"  and {len(problems) - 20} more")
    return "\n".join(lines)


@click.command("chaos")
@click.option("--jobs", default=300, show_default=True, help="Jobs to run.")
@click.option("--seed", default=1, show_default=True, help="Draws the faults and the durations.")
@click.option("--pilots", default=3, show_default=True, help="Pilots kept running (4 slots each).")
@click.option("--pilot-kills", default=4, show_default=True, help="Pilots SIGKILLed.")
@click.option("--pilot-terms", default=4, show_default=True, help="Pilots SIGTERMed.")
@click.option("--server-kills", default=3, show_default=True, help="Server SIGKILLs (restarted).")
@click.option("--redeliveries", default=4, show_default=True,
              help="Times some delivered events are delivered again (10 each).")  # fmt: skip
@click.option("--payload-s", nargs=2, type=float, default=(0.2, 2.0), show_default=True,
              help="How long payloads run: from MIN to MAX seconds.")  # fmt: skip
@click.option("--outage", "outage_s", default=35.0, show_default=True,
              help="Seconds the server stays down after each SIGKILL.")  # fmt: skip
@click.option("--schedule", help="The faults in order, as KIND@SHARE (fired once SHARE of the "
              "jobs ended), comma-separated: e.g. server_sigkill@0.1,pilot_sigkill@0.1. "
              "Overrides the counts above.")  # fmt: skip
@click.option("--timeout", "timeout_s", default=600.0, show_default=True,
              help="Seconds the jobs get to end.")  # fmt: skip
@click.option("--keep", type=click.Path(file_okay=False), help="Keep home, records, logs here.")
@click.option("--json", "as_json", is_flag=True)
def chaos(
    jobs: int, seed: int, pilots: int, pilot_kills: int, pilot_terms: int, server_kills: int,
    redeliveries: int, payload_s: tuple[float, float], outage_s: float, schedule: str | None,
    timeout_s: float, keep: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Jobs run while pilots and the server are killed and events delivered twice; then
    checks: every job ended, none ran twice at once, no attempt counted for an outage, the
    database intact. Exit 1 when a check failed."""
    opts = ChaosOptions(
        jobs=jobs, seed=seed, pilots=pilots, pilot_kills=pilot_kills, pilot_terms=pilot_terms,
        server_kills=server_kills, redeliveries=redeliveries, outage_s=outage_s,
        min_s=payload_s[0], max_s=payload_s[1], timeout_s=timeout_s,
        schedule=parse_schedule(schedule) if schedule else None,
    )  # fmt: skip
    result = run_chaos(opts, Path(keep) if keep else None)
    click.echo(json.dumps(result) if as_json else render(result))
    if result["problems"] or result["attempts_from_outages"]:
        raise SystemExit(1)
