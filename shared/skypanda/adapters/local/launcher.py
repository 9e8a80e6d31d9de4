"""Local pilots: `skypanda pilot` subprocesses on this machine (the embedded launcher).

Each pilot gets its own launch credential (`credential_for(pilot_id)`, from the runtime): it may
only register that pilot id, once, and expires (adapters.pilot_credentials). It goes through a
pipe on the pilot's standard input, never its environment or command line. Even a payload that
found it would gain nothing: the pilot spends it registering, before it runs any payload, and
then holds a credential of its own, in memory.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from skypanda.domain.errors import BackendUnavailable
from skypanda.domain.models import Job, Queue
from skypanda.ports import LaunchedPilot
from skypanda.wire.groups import GROUPS_DIR, kill_recorded_groups

log = logging.getLogger(__name__)

CREDENTIAL_VARS = frozenset({"SKYPANDA_TOKEN", "SKYPANDA_GCS_TOKEN"})
"""Never passed on to a pilot's environment (the server's own, if it was started with them)."""


class ProcessLauncher:
    """Launcher port on local processes. Each pilot is `python -m skypanda pilot ...`.

    Pilots get the server URL through their environment and their launch credential
    (`credential_for(pilot_id)`) through a pipe on their standard input (never in the
    environment, which payloads could read from /proc, nor on the command line, where `ps`
    would show it) and write their stderr to `<home>/pilots/<id>.log`.
    """

    def __init__(
        self,
        *,
        server_url: str,
        credential_for: Callable[[str], str],
        home: Path,
        extra_args: list[str] | None = None,
    ) -> None:
        self.server_url = server_url
        self.credential_for = credential_for
        self._logs = home / "pilots"
        self._logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._work = home / "work"
        self._extra = extra_args or []
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._closed = False  # stop_all ran: a scaler still at work launches nothing more

    def launch(self, queue: Queue, pilot_id: str, job: Job | None = None) -> str:
        """A pilot process; for a push-mode job, sized to the job and told to run it alone."""
        if self._closed:
            raise BackendUnavailable(f"pilot {pilot_id} not launched: the launcher is stopping")
        size = job.resources if job is not None else queue.pilot_resources
        push = ["--job", job.id] if job is not None else []
        argv = [
            sys.executable, "-m", "skypanda", "pilot",
            "--queue", queue.name,
            "--pilot-id", pilot_id,
            "--memory-mb", str(size.memory_mb),
            "--cores", str(size.cores),
            "--workdir", str(self._work / pilot_id),
            "--token-stdin",
            *push,
            *self._extra,
        ]  # fmt: skip
        # The launch credential goes through a pipe, read once at start: never in the pilot's
        # environment (its payloads could read /proc/<pilot>/environ) nor on its command line.
        credential = self.credential_for(pilot_id)
        env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
        env["SKYPANDA_SERVER"] = self.server_url
        stderr = os.open(
            self._logs / f"{pilot_id}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
        )
        with os.fdopen(stderr, "ab") as err:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=err, stderr=err, env=env,
                start_new_session=True,
            )  # fmt: skip
            assert proc.stdin is not None
            try:
                proc.stdin.write(credential.encode() + b"\n")
                proc.stdin.close()
            except BrokenPipeError:
                log.warning("pilot %s exited before reading its token", pilot_id)
        with self._lock:
            self._procs[pilot_id] = proc
            closed = self._closed
        if closed:  # stop_all ran while it started: it would never be stopped
            self._stop_now(proc)
            raise BackendUnavailable(f"pilot {pilot_id} stopped: the launcher is stopping")
        log.info("launched pilot %s on queue %s (pid %d)", pilot_id, queue.name, proc.pid)
        return f"pid:{proc.pid}"

    def list(self) -> list[LaunchedPilot]:
        with self._lock:
            procs = dict(self._procs)
        out = []
        for pilot_id, proc in procs.items():
            code = proc.poll()
            if code is not None:
                self._reap(pilot_id)
            out.append(LaunchedPilot(pilot_id, f"pid:{proc.pid}", code is None, code))
        return out

    def _reap(self, pilot_id: str) -> None:
        """Kill payloads a dead pilot left running (it could not: e.g. it was SIGKILLed)."""
        killed = kill_recorded_groups(self._work / pilot_id / GROUPS_DIR)
        if killed:
            log.warning("pilot %s died leaving %d payloads running: killed them", pilot_id, killed)

    def forget(self, pilot_id: str) -> None:
        with self._lock:
            self._procs.pop(pilot_id, None)

    def stop(self, pilot_id: str) -> None:
        """SIGTERM a pilot of ours; for one we did not start (an earlier server's, after a
        restart), kill the payloads it recorded, which it can no longer stop itself."""
        with self._lock:
            proc = self._procs.get(pilot_id)
        if proc is None:
            self._reap(pilot_id)
        elif proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    def kill(self, pilot_id: str) -> None:
        """SIGKILL a pilot (tests: a pilot that dies without a word)."""
        with self._lock:
            proc = self._procs.get(pilot_id)
        if proc is not None and proc.poll() is None:
            proc.kill()

    @staticmethod
    def _stop_now(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop_all(self, grace_s: float = 10.0) -> None:
        """SIGTERM every pilot (they report their jobs as preempted), then SIGKILL stragglers."""
        with self._lock:
            self._closed = True
            procs = list(self._procs.values())
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                log.warning("pilot pid %d ignored SIGTERM; killing it", proc.pid)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for pilot_id in list(self._procs):
            self._reap(pilot_id)
