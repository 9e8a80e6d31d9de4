"""The pilot: register, acquire jobs, run them concurrently, report, heartbeat, end.

Pull mode (the default) acquires jobs of its queue until it is idle, drained or told to stop.
Push mode (`--job JOB_ID`, or $SKYPANDA_PUSH_JOB) is a pilot launched for one job: it acquires
exactly that job, runs it, reports it and ends.

Threads, and what each one owns:

    main       registers, acquires jobs into the worker pool, decides when to stop, ends the pilot
    workers    `slots` threads, each running one payload at a time (runner.run_payload); a
               worker sends its job's final report itself when a slot has nothing to run
    reporter   batches status reports into /update calls and sends running jobs' output
    heartbeat  tells the server which jobs the pilot holds; applies kill and drain commands

Per-job round trips are avoided on purpose: a pilot should sustain hundreds of trivial jobs per
second, so jobs are acquired in bulk, and "running" and final reports of many jobs share one
/update call (a job that ends before the flush is only reported once, as ended).

The critical path of a workflow is one round trip: a final report is sent at once, by the worker
that ran the job (reports that end while one /update is under way go together in the next, by
the reporter), and the /update that carries it also asks for the pilot's next jobs when it has
room for them (`acquire`); the server releases the children of the jobs it ended in the same
commit, so a child comes back in the reply, and runs in the worker that just became free. An
idle pilot long-polls its acquires (`LONG_POLL_S`): the server answers as soon as a job is
activated on the queue. Jobs asked for by the main thread and by the reporter are reserved
first (`_reserve`), so the two never ask for more than the pilot wants between them.

The pieces live in their own modules: `config` (PilotConfig and the command line), `held` (the
jobs and cores the pilot holds, each job's log capped by `logcap`), `reporting` (the reporter
and heartbeat threads), `pacing` (how many jobs to ask for), `work` (how a worker runs one
job). This module is the main thread's side: the acquire loop, handing jobs out, the end.

A server that does not answer is ridden out (see `outage`): payloads keep running, reports
wait, no new job is taken, until the server answers again or the outage budget is spent.

Exit codes: 0 clean (idle, drained, max jobs reached, SIGTERM/SIGINT; in push mode: the job ran,
whatever its outcome); 1 the server refused the pilot (e.g. a bad token or an unknown queue) or
the pilot itself failed; 3 the server could not be reached (to register, or for longer than the
outage budget: the pilot ends `disconnected`); 4 push mode only: the job was not available
(another pilot took it, or it was killed or ended).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from skypanda.pilot.client import ApiClient, ApiError
from skypanda.pilot.config import (
    DEFAULT_HEARTBEAT_S,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_LOG_FLUSH_S,
    PilotConfig,
    parse_args,
)
from skypanda.pilot.held import STOP_CHECK_S, Cores, HeldJob, Registry, cores_held, take_back
from skypanda.pilot.logcap import cap_bytes
from skypanda.pilot.outcomes import code_name, failed
from skypanda.pilot.pacing import acquire_plan, acquire_size, prefetching
from skypanda.pilot.reporting import Heartbeat, Reporter, job_report
from skypanda.pilot.runner import KILL_GRACE_S, PayloadResult, pilot_env
from skypanda.pilot.sandbox import make_base
from skypanda.pilot.stopping import END_RESERVE_S, StopBudget
from skypanda.pilot.work import JobWork
from skypanda.pilot.workdirs import Workdirs
from skypanda.wire import logs
from skypanda.wire.codes import ErrorCode
from skypanda.wire.groups import GROUPS_DIR

__all__ = [
    "EXIT_ERROR",
    "EXIT_NO_JOB",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "GROUPS_DIR",
    "PILOT_VERSION",
    "PilotConfig",
    "acquire_size",
    "main",
    "parse_args",
    "run_pilot",
]

log = logging.getLogger("skypanda.pilot")

PILOT_VERSION = "0.1.0"
"""Sent at registration; keep in step with skypanda.__version__ (not imported: stdlib only)."""

EXIT_OK, EXIT_ERROR, EXIT_UNREACHABLE, EXIT_NO_JOB = 0, 1, 3, 4
POLL_MIN_S, POLL_MAX_S = 0.1, 2.0
LONG_POLL_S = 2.0
"""How long an acquire may wait on the server for work: a waiting main thread notices a stop,
a drain or its idle timeout only when the server answers (it answers at once when it stops)."""


def _long_poll(told: Any, http_timeout: float) -> float:
    """How long acquires may wait on the server: what it told at registration (a cloud function
    may hold a request longer), within the HTTP timeout less 10 s; else LONG_POLL_S."""
    if isinstance(told, (int, float)) and not isinstance(told, bool) and told > 0:
        return min(float(told), max(http_timeout - 10.0, LONG_POLL_S))
    return LONG_POLL_S


class _Pilot(JobWork):
    """One pilot's life: register, the acquire loop, shutdown, end. See the module docstring."""

    def __init__(self, cfg: PilotConfig, client: ApiClient) -> None:
        self.cfg = cfg
        self.client = client
        self.slots = cfg.effective_slots
        self.wake = threading.Event()
        self.registry = Registry(on_empty=self.wake.set)
        # --slots above --cores means the user wants 1-core jobs to share cores.
        self.cores = Cores(max(cfg.cores, self.slots))
        self.pilot_id = cfg.pilot_id or ""
        self.queue_cfg: dict[str, Any] = {}
        self.long_poll_s, self.report_delay_s = LONG_POLL_S, None  # until told (registration)
        self.base_env = pilot_env()
        self.base: Path | None = None
        self.workdirs: Workdirs | None = None
        self.owns_base = False
        # Written by signal handlers and other threads; read by polling (no locks in handlers).
        self.stop_code: int | None = None
        self.stop_reason = ""
        self.budget = StopBudget(cfg.stop_grace_s, KILL_GRACE_S)
        self.unreachable: ApiError | None = None
        self.refused: ApiError | None = None
        self.draining = False
        self.missed_job = False  # push mode: the job was not there to run
        self._lock = threading.Lock()
        self._active = 0
        self._acquired = 0
        self._asking = 0  # jobs asked for in acquires under way (main thread and reporter)
        self._long_polling = 0  # of which asked by a long-poll under way
        self._per_acquire = self.slots * 2
        self._mean_runtime: float | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._reporter: Reporter | None = None
        self._heartbeat: Heartbeat | None = None

    def request_stop(self, code: int, reason: str) -> None:
        """Stop acquiring and kill running payloads with `code`; safe in a signal handler.
        With a stop grace, every later wait fits in it (see `stopping`)."""
        if self.stop_code is None:
            self.stop_reason = reason
            self.stop_code = code
            self.budget.start()
            self.client.outage.stopping()  # reports wait only briefly for a server that is down
            usable = self.budget.usable_s
            if usable is not None:  # no single call outlasts the grace
                self.client.timeout = min(self.client.timeout, usable)

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
        if self.slots != self.cfg.cores:  # else one per core, what a server assumes (and an
            body["slots"] = self.slots  # older server refuses a field it does not know)
        reply = self.client.call("POST", "/v1/pilots", body)
        if not isinstance(reply, dict) or not isinstance(reply.get("pilot"), dict):
            raise ApiError(200, f"unexpected registration answer: {reply!r:.200}")
        self.pilot_id = str(reply["pilot"]["id"])
        logs.set_process_labels(pilot=self.pilot_id, queue=self.cfg.queue)
        self._take_credential(reply)
        self.queue_cfg = reply.get("queue") or {}
        self.long_poll_s = _long_poll(reply.get("long_poll_s"), self.client.timeout)
        self.report_delay_s = reply.get("report_delay_s")
        log.info(
            "registered pilot %s on queue %s (%d slots, %d cores, %d MB)",
            self.pilot_id,
            self.cfg.queue,
            self.slots,
            self.cfg.cores,
            self.cfg.memory_mb,
        )

    def _prepare_workdir(self) -> None:
        prefix = f"skypanda-pilot-{self.pilot_id[:40]}-"
        self.base, self.owns_base = make_base(self.cfg.workdir, prefix, self.cfg.payload_user)
        reuse = self.cfg.payload_user is None  # a payload user's directory is handed over
        self.workdirs = Workdirs(self.base, reuse=reuse, keep=self.slots)

    def _start_threads(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.slots, thread_name_prefix="payload"
        )
        self._reporter = Reporter(
            self.client,
            self.pilot_id,
            self.registry,
            self._setting(self.cfg.log_flush_s, "log_flush_interval_s", DEFAULT_LOG_FLUSH_S),
            self._apply_commands,
            self._on_unreachable,
            acquire=None if self.cfg.job_id is not None else self._reserve_for_report,
            on_jobs=lambda jobs, asked: self._take_jobs(jobs, asked, " with a report"),
            eager=lambda: self._active < self.slots,
            delay_s=self.report_delay_s,
        )
        interval = self._setting(
            self.cfg.heartbeat_interval_s, "heartbeat_interval_s", DEFAULT_HEARTBEAT_S
        )
        self._heartbeat = Heartbeat(
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
            self._heartbeat.stop(self.budget.cap(2.0))
        if self._reporter is not None:
            timeout = None if self.unreachable is None else 2.0
            self._reporter.close(self.budget.cap(timeout, keep_s=END_RESERVE_S))
        if self.workdirs is not None:
            self.workdirs.close()
        if self.owns_base and self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)

    def _end(self, status: str, reason: str) -> int:
        client = self.client
        if self.unreachable is not None:
            status, reason = "disconnected", self._unreachable_reason()
        left = self.budget.left()  # stopping within a grace: one try in what is left
        if self.client.outage.down_for() is not None or left is not None:
            timeout = 5.0 if left is None else max(left, 0.1)
            client = ApiClient(self.cfg.server, self.client.token, timeout=timeout, retries=0)
        path = f"/v1/pilots/{urllib.parse.quote(self.pilot_id, safe='')}/end"
        try:
            client.call("POST", path, {"status": status, "reason": reason})
        except ApiError as e:
            log.warning("could not end the pilot on the server: %s", e)
        log.info("pilot %s ended: %s (%s)", self.pilot_id, status, reason)
        if self.unreachable is not None:
            return EXIT_UNREACHABLE
        if self.refused is not None:
            return EXIT_ERROR
        return EXIT_NO_JOB if self.missed_job else EXIT_OK

    # -- the acquire loop -------------------------------------------------------------------

    def _loop(self) -> tuple[str, str]:
        """Acquire and dispatch jobs until idle, drained, done, stopped or cut off."""
        if self.cfg.job_id is not None:
            return self._push(self.cfg.job_id)
        idle_timeout = self._setting(
            self.cfg.idle_timeout_s, "idle_timeout_s", DEFAULT_IDLE_TIMEOUT_S
        )
        self._per_acquire = int(self.queue_cfg.get("jobs_per_acquire") or self.slots * 2)
        backoff, idle_since = POLL_MIN_S, time.monotonic()
        while True:
            self.wake.clear()
            ended = self._ending()
            if ended is not None:
                return ended
            self._give_back()
            asked = time.monotonic()
            n, max_cores = self._reserve() if self._can_acquire() else (0, None)
            long_poll = self._long_poll_s(idle_since + idle_timeout - asked) if n else 0.0
            self._long_polling = n if long_poll else 0
            got = self._acquire(n, wait_s=long_poll, max_cores=max_cores) if n > 0 else 0
            self._long_polling = 0
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
            elif long_poll and now - asked >= long_poll / 2:
                continue  # the server waited for work on our behalf: ask again at once
            else:  # nothing, at once: no long-poll here (an old server, or its waiters full)
                wait, backoff = backoff, min(backoff * 2, POLL_MAX_S)
            if not len(self.registry):  # do not oversleep the idle timeout
                wait = min(wait, max(idle_since + idle_timeout - now, 0.01))
            self._sleep(wait)

    def _push(self, job_id: str) -> tuple[str, str]:
        """Push mode: acquire the one job this pilot was launched for, run it, then end."""
        log.info("push mode: acquiring job %s", job_id)
        got = self._acquire(1, job_id)
        while len(self.registry) and self.unreachable is None and self.stop_code is None:
            self._sleep(POLL_MAX_S)  # a job's final report (removed from the registry) wakes us
        if self.unreachable is not None or self.stop_code is not None:
            ended = self._ending()
            assert ended is not None  # unreachable or stopping always ends
            return ended
        if self.refused is not None:
            return "failed", f"acquire refused: {self.refused.message}"
        if not got:
            self.missed_job = True
            log.error(
                "job %s is not available (another pilot took it, or it was killed or ended): "
                "nothing to run",
                job_id,
            )
            return "finished", f"job {job_id} not available"
        return "finished", f"ran job {job_id}"

    def _ending(self) -> tuple[str, str] | None:
        """Why the loop should end now, as (status, reason) for /end, or None to go on."""
        if self.unreachable is not None:
            log.error("%s: stopping, %d job(s) to kill", self.unreachable, self._active)
            self.request_stop(ErrorCode.SERVER_UNREACHABLE, "server unreachable")
            return "disconnected", self._unreachable_reason()
        if self.stop_code is not None:
            log.info("stopping (%s): killing %d running job(s)", self.stop_reason, self._active)
            # Stopped from outside (SIGTERM/SIGINT: an eviction, a preemption, Ctrl-C): cancelled.
            return "cancelled", self.stop_reason
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

    def _can_acquire(self) -> bool:
        return self.client.outage.down_for() is None and self._accepting()  # not while down

    def _reserve(self, *, past_long_poll: bool = False) -> tuple[int, int | None]:
        """How many jobs to ask for now, reserved until the answer comes (`_take_jobs`): the
        main thread and the reporter may ask at the same time. `past_long_poll`: leave out
        what a long-poll under way asked for (it waits for work that may never come; a
        report's reply must not go without its children for it), but never ask for more
        than `max_jobs` leaves. With the most cores a job may ask (None: the pilot's; fewer
        once a payload runs long, `pacing.acquire_plan`; the reporter's /update says it as an
        acquire does). Held cores are counted past the prefetch."""
        longest, mean = self.registry.running_for()[1], self._mean_runtime
        held_cores = 0 if prefetching(mean, longest) else cores_held(self.registry, self.cores)
        with self._lock:
            asked = self._acquired + self._asking
            remaining = None if self.cfg.max_jobs is None else self.cfg.max_jobs - asked
            waiting = self._long_polling if past_long_poll else 0
            n, max_cores = acquire_plan(
                held=self._active + self._asking - waiting,
                slots=self.slots,
                per_acquire=self._per_acquire,
                mean_runtime_s=mean,
                remaining=remaining,
                longest_running_s=longest,
                cores=self.cores.total,
                held_cores=held_cores + self._asking - waiting,  # a core at least each
            )
            if max_cores is not None and max_cores >= self.cfg.cores:
                max_cores = None  # as many as the pilot has: no limit to tell
            n = 0 if max_cores is not None and waiting else n  # (the long-poll has them)
            self._asking += n
            return n, max_cores

    def _reserve_for_report(self) -> tuple[int, int | None]:
        """The reporter's question before an /update carrying a final report: how many jobs
        to take in its reply (reserved; 0: none), and of how many cores at most."""
        return self._reserve(past_long_poll=True) if self._can_acquire() else (0, None)

    def _long_poll_s(self, idle_left: float) -> float:
        """How long the server may hold an acquire: what it told at registration, else
        LONG_POLL_S; less near the idle timeout or within a stop grace (a quarter of it)."""
        wait = min(self.long_poll_s, idle_left)
        if self.cfg.stop_grace_s is not None:
            wait = min(wait, self.cfg.stop_grace_s / 4)
        return max(wait, 0.0)

    def _take_jobs(self, jobs: Any, asked: int, how: str = "") -> int:
        """Run the jobs an acquire returned (`asked` were reserved); how many were taken."""
        with self._lock:
            self._asking -= asked
        taken = 0
        for job in jobs if isinstance(jobs, list) else []:
            try:
                held = HeldJob(job, log_cap=cap_bytes(self.queue_cfg))
            except (KeyError, TypeError, ValueError) as e:  # a server bug; the sweep requeues it
                log.error("skipping a malformed job %r: %s", job, e)
                continue
            self._dispatch(held)
            taken += 1
        if taken:  # a report's reply carries a job per link of a chain: not worth a line each
            log.log(logging.DEBUG if how else logging.INFO, "acquired %d job(s)%s", taken, how)
        return taken

    def _acquire(self, n: int, job_id: str | None = None, *, wait_s: float = 0.0,
                 max_cores: int | None = None) -> int:  # fmt: skip
        """Ask for `n` jobs (reserved by the caller, but push mode's one) and run them."""
        path = f"/v1/pilots/{urllib.parse.quote(self.pilot_id, safe='')}/acquire"
        body: dict[str, Any] = {"n": n} if job_id is None else {"n": n, "job_id": job_id}
        if wait_s > 0:
            body["wait_s"] = round(wait_s, 3)
        if max_cores is not None:  # of this many cores at most (an older server does not know
            body["max_cores"] = max_cores  # it: sent only to take less than the pilot's cores)
        asked = n if job_id is None else 0
        try:
            reply = self.client.call("POST", path, body)
        except ApiError as e:
            self._take_jobs([], asked)
            if e.unreachable and (job_id is not None or self.client.outage.over()):
                self._on_unreachable(e)  # push mode has its one job to get, or nothing
            elif e.unreachable:
                log.warning("cannot acquire while the server is down: %s", e)
            elif 400 <= e.status < 500:
                log.error("the server refused to give jobs, finishing: %s", e)
                self.refused = e
            else:
                log.warning("acquire failed, will retry: %s", e)
            return 0
        return self._take_jobs(reply.get("jobs") if isinstance(reply, dict) else None, asked)

    def _dispatch(self, held: HeldJob) -> None:
        assert self._executor is not None
        self.registry.add(held)
        with self._lock:
            self._active += 1
            self._acquired += 1
        try:
            held.future = self._executor.submit(self._work, held)
        except RuntimeError:  # shut down: taken in an /update's reply while the pilot stopped
            code = self.stop_code or ErrorCode.SIGTERM
            self._finish(held, failed(code, f"not started: {code_name(code)}", time.time()), [])

    def _finish(self, held: HeldJob, result: PayloadResult, outputs: list[dict[str, Any]]) -> None:
        """A job is over: free its slot, then report it (the report may ask for the next)."""
        held.ended = True
        runtime = result.ended_at - result.started_at
        with self._lock:
            self._active -= 1
            mean = self._mean_runtime
            self._mean_runtime = runtime if mean is None else 0.8 * mean + 0.2 * runtime
            room = self._has_room()
        assert self._reporter is not None
        self._reporter.submit(held, job_report(held, result, outputs=outputs), here=True)
        if room:  # else the main thread has nothing to do for it: it sleeps on
            self.wake.set()

    def _has_room(self) -> bool:
        """Whether the main thread may acquire now (under the lock): `_reserve`'s question,
        asked as if no payload ran long (which only makes its answer smaller), without the
        look at every held job."""
        n = acquire_size(
            held=self._active + self._asking,
            slots=self.slots,
            per_acquire=self._per_acquire,
            mean_runtime_s=self._mean_runtime,
            remaining=None,
        )
        return n > 0

    def _give_back(self) -> None:
        """Give back the jobs held beyond the free slots or cores once a payload runs long
        (`take_back`): reported failed as never started, with a code that does not count, the
        server requeues them at once for another pilot (as a stopping pilot's `not started`)."""
        diag = "given back unstarted: the pilot's slots or cores are busy with a long payload"
        for held in take_back(self.registry, self.slots, self.cores):
            with self._lock:  # not run here: max_jobs still has room for it
                self._active, self._acquired = self._active - 1, self._acquired - 1
            held.ended = True
            assert self._reporter is not None
            result = failed(ErrorCode.GIVEN_BACK, diag, time.time())
            self._reporter.submit(held, job_report(held, result))
            log.info("job %s: %s", held.id, diag)

    def _sleep(self, seconds: float) -> None:
        """Wait up to `seconds`, waking early for events and (by polling) for signals."""
        deadline = time.monotonic() + seconds
        while self.stop_code is None and self.unreachable is None:
            left = deadline - time.monotonic()
            if left <= 0 or self.wake.wait(min(left, STOP_CHECK_S)):
                return

    # -- replies from the server ------------------------------------------------------------

    def _take_credential(self, reply: dict[str, Any]) -> None:
        """Use the credential the server gave this pilot (on register, renewed by heartbeats):
        scoped to it and short-lived, it replaces the launch credential, which may only
        register. Kept in memory only."""
        token = reply.get("token")
        if isinstance(token, str) and token:
            self.client.token = token

    def _apply_commands(self, reply: Any) -> None:
        """Act on "kill" commands and "drain" from a heartbeat or update reply, and take a
        renewed credential."""
        if not isinstance(reply, dict):
            return
        self._take_credential(reply)
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

    def _unreachable_reason(self) -> str:
        return f"server unreachable for {self.client.outage.down_for() or 0:.0f} s"


# -- entry points -------------------------------------------------------------------------------


def run_pilot(cfg: PilotConfig) -> int:
    """Run a pilot until it is idle, drained, done or stopped; return the process exit code.

    In the main thread it handles SIGTERM and SIGINT: stop acquiring, kill the payloads (their
    jobs fail with ErrorCode.SIGTERM, which the server requeues without counting an attempt),
    report, end the pilot and return 0, within `cfg.stop_grace_s` when set (see `stopping`).
    Previous handlers are restored on return.
    """
    client = ApiClient(cfg.server, cfg.token, outage_s=cfg.outage_budget_s, keep_alive=True)
    pilot = _Pilot(cfg, client)

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
        client.close()
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: parse flags, log to stderr, run the pilot."""
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    # JSON lines for Cloud Logging on Google Cloud (Cloud Run jobs, GKE) or when
    # SKYPANDA_LOG_FORMAT=json, text otherwise (wire.logs: the server's format, stdlib only).
    logs.configure(prefix="skypanda-pilot ")
    return run_pilot(cfg)


if __name__ == "__main__":
    sys.exit(main())
