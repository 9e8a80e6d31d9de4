"""How a pilot is configured: PilotConfig, its defaults from the host, and the command line.

Standard library only (the pilot ships as a zipapp).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from skypanda.pilot.outage import DEFAULT_OUTAGE_BUDGET_S
from skypanda.pilot.sandbox import PayloadUser, resolve_payload_user

DEFAULT_HEARTBEAT_S, DEFAULT_IDLE_TIMEOUT_S, DEFAULT_LOG_FLUSH_S = 60.0, 300.0, 2.0
"""Used when neither the pilot's flags nor the server's queue settings give a value."""


def _host_cores() -> int:
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def _host_memory_mb() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20)
    except (ValueError, OSError, AttributeError):
        return 2000


@dataclass
class PilotConfig:
    """How one pilot runs; validated at construction.

    Attributes:
        server: base URL of the skypanda API.
        token: bearer token, or None where the server needs none.
        queue: the queue this pilot serves.
        pilot_id: the id the launcher gave this pilot, or None to let the server choose.
        workdir: base directory for job workdirs; None: a temporary one, removed at exit.
        memory_mb, cores: what the pilot offers; jobs fit within them.
        slots: payloads run at once (default: cores).
        idle_timeout_s, heartbeat_interval_s: None takes the queue's values from the server.
        max_jobs: stop acquiring after this many jobs.
        log_flush_s: how often running jobs' output is sent; None takes the queue's
            `log_flush_interval_s` from the server.
        job_id: push mode: run exactly this job (the one the pilot was launched for), then
            exit; None: pull mode, acquire jobs of the queue until idle.
        payload_user: run payloads as this user (see `sandbox`); None: as the pilot's user.
        outage_budget_s: how long to ride out a server that does not answer (see `outage`)
            before giving up on it.
        stop_grace_s: seconds between the SIGTERM the pilot may get and the SIGKILL that
            follows (the launcher's grace, see `stopping`); None: stopping is not hurried.
    """

    server: str
    token: str | None
    queue: str
    pilot_id: str | None = None
    workdir: str | None = None
    memory_mb: int = field(default_factory=_host_memory_mb)
    cores: int = field(default_factory=_host_cores)
    slots: int | None = None
    idle_timeout_s: float | None = None
    heartbeat_interval_s: float | None = None
    max_jobs: int | None = None
    log_flush_s: float | None = None
    job_id: str | None = None
    payload_user: PayloadUser | None = None
    outage_budget_s: float = DEFAULT_OUTAGE_BUDGET_S
    stop_grace_s: float | None = None

    def __post_init__(self) -> None:
        if not self.server.startswith(("http://", "https://")):
            raise ValueError(f"server must be an http:// or https:// URL, got {self.server!r}")
        if not self.queue:
            raise ValueError("queue must not be empty")
        if self.job_id is not None and not self.job_id.strip():
            raise ValueError("job_id must not be empty (omit it for pull mode)")
        for name in ("memory_mb", "cores", "slots", "max_jobs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name in (
            "idle_timeout_s", "heartbeat_interval_s", "log_flush_s", "outage_budget_s",
            "stop_grace_s",
        ):  # fmt: skip
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")

    @property
    def effective_slots(self) -> int:
        return self.slots or self.cores


def parse_args(argv: list[str]) -> PilotConfig:
    """Build a PilotConfig from command-line flags (and SKYPANDA_* environment variables)."""
    p = argparse.ArgumentParser(prog="skypanda-pilot", description="Run a skypanda pilot.")
    env = os.environ.get
    p.add_argument("--server", default=env("SKYPANDA_SERVER"), help="API base URL")
    p.add_argument("--token", help="bearer token (default: --token-file, then $SKYPANDA_TOKEN)")
    p.add_argument("--token-file", help="file holding the bearer token")
    p.add_argument(
        "--token-stdin",
        action="store_true",
        help="read the bearer token from the first line of standard input (how launchers give "
        "it: never in the environment, where /proc/PID/environ would show it to payloads)",
    )
    p.add_argument("--queue", default=env("SKYPANDA_QUEUE"), help="queue to serve")
    p.add_argument("--pilot-id", default=env("SKYPANDA_PILOT_ID"), help="id from the launcher")
    p.add_argument("--workdir", help="base directory for job workdirs (default: a temp dir)")
    p.add_argument("--memory-mb", type=int, help="memory offered (default: the host's)")
    p.add_argument("--cores", type=int, help="cores offered (default: the host's)")
    p.add_argument("--slots", type=int, help="payloads run at once (default: cores)")
    p.add_argument("--idle-timeout", type=float, help="seconds without jobs before exiting")
    p.add_argument("--heartbeat-interval", type=float, help="seconds between heartbeats")
    p.add_argument("--max-jobs", type=int, help="stop after this many jobs")
    p.add_argument(
        "--outage-budget",
        type=float,
        default=env("SKYPANDA_OUTAGE_BUDGET") or DEFAULT_OUTAGE_BUDGET_S,
        metavar="SECONDS",
        help="how long to ride out a server that does not answer (payloads keep running, "
        "reports wait) before giving up on it (default: $SKYPANDA_OUTAGE_BUDGET, else "
        f"{DEFAULT_OUTAGE_BUDGET_S:g})",
    )
    p.add_argument(
        "--stop-grace",
        type=float,
        default=env("SKYPANDA_STOP_GRACE") or None,
        metavar="SECONDS",
        help="seconds from SIGTERM to SIGKILL that the launcher's platform gives (e.g. 15 on a "
        "GKE spot VM): on SIGTERM, payloads are killed, their jobs reported and the pilot "
        "ended within it (default: $SKYPANDA_STOP_GRACE, else no limit)",
    )
    p.add_argument(
        "--job",
        default=env("SKYPANDA_PUSH_JOB") or None,
        metavar="JOB_ID",
        help="push mode: run exactly this job, then exit (default: $SKYPANDA_PUSH_JOB)",
    )
    p.add_argument(
        "--payload-user",
        default=env("SKYPANDA_PAYLOAD_USER") or None,
        metavar="NAME|UID",
        help="run payloads as this Unix user, which cannot read the pilot's files, environment "
        "or memory; the pilot must run as root (default: $SKYPANDA_PAYLOAD_USER)",
    )
    args = p.parse_args(argv)
    if not args.server or not args.queue:
        p.error("--server and --queue are required (or SKYPANDA_SERVER and SKYPANDA_QUEUE)")
    payload_user = None
    if args.payload_user:
        try:
            payload_user = resolve_payload_user(args.payload_user)
        except ValueError as e:  # one line: the usage would not help
            p.exit(2, f"{p.prog}: error: --payload-user: {e}\n")
    token = args.token
    if not token and args.token_stdin:
        token = sys.stdin.readline().strip()
        if not token:
            p.error("--token-stdin: no token on standard input")
    if not token and args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            p.error(f"cannot read --token-file: {e}")
    try:
        return PilotConfig(
            server=args.server,
            token=token or env("SKYPANDA_TOKEN") or None,
            queue=args.queue,
            pilot_id=args.pilot_id or None,
            workdir=args.workdir,
            memory_mb=_host_memory_mb() if args.memory_mb is None else args.memory_mb,
            cores=_host_cores() if args.cores is None else args.cores,
            slots=args.slots,
            idle_timeout_s=args.idle_timeout,
            heartbeat_interval_s=args.heartbeat_interval,
            max_jobs=args.max_jobs,
            job_id=args.job,
            payload_user=payload_user,
            outage_budget_s=args.outage_budget,
            stop_grace_s=args.stop_grace,
        )
    except ValueError as e:
        p.error(str(e))
