"""End to end: a payload writing far more than its queue's log cap (issue 13, "the 1 GB log").

The log keeps its head and its tail with a marker between, within the cap; the job finishes as
if nothing happened; reading a big log streams it, and the server's memory does not grow by
its size. Real HTTP, real pilot subprocesses, a real payload.
"""

from __future__ import annotations

import os
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skypanda.domain.jobflow import log_key
from skypanda.pilot.client import ApiClient, ApiError
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import cli, fast_queue, wait_until

pytestmark = pytest.mark.e2e

MB = 1024 * 1024
WRITTEN = 200_000_000
"""What the payload writes between its first and its last line (a 1 GB run: see BENCHMARKS)."""
MARKER = re.compile(rb"\n\[skypanda: (\d+) bytes of output elided\]\n")


def run_one(api: ApiClient, command: list[str], timeout: float = 120) -> dict[str, Any]:
    """Submit a one-job task, wait until it ended, return its job."""
    spec = {"name": "t", "command": command, "n_jobs": 1, "max_attempts": 1}
    task = api.call("POST", "/v1/tasks", spec)
    path = f"/v1/tasks/{task['id']}"
    wait_until(lambda: api.call("GET", path)["status"] in {"done", "failed"}, timeout, "the task")
    [job] = api.call("GET", f"{path}/jobs")["jobs"]
    return dict(job)


def get_log(system: LocalSystem, job_id: str, sink: Callable[[bytes], None], **params: Any) -> int:
    """GET the job's log, handing it to `sink` 1 MB at a time (never whole); its HTTP status."""
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    request = urllib.request.Request(
        f"{system.url}/v1/jobs/{job_id}/log{query}",
        headers={"Authorization": f"Bearer {system.token}"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        while chunk := answer.read(MB):
            sink(chunk)
        return int(answer.status)


def test_a_log_far_past_its_queue_cap_keeps_its_head_a_marker_and_its_tail(
    make_system: Callable[..., LocalSystem],
) -> None:
    # Given a queue whose logs are capped at 1 MB, and a payload writing 200 MB between its
    # first and last lines
    system = make_system(fast_queue(max_log_mb=1))
    api = ApiClient(system.url, system.token)
    script = f"echo first line; yes 'a line of output' | head -c {WRITTEN}; echo; echo last line"

    # When it runs
    started = time.monotonic()
    job = run_one(api, ["sh", "-c", script])
    took = time.monotonic() - started

    # Then it finished: the pilot drained the payload's output all along
    assert (job["status"], job["exit_code"]) == ("finished", 0), job
    # And the stored log is within the cap and the marker's line
    stored = Path(system.blobs.root, log_key(job["id"], 1)).stat().st_size
    log = api.call("GET", f"/v1/jobs/{job['id']}/log").encode()
    assert len(log) == stored
    match = MARKER.search(log)
    assert match is not None, log[:200]
    assert stored == 1 * MB + len(match.group(0))
    # And it has the head, the marker counting exactly what was elided, and the tail
    total = len("first line\n") + WRITTEN + len("\nlast line\n")
    assert int(match.group(1)) == total - 1 * MB
    line, half = b"a line of output\n", MB // 2
    assert log[: match.start()] == (b"first line\n" + line * (half // 17))[:half]
    n = half - len("\nlast line\n")  # the tail: the yes stream's last n bytes, the last line
    start = (WRITTEN - n) % len(line)
    assert log[match.end() :] == (line * (n // 17 + 2))[start : start + n] + b"\nlast line\n"
    # And its last bytes can be asked for alone (the monitor's view), by the API and the CLI
    tail = api.call("GET", f"/v1/jobs/{job['id']}/log", params={"tail": 11})
    assert tail == "\nlast line\n"
    shown = cli(system, "logs", job["id"], "--tail", "10")
    assert (shown.returncode, shown.stdout) == (0, "last line\n"), shown.stderr
    print(f"\n200 MB payload, 1 MB cap: {took:.1f} s to run, {stored:,} bytes stored")


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_reading_a_big_log_streams_it_without_holding_it(
    make_system: Callable[..., LocalSystem],
) -> None:
    # Given a job whose stored log is 256 MB (as a pilot without a cap could leave it)
    system = make_system()
    api = ApiClient(system.url, system.token)
    job = run_one(api, ["echo", "hello"])
    key = log_key(job["id"], 1)
    block = b"0123456789abcde\n" * (MB // 16)
    for _ in range(256):
        system.blobs.append(key, block)
    size = Path(system.blobs.root, key).stat().st_size
    assert size == 256 * MB + len("hello\n")

    # When it is read through the API (this process is the server), peak memory measured
    before = _rss_mb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to now
    except OSError:
        pytest.skip("cannot reset this process's peak memory")
    got = 0

    def count(chunk: bytes) -> None:
        nonlocal got
        got += len(chunk)

    status = get_log(system, job["id"], count)
    peak = _rss_mb("VmHWM")

    # Then all of it came, and the server's memory grew by far less than the log's size
    assert (status, got) == (200, size)
    print(f"\nstreamed a {size / MB:.0f} MB log: RSS {before:.0f} MB before, peak {peak:.0f} MB")
    assert peak - before < 64, (before, peak)


def test_the_log_of_an_unknown_attempt_is_404_and_a_bad_tail_422(
    make_system: Callable[..., LocalSystem],
) -> None:
    system = make_system()
    api = ApiClient(system.url, system.token)
    job = run_one(api, ["echo", "hello"])
    assert api.call("GET", f"/v1/jobs/{job['id']}/log", params={"tail": 3}) == "lo\n"
    for tail in (-1, "x"):
        with pytest.raises(ApiError) as refused:
            api.call("GET", f"/v1/jobs/{job['id']}/log", params={"tail": tail})
        assert refused.value.status == 422
    os.remove(Path(system.blobs.root, log_key(job["id"], 1)))
    with pytest.raises(ApiError) as missing:
        api.call("GET", f"/v1/jobs/{job['id']}/log")
    assert missing.value.status == 404
