"""The real PanDA pilot (PyPI `panda-pilot` 3.7, `pilot.py` from its sdist) runs a skypanda
task's jobs through the PanDA facade (`api.panda`): one pilot takes the three jobs in turn,
runs each to `finished`, and each job's log holds the payload's own output, read back from
the log tarball the pilot staged out to skypanda's DDM directory (`<home>/panda-ddm`).

Safety (`../shared/reference/panda-protocol.md`): the real pilot kills orphaned processes of
its user, so it only ever runs with `PILOT_NOKILL=1` inside its own PID namespace
(`unshare --pid --fork --mount-proc --kill-child`: killing `unshare` ends everything in it).

What the pilot needs here, with no network past 127.0.0.1:
- queue and storage config as local files (`--queuedata-url`, `--storagedata-url` and
  `LOCAL_AGIS_SCHEDCONF`), fetched from the facade with the token (the facade's routes need a
  credential; the pilot fetches these without one), `timefloor` raised so one pilot runs
  several jobs, and `--getjobfailures 1` so it ends at the first "no job";
- the transformation under one of pilot 3.7's hard-coded base URLs, provided as Harvester
  does (`HARVESTER_WORKDIR` holds the script: the pilot copies it rather than curl it);
- the skypanda token as the pilot's OIDC token file (`OIDC_AUTH_TOKEN`, `OIDC_AUTH_ORIGIN`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import fast_queue, wait_until

PILOT_VERSION = "3.7.0.36"
CACHE = Path.home() / ".cache" / "skypanda-tests" / f"panda-pilot-{PILOT_VERSION}"
TRF_BASE = "http://pandaserver-doma.cern.ch:25080/trf/user"  # one of pilot 3.7's base URLs
TRF = "skypanda-echo"
TRF_SCRIPT = """#!/bin/sh
echo "skypanda payload says: $*"
if [ "$1" = sleep ]; then exec sleep "$2"; fi
"""

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def pilot_py(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pilot.py` of the real PanDA pilot: the PyPI sdist, unpacked once into a cache kept
    across runs (the wheel lacks `pilot.py`)."""
    for tool in ("unshare", "curl"):
        if shutil.which(tool) is None:
            pytest.fail(f"the real PanDA pilot test needs `{tool}` on PATH")
    if not (CACHE / "pilot.py").exists():
        download = tmp_path_factory.mktemp("panda-pilot-sdist")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "--disable-pip-version-check", f"panda-pilot=={PILOT_VERSION}", "-d", str(download)],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        (sdist,) = download.glob("panda*pilot-*.tar.gz")
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        unpacked = Path(tempfile.mkdtemp(dir=CACHE.parent))
        with tarfile.open(sdist) as tar:
            tar.extractall(unpacked, filter="data")
        (top,) = unpacked.iterdir()
        try:
            top.rename(CACHE)  # atomic: a concurrent run either wins or finds it there
        except OSError:
            if not (CACHE / "pilot.py").exists():
                raise
        shutil.rmtree(unpacked, ignore_errors=True)
    return CACHE / "pilot.py"


def _get(system: LocalSystem, path: str) -> Any:
    req = urllib.request.Request(
        system.url + path, headers={"Authorization": f"Bearer {system.token}"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read().decode()
    return json.loads(body) if path.endswith(".json") else body


def _jobs(api: ApiClient, task_id: str) -> list[dict[str, Any]]:
    return list(api.call("GET", f"/v1/tasks/{task_id}/jobs", params={"offset": 0})["jobs"])


class RealPandaPilot:
    """One run of the real PanDA pilot against `system`, in a PID namespace of its own."""

    def __init__(
        self, pilot_py: Path, system: LocalSystem, root: Path, heartbeat_s: int | None = None
    ) -> None:
        root.mkdir(parents=True)
        self.root = root
        port = system.url.rsplit(":", 1)[1]
        queue = _get(system, "/cache/schedconfig/local.all.json")
        queue["timefloor"] = 10  # minutes: one pilot runs jobs while there are any
        (root / "queuedata.json").write_text(json.dumps(queue))
        (root / "schedconf.json").write_text(json.dumps({"local": queue}))
        (root / "ddmendpoints.json").write_text(
            json.dumps(_get(system, "/cache/ddmendpoints.json"))
        )
        (root / "token").write_text(system.token)
        trf = root / "trf" / TRF
        trf.parent.mkdir()
        trf.write_text(TRF_SCRIPT)
        trf.chmod(0o755)
        (root / "work").mkdir()
        self.command = [
            "unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
            sys.executable, str(pilot_py), "-q", "local", "--pilot-user", "generic",
            "-w", "generic", "-j", "ptest", "--url", "http://127.0.0.1", "-p", port,
            "--queuedata-url", str(root / "queuedata.json"),
            "--storagedata-url", str(root / "ddmendpoints.json"),
            "-a", str(root / "work"), "--cleanup", "False", "--getjobfailures", "1",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SKYPANDA_", "X509"))}
        env.update(
            PILOT_NOKILL="1",
            LOCAL_AGIS_SCHEDCONF=str(root / "schedconf.json"),
            HARVESTER_WORKDIR=str(trf.parent),
            OIDC_AUTH_TOKEN=str(root / "token"),
            OIDC_AUTH_ORIGIN="skypanda",
        )
        if heartbeat_s is not None:  # the pilot's update interval (its config file's)
            config = (pilot_py.parent / "pilot" / "util" / "default.cfg").read_text()
            assert "\nheartbeat: 1800\n" in config
            config = config.replace("\nheartbeat: 1800\n", f"\nheartbeat: {heartbeat_s}\n")
            (root / "pilot.cfg").write_text(config)
            env["HARVESTER_PILOT_CONFIG"] = str(root / "pilot.cfg")
        self.output = root / "pilot.out"
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(
                self.command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    def payload_said(self, text: str) -> bool:
        """Whether a payload of this pilot wrote `text` to its stdout (the pilot's file)."""
        outs = (self.root / "work").rglob("payload.stdout")
        return any(text in out.read_text(errors="replace") for out in outs)

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            tail = self.output.read_text(errors="replace")[-4000:]
            raise AssertionError(f"the PanDA pilot ended ({self.proc.returncode}):\n{tail}")
        return True

    def stop(self) -> None:
        """Kill `unshare` (this test's own child): `--kill-child` ends the namespace."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture
def run_pilot(pilot_py: Path, tmp_path: Path) -> Iterator[Callable[..., RealPandaPilot]]:
    started: list[RealPandaPilot] = []

    def run(system: LocalSystem, heartbeat_s: int | None = None) -> RealPandaPilot:
        root = tmp_path / f"pilot{len(started)}"
        started.append(RealPandaPilot(pilot_py, system, root, heartbeat_s))
        return started[-1]

    yield run
    for pilot in started:
        pilot.stop()


def test_the_real_panda_pilot_runs_three_jobs_of_a_skypanda_task(
    make_system: Callable[..., LocalSystem], run_pilot: Callable[..., RealPandaPilot]
) -> None:
    # Given a skypanda task of three jobs on a queue with no skypanda pilot, whose heartbeat
    # timeout exceeds the PanDA pilot's update interval (1800 s)
    system = make_system(fast_queue(min_pilots=0, max_pilots=0, heartbeat_timeout_s=1900.0))
    api = ApiClient(system.url, system.token)
    spec = {"name": "panda", "command": [f"{TRF_BASE}/{TRF}", "hello"], "n_jobs": 3}
    task = api.call("POST", "/v1/tasks", spec)
    wait_until(lambda: [j["status"] for j in _jobs(api, task["id"])] == ["activated"] * 3,
               what="three activated jobs")  # fmt: skip

    # When one real PanDA pilot runs against skypanda
    pilot = run_pilot(system)

    # Then it runs the three jobs to finished, one after the other
    def finished() -> list[dict[str, Any]] | None:
        pilot.alive()
        jobs = _jobs(api, task["id"])
        return jobs if all(j["status"] == "finished" for j in jobs) else None

    jobs = wait_until(finished, timeout=120, what="three jobs finished by the PanDA pilot")
    assert all(j["exit_code"] == 0 for j in jobs)
    assert len({j["pilot_id"] for j in jobs}) == 1 and jobs[0]["pilot_id"].startswith("pp")
    wait_until(lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "done",
               what="the task done")  # fmt: skip
    # and each job's log holds its payload's output, from the log tarball the pilot staged
    # out to skypanda's DDM directory (and the record of that tarball)
    ddm = system.opts.home / "panda-ddm"
    for job in jobs:
        log = _get(system, f"/v1/jobs/{job['id']}/log")
        assert log.startswith("skypanda payload says: hello\n"), log
        assert f"staged out {job['id']}.1.log.tgz" in log and "adler32=" in log, log
        assert f"surl=file://localhost{ddm}/skypanda/" in log, log
        assert "was not read" not in log, log


# Pilot 3.7 races itself after a kill: the thread that got `tobekilled` kills the payload,
# sleeps 3 s, then orders the log's stage-out again; when that comes before the final update
# (its data threads poll every 1-2.5 s: on a busy machine, often), the pilot waits for that
# second stage-out, up to 115 s, before its final update. Hence the long deadline.
@pytest.mark.timeout(300)
def test_a_job_killed_in_skypanda_is_killed_by_the_real_panda_pilot_with_1144(
    make_system: Callable[..., LocalSystem], run_pilot: Callable[..., RealPandaPilot]
) -> None:
    # Given the real PanDA pilot running a long job of a skypanda task, updating every 2 s
    system = make_system(fast_queue(min_pilots=0, max_pilots=0, heartbeat_timeout_s=1900.0))
    api = ApiClient(system.url, system.token)
    spec = {"name": "kill", "command": [f"{TRF_BASE}/{TRF}", "sleep", "600"], "n_jobs": 1}
    task = api.call("POST", "/v1/tasks", spec)
    wait_until(lambda: [j["status"] for j in _jobs(api, task["id"])] == ["activated"],
               what="its job activated (the task split)")  # fmt: skip
    pilot = run_pilot(system, heartbeat_s=2)
    wait_until(lambda: pilot.alive() and _jobs(api, task["id"])[0]["status"] == "running",
               timeout=120, what="the job running under the PanDA pilot")  # fmt: skip
    # (and saying so: "running" comes as the payload starts, its first line a moment later)
    wait_until(lambda: pilot.payload_said("skypanda payload says: sleep 600\n"), 120,
               "the payload's first line")  # fmt: skip

    # When the user kills the task in skypanda
    api.call("POST", f"/v1/tasks/{task['id']}/kill")

    # Then the pilot is told `tobekilled`, kills the payload, and reports 1144
    def ended() -> dict[str, Any] | None:
        (job,) = _jobs(api, task["id"])
        return job if job["status"] == "cancelled" and job["error_code"] else None

    job = wait_until(ended, timeout=200, what="the job ended by the PanDA pilot's report")
    assert job["error_code"] == 1144 and "killed by panda server" in job["error_diag"], job
    # and its log holds what the payload said before it was killed
    log = _get(system, f"/v1/jobs/{job['id']}/log")
    assert log.startswith("skypanda payload says: sleep 600\n"), log
    wait_until(lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "aborted",
               what="the task aborted")  # fmt: skip
