"""`skypanda up` in the foreground: serves, runs work, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

from skypanda.pilot.client import ApiClient
from tests.e2e.conftest import REPO, Gate, wait_until


def test_up_serves_and_ctrl_c_leaves_no_orphans(tmp_path: Path) -> None:
    # Given `skypanda up` started on a fresh home
    home = tmp_path / "home"
    env = {**os.environ, "SKYPANDA_HOME": str(home)}
    up = subprocess.Popen(
        [sys.executable, "-m", "skypanda", "up", "--port", "0"], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert up.stdout is not None
        banner = up.stdout.readline()
        assert "serving on http://127.0.0.1:" in banner
        # Then the token exists with mode 0600 and the server file names the URL
        token_file = home / "token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        url = json.loads((home / "server.json").read_text())["url"]
        assert url in banner
        api = ApiClient(url, token_file.read_text().strip())
        # When a job that runs until killed runs and the user presses Ctrl-C
        gate = Gate(tmp_path / "gate")  # never released
        api.call("POST", "/v1/tasks", {"name": "long", "command": gate.command(), "n_jobs": 1})
        wait_until(lambda: "0" in gate.started(), what="the job's payload to start")
        payload = gate.pid(0)
        up.send_signal(signal.SIGINT)
        # Then `up` exits 0 within seconds, the payload is gone and the server file removed
        assert up.wait(timeout=60) == 0
        wait_until(lambda: not Path(f"/proc/{payload}").exists(), 30, "the payload to exit")
        assert not (home / "server.json").exists()
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        for stream in (up.stdout, up.stderr):
            if stream is not None:
                stream.close()
