"""The pilot's background talk with the server: status reports, output, heartbeats.

    Reporter    batches status reports into /update calls and sends running jobs' output
    Heartbeat   tells the server which jobs the pilot holds; hands its replies (commands) back
    job_report  one job's report for /update

Their calls are patient (see `outage`): while the server does not answer, a report, an output
chunk or a heartbeat is retried until it answers or the pilot's outage budget is spent; only
then does "unreachable" reach the pilot, which gives up.

Standard library only (plus `skypanda.wire.codes`; the pilot ships as a zipapp).
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from skypanda.pilot.client import ApiClient, ApiError
from skypanda.pilot.held import HeldJob, Registry
from skypanda.pilot.runner import PayloadResult
from skypanda.wire.codes import ErrorCode

log = logging.getLogger("skypanda.pilot")

FINAL_STATUSES = frozenset({"finished", "failed"})
REPORT_FLUSH_S = 0.15
"""How often the reporter looks for output to send when no report waits."""
REPORT_DELAY_S = 0.05
"""The longest a report waits in the pilot for others to go with it (a final report while the
pilot has more jobs to run, a `running`): its children are released and its task rolled up
that much later at most, and a batch of reports stays small enough to apply in a few ms. A
server may tell another at registration (`report_delay_s`: Google Cloud tells 0.15 s, where
each request is a billed invocation)."""


def report_delay(told: Any) -> float:
    """The report delay a server told at registration (`report_delay_s`), if it is a number
    of seconds from 0.001 to 10; else REPORT_DELAY_S."""
    if isinstance(told, (int, float)) and not isinstance(told, bool) and 0.001 <= told <= 10:
        return float(told)
    return REPORT_DELAY_S


REPORT_BATCH = 200
LOG_CHUNK_BYTES = 64 * 1024
"""A running job's output is sent once this much waits (else every `log_flush_s`); a final
report carries at most this much of it (the rest goes first, as chunks)."""
SEND_MAX = 1024 * 1024
"""Output bytes per log chunk sent: even as text with every byte undecodable (3 bytes each as
U+FFFD) it stays under the server's limit per chunk (4 MB)."""


class Reporter:
    """Sends status reports in batches and running jobs' output in chunks, from one thread.

    One thread does both so that a job's output chunks always reach the server before its final
    report, which carries the rest of the output: the server appends "log" and then applies the
    status, and a chunk arriving after that would be out of order or refused. A job's output is
    capped (`logcap`): its tail, up to half the cap, is sent when the job ended, as chunks
    before its final report.
    """

    def __init__(
        self,
        client: ApiClient,
        pilot_id: str,
        registry: Registry,
        log_flush_s: float,
        on_reply: Callable[[Any], None],
        on_unreachable: Callable[[ApiError], None],
        *,
        acquire: Callable[[], tuple[int, int | None]] | None = None,
        on_jobs: Callable[[Any, int], object] | None = None,
        eager: Callable[[], bool] | None = None,
        delay_s: Any = None,
    ) -> None:
        self._client = client
        self._delay_s = report_delay(delay_s)  # what the server told, if it makes sense
        # With `acquire`: an /update with a final report asks for as many jobs as `acquire()`
        # says (reserved), of at most the cores it says (None: the pilot's), handed to
        # `on_jobs(jobs, asked)`; a final report is sent at once
        # while `eager()` (a slot has nothing to run), else with the next batch.
        self._acquire = acquire
        self._on_jobs = on_jobs
        self._eager = eager
        self._quoted_id = urllib.parse.quote(pilot_id, safe="")
        self._registry = registry
        self._log_flush_s = log_flush_s
        self._on_reply = on_reply
        self._on_unreachable = on_unreachable
        self._pending: dict[str, tuple[HeldJob, dict[str, Any]]] = {}
        self._tries: dict[str, int] = {}
        self._cond = threading.Condition()
        self._sending = threading.Lock()  # held by whoever sends: this thread or a worker
        self._closing = False
        self._nudged = False
        self._thread = threading.Thread(target=self._run, name="reporter", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, held: HeldJob, report: dict[str, Any], *, here: bool = False) -> None:
        """Queue a report; a later report of the same job replaces one not yet sent.

        A final report while a slot has nothing to run is sent at once: with `here`, by the
        calling thread (a worker) when no other send is under way (see `_send_here`), else by
        this reporter's thread."""
        with self._cond:
            if held.abandoned:
                if report["status"] in FINAL_STATUSES:
                    self._registry.remove(held.id)
                return
            first = not self._pending  # the reporter may be in a long wait: shorten it
            self._pending[held.id] = (held, report)
            now = report["status"] in FINAL_STATUSES and self._eager is not None and self._eager()
            here = here and now and not self._closing and self._client.outage.down_for() is None
            here = here and self._sending.acquire(blocking=False)
            if not here and (now or first or len(self._pending) >= REPORT_BATCH):
                self._nudged = self._nudged or now
                self._cond.notify()
        if here:
            self._send_here()

    def _send_here(self) -> None:
        """Send the pending reports from the calling worker thread (holding `_sending`): the
        critical path of a workflow skips a hand-over to this reporter's thread, and the next
        job of the reply runs in the thread that is free for it. One try only, no output
        chunks: whatever cannot go so goes by this reporter's thread (and its patience)."""
        try:
            with self._cond:
                jobs = [held for held, _ in self._pending.values()]
            small = all(held.log.unsent() <= LOG_CHUNK_BYTES for held in jobs)
            done = small and not self._flush_reports(patient=False)
        except ApiError:  # the batch is pending again: the reporter's thread sends it
            done = False
        finally:
            self._sending.release()
        if not done:
            self.nudge()

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
                    self._wait()
                    self._nudged = False
                    closing = self._closing
                with self._sending:
                    self._flush_logs()
                    while self._flush_reports():
                        pass
                with self._cond:
                    if closing and not self._pending:
                        return
        except ApiError as e:  # only "unreachable" escapes the flushes
            self._on_unreachable(e)

    def _wait(self) -> None:
        """Until a flush is due: at once when asked, within REPORT_DELAY_S of a report's
        arrival (`delay_s`), else every REPORT_FLUSH_S (for output). Holds `_cond`."""
        while not self._due():
            delay = self._delay_s if self._pending else REPORT_FLUSH_S
            if not self._cond.wait(delay):
                return  # timed out: flush what waits

    def _flush_logs(self) -> None:
        now = time.monotonic()
        for held in self._registry.snapshot():
            if not held.started or held.ended or held.abandoned:
                continue  # an ended job's remaining output travels with its final report
            size = held.buffered()
            if size >= LOG_CHUNK_BYTES or (size and now - held.flushed_at >= self._log_flush_s):
                self._send_output(held, size)

    def _send_output(self, held: HeldJob, size: int) -> None:
        """Send `size` bytes of the job's output, in chunks of at most SEND_MAX."""
        while size > 0:
            n = min(size, SEND_MAX)
            if not self._send_log(held, held.take_text(n)):
                return
            size -= n

    def _send_log(self, held: HeldJob, text: str) -> bool:
        """Send one chunk; False if the server refused it."""
        if not text:
            return True
        path = f"/v1/jobs/{urllib.parse.quote(held.id, safe='')}/log"
        try:
            self._client.call(
                "POST",
                path,
                params={"attempt": held.attempt},
                raw=text.encode("utf-8"),
                content_type="text/plain; charset=utf-8",
                patient=True,
            )
        except ApiError as e:
            if e.unreachable:
                raise
            log.warning("job %s: output chunk refused: %s", held.id, e)
            return False
        return True

    def _take_batch(self) -> list[tuple[HeldJob, dict[str, Any]]]:
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
                held.log.end()  # the tail is ready: all but the last bit goes first, as chunks
                self._send_output(held, held.buffered() - LOG_CHUNK_BYTES)
                report["log"] = held.take_text(LOG_CHUNK_BYTES) or None
        return batch

    def _flush_reports(self, *, patient: bool = True) -> bool:
        """Send one batch; True if more reports wait and the last batch went through. Not
        `patient`: one try, and a batch that did not go through is pending again, untried,
        for the reporter's thread (ApiError raised)."""
        batch = self._take_batch()
        if not batch:
            return False
        body: dict[str, Any] = {
            "reports": [dict(report, log=report.get("log")) for _, report in batch]
        }
        asked = 0
        if self._acquire is not None and any(r["status"] in FINAL_STATUSES for _, r in batch):
            asked, max_cores = self._acquire()  # a slot is free: fill it from the reply
            if asked:
                body["acquire"] = asked
                if max_cores is not None:  # (as an acquire says it: `PilotAgent._acquire`)
                    body["max_cores"] = max_cores
        try:
            path = f"/v1/pilots/{self._quoted_id}/update"
            reply = self._client.call("POST", path, body, patient=patient, once=not patient)
        except ApiError as e:
            self._jobs_back(None, asked)
            if not patient:
                self._put_back(batch)
                raise
            if e.unreachable:
                raise
            log.error("the server refused an update of %d report(s): %s", len(batch), e)
            self._requeue(batch)
            return False
        self._apply_results(batch, reply)
        self._on_reply(reply)
        self._jobs_back(reply.get("jobs") if isinstance(reply, dict) else None, asked)
        with self._cond:
            return bool(self._pending)

    def _jobs_back(self, jobs: Any, asked: int) -> None:
        if self._on_jobs is not None and asked:
            self._on_jobs(jobs or [], asked)

    def _put_back(self, batch: list[tuple[HeldJob, dict[str, Any]]]) -> None:
        """Put a batch back as it was, untried (a newer report of a job wins)."""
        with self._cond:
            for held, report in batch:
                self._pending.setdefault(held.id, (held, report))

    def _requeue(self, batch: list[tuple[HeldJob, dict[str, Any]]]) -> None:
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

    def _apply_results(self, batch: list[tuple[HeldJob, dict[str, Any]]], reply: Any) -> None:
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


class Heartbeat:
    """Beats every `interval_s` with the jobs held; hands replies to `on_reply`."""

    def __init__(
        self,
        client: ApiClient,
        pilot_id: str,
        interval_s: float,
        registry: Registry,
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
                reply = self._client.call("POST", self._path, {"jobs": jobs}, patient=True)
            except ApiError as e:
                if e.unreachable:
                    self._on_unreachable(e)
                    return
                log.warning("heartbeat refused: %s", e)
                continue
            self._on_reply(reply)


def job_report(
    held: HeldJob,
    result: PayloadResult | None,
    *,
    live: str = "running",
    outputs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A report for /update: `live` ("starting" while staging in, or "running") when result
    is None, else the final status.

    Only a final report carries "flags" (what the payload wrote to $SKYPANDA_FLAGS), and only
    a finished one "outputs" (what the pilot uploaded: name, uri, size, sha256).
    """
    if result is None:
        return {
            "job_id": held.id,
            "attempt": held.attempt,
            "status": live,
            "exit_code": None,
            "error_code": None,
            "error_diag": "",
        }
    report: dict[str, Any] = {
        "job_id": held.id,
        "attempt": held.attempt,
        "status": result.status,
        "exit_code": result.exit_code,
        "error_code": None if result.error_code is None else int(result.error_code),
        "error_diag": result.error_diag,
        "flags": dict(result.flags),
    }
    if result.max_rss_mb is not None:
        report["max_rss_mb"] = result.max_rss_mb
    if outputs and result.status == "finished":
        report["outputs"] = outputs
    return report
