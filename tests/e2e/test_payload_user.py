"""Pilots started with `--payload-user nobody` run payloads that cannot read their credentials.

A real embedded system, real pilots (as root, as CI runs) given SKYPANDA_PAYLOAD_USER=nobody
by their launcher, real payloads. The probe payload checks whom it runs as, then tries to read
the admin's `$SKYPANDA_HOME/token` and `users.json`, its pilot's /proc/<ppid>/environ, cmdline
and memory (/proc/<ppid>/mem, where /proc/<ppid>/maps says it is), every process's environment
and command line, and every file under its pilot's work root (but its own job directory) and
the home; it compares the SHA-256 of every token-shaped string it read with those of the
admin's token and of the credentials issued to the pilots (launch and pilot credentials,
recorded as they are issued; it is given the hashes only), and says what it could open. It
must find nothing, yet still work: stage an input in, write log lines, flags and an output.

The same probe without a payload user finds `$SKYPANDA_HOME/token`: that is the documented gap
of payloads run as the pilot's own user, and the proof that the probe can find a credential.
A second payload tries to make its pilot read the admin's token for it (a flags file and an
output linked to it, a hard link) and must fail too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalOptions, LocalSystem
from tests.e2e.conftest import fast_queue, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        sys.platform != "linux" or os.geteuid() != 0,
        reason="pilots switch to user nobody only as root (CI runs as root), on Linux (/proc)",
    ),
]

NOBODY = 65534
ENDED = {"done", "finished", "failed"}

PROBE = r"""
import hashlib, os, re, sys
home = sys.argv[1]
with open(sys.argv[2]) as f:
    wanted = set(f.read().split())
shape = re.compile(rb"[A-Za-z0-9_-]{43}")
found, opened = [], []
def look(where, data):
    for m in shape.findall(data):
        if hashlib.sha256(m).hexdigest() in wanted:
            found.append(where)
def read(path, limit=1 << 20):
    try:
        with open(path, "rb") as f:
            data = f.read(limit)
    except OSError:
        return None
    opened.append(path)
    look(path, data)
    return data
ppid, mine = os.getppid(), os.getcwd()
print("UID", os.getuid(), flush=True)
for name in ("token", "users.json"):
    read(os.path.join(home, name))
for part in ("environ", "cmdline"):
    read(f"/proc/{ppid}/{part}")
maps = read(f"/proc/{ppid}/maps") or b""
try:
    with open(f"/proc/{ppid}/mem", "rb") as mem:
        opened.append(f"/proc/{ppid}/mem")
        budget = 256 << 20
        for line in maps.splitlines():
            span, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in span.split(b"-"))
            if perms.startswith(b"rw") and budget > 0:
                try:
                    mem.seek(lo)
                    look(f"/proc/{ppid}/mem", mem.read(min(hi - lo, budget)))
                except (OSError, OverflowError, ValueError):
                    pass
                budget -= hi - lo
except OSError:
    pass
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != ppid:
        for part in ("environ", "cmdline"):
            read(f"/proc/{pid}/{part}")
for top in (os.path.dirname(mine), home):
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if os.path.join(root, d) != mine]
        for name in files:
            read(os.path.join(root, name))
pilot = f"/proc/{ppid}/"
print("OPENED", " ".join(sorted(p for p in opened if not p.startswith("/proc/"))))
print("PILOT", " ".join(p[len(pilot):] for p in opened if p.startswith(pilot)))
print("FOUND", " ".join(sorted(set(found))) if found else "nothing")
print("INPUT", open("input.txt").read().strip())
with open(os.environ["SKYPANDA_FLAGS"], "a") as f:
    f.write(f"found={len(found)}\nuid={os.getuid()}\n")
with open("report.txt", "w") as f:
    f.write("found %d\n" % len(found))
"""

LEAK = r"""
import os, sys
token, flags = os.path.join(sys.argv[1], "token"), os.environ["SKYPANDA_FLAGS"]
os.remove(flags)
os.symlink(token, flags)
os.symlink(token, "leak.txt")
try:
    os.link(token, "hard.txt")
except OSError as e:
    print("no hard link:", e.strerror)
print("planted", flush=True)
"""
"""A payload that points its flags file and an output at the admin's token."""


def _python_for(uid: int) -> str:
    """A Python interpreter the user `uid` may run (the venv's may lie under /root)."""
    for candidate in (sys.executable, "/usr/bin/python3", shutil.which("python3")):
        if not candidate:
            continue
        try:
            subprocess.run([candidate, "-c", "pass"], user=uid, timeout=30, check=True)
        except (OSError, subprocess.SubprocessError):
            continue
        return candidate
    pytest.skip(f"no Python interpreter that uid {uid} may run")


@pytest.fixture
def place() -> Iterator[Path]:
    """A directory under /tmp that user nobody can reach by path (pytest's tmp_path is under
    a directory of mode 0700): a payload user must reach its job directory by its path."""
    root = Path(tempfile.mkdtemp(prefix="skypanda-payload-user-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def start_system(home: Path, wanted: Path) -> LocalSystem:
    """A system whose every credential for pilots is recorded, hashed, in `wanted` (with the
    admin's token): of a JWT, its signature, the part shaped like a token."""
    system = LocalSystem(LocalOptions(home=home, queue=fast_queue(), tick_s=0.3))
    wanted.write_text(_sha(system.token) + "\n")
    wanted.chmod(0o644)  # hashes only: the payload user reads them
    assert system.launcher is not None
    launch, issue = system.launcher.credential_for, system.pilot_credentials.issue

    def record(credential: str) -> str:
        with wanted.open("a") as f:
            f.write(_sha(credential.rsplit(".", 1)[-1]) + "\n")
        return credential

    system.launcher.credential_for = lambda pilot_id: record(launch(pilot_id))
    system.pilot_credentials.issue = lambda pilot_id: record(issue(pilot_id))  # type: ignore[method-assign]
    return system.start()


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def run_task(api: ApiClient, spec: dict[str, Any]) -> dict[str, Any]:
    """Submit a one-job task, wait for it to end; its job, with its log."""
    one = {} if spec.get("inputs") else {"n_jobs": 1}  # else one job per input
    task = api.call("POST", "/v1/tasks", {"max_attempts": 1, **one, **spec})
    path = f"/v1/tasks/{task['id']}"
    wait_until(lambda: api.call("GET", path)["status"] in ENDED, 90, f"{spec['name']} ends")
    (job,) = api.call("GET", f"{path}/jobs")["jobs"]
    job["log"] = api.call("GET", f"/v1/jobs/{job['id']}/log")
    return dict(job)


def probe(system: LocalSystem, place: Path) -> dict[str, Any]:
    """Run the probe as a task of `system`; its job, with its log."""
    python = _python_for(NOBODY)
    (place / "input.txt").write_text("staged in\n")
    api = ApiClient(system.url, system.token)
    script = place / "probe.py"  # a file: a command's braces are the task's placeholders
    script.write_text(PROBE)
    command = [python, str(script), str(system.opts.home), str(place / "wanted")]
    return run_task(
        api,
        {"name": "probe", "command": command, "inputs": [(place / "input.txt").as_uri()],
         "stage_in": True, "outputs": ["*.txt"]},
    )  # fmt: skip


def line(log: str, word: str) -> str:
    return next(x for x in log.splitlines() if x.startswith(word + " "))


def test_a_payload_run_as_nobody_reads_no_credential_and_still_works(
    place: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a system whose pilots run payloads as nobody (their launcher passes its
    # environment on to them)
    monkeypatch.setenv("SKYPANDA_PAYLOAD_USER", "nobody")
    system = start_system(place / "home", place / "wanted")
    try:
        # When the probe runs
        job = probe(system, place)
    finally:
        system.stop()
    home = system.opts.home
    log = job["log"]

    # Then it ran as nobody and finished, having staged its input, written flags and output
    assert job["status"] == "finished", log
    assert line(log, "UID") == f"UID {NOBODY}", log
    assert line(log, "INPUT") == "INPUT staged in", log
    assert job["flags"] == {"found": "0", "uid": str(NOBODY)}, log
    assert [o["name"] for o in job["outputs"]] == ["report.txt"], job["outputs"]
    # And it found no credential: the admin's token and users, its pilot's environment and
    # memory were closed to it (its pilot's command line, which holds none, was not)
    assert line(log, "FOUND") == "FOUND nothing", log
    opened = line(log, "OPENED").split()[1:]
    assert str(home / "token") not in opened and str(home / "users.json") not in opened, log
    assert line(log, "PILOT") == "PILOT cmdline", log


def test_a_payload_cannot_make_its_pilot_read_a_credential_for_it(
    place: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a system whose pilots run payloads as nobody
    monkeypatch.setenv("SKYPANDA_PAYLOAD_USER", "nobody")
    system = start_system(place / "home", place / "wanted")
    try:
        # When a payload links its flags file and an output to the admin's token
        api = ApiClient(system.url, system.token)
        python = _python_for(NOBODY)
        job = run_task(
            api,
            {"name": "leak", "command": [python, "-c", LEAK, str(system.opts.home)],
             "outputs": ["*.txt"]},
        )  # fmt: skip
        token = system.token
    finally:
        system.stop()

    # Then the job ran, and neither its log, its flags nor its outputs hold the token
    assert job["status"] == "finished" and "planted" in job["log"], job["log"]
    assert "[skypanda-pilot] flags: cannot read .skypanda-flags" in job["log"], job["log"]
    assert token not in job["log"] and token not in str(job["flags"]), job["log"]
    assert job["outputs"] == [], job["outputs"]


def test_without_a_payload_user_the_probe_finds_the_admins_token(
    place: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a system whose pilots run payloads as their own user (root here)
    monkeypatch.delenv("SKYPANDA_PAYLOAD_USER", raising=False)
    system = start_system(place / "home", place / "wanted")
    try:
        # When the same probe runs
        job = probe(system, place)
    finally:
        system.stop()
    home = system.opts.home

    # Then it reads $SKYPANDA_HOME/token and finds the admin's credential there: the gap
    # that --payload-user closes (and the proof that the probe finds what it can read)
    assert job["status"] == "finished", job["log"]
    assert line(job["log"], "UID") == "UID 0", job["log"]
    assert str(home / "token") in line(job["log"], "OPENED").split(), job["log"]
    assert "environ" in line(job["log"], "PILOT").split(), job["log"]
    assert str(home / "token") in line(job["log"], "FOUND").split(), job["log"]
