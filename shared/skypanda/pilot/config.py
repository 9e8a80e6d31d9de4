"""How a pilot is configured: PilotConfig, its defaults from the host, and the command line.

Standard library only (the pilot ships as a zipapp).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from skypanda.pilot.helpformat import ClickLookParser
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


DESCRIPTION = """Run a pilot: it registers with the server, pulls jobs of QUEUE that fit it, runs
them, reports them and sends their logs, and exits after its idle timeout (or, with --job,
after that one job).

Example: skypanda pilot --server http://HOST:8470 --queue Q --token-file tokenfile"""
EPILOG = """This command uses argparse, not click like the other skypanda commands: the pilot
needs only the Python standard library, so that `python3 pilot.pyz` (the server's
/v1/pilot.pyz, or `skypanda pilot-zipapp`) runs it on any machine or image."""


def parse_args(argv: list[str]) -> PilotConfig:
    """Build a PilotConfig from command-line flags (and SKYPANDA_* environment variables)."""
    zipped = sys.argv[0].endswith(".pyz")  # `python3 pilot.pyz ...`
    p = ClickLookParser("python3 pilot.pyz" if zipped else "skypanda pilot", DESCRIPTION, EPILOG)
    p.option("--server", env="SKYPANDA_SERVER", metavar="URL", help="Server URL (required).")
    p.option("--queue", env="SKYPANDA_QUEUE", metavar="QUEUE", help="Queue to serve (required).")
    p.option(
        "--token", metavar="TOKEN",
        help="Bearer token (a pilot, launcher or admin token; default: --token-stdin, then "
        "--token-file, then $SKYPANDA_TOKEN); the other two keep it out of the process list.",
    )  # fmt: skip
    p.option("--token-file", metavar="FILE", help="File holding the bearer token.")
    p.option(
        "--token-stdin", action="store_true",
        help="Read the bearer token from the first line of standard input (how launchers give "
        "it: never in the environment, where /proc/PID/environ would show it to payloads).",
    )  # fmt: skip
    p.option("--pilot-id", env="SKYPANDA_PILOT_ID", metavar="ID", help="Id from the launcher.")
    p.option(
        "--workdir", metavar="DIR", help="Base directory of job workdirs (default: a temp dir)."
    )
    p.option("--memory-mb", type=int, metavar="MB", help="Memory offered (default: the host's).")
    p.option("--cores", type=int, metavar="N", help="Cores offered (default: the host's).")
    p.option("--slots", type=int, metavar="N", help="Payloads run at once (default: --cores).")
    p.option(
        "--idle-timeout", type=float, metavar="SECONDS",
        help="Exit after this long without jobs (default: the queue's, else "
        f"{DEFAULT_IDLE_TIMEOUT_S:g}).",
    )  # fmt: skip
    p.option(
        "--heartbeat-interval", type=float, metavar="SECONDS",
        help=f"Seconds between heartbeats (default: the queue's, else {DEFAULT_HEARTBEAT_S:g}).",
    )  # fmt: skip
    p.option(
        "--max-jobs", type=int, metavar="N", help="Stop after this many jobs (default: no limit)."
    )
    p.option(
        "--outage-budget", type=float, metavar="SECONDS", env="SKYPANDA_OUTAGE_BUDGET",
        default=DEFAULT_OUTAGE_BUDGET_S,
        help="How long to ride out a server that does not answer (payloads keep running, "
        "reports wait) before giving up on it.",
    )  # fmt: skip
    p.option(
        "--stop-grace", type=float, metavar="SECONDS", env="SKYPANDA_STOP_GRACE",
        help="Seconds from SIGTERM to SIGKILL that the launcher's platform gives (e.g. 15 on a "
        "GKE spot VM): on SIGTERM, payloads are killed, their jobs reported and the pilot "
        "ended within it (default: no limit).",
    )  # fmt: skip
    p.option(
        "--job", metavar="JOB_ID", env="SKYPANDA_PUSH_JOB",
        help="Push mode: run exactly this job, then exit.",
    )  # fmt: skip
    p.option(
        "--payload-user", metavar="NAME|UID", env="SKYPANDA_PAYLOAD_USER",
        help="Run payloads as this Unix user, which cannot read the pilot's files, environment "
        "or memory; the pilot must run as root.",
    )  # fmt: skip
    p.finish()
    args = p.parse_args(argv)
    if not args.server or not args.queue:
        p.error("--server and --queue are required (or SKYPANDA_SERVER and SKYPANDA_QUEUE)")
    payload_user = None
    if args.payload_user:
        try:
            payload_user = resolve_payload_user(args.payload_user)
        except ValueError as e:  # one line: the usage would not help
            p.exit(2, f"Error: --payload-user: {e}\n")
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
            token=token or os.environ.get("SKYPANDA_TOKEN") or None,
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
