"""Specification of `skypanda.pilot.runner.run_payload` on real subprocesses.

Each test runs a real payload (a shell tool or `python -c`) in a temporary workdir and checks the
result, the output delivered to `on_output`, and that nothing the payload started survives a kill.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from skypanda.pilot.held import HeldJob
from skypanda.pilot.reporting import job_report
from skypanda.pilot.runner import (
    FLAGS_FILE,
    MAX_FLAGS,
    MAX_FLAGS_FILE_BYTES,
    PayloadResult,
    parse_flags,
    read_flags,
    run_payload,
)
from skypanda.wire.codes import ErrorCode
from skypanda.wire.groups import kill_recorded_groups

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the pilot is POSIX only")


class Output:
    """Collects on_output chunks, with the time each arrived."""

    def __init__(self) -> None:
        self.chunks: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()

    def __call__(self, chunk: bytes) -> None:
        with self._lock:
            self.chunks.append((time.monotonic(), chunk))

    @property
    def data(self) -> bytes:
        with self._lock:
            return b"".join(chunk for _, chunk in self.chunks)


def job(command: list[str], walltime_s: float = 60, **env: str) -> dict[str, Any]:
    return {
        "id": "job-1",
        "attempt": 2,
        "command": command,
        "env": env,
        "resources": {"memory_mb": 100, "cores": 1, "walltime_s": walltime_s},
    }


def run(
    spec: dict[str, Any], workdir: Path, stop: Any = None, out: Output | None = None
) -> tuple[PayloadResult, Output]:
    out = out or Output()
    result = run_payload(
        spec,
        workdir,
        on_output=out,
        should_stop=stop or (lambda: None),
        poll_s=0.05,
        kill_grace_s=1.0,
    )
    return result, out


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def gone(pid: int) -> bool:
    """True if the process no longer runs (absent, or a zombie waiting for init to reap it)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except FileNotFoundError:
        return True
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_gone(pid: int, within_s: float = 3.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return gone(pid)


def test_exit_zero_is_finished_with_output_env_and_workdir(tmp_path: Path) -> None:
    # Given a payload printing to stdout and stderr, its env and its working directory
    code = (
        "import os, sys; print('out'); print('err', file=sys.stderr); "
        "print(os.environ['GREETING'], os.environ['SKYPANDA_JOB_ID'], "
        "os.environ['SKYPANDA_ATTEMPT'], os.environ['SKYPANDA_WORKDIR'] == os.getcwd())"
    )
    workdir = tmp_path / "job-1.2"
    # When it runs
    result, out = run(job(py(code), GREETING="hello"), workdir)
    # Then it finished, in its own (created) workdir, with both streams captured
    assert (result.status, result.exit_code, result.error_code) == ("finished", 0, None)
    assert result.error_diag == ""
    assert workdir.is_dir()
    assert b"out\n" in out.data and b"err\n" in out.data
    assert b"hello job-1 2 True" in out.data
    assert result.started_at <= result.ended_at


def test_nonzero_exit_is_payload_failed_with_exit_code(tmp_path: Path) -> None:
    # Given a payload exiting 3
    # When it runs
    result, _ = run(job(["sh", "-c", "exit 3"]), tmp_path / "w")
    # Then the job failed with PAYLOAD_FAILED and keeps the exit code
    assert (result.status, result.exit_code) == ("failed", 3)
    assert result.error_code == ErrorCode.PAYLOAD_FAILED
    assert result.error_diag == "exit code 3"


@pytest.mark.parametrize(
    ("command", "diag"),
    [(["/nonexistent/skypanda-no-such-program"], "No such file"), ([], "empty command")],
)
def test_missing_command_is_payload_not_started(
    tmp_path: Path, command: list[str], diag: str
) -> None:
    # Given a command that does not exist, or none at all
    # When it runs
    result, out = run(job(command), tmp_path / "w")
    # Then it never started: PAYLOAD_NOT_STARTED, no exit code, the OS error in the diag
    assert (result.status, result.exit_code) == ("failed", None)
    assert result.error_code == ErrorCode.PAYLOAD_NOT_STARTED
    assert diag in result.error_diag
    assert out.data == b""


def test_walltime_kills_the_payload_group(tmp_path: Path) -> None:
    # Given a payload that starts a sleeping child and sleeps itself, with a 1 s walltime
    spec = job(["sh", "-c", "sleep 30 & echo $!; sleep 30"], walltime_s=1)
    # When it runs
    began = time.monotonic()
    result, out = run(spec, tmp_path / "w")
    # Then it is killed soon after 1 s, as MAX_TIME_EXCEEDED naming the limit
    assert time.monotonic() - began < 5
    assert result.status == "failed"
    assert result.error_code == ErrorCode.MAX_TIME_EXCEEDED
    assert result.error_diag == "walltime 1s exceeded"
    assert result.exit_code is not None and result.exit_code < 0
    # And the pilot said so at the end of the output, and the child is gone too
    assert out.data.endswith(b"[skypanda-pilot] killed: walltime 1s exceeded\n")
    assert wait_gone(int(out.data.split(b"\n")[0]))


def test_should_stop_kills_within_two_seconds(tmp_path: Path) -> None:
    # Given a running payload and a server kill requested after 0.3 s
    asked_at: list[float] = []

    def stop() -> int | None:
        if not asked_at and time.monotonic() - began > 0.3:
            asked_at.append(time.monotonic())
        return ErrorCode.KILLED_BY_SERVER if asked_at else None

    # When it runs
    began = time.monotonic()
    result, out = run(job(["sleep", "30"]), tmp_path / "w", stop)
    # Then it is killed within 2 s of the request and fails with that code
    assert time.monotonic() - asked_at[0] < 2
    assert result.status == "failed"
    assert result.error_code == ErrorCode.KILLED_BY_SERVER
    assert "KILLED_BY_SERVER" in result.error_diag
    assert b"[skypanda-pilot] killed:" in out.data


def test_output_streams_before_the_payload_ends(tmp_path: Path) -> None:
    # Given a payload that prints, flushes, sleeps, then prints again
    code = "import time; print('first', flush=True); time.sleep(1.0); print('second')"
    # When it runs
    began = time.monotonic()
    result, out = run(job(py(code)), tmp_path / "w")
    ended = time.monotonic()
    # Then the first line reached on_output well before the process ended
    assert result.status == "finished"
    first_at = next(t for t, chunk in out.chunks if b"first" in chunk)
    assert first_at - began < ended - began - 0.5
    assert out.data == b"first\nsecond\n"


def test_kill_takes_a_grandchild_that_ignores_sigterm(tmp_path: Path) -> None:
    # Given a payload whose grandchild ignores SIGTERM and says so once it does
    grandchild = (
        "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', os.getpid(), flush=True); time.sleep(30)"
    )
    code = (
        "import subprocess, sys, time; "
        f"subprocess.Popen([sys.executable, '-c', {grandchild!r}]); time.sleep(30)"
    )
    out = Output()

    def stop() -> int | None:
        return ErrorCode.SIGTERM if b"ready" in out.data else None

    # When the pilot stops it
    began = time.monotonic()
    result, _ = run(job(py(code)), tmp_path / "w", stop, out)
    # Then the job failed with SIGTERM, after the grace, and the grandchild died with the group
    assert result.error_code == ErrorCode.SIGTERM
    assert time.monotonic() - began < 5
    assert wait_gone(int(out.data.split()[1]))


def test_leftover_background_process_is_killed_after_a_normal_exit(tmp_path: Path) -> None:
    # Given a payload that exits 0 but leaves a background process holding its output pipe
    spec = job(["sh", "-c", "sleep 30 & echo $!"])
    # When it runs
    began = time.monotonic()
    result, out = run(spec, tmp_path / "w")
    # Then the job is finished promptly, and the leftover is gone
    assert result.status == "finished"
    assert time.monotonic() - began < 3
    assert wait_gone(int(out.data.split(b"\n")[0]))
    assert b"left running" in out.data


def test_groups_recorded_by_a_sigkilled_pilot_can_be_killed(tmp_path: Path) -> None:
    # Given a pilot process running a payload that prints its pid and sleeps, recording groups
    groups = tmp_path / "groups"
    pilot_code = (
        "import sys; from pathlib import Path; from skypanda.pilot.runner import run_payload; "
        "run_payload({'id': 'j', 'command': ['sh', '-c', 'echo $$; exec sleep 30']}, "
        f"Path({str(tmp_path / 'w')!r}), "
        "on_output=lambda c: (sys.stdout.buffer.write(c), sys.stdout.flush()), "
        f"should_stop=lambda: None, groups=Path({str(groups)!r}))"
    )
    pilot = subprocess.Popen([sys.executable, "-c", pilot_code], stdout=subprocess.PIPE)
    try:
        assert pilot.stdout is not None
        payload_pid = int(pilot.stdout.readline())
        # When the pilot is killed with SIGKILL (no chance to clean up)
        pilot.kill()
        pilot.wait()
        # Then its payload's group was recorded, and killing the recorded groups ends it
        assert (groups / str(payload_pid)).exists()
        assert kill_recorded_groups(groups) == 1
        assert wait_gone(payload_pid)
        assert list(groups.iterdir()) == []
    finally:
        pilot.kill()
        pilot.wait()
        if pilot.stdout is not None:
            pilot.stdout.close()


# -- flags ($SKYPANDA_FLAGS) ---------------------------------------------------------------------


def test_flags_written_by_the_payload_are_in_the_result_and_the_final_report(
    tmp_path: Path,
) -> None:
    # Given a payload that leaves its workdir, then appends flags (one twice) to $SKYPANDA_FLAGS
    script = (
        'cd / && echo converged=no >> "$SKYPANDA_FLAGS" && echo "note=a = b " >> "$SKYPANDA_FLAGS"'
        ' && echo converged=yes >> "$SKYPANDA_FLAGS" && echo "$SKYPANDA_FLAGS"'
    )
    workdir = tmp_path / "job-1.2"
    # When it runs
    result, out = run(job(["sh", "-c", script]), workdir)
    # Then the flags file was the one in its workdir, and the last value of each flag counts
    assert result.status == "finished"
    assert out.data == f"{workdir / FLAGS_FILE}\n".encode()
    assert result.flags == {"converged": "yes", "note": "a = b "}
    # And the final report carries them, the running report does not
    held = HeldJob(job(["true"]))
    assert job_report(held, result)["flags"] == {"converged": "yes", "note": "a = b "}
    assert "flags" not in job_report(held, None)


def test_a_payload_writing_no_flags_gets_an_empty_file_and_yields_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a relative workdir holding a flags file left by an earlier run
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / FLAGS_FILE).write_text("stale=1\n")
    code = (
        "import os; p = os.environ['SKYPANDA_FLAGS']; print(os.path.isabs(p), os.path.getsize(p))"
    )
    # When a payload that writes no flag runs there
    result, out = run(job(py(code)), Path("w"))
    # Then it saw an absolute path to an empty file, and there are no flags and no notes
    assert result.status == "finished"
    assert out.data == b"True 0\n"
    assert result.flags == {}
    assert job_report(HeldJob(job(["true"])), result)["flags"] == {}


def test_bad_flag_lines_are_noted_in_the_log_and_never_fail_the_job(tmp_path: Path) -> None:
    # Given a payload writing a good flag, a bad line and a bad name, then exiting 0
    script = 'printf "ok=1\\nno equals sign\\n9lives=x\\n" >> "$SKYPANDA_FLAGS"'
    # When it runs
    result, out = run(job(["sh", "-c", script]), tmp_path / "w")
    # Then the job finished with the good flag, and the log says what was dropped and why
    assert result.status == "finished" and result.error_diag == ""
    assert result.flags == {"ok": "1"}
    assert out.data == (
        b"[skypanda-pilot] flags: line 2: not name=value: 'no equals sign'\n"
        b"[skypanda-pilot] flags: line 3: bad flag name '9lives'\n"
    )


def test_a_failed_payload_still_reports_its_flags(tmp_path: Path) -> None:
    # Given a payload that sets a flag, then fails
    script = 'echo reason=diverged >> "$SKYPANDA_FLAGS"; exit 3'
    # When it runs
    result, _ = run(job(["sh", "-c", script]), tmp_path / "w")
    # Then the failed result and its final report have the flag
    assert (result.status, result.exit_code) == ("failed", 3)
    assert result.flags == {"reason": "diverged"}
    report = job_report(HeldJob(job(["true"])), result)
    assert (report["status"], report["flags"]) == ("failed", {"reason": "diverged"})


def test_a_payload_not_started_has_no_flags(tmp_path: Path) -> None:
    result, _ = run(job(["/nonexistent/skypanda-no-such-program"]), tmp_path / "w")
    assert result.status == "failed" and result.flags == {}


@pytest.mark.parametrize(
    ("text", "flags"),
    [
        ("", {}),
        ("a=1", {"a": "1"}),
        ("a=1\n", {"a": "1"}),
        ("\n  \n# a comment\n#x=1\na=1\n\n", {"a": "1"}),
        ("a=1\nb=2\na=3\n", {"a": "3", "b": "2"}),
        ("a=\n", {"a": ""}),
        ("a==b=c\n", {"a": "=b=c"}),
        ("a= spaced out \t\n", {"a": " spaced out \t"}),
        ("a=crlf\r\n", {"a": "crlf\r"}),
        ("A_b.c-9=x\n_=y\n", {"A_b.c-9": "x", "_": "y"}),
        ("v=é ü ∞\n", {"v": "é ü ∞"}),
        ("n" * 100 + "=x", {"n" * 100: "x"}),
    ],
)
def test_parse_flags_reads_valid_lines(text: str, flags: dict[str, str]) -> None:
    assert parse_flags(text) == (flags, [])


@pytest.mark.parametrize(
    ("line", "note"),
    [
        ("no equals", "line 1: not name=value: 'no equals'"),
        ("=x", "line 1: bad flag name ''"),
        ("9a=x", "line 1: bad flag name '9a'"),
        (" a=x", "line 1: bad flag name ' a'"),
        ("a b=x", "line 1: bad flag name 'a b'"),
        ("a/b=x", "line 1: bad flag name 'a/b'"),
        ("-a=x", "line 1: bad flag name '-a'"),
        ("n" * 101 + "=x", f"line 1: bad flag name {'n' * 60 + '...'!r}"),
        ("a" + "=" + "x" * 1000, "line 1: flag 'a' longer than 1000 characters"),
    ],
)
def test_parse_flags_drops_bad_lines_with_a_note(line: str, note: str) -> None:
    # Given a bad line between two good ones
    text = f"before=1\n{line}\nafter=2\n"
    # When parsed
    flags, notes = parse_flags(text)
    # Then the good ones are kept and the bad one is named, with its line number
    assert flags == {"before": "1", "after": "2"}
    assert notes == [note.replace("line 1", "line 2")]


def test_parse_flags_limits_are_on_name_plus_value() -> None:
    # 1000 characters of name plus value is allowed; an overlong override keeps the old value
    fits = "ab=" + "x" * 998
    flags, notes = parse_flags(f"{fits}\nab={'y' * 999}\n")
    assert flags == {"ab": "x" * 998}
    assert notes == ["line 2: flag 'ab' longer than 1000 characters"]


def test_parse_flags_keeps_the_first_names_up_to_the_limit() -> None:
    # Given more names than allowed, then a change to one of the first
    lines = [f"f{i}={i}" for i in range(MAX_FLAGS + 2)] + ["f0=changed"]
    # When parsed
    flags, notes = parse_flags("\n".join(lines))
    # Then the first MAX_FLAGS names are kept (the kept one changed), the rest noted
    assert list(flags) == [f"f{i}" for i in range(MAX_FLAGS)]
    assert flags["f0"] == "changed"
    assert notes == [
        f"line {MAX_FLAGS + 1}: flag 'f{MAX_FLAGS}' beyond the first {MAX_FLAGS}",
        f"line {MAX_FLAGS + 2}: flag 'f{MAX_FLAGS + 1}' beyond the first {MAX_FLAGS}",
    ]


def test_parse_flags_notes_are_capped() -> None:
    flags, notes = parse_flags("bad\n" * 20 + "ok=1\n")
    assert flags == {"ok": "1"}
    assert len(notes) == 6 and notes[-1] == "15 more line(s) dropped"


def test_read_flags_missing_fifo_and_oversized_files(tmp_path: Path) -> None:
    # A missing file: no flags, nothing to say
    assert read_flags(tmp_path / "missing") == ({}, [])
    # A FIFO (whose open would block): ignored, with a note
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert read_flags(fifo) == ({}, ["fifo is not a regular file: ignored"])
    # A file over the size limit: its whole lines within the limit are read, the rest noted
    big = tmp_path / "big"
    line = b"a=" + b"x" * 98 + b"\n"
    big.write_bytes(b"first=1\n" + line * (MAX_FLAGS_FILE_BYTES // len(line) + 1) + b"last=1\n")
    flags, notes = read_flags(big)
    assert flags == {"first": "1", "a": "x" * 98}
    assert notes == [f"the file is larger than {MAX_FLAGS_FILE_BYTES} bytes: the rest is ignored"]
    # Bytes that are not UTF-8 are replaced, not fatal
    odd = tmp_path / "odd"
    odd.write_bytes(b"v=\xff\n")
    assert read_flags(odd) == ({"v": "\ufffd"}, [])


# -- watching: memory and looping -----------------------------------------------------------------


def watched(
    spec: dict[str, Any], workdir: Path, looping_timeout_s: float | None = None
) -> tuple[PayloadResult, Output, float]:
    """Run with a fast watch (sampling every 0.1 s); also returns how long it took."""
    out = Output()
    began = time.monotonic()
    result = run_payload(
        spec,
        workdir,
        on_output=out,
        should_stop=lambda: None,
        poll_s=0.05,
        kill_grace_s=1.0,
        looping_timeout_s=looping_timeout_s,
        sample_s=0.1,
    )
    return result, out, time.monotonic() - began


HOG = (
    "import os, time; print(os.getpid(), flush=True); "
    "b = bytearray(300 * 2**20); time.sleep(10)"  # bytearray zero-fills: the pages are resident
)
"""Python code printing its pid, then holding 300 MB for 10 s."""

linux_only = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")


@linux_only
def test_a_payload_over_its_memory_limit_is_killed_as_out_of_memory(tmp_path: Path) -> None:
    # Given a payload that takes 300 MB, of a job that asked for 100 MB
    spec = job(py(HOG))
    assert spec["resources"]["memory_mb"] == 100
    # When it runs
    result, out, took = watched(spec, tmp_path / "w")
    # Then it is killed within a couple of seconds, as OUT_OF_MEMORY naming usage and limit
    assert took < 3
    assert (result.status, result.error_code) == ("failed", ErrorCode.OUT_OF_MEMORY)
    used = int(result.error_diag.split()[2])
    assert result.error_diag == f"payload used {used} MB, over the job's 100 MB"
    assert 100 < used <= 330
    assert result.exit_code is not None and result.exit_code < 0
    assert result.max_rss_mb is not None and result.max_rss_mb >= used
    # And the pilot said so in the log, and the process is gone
    assert out.data.endswith(f"[skypanda-pilot] killed: {result.error_diag}\n".encode())
    assert wait_gone(int(out.data.split()[0]))


@linux_only
def test_a_grandchild_over_the_limit_counts_and_the_whole_tree_is_killed(tmp_path: Path) -> None:
    # Given a payload whose child starts a grandchild that takes 300 MB (each prints its pid)
    child = (
        "import os, subprocess, sys; print(os.getpid(), flush=True); "
        f"subprocess.run([sys.executable, '-c', {HOG!r}])"
    )
    leader = (
        "import os, subprocess, sys, time; print(os.getpid(), flush=True); "
        f"subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(10)"
    )
    # When it runs with a 100 MB limit
    result, out, took = watched(job(py(leader)), tmp_path / "w")
    # Then the tree's memory was over the limit: OUT_OF_MEMORY, quickly
    assert took < 3
    assert result.error_code == ErrorCode.OUT_OF_MEMORY
    assert "over the job's 100 MB" in result.error_diag
    # And the leader, the child and the grandchild are all gone
    pids = [int(word) for word in out.data.split()[:3]]
    assert len(pids) == 3
    assert all(wait_gone(pid) for pid in pids)


@linux_only
def test_a_payload_under_its_limit_finishes_and_reports_its_peak_memory(tmp_path: Path) -> None:
    # Given a payload that holds 40 MB for a moment, of a job that asked for 100 MB
    code = "import time; b = bytearray(40 * 2**20); time.sleep(0.6)"
    # When it runs
    result, _, _ = watched(job(py(code)), tmp_path / "w")
    # Then it finished, and its peak is at least the 40 MB (plus the interpreter), under 100
    assert (result.status, result.error_code) == ("finished", None)
    assert result.max_rss_mb is not None and 40 < result.max_rss_mb < 100


@linux_only
def test_no_memory_limit_means_no_memory_kill(tmp_path: Path) -> None:
    # Given a payload taking 150 MB, of a job whose resources say nothing of memory
    spec = job(py("b = bytearray(150 * 2**20); import time; time.sleep(0.5)"))
    del spec["resources"]["memory_mb"]
    # When it runs, then it finishes, its peak measured
    result, _, _ = watched(spec, tmp_path / "w")
    assert result.status == "finished"
    assert result.max_rss_mb is not None and result.max_rss_mb > 150


def test_a_silent_payload_is_killed_as_looping(tmp_path: Path) -> None:
    # Given a payload that prints once, then sleeps without output or file changes
    spec = job(["sh", "-c", "echo started; exec sleep 30"])
    # When it runs with a 0.5 s looping timeout
    result, out, took = watched(spec, tmp_path / "w", looping_timeout_s=0.5)
    # Then it is killed soon after, as LOOPING_JOB, and the log says why
    assert took < 3
    assert (result.status, result.error_code) == ("failed", ErrorCode.LOOPING_JOB)
    assert result.error_diag.startswith("looping: no output and no file change in the workdir")
    assert result.error_diag.endswith("(looping timeout 0.5s)")
    assert out.data.startswith(b"started\n")
    assert out.data.endswith(f"[skypanda-pilot] killed: {result.error_diag}\n".encode())


def test_a_payload_that_keeps_printing_is_not_looping(tmp_path: Path) -> None:
    # Given a payload printing every 0.1 s for 1.5 s (three looping timeouts)
    code = "import time\nfor i in range(15):\n    print(i, flush=True); time.sleep(0.1)"
    # When it runs with a 0.5 s looping timeout, then it finishes
    result, _, took = watched(job(py(code)), tmp_path / "w", looping_timeout_s=0.5)
    assert (result.status, result.error_code) == ("finished", None)
    assert took > 1.5


def test_a_payload_that_keeps_writing_a_file_in_its_workdir_is_not_looping(
    tmp_path: Path,
) -> None:
    # Given a silent payload appending to a file in a subdirectory of its workdir for 1.5 s
    script = "mkdir sub; for i in $(seq 15); do echo $i >> sub/log; sleep 0.1; done"
    # When it runs with a 0.5 s looping timeout, then it finishes
    result, out, _ = watched(job(["sh", "-c", script]), tmp_path / "w", looping_timeout_s=0.5)
    assert (result.status, result.error_code) == ("finished", None)
    assert out.data == b""
    assert (tmp_path / "w" / "sub" / "log").read_text().split()[-1] == "15"


def test_without_a_looping_timeout_a_silent_payload_runs_on(tmp_path: Path) -> None:
    result, _, _ = watched(job(["sleep", "0.8"]), tmp_path / "w")
    assert (result.status, result.error_code) == ("finished", None)


def test_the_payload_never_sees_the_pilots_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pilot holding its API token and a Cloud Storage token, and a job with its own env
    from skypanda.pilot.runner import PILOT_SECRETS, payload_env

    monkeypatch.setenv("SKYPANDA_TOKEN", "pilot-secret")
    monkeypatch.setenv("SKYPANDA_GCS_TOKEN", "gcs-secret")
    monkeypatch.setenv("HOME_LIKE", "kept")
    job = {"id": "j", "attempt": 2, "env": {"MINE": "1"}}

    # When the payload's environment is made
    env = payload_env(job, tmp_path)

    # Then neither credential is in it, and the rest is
    assert not PILOT_SECRETS & set(env)
    assert (env["HOME_LIKE"], env["MINE"], env["SKYPANDA_ATTEMPT"]) == ("kept", "1", "2")
