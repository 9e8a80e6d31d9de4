"""End to end: a pilot downloaded as `pilot.pyz` runs jobs from a Python without skypanda.

The pattern of PanDA's pilot starter: fetch the pilot over HTTP with the token, run it with
whatever Python the payload image has. Here that image is a fresh venv without pip, without
skypanda, without PYTHONPATH, started outside the repository.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from email.message import Message
from pathlib import Path

import pytest

from skypanda import __version__
from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import fast_queue, wait_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the pilot is POSIX only")


def _get(system: LocalSystem, headers: dict[str, str]) -> tuple[int, Message, bytes]:
    """GET /v1/pilot.pyz with plain urllib, as a pilot starter would (headers any case)."""
    request = urllib.request.Request(f"{system.url}/v1/pilot.pyz", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def _bare_python(tmp_path: Path) -> Path:
    """A fresh venv's python: no pip, no skypanda, no site packages of the test's Python."""
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return venv / "bin" / "python"


def _clean_env() -> dict[str, str]:
    """The environment of a payload image: no PYTHONPATH, no venv, no skypanda settings."""
    keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    here = str(Path(sys.prefix))
    path = os.environ.get("PATH", os.defpath).split(os.pathsep)
    env["PATH"] = os.pathsep.join(p for p in path if p and not p.startswith(here))
    return env


@pytest.fixture
def system(make_system: Callable[..., LocalSystem]) -> LocalSystem:
    # No pilot of the scaler's: every job must be run by the downloaded one
    return make_system(fast_queue(min_pilots=0, max_pilots=0))


def test_downloaded_zipapp_runs_jobs_on_a_python_without_skypanda(
    system: LocalSystem, tmp_path: Path
) -> None:
    # Given a task of a few jobs, and no pilot running
    api = ApiClient(system.url, system.token)
    spec = {"name": "anywhere", "command": ["echo", "job {index}"], "n_jobs": 4}
    task = api.call("POST", "/v1/tasks", spec)
    # And the pilot downloaded as a starter does, and a Python that cannot import skypanda
    status, headers, data = _get(system, {"Authorization": f"Bearer {system.token}"})
    assert status == 200
    assert headers["Content-Type"] == "application/zip"
    assert headers["Content-Disposition"] == "attachment; filename=pilot.pyz"
    pyz = tmp_path / "pilot.pyz"
    pyz.write_bytes(data)
    version = zipfile.ZipFile(pyz).read(f"skypanda-{__version__}.dist-info/METADATA")
    assert f"Version: {__version__}" in version.decode()
    python = _bare_python(tmp_path)
    env = _clean_env()
    bare = subprocess.run([python, "-c", "import skypanda"], env=env, cwd=tmp_path, check=False)
    assert bare.returncode != 0, "the bare venv must not see skypanda"
    token_file = tmp_path / "tokenfile"
    token_file.write_text(system.token + "\n")
    # (the jobs are queued before the pilot starts: it ends once idle for 3 s)
    wait_until(
        lambda: api.call("GET", f"/v1/tasks/{task['id']}")["job_counts"] == {"activated": 4},
        what="the 4 jobs to be queued",
    )
    # When the zipapp runs there as a pilot of the queue, until idle
    pilot = subprocess.Popen(
        [python, str(pyz), "--server", system.url, "--queue", "local",
         "--token-file", str(token_file), "--idle-timeout", "3"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _, stderr = pilot.communicate(timeout=90)
    finally:
        if pilot.poll() is None:
            pilot.kill()
            pilot.wait()
    # Then it exits 0 after running every job
    assert pilot.returncode == 0, stderr
    done = wait_until(
        lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "done", what="task done"
    )
    assert done
    jobs = api.call("GET", f"/v1/tasks/{task['id']}/jobs")["jobs"]
    assert len(jobs) == 4 and {j["status"] for j in jobs} == {"finished"}
    # And they ran on that pilot: the process we started, reporting the zipapp's version
    (ran_on,) = {j["pilot_id"] for j in jobs}
    pilots = {p["id"]: p for p in api.call("GET", "/v1/pilots")["pilots"]}
    assert pilots[ran_on]["pid"] == pilot.pid and pilots[ran_on]["version"] == __version__
    assert pilots[ran_on]["status"] == "finished"
    first = next(j for j in jobs if j["index"] == 0)
    assert "job 0" in api.call("GET", f"/v1/jobs/{first['id']}/log")


def test_download_needs_the_token(system: LocalSystem) -> None:
    # When the zipapp is asked for without a token, or with a wrong one
    missing, _, _ = _get(system, {})
    wrong, _, _ = _get(system, {"Authorization": "Bearer not-the-token"})
    # Then both are refused
    assert missing == 401 and wrong == 401


def test_download_honours_if_none_match(system: LocalSystem) -> None:
    # Given the zipapp and its ETag, the sha256 of its bytes
    auth = {"Authorization": f"Bearer {system.token}"}
    status, headers, data = _get(system, auth)
    assert status == 200
    etag = headers["ETag"]
    assert etag == f'"{hashlib.sha256(data).hexdigest()}"'
    # When it is asked for again with that ETag, Then the answer is 304 with no body
    again, headers, body = _get(system, {**auth, "If-None-Match": etag})
    assert again == 304 and body == b"" and headers["ETag"] == etag
    # And with another ETag, the bytes again
    other, _, same = _get(system, {**auth, "If-None-Match": '"something-else"'})
    assert other == 200 and same == data
