"""Where jobs run: queues (CRIC PanDA queues) and pilots (Harvester workers)."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Any, NamedTuple

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from skypanda.domain.launchers import LauncherSpec, LocalLauncherSpec
from skypanda.domain.states import PilotStatus
from skypanda.domain.values import (
    MAX_CORES,
    MAX_DURATION_S,
    MAX_GPUS,
    MAX_MEMORY_MB,
    NAME_PATTERN,
    Duration,
    Finite,
    Int,
    Request,
    Resources,
    Strict,
    check_storable,
    parse_duration,
)


class QueueStatus(StrEnum):
    """A queue's status (CRIC's): whether brokerage sends tasks there."""

    ONLINE = "online"  # brokered to, pilots run
    OFFLINE = "offline"  # not brokered to, no pilot starts; queued jobs wait
    TEST = "test"  # pilots run, but only tasks that name the queue are brokered there


AUTO_QUEUE = "auto"
"""`queue: auto` in a task: brokerage picks the queue. No queue may be named so."""

MAX_PILOTS = 10_000
"""Pilots of one queue on Cloud Run or GKE: a Cloud Run job execution runs at most 10,000 tasks."""
MAX_LOCAL_PILOTS = MAX_CORES
"""Pilots of one local queue: each is a process on this machine, so at most one per core of
the largest machine (`runtime.local.default_queue` makes one per core). More is a fork bomb."""
MAX_SCALE_STEP = 1000
"""Pilots one scaling decision launches, and jobs one acquire takes."""
MAX_SHARE = 1_000_000.0
"""A fair-share weight (others weigh 1)."""
MAX_SHARES = 1000
MAX_OWNER_CHARS = 256
MAX_DISK_GB = 1_000_000
MAX_LOG_MB = 256
"""The largest log cap per job attempt: a pilot keeps half of it (the log's tail) in memory per
running job. What must be kept whole is an output (`output_patterns`), not a log."""
_Owner = Annotated[str, Field(min_length=1, max_length=MAX_OWNER_CHARS)]


class Cadence(NamedTuple):
    """How often a queue's pilots call the server while they run jobs: a heartbeat (the pilot
    is alive, which jobs it holds; replies carry kills) and each running job's new output.
    Each call is a billed function invocation with its Firestore operations on Google Cloud."""

    heartbeat_interval_s: float
    heartbeat_timeout_s: float  # silent longer: the pilot is declared missed
    log_flush_interval_s: float


CADENCES = {
    "local": Cadence(5.0, 60.0, 2.0),  # the embedded backend: calls cost nothing, be snappy
    "cloudrun": Cadence(300.0, 900.0, 60.0),  # Google Cloud: cheap (PanDA pilots beat every
    "gke": Cadence(300.0, 900.0, 60.0),  # 30 min); output reaches the monitor within a minute
}
"""The defaults of a queue's cadence, by launcher kind."""
TIMEOUT_BEATS = 3
"""A heartbeat timeout left out is at least this many heartbeat intervals."""
MAX_HEARTBEAT_INTERVAL_S = 600.0
"""Each heartbeat renews the pilot's own credential, which lasts 20 minutes
(adapters.pilot_credentials): a pilot must beat at least twice in that time."""


def _launcher_kind(launcher: Any) -> str:
    kind = launcher.get("kind") if isinstance(launcher, dict) else getattr(launcher, "kind", None)
    return kind if isinstance(kind, str) else "local"


def _seconds(value: Any) -> float | None:
    """A duration as given, in seconds, if it reads as one (else the field's check says why)."""
    try:
        seconds = parse_duration(value)
    except ValueError:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return None
    return float(seconds) if math.isfinite(seconds) else None


class Queue(Strict):
    """Where jobs run (a CRIC PanDA queue): its status and limits, which brokerage checks,
    and what the local scaler keeps running there.

    Limits left out (None) are the pilot's own: `max_cores` defaults to `pilot_resources.cores`;
    memory is always bounded by `pilot_resources.memory_mb`. Older stored queues carry
    `online: true|false` instead of `status`; they load as online/offline.
    """

    name: str = Field(pattern=NAME_PATTERN)
    mode: str = Field(default="pull", pattern="^(pull|push)$")
    status: QueueStatus = QueueStatus.ONLINE
    min_pilots: Int = Field(default=1, ge=0, le=MAX_PILOTS)
    max_pilots: Int = Field(default=2, ge=0, le=MAX_PILOTS)  # MAX_LOCAL_PILOTS on local
    pilot_resources: Request = Field(default_factory=lambda: Resources(memory_mb=4000))
    max_memory_per_core_mb: Int | None = Field(default=None, ge=1, le=MAX_MEMORY_MB)
    max_cores: Int | None = Field(default=None, ge=1, le=MAX_CORES)
    max_walltime_s: Duration | None = None
    disk_gb: Finite | None = Field(default=None, gt=0, le=MAX_DISK_GB)  # scratch per pilot
    gpus: Int = Field(default=0, ge=0, le=MAX_GPUS)  # GPUs per pilot
    # Left out, these three take the defaults of the launcher's kind (CADENCES), see _cadence
    heartbeat_interval_s: Duration = CADENCES["local"].heartbeat_interval_s
    heartbeat_timeout_s: Duration = CADENCES["local"].heartbeat_timeout_s
    log_flush_interval_s: Duration = CADENCES["local"].log_flush_interval_s
    idle_timeout_s: Duration = 30.0
    jobs_per_acquire: Int = Field(default=8, ge=1, le=MAX_SCALE_STEP)
    max_log_mb: Int = Field(default=16, ge=1, le=MAX_LOG_MB)  # each attempt's log: its first
    # and last halves kept, the middle elided with a marker line (skypanda.pilot.logcap)
    looping_timeout_s: Duration = 1800.0  # a payload silent this long (no output, no file
    # change in its workdir) is killed as looping (PanDA's looping job check)
    shares: dict[_Owner, Annotated[Finite, Field(ge=0, le=MAX_SHARE)]] = Field(
        default_factory=dict, max_length=MAX_SHARES
    )
    launcher: LauncherSpec = Field(default_factory=LocalLauncherSpec)
    # scaler (Harvester): pilots kept ready, new ones per decision, queued (not yet running) at
    # most; push mode launches one pilot per activated job instead
    max_new_per_cycle: Int = Field(default=10, ge=1, le=MAX_SCALE_STEP)
    max_queued: Int = Field(default=10, ge=1, le=MAX_PILOTS)
    # fair share between owners on this queue: owner -> weight (others 1; 0: only when no
    # one else has jobs waiting)

    @model_validator(mode="before")
    @classmethod
    def _online_to_status(cls, data: Any) -> Any:
        """Migrate the old `online: bool` field (stored queues, old files) to `status`."""
        if not isinstance(data, dict) or "online" not in data:
            return data
        data = dict(data)
        online = data.pop("online")
        if not isinstance(online, bool):
            raise ValueError(f"online must be true or false, not {online!r} (prefer status)")
        status = QueueStatus.ONLINE if online else QueueStatus.OFFLINE
        if "status" in data and str(data["status"]) != status:
            raise ValueError(f"online: {online} contradicts status: {data['status']}")
        data.setdefault("status", status)
        return data

    @model_validator(mode="before")
    @classmethod
    def _cadence(cls, data: Any) -> Any:
        """Fill the heartbeat and log-flush intervals left out with the defaults of the
        launcher's kind (CADENCES: snappy for local pilots, cheap on Google Cloud), and a
        heartbeat timeout left out with at least TIMEOUT_BEATS intervals (so a slower
        heartbeat set alone still leaves room for a late beat)."""
        if not isinstance(data, dict):
            return data
        cadence = CADENCES.get(_launcher_kind(data.get("launcher")), CADENCES["local"])
        data = dict(data)
        data.setdefault("heartbeat_interval_s", cadence.heartbeat_interval_s)
        data.setdefault("log_flush_interval_s", cadence.log_flush_interval_s)
        interval = _seconds(data["heartbeat_interval_s"])
        if "heartbeat_timeout_s" not in data and interval is not None:
            scaled = min(TIMEOUT_BEATS * interval, MAX_DURATION_S)
            data["heartbeat_timeout_s"] = max(cadence.heartbeat_timeout_s, scaled)
        return data

    @field_validator("launcher")
    @classmethod
    def _storable_launcher(cls, launcher: LauncherSpec) -> LauncherSpec:
        """Its free texts (node selectors, tolerations, accounts) must be storable too."""
        check_storable(launcher.model_dump())
        return launcher

    @property
    def online(self) -> bool:
        """Pilots register and are scaled here: the queue is online or test (not offline)."""
        return self.status is not QueueStatus.OFFLINE

    @property
    def cores_limit(self) -> int:
        """Most cores one job may ask for here."""
        return self.max_cores if self.max_cores is not None else self.pilot_resources.cores

    @model_validator(mode="after")
    def _limits(self) -> Queue:
        if self.name == AUTO_QUEUE:
            raise ValueError(f"{AUTO_QUEUE!r} is reserved (queue: auto asks for brokerage)")
        if self.min_pilots > self.max_pilots:
            raise ValueError(
                f"min_pilots ({self.min_pilots}) exceeds max_pilots ({self.max_pilots})"
            )
        if self.launcher.kind == "local" and self.max_pilots > MAX_LOCAL_PILOTS:
            raise ValueError(
                f"max_pilots ({self.max_pilots}) is more than {MAX_LOCAL_PILOTS}, the most a "
                "local queue may run: each pilot is a process on this machine"
            )
        if self.heartbeat_timeout_s <= self.heartbeat_interval_s:
            raise ValueError("heartbeat_timeout_s must be longer than heartbeat_interval_s")
        if self.heartbeat_interval_s > MAX_HEARTBEAT_INTERVAL_S:
            raise ValueError(
                f"heartbeat_interval_s must be at most {MAX_HEARTBEAT_INTERVAL_S:g} s: each "
                "heartbeat renews the pilot's credential, which lasts 20 minutes"
            )
        if self.max_cores is not None and self.max_cores > self.pilot_resources.cores:
            raise ValueError(
                f"max_cores ({self.max_cores}) exceeds pilot_resources.cores "
                f"({self.pilot_resources.cores}): no pilot could run such a job"
            )
        return self


class Pilot(Strict):
    id: str
    queue: str
    status: PilotStatus = PilotStatus.SUBMITTED
    host: str = ""
    pid: int | None = None
    launcher_ref: str = ""
    resources: Resources = Field(default_factory=Resources)
    version: str = ""
    created_at: float
    heartbeat_at: float | None = None
    ended_at: float | None = None
    n_jobs: int = 0
    reason: str = ""
    drain: bool = False  # the server asks the pilot to take no new job and exit when idle
    push_job: str | None = None  # push mode: the one job this pilot was launched for
    # Payloads the pilot runs at once, as it said at registration (None: one per core, the
    # pilot's default). The scaler counts the slots its pilots have free (handlers.scale).
    slots: Int | None = Field(default=None, ge=1, le=MAX_SCALE_STEP)

    @property
    def payload_slots(self) -> int:
        """Payloads the pilot runs at once."""
        return self.slots if self.slots is not None else self.resources.cores
