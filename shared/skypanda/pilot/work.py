"""A pilot's worker side: one job run in a worker thread, as stage in (a job with `stage_in`),
the payload (runner.run_payload), stage out (a job with output patterns, once the payload
succeeded; see `staging`), and the job's output kept for the reporter. A mixin of the pilot
(`agent._Pilot`): it uses the pilot's cores, work directory, reporter and stop state.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from skypanda.pilot.client import ApiClient
from skypanda.pilot.config import PilotConfig
from skypanda.pilot.held import Cores, HeldJob
from skypanda.pilot.outcomes import after, code_name, failed, safe_name
from skypanda.pilot.reporting import LOG_CHUNK_BYTES, Reporter, job_report
from skypanda.pilot.runner import PayloadResult, run_payload
from skypanda.pilot.staging import (
    StagingError,
    Stopped,
    Uploader,
    output_records,
    stage_in,
    stage_out,
)
from skypanda.pilot.stopping import StopBudget
from skypanda.pilot.workdirs import Workdirs
from skypanda.wire import logs
from skypanda.wire.codes import ErrorCode
from skypanda.wire.groups import GROUPS_DIR

log = logging.getLogger("skypanda.pilot")

LOOPING_TIMEOUT_S = 1800.0
"""A payload with no output and no file change this long is looping (the queue may say)."""


class JobWork:
    """Running one job (see the module docstring); the pilot provides these."""

    cfg: PilotConfig
    client: ApiClient
    cores: Cores
    base: Path | None
    workdirs: Workdirs | None  # the jobs' directories in `base`, reused when left empty
    budget: StopBudget
    pilot_id: str
    stop_code: int | None
    queue_cfg: dict[str, Any]
    base_env: dict[str, str]  # the pilot's environment, read once (runner.pilot_env)
    _reporter: Reporter | None

    def _finish(self, held: HeldJob, result: PayloadResult, outputs: list[dict[str, Any]]) -> None:
        raise NotImplementedError  # the pilot's: free the job's slot, report it

    def _work(self, held: HeldJob) -> None:
        """Run one job in a worker thread and report it; never raises. Its lines carry its id."""
        with logs.labels(job=held.id):
            self._work_on(held)

    def _work_on(self, held: HeldJob) -> None:
        outputs: list[dict[str, Any]] = []
        try:
            ran = self._run_job(held)
            if ran is None:  # given back while it waited for cores: the main thread reports it
                return
            result, outputs = ran
        except Exception as e:  # a pilot bug must not lose the job silently
            log.exception("job %s: pilot error", held.id)
            now = time.time()
            code = ErrorCode.PAYLOAD_NOT_STARTED
            result = PayloadResult("failed", None, code, f"pilot error: {e}", now, now)
        self._finish(held, result, outputs)
        runtime = result.ended_at - result.started_at
        outcome = result.error_diag or f"exit code {result.exit_code}"
        args = (held.id, held.attempt, result.status, outcome, runtime)
        log.info("job %s.%d %s (%s) in %.2fs", *args)  # about 15 us: cheap enough to keep

    def _setting(self, own: float | None, key: str, default: float) -> float:
        """The pilot's own setting, else the queue's (sent at registration), else `default`."""
        return float(own if own is not None else self.queue_cfg.get(key) or default)

    def _run_job(self, held: HeldJob) -> tuple[PayloadResult, list[dict[str, Any]]] | None:
        """Stage in, run the payload, stage out: the result and the outputs uploaded; None
        for a job given back before it took its cores (`Cores.withdraw`)."""
        taken = self.cores.take(held, lambda: self._should_stop(held) is not None)
        if taken is None:
            if held.given_back:
                return None
            code = self._should_stop(held) or ErrorCode.SIGTERM
            return failed(code, f"not started: {code_name(code)}", time.time()), []
        workdir: Path | None = None
        workdirs = self.workdirs
        assert workdirs is not None
        try:
            assert self.base is not None and self._reporter is not None
            workdir = workdirs.take(f"{safe_name(held.id)}.{held.attempt}")
            staging = bool(held.job.get("stage_in"))
            self._reporter.submit(
                held, job_report(held, None, live="starting" if staging else "running")
            )
            staged: list[str] = []
            if staging:
                staged, failed_in = self._stage_in(held, workdir)
                if failed_in is not None:
                    return failed_in, []
                self._reporter.submit(held, job_report(held, None))
            result = run_payload(
                held.job,
                workdir,
                on_output=lambda chunk: self._on_output(held, chunk),
                should_stop=lambda: self._should_stop(held),
                groups=self.base / GROUPS_DIR,
                looping_timeout_s=self._setting(None, "looping_timeout_s", LOOPING_TIMEOUT_S),
                user=self.cfg.payload_user,
                kill_grace_s=self.budget.kill_s,
                base_env=self.base_env,
            )
            return self._stage_out(held, workdir, result, staged)
        finally:
            if workdir is not None:  # the job's processes are gone: nothing more writes there
                workdirs.give_back(workdir)
            self.cores.give(taken)

    def _stage_in(self, held: HeldJob, workdir: Path) -> tuple[list[str], PayloadResult | None]:
        """Fetch the job's inputs: their local names, or the failed result (payload not run)."""
        started = time.time()
        inputs = [str(url) for url in held.job.get("inputs") or []]
        try:
            staged = stage_in(
                inputs,
                workdir,
                should_stop=lambda: self._should_stop(held),
                note=lambda line: self._note(held, line),
                user=self.cfg.payload_user,
            )
        except StagingError as e:
            self._note(held, f"stage-in failed: {e}")
            return [], failed(ErrorCode.STAGE_IN_FAILED, f"stage-in failed: {e}", started)
        except Stopped as e:
            diag = f"stopped during stage-in: {code_name(e.code)}"
            return [], failed(e.code, diag, started)
        return [s.name for s in staged], None

    def _stage_out(
        self, held: HeldJob, workdir: Path, result: PayloadResult, staged: list[str]
    ) -> tuple[PayloadResult, list[dict[str, Any]]]:
        """Upload the outputs of a payload that succeeded; a failed upload fails the job."""
        patterns = [str(p) for p in held.job.get("output_patterns") or []]
        if result.status != "finished" or not patterns:
            return result, []
        client = self.client
        uploader = Uploader(client.server, client.token, self.pilot_id, outage=client.outage)
        try:
            sent = stage_out(
                uploader,
                held.id,
                held.attempt,
                workdir,
                patterns,
                exclude=staged,
                should_stop=lambda: self._should_stop(held),
                note=lambda line: self._note(held, line),
            )
        except StagingError as e:
            self._note(held, f"stage-out failed: {e}")
            return after(result, ErrorCode.STAGE_OUT_FAILED, f"stage-out failed: {e}"), []
        except Stopped as e:
            return after(result, e.code, f"stopped during stage-out: {code_name(e.code)}"), []
        return dataclasses.replace(result, ended_at=time.time()), output_records(sent)

    def _note(self, held: HeldJob, line: str) -> None:
        """A line of the pilot's own in the job's log."""
        self._on_output(held, f"[skypanda-pilot] {line}\n".encode())

    def _should_stop(self, held: HeldJob) -> int | None:
        return held.stop_code if held.stop_code is not None else self.stop_code

    def _on_output(self, held: HeldJob, chunk: bytes) -> None:
        if held.abandoned:
            return
        before = held.buffered()
        after = held.add_output(chunk)
        if before < LOG_CHUNK_BYTES <= after:  # just filled a chunk: no need to wait for the timer
            assert self._reporter is not None
            self._reporter.nudge()
