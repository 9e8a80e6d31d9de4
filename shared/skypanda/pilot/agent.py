"""The pull-mode pilot: register, acquire jobs, run them concurrently, report, heartbeat, end.

Threads, and what each one owns:

    main       registers, acquires jobs into the worker pool, decides when to stop, ends the pilot
    workers    `slots` threads, each running one payload at a time (runner.run_payload)
    reporter   batches status reports into /update calls and sends running jobs' output
    heartbeat  tells the server which jobs the pilot holds; applies kill and drain commands

Per-job round trips are avoided on purpose: a pilot should sustain hundreds of trivial jobs per
second, so jobs are acquired in bulk, and "running" and final reports of many jobs share one
/update call (a job that ends before the flush is only reported once, as ended).

Exit codes: 0 clean (idle, drained, max jobs reached, SIGTERM/SIGINT); 1 the server refused
the pilot (e.g. a bad token or an unknown queue) or the pilot itself failed; 3 the server could
not be reached (after the client's retries).
"""

from __future__ import annotations

import argparse
import codecs
import concurrent.futures
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skypanda.domain.codes import ErrorCode
from skypanda.pilot.client import ApiClient, ApiError
from skypanda.pilot.runner import PayloadResult, run_payload

log = logging.getLogger("skypanda.pilot")

PILOT_VERSION = "0.1.0"
"""Sent at registration; keep in step with skypanda.__version__ (not imported: stdlib only)."""

EXIT_OK, EXIT_ERROR, EXIT_UNREACHABLE = 0, 1, 3
FINAL_STATUSES = frozenset({"finished", "failed"})
REPORT_FLUSH_S = 0.15
REPORT_BATCH = 200
LOG_CHUNK_BYTES = 64 * 1024
LOG_BUFFER_MAX = 8 * 1024 * 1024
"""Output kept per job while the server is slow to take it; beyond this it is counted, dropped."""
POLL_MIN_S, POLL_MAX_S = 0.1, 2.0
PREFETCH_WINDOW_S = 0.5
GROUPS_DIR = ".payload-groups"  # see runner.kill_recorded_groups
PREFETCH_BELOW_S = 1.0
"""Hold a second round of jobs only while jobs take less than this (see acquire_size)."""
STOP_CHECK_S = 0.25
DEFAULT_HEARTBEAT_S, DEFAULT_IDLE_TIMEOUT_S = 60.0, 300.0


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
        log_flush_s: how often running jobs' output is sent.
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
    log_flush_s: float = 2.0

    def __post_init__(self) -> None:
        if not self.server.startswith(("http://", "https://")):
            raise ValueError(f"server must be an http:// or https:// URL, got {self.server!r}")
        if not self.queue:
            raise ValueError("queue must not be empty")
        for name in ("memory_mb", "cores", "slots", "max_jobs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name in ("idle_timeout_s", "heartbeat_interval_s", "log_flush_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")

    @property
    def effective_slots(self) -> int:
        return self.slots or self.cores


def acquire_size(
    *,
    held: int,
    slots: int,
    per_acquire: int,
    mean_runtime_s: float | None,
    remaining: int | None,
) -> int:
    """How many jobs to ask the server for now.

    The pilot holds up to `slots` jobs while jobs are long, so no job waits here behind long
    ones while another pilot could run it. While recent jobs were short it holds about
    PREFETCH_WINDOW_S of work per slot (at least two jobs, at most `per_acquire` per call):
    short jobs finish faster than an acquire round trip, and one acquire of many jobs costs
    the server little more than an acquire of one.
    """
    target = slots
    if mean_runtime_s is not None and mean_runtime_s < PREFETCH_BELOW_S:
        per_slot = max(2, int(PREFETCH_WINDOW_S / max(mean_runtime_s, 1e-3)))
        target = slots * per_slot
    n = min(target - held, per_acquire)
    if remaining is not None:
        n = min(n, remaining)
    return max(n, 0)


class _HeldJob:
    """A job this pilot holds, from acquire until its final report is sent (or refused)."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.id = str(job["id"])
        self.attempt = int(job.get("attempt") or 1)
        resources = job.get("resources") or {}
        self.cores = int(resources.get("cores") or 1)
        self.stop_code: int | None = None  # set on the server's kill or a refused report
        self.started = False
        self.ended = False
        self.abandoned = False  # the server refused a report: never report this attempt again
        self.flushed_at = time.monotonic()
        self._out = bytearray()
        self._dropped = 0
        self._lock = threading.Lock()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add_output(self, chunk: bytes) -> int:
        """Buffer output for the reporter; return how much is buffered."""
        with self._lock:
            room = LOG_BUFFER_MAX - len(self._out)
            self._out += chunk[:room] if room > 0 else b""
            self._dropped += max(0, len(chunk) - max(room, 0))
            return len(self._out)

    def buffered(self) -> int:
        with self._lock:
            return len(self._out)

    def take_text(self, *, final: bool) -> str:
        """The buffered output as text; only the reporter thread calls this (decoder state)."""
        with self._lock:
            data, dropped = bytes(self._out), self._dropped
            self._out.clear()
            self._dropped = 0
        self.flushed_at = time.monotonic()
        text = self._decoder.decode(data, final=final)
        if dropped:
            text += f"[skypanda-pilot] {dropped} bytes of output dropped (server too slow)\n"
        return text


class _Registry:
    """The jobs the pilot holds, shared by all threads; `on_remove` wakes whoever waits."""

    def __init__(self, on_remove: Callable[[], None]) -> None:
        self._jobs: dict[str, _HeldJob] = {}
        self._lock = threading.Lock()
        self._on_remove = on_remove

    def add(self, held: _HeldJob) -> None:
        with self._lock:
            self._jobs[held.id] = held

    def get(self, job_id: str) -> _HeldJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def remove(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)
        self._on_remove()

    def snapshot(self) -> list[_HeldJob]:
        with self._lock:
            return list(self._jobs.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)


class _Cores:
    """Cores free on the pilot, so that concurrent multi-core jobs do not oversubscribe it.

    Memory is not gated here: the server only sends jobs that fit the pilot, and payloads
    rarely use all they ask for. A job asking more cores than the pilot has gets them all.
    """

    def __init__(self, total: int) -> None:
        self._total = total
        self._used = 0
        self._cond = threading.Condition()

    def take(self, cores: int, abort: Callable[[], bool]) -> int | None:
        """Wait until the job fits; return the cores taken, or None if `abort()` said stop."""
        need = max(1, min(cores, self._total))
        with self._cond:
            while True:
                if abort():
                    return None
                if self._used + need <= self._total:
                    self._used += need
                    return need
                self._cond.wait(STOP_CHECK_S)

    def give(self, cores: int) -> None:
        with self._cond:
            self._used -= cores
            self._cond.notify_all()


class _Reporter:
    """Sends status reports in batches and running jobs' output in chunks, from one thread.

    One thread does both so that a job's output chunks always reach the server before its final
    report, which carries the rest of the output: the server appends "log" and then applies the
    status, and a chunk arriving after that would be out of order or refused.
    """

    def __init__(
        self,
        client: ApiClient,
        pilot_id: str,
        registry: _Registry,
        log_flush_s: float,
        on_reply: Callable[[Any], None],
        on_unreachable: Callable[[ApiError], None],
    ) -> None:
        self._client = client
        self._quoted_id = urllib.parse.quote(pilot_id, safe="")
        self._registry = registry
        self._log_flush_s = log_flush_s
        self._on_reply = on_reply
        self._on_unreachable = on_unreachable
        self._pending: dict[str, tuple[_HeldJob, dict[str, Any]]] = {}
        self._tries: dict[str, int] = {}
        self._cond = threading.Condition()
        self._closing = False
        self._nudged = False
        self._thread = threading.Thread(target=self._run, name="reporter", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, held: _HeldJob, report: dict[str, Any]) -> None:
        """Queue a report; a later report of the same job replaces one not yet sent."""
        with self._cond:
            if held.abandoned:
                if report["status"] in FINAL_STATUSES:
                    self._registry.remove(held.id)
                return
            self._pending[held.id] = (held, report)
            if len(self._pending) >= REPORT_BATCH:
                self._cond.notify()

    def nudge(self) -> None:
        """Flush soon: a job has buffered a full log chunk."""
        with self._cond:
            self._nudged = True
            self._cond.notify()

    def close(self, timeout: float | None = None) -> None:
        """Send everything still pending, then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    def _due(self) -> bool:
        return self._closing or self._nudged or len(self._pending) >= REPORT_BATCH

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(self._due, timeout=REPORT_FLUSH_S)
                    self._nudged = False
                    closing = self._closing
                self._flush_logs()
                while self._flush_reports():
                    pass
                with self._cond:
                    if closing and not self._pending:
                        return
        except ApiError as e:  # only "unreachable" escapes the flushes
            self._on_unreachable(e)

    def _flush_logs(self) -> None:
        now = time.monotonic()
        for held in self._registry.snapshot():
            if not held.started or held.ended or held.abandoned:
                continue  # an ended job's remaining output travels with its final report
            size = held.buffered()
            if size >= LOG_CHUNK_BYTES or (size and now - held.flushed_at >= self._log_flush_s):
                self._send_log(held, held.take_text(final=False))

    def _send_log(self, held: _HeldJob, text: str) -> None:
        if not text:
            return
        path = f"/v1/jobs/{urllib.parse.quote(held.id, safe='')}/log"
        try:
            self._client.call(
                "POST",
                path,
                params={"attempt": held.attempt},
                raw=text.encode("utf-8"),
                content_type="text/plain; charset=utf-8",
            )
        except ApiError as e:
            if e.unreachable:
                raise
            log.warning("job %s: output chunk refused: %s", held.id, e)

    def _take_batch(self) -> list[tuple[_HeldJob, dict[str, Any]]]:
        batch = []
        with self._cond:
            for job_id in list(self._pending)[:REPORT_BATCH]:
                held, report = self._pending.pop(job_id)
                if held.abandoned:  # refused while this report waited
                    if report["status"] in FINAL_STATUSES:
                        self._registry.remove(held.id)
                    continue
                batch.append((held, report))
        for held, report in batch:
            if report["status"] in FINAL_STATUSES and "log" not in report:
                report["log"] = held.take_text(final=True) or None
        return batch

    def _flush_reports(self) -> bool:
        """Send one batch; True if more reports wait and the last batch went through."""
        batch = self._take_batch()
        if not batch:
            return False
        body = {"reports": [dict(report, log=report.get("log")) for _, report in batch]}
        try:
            reply = self._client.call("POST", f"/v1/pilots/{self._quoted_id}/update", body)
        except ApiError as e:
            if e.unreachable:
                raise
            log.error("the server refused an update of %d report(s): %s", len(batch), e)
            self._requeue(batch)
            return False
        self._apply_results(batch, reply)
        self._on_reply(reply)
        with self._cond:
            return bool(self._pending)

    def _requeue(self, batch: list[tuple[_HeldJob, dict[str, Any]]]) -> None:
        """Put a refused batch back (a newer report of a job wins); give up after 3 tries."""
        with self._cond:
            for held, report in batch:
                tries = self._tries.get(held.id, 0) + 1
                if tries >= 3:
                    log.error("job %s: giving up on its %s report", held.id, report["status"])
                    self._tries.pop(held.id, None)
                    if report["status"] in FINAL_STATUSES:
                        self._registry.remove(held.id)
                    continue
                self._tries[held.id] = tries
                self._pending.setdefault(held.id, (held, report))

    def _apply_results(self, batch: list[tuple[_HeldJob, dict[str, Any]]], reply: Any) -> None:
        results = reply.get("results") if isinstance(reply, dict) else None
        by_id = {str(r.get("job_id")): r for r in results or [] if isinstance(r, dict)}
        for held, report in batch:
            self._tries.pop(held.id, None)
            final = report["status"] in FINAL_STATUSES
            result = by_id.get(held.id)
            if result is not None and not result.get("accepted", True):
                reason = result.get("reason", "")
                log.warning("job %s: %s report refused: %s", held.id, report["status"], reason)
                held.abandoned = True
                if not held.ended:
                    held.stop_code = ErrorCode.KILLED_BY_SERVER
            if final:
                self._registry.remove(held.id)


class _Heartbeat:
    """Beats every `interval_s` with the jobs held; hands replies to `on_reply`."""

    def __init__(
        self,
        client: ApiClient,
        pilot_id: str,
        interval_s: float,
        registry: _Registry,
        on_reply: Callable[[Any], None],
        on_unreachable: Callable[[ApiError], None],
    ) -> None:
        self._client = client
        self._path = f"/v1/pilots/{urllib.parse.quote(pilot_id, safe='')}/heartbeat"
        self._interval_s = interval_s
        self._registry = registry
        self._on_reply = on_reply
        self._on_unreachable = on_unreachable
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stopped.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            jobs = [held.id for held in self._registry.snapshot()]
            try:
                reply = self._client.call("POST", self._path, {"jobs": jobs})
            except ApiError as e:
                if e.unreachable:
                    self._on_unreachable(e)
                    return
                log.warning("heartbeat refused: %s", e)
                continue
            self._on_reply(reply)


class _Pilot:
    """One pilot's life: register, the acquire loop, shutdown, end. See the module docstring."""

    def __init__(self, cfg: PilotConfig, client: ApiClient) -> None:
        self.cfg = cfg
        self.client = client
        self.slots = cfg.effective_slots
        self.wake = threading.Event()
        self.registry = _Registry(on_remove=self.wake.set)
        # --slots above --cores means the user wants 1-core jobs to share cores.
        self.cores = _Cores(max(cfg.cores, self.slots))
        self.pilot_id = cfg.pilot_id or ""
        self.queue_cfg: dict[str, Any] = {}
        self.base: Path | None = None
        self.owns_base = False
        # Written by signal handlers and other threads; read by polling (no locks in handlers).
        self.stop_code: int | None = None
        self.stop_reason = ""
        self.unreachable: ApiError | None = None
        self.refused: ApiError | None = None
        self.draining = False
        self._lock = threading.Lock()
        self._active = 0
        self._acquired = 0
        self._mean_runtime: float | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._reporter: _Reporter | None = None
        self._heartbeat: _Heartbeat | None = None

    def request_stop(self, code: int, reason: str) -> None:
        """Stop acquiring and kill running payloads with `code`; safe in a signal handler."""
        if self.stop_code is None:
            self.stop_reason = reason
            self.stop_code = code

    # -- life cycle -------------------------------------------------------------------------

    def run(self) -> int:
        try:
            self._register()
        except ApiError as e:
            log.error("cannot register with %s: %s", self.cfg.server, e)
            return EXIT_UNREACHABLE if e.unreachable else EXIT_ERROR
        failure: Exception | None = None
        try:
            self._prepare_workdir()
            self._start_threads()
            status, reason = self._loop()
        except Exception as e:  # a pilot bug: still kill the payloads, report, end
            log.exception("pilot error")
            failure, status, reason = e, "failed", f"pilot error: {e}"
        finally:
            if self.stop_code is None and failure is not None:
                self.request_stop(ErrorCode.SIGTERM, "pilot error")
            self._shutdown()
        code = self._end(status, reason)
        return EXIT_ERROR if failure is not None else code

    def _register(self) -> None:
        body = {
            "pilot_id": self.cfg.pilot_id,
            "queue": self.cfg.queue,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "resources": {"memory_mb": self.cfg.memory_mb, "cores": self.cfg.cores},
            "version": PILOT_VERSION,
        }
        reply = self.client.call("POST", "/v1/pilots", body)
        if not isinstance(reply, dict) or not isinstance(reply.get("pilot"), dict):
            raise ApiError(200, f"unexpected registration answer: {reply!r:.200}")
        self.pilot_id = str(reply["pilot"]["id"])
        self.queue_cfg = reply.get("queue") or {}
        log.info(
            "registered pilot %s on queue %s (%d slots, %d cores, %d MB)",
            self.pilot_id,
            self.cfg.queue,
            self.slots,
            self.cfg.cores,
            self.cfg.memory_mb,
        )

    def _setting(self, own: float | None, key: str, default: float) -> float:
        return float(own if own is not None else self.queue_cfg.get(key) or default)

    def _prepare_workdir(self) -> None:
        if self.cfg.workdir:
            self.base = Path(self.cfg.workdir)
            self.base.mkdir(parents=True, exist_ok=True)
        else:
            self.base = Path(tempfile.mkdtemp(prefix=f"skypanda-pilot-{self.pilot_id[:40]}-"))
            self.owns_base = True

    def _start_threads(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.slots, thread_name_prefix="payload"
        )
        self._reporter = _Reporter(
            self.client,
            self.pilot_id,
            self.registry,
            self.cfg.log_flush_s,
            self._apply_commands,
            self._on_unreachable,
        )
        interval = self._setting(
            self.cfg.heartbeat_interval_s, "heartbeat_interval_s", DEFAULT_HEARTBEAT_S
        )
        self._heartbeat = _Heartbeat(
            self.client,
            self.pilot_id,
            interval,
            self.registry,
            self._apply_commands,
            self._on_unreachable,
        )
        self._reporter.start()
        self._heartbeat.start()

    def _shutdown(self) -> None:
        """Wait for the payloads (killed if stopping), then flush the reports."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self._reporter is not None:
            self._reporter.close(timeout=None if self.unreachable is None else 2.0)
        if self.owns_base and self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)

    def _end(self, status: str, reason: str) -> int:
        client = self.client
        if self.unreachable is not None:
            status, reason = "failed", "server unreachable"
            client = ApiClient(self.cfg.server, self.cfg.token, timeout=5.0, retries=0)
        path = f"/v1/pilots/{urllib.parse.quote(self.pilot_id, safe='')}/end"
        try:
            client.call("POST", path, {"status": status, "reason": reason})
        except ApiError as e:
            log.warning("could not end the pilot on the server: %s", e)
        log.info("pilot %s ended: %s (%s)", self.pilot_id, status, reason)
        if self.unreachable is not None:
            return EXIT_UNREACHABLE
        return EXIT_ERROR if self.refused is not None else EXIT_OK

    # -- the acquire loop -------------------------------------------------------------------

    def _loop(self) -> tuple[str, str]:
        """Acquire and dispatch jobs until idle, drained, done, stopped or cut off."""
        idle_timeout = self._setting(
            self.cfg.idle_timeout_s, "idle_timeout_s", DEFAULT_IDLE_TIMEOUT_S
        )
        per_acquire = int(self.queue_cfg.get("jobs_per_acquire") or self.slots * 2)
        backoff, idle_since = POLL_MIN_S, time.monotonic()
        while True:
            self.wake.clear()
            ended = self._ending()
            if ended is not None:
                return ended
            n = self._acquire_size(per_acquire) if self._accepting() else 0
            got = self._acquire(n) if n > 0 else 0
            now = time.monotonic()
            if got or len(self.registry):
                idle_since = now
            elif now - idle_since >= idle_timeout:
                log.info("no job for %gs: exiting", idle_timeout)
                return "finished", "idle"
            if n > 0 and got == n:
                backoff = POLL_MIN_S
                continue  # a full batch: more jobs may be waiting
            if n == 0:
                wait = POLL_MAX_S  # a finishing job, drain or stop wakes us
            elif got:
                backoff = wait = POLL_MIN_S
            else:
                wait, backoff = backoff, min(backoff * 2, POLL_MAX_S)
            if not len(self.registry):  # do not oversleep the idle timeout
                wait = min(wait, max(idle_since + idle_timeout - now, 0.01))
            self._sleep(wait)

    def _ending(self) -> tuple[str, str] | None:
        """Why the loop should end now, as (status, reason) for /end, or None to go on."""
        if self.unreachable is not None:
            log.error("%s: stopping, %d job(s) to kill", self.unreachable, self._active)
            self.request_stop(ErrorCode.LOST_HEARTBEAT, "server unreachable")
            return "failed", "server unreachable"
        if self.stop_code is not None:
            log.info("stopping (%s): killing %d running job(s)", self.stop_reason, self._active)
            return "failed", self.stop_reason
        if self._accepting() or len(self.registry):
            return None
        if self.refused is not None:
            return "failed", f"acquire refused: {self.refused.message}"
        if self.draining:
            return "finished", "drained"
        return "finished", f"max jobs ({self.cfg.max_jobs}) done"

    def _accepting(self) -> bool:
        if self.draining or self.refused is not None or self.stop_code is not None:
            return False
        return self.cfg.max_jobs is None or self._acquired < self.cfg.max_jobs

    def _acquire_size(self, per_acquire: int) -> int:
        with self._lock:
            remaining = None if self.cfg.max_jobs is None else self.cfg.max_jobs - self._acquired
            return acquire_size(
                held=self._active,
                slots=self.slots,
                per_acquire=per_acquire,
                mean_runtime_s=self._mean_runtime,
                remaining=remaining,
            )

    def _acquire(self, n: int) -> int:
        path = f"/v1/pilots/{urllib.parse.quote(self.pilot_id, safe='')}/acquire"
        try:
            reply = self.client.call("POST", path, {"n": n})
        except ApiError as e:
            if e.unreachable:
                self._on_unreachable(e)
            elif 400 <= e.status < 500:
                log.error("the server refused to give jobs, finishing: %s", e)
                self.refused = e
            else:
                log.warning("acquire failed, will retry: %s", e)
            return 0
        jobs = reply.get("jobs") if isinstance(reply, dict) else None
        for job in jobs or []:
            try:
                held = _HeldJob(job)
            except (KeyError, TypeError, ValueError) as e:  # a server bug; the sweep requeues it
                log.error("skipping a malformed job %r: %s", job, e)
                continue
            self._dispatch(held)
        if jobs:
            log.info("acquired %d job(s)", len(jobs))
        return len(jobs or [])

    def _dispatch(self, held: _HeldJob) -> None:
        assert self._executor is not None
        self.registry.add(held)
        with self._lock:
            self._active += 1
            self._acquired += 1
        self._executor.submit(self._work, held)

    def _sleep(self, seconds: float) -> None:
        """Wait up to `seconds`, waking early for events and (by polling) for signals."""
        deadline = time.monotonic() + seconds
        while self.stop_code is None and self.unreachable is None:
            left = deadline - time.monotonic()
            if left <= 0 or self.wake.wait(min(left, STOP_CHECK_S)):
                return

    # -- workers ----------------------------------------------------------------------------

    def _work(self, held: _HeldJob) -> None:
        """Run one job in a worker thread and report it; never raises."""
        try:
            result = self._run_job(held)
        except Exception as e:  # a pilot bug must not lose the job silently
            log.exception("job %s: pilot error", held.id)
            now = time.time()
            code = ErrorCode.PAYLOAD_NOT_STARTED
            result = PayloadResult("failed", None, code, f"pilot error: {e}", now, now)
        held.ended = True
        assert self._reporter is not None
        self._reporter.submit(held, _report(held, result))
        runtime = result.ended_at - result.started_at
        with self._lock:
            self._active -= 1
            mean = self._mean_runtime
            self._mean_runtime = runtime if mean is None else 0.8 * mean + 0.2 * runtime
        self.wake.set()
        outcome = result.error_diag or f"exit code {result.exit_code}"
        log.info(
            "job %s.%d %s (%s) in %.2fs", held.id, held.attempt, result.status, outcome, runtime
        )

    def _run_job(self, held: _HeldJob) -> PayloadResult:
        taken = self.cores.take(held.cores, lambda: self._should_stop(held) is not None)
        if taken is None:
            code = self._should_stop(held) or ErrorCode.SIGTERM
            now = time.time()
            return PayloadResult("failed", None, code, f"not started: {_code_name(code)}", now, now)
        try:
            assert self.base is not None and self._reporter is not None
            held.started = True
            self._reporter.submit(held, _report(held, None))
            return run_payload(
                held.job,
                self.base / f"{_safe(held.id)}.{held.attempt}",
                on_output=lambda chunk: self._on_output(held, chunk),
                should_stop=lambda: self._should_stop(held),
                groups=self.base / GROUPS_DIR,
            )
        finally:
            self.cores.give(taken)

    def _should_stop(self, held: _HeldJob) -> int | None:
        return held.stop_code if held.stop_code is not None else self.stop_code

    def _on_output(self, held: _HeldJob, chunk: bytes) -> None:
        if held.abandoned:
            return
        before = held.buffered()
        after = held.add_output(chunk)
        if before < LOG_CHUNK_BYTES <= after:  # just filled a chunk: no need to wait for the timer
            assert self._reporter is not None
            self._reporter.nudge()

    # -- replies from the server ------------------------------------------------------------

    def _apply_commands(self, reply: Any) -> None:
        """Act on "kill" commands and "drain" from a heartbeat or update reply."""
        if not isinstance(reply, dict):
            return
        for command in reply.get("commands") or []:
            job_id = command.get("kill") if isinstance(command, dict) else None
            held = self.registry.get(str(job_id)) if job_id is not None else None
            if held is not None and held.stop_code is None and not held.ended:
                log.info("job %s: the server asked to kill it", held.id)
                held.stop_code = ErrorCode.KILLED_BY_SERVER
        if reply.get("drain") and not self.draining:
            log.info("the server asked to drain: finishing %d job(s)", len(self.registry))
            self.draining = True
            self.wake.set()

    def _on_unreachable(self, error: ApiError) -> None:
        if self.unreachable is None:
            self.unreachable = error
            self.wake.set()


def _report(held: _HeldJob, result: PayloadResult | None) -> dict[str, Any]:
    """A report for /update: "running" when result is None, else the final status."""
    if result is None:
        return {
            "job_id": held.id,
            "attempt": held.attempt,
            "status": "running",
            "exit_code": None,
            "error_code": None,
            "error_diag": "",
        }
    return {
        "job_id": held.id,
        "attempt": held.attempt,
        "status": result.status,
        "exit_code": result.exit_code,
        "error_code": None if result.error_code is None else int(result.error_code),
        "error_diag": result.error_diag,
    }


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:200] or "job"


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


# -- entry points -------------------------------------------------------------------------------


def run_pilot(cfg: PilotConfig) -> int:
    """Run a pilot until it is idle, drained, done or stopped; return the process exit code.

    In the main thread it handles SIGTERM and SIGINT: stop acquiring, kill the payloads (their
    jobs fail with ErrorCode.SIGTERM, which the server requeues without counting an attempt),
    report, end the pilot and return 0. Previous handlers are restored on return.
    """
    pilot = _Pilot(cfg, ApiClient(cfg.server, cfg.token))

    def handler(signum: int, _frame: object) -> None:
        # Only plain assignments here: taking a lock in a handler can deadlock the main thread.
        pilot.request_stop(ErrorCode.SIGTERM, signal.Signals(signum).name)

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
    try:
        return pilot.run()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def parse_args(argv: list[str]) -> PilotConfig:
    """Build a PilotConfig from command-line flags (and SKYPANDA_* environment variables)."""
    p = argparse.ArgumentParser(prog="skypanda-pilot", description="Run a skypanda pilot.")
    env = os.environ.get
    p.add_argument("--server", default=env("SKYPANDA_SERVER"), help="API base URL")
    p.add_argument("--token", help="bearer token (default: --token-file, then $SKYPANDA_TOKEN)")
    p.add_argument("--token-file", help="file holding the bearer token")
    p.add_argument("--queue", default=env("SKYPANDA_QUEUE"), help="queue to serve")
    p.add_argument("--pilot-id", default=env("SKYPANDA_PILOT_ID"), help="id from the launcher")
    p.add_argument("--workdir", help="base directory for job workdirs (default: a temp dir)")
    p.add_argument("--memory-mb", type=int, help="memory offered (default: the host's)")
    p.add_argument("--cores", type=int, help="cores offered (default: the host's)")
    p.add_argument("--slots", type=int, help="payloads run at once (default: cores)")
    p.add_argument("--idle-timeout", type=float, help="seconds without jobs before exiting")
    p.add_argument("--heartbeat-interval", type=float, help="seconds between heartbeats")
    p.add_argument("--max-jobs", type=int, help="stop after this many jobs")
    args = p.parse_args(argv)
    if not args.server or not args.queue:
        p.error("--server and --queue are required (or SKYPANDA_SERVER and SKYPANDA_QUEUE)")
    token = args.token
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
        )
    except ValueError as e:
        p.error(str(e))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: parse flags, log to stderr, run the pilot."""
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s skypanda-pilot %(levelname)s %(message)s",
    )
    return run_pilot(cfg)


if __name__ == "__main__":
    sys.exit(main())
