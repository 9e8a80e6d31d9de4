"""A payload cannot act as its pilot: it finds no credential anywhere it can look.

The payload (a real subprocess of a real pilot) reads every /proc/*/environ and cmdline it
can, its parent's, and every file under its pilot's work directory, extracts every string
shaped like a token and compares their SHA-256 with the admin's token and the launch credential
its pilot was given (the test gives it the hashes, not the tokens). It must find neither, while
showing it did read (its parent's environment among others)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import cli, wait_until

SCAN = r"""
import hashlib, os, re, sys
with open(sys.argv[1]) as f:
    wanted = set(f.read().split())
shape = re.compile(rb"[A-Za-z0-9_-]{43}")
found, read = [], {"environ": 0, "files": 0, "parent_environ": 0}
def look(where, data):
    for m in shape.findall(data):
        if hashlib.sha256(m).hexdigest() in wanted:
            found.append(where)
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    for part in ("environ", "cmdline"):
        try:
            with open(f"/proc/{pid}/{part}", "rb") as f:
                data = f.read()
        except OSError:
            continue
        read["environ"] += part == "environ"
        if int(pid) == os.getppid() and part == "environ" and b"PATH=" in data:
            read["parent_environ"] = 1
        look(f"/proc/{pid}/{part}", data)
top = os.path.abspath(os.path.join(os.getcwd(), "..", ".."))
for root, dirs, files in os.walk(top):
    for name in files:
        path = os.path.join(root, name)
        try:
            with open(path, "rb") as f:
                look(path, f.read(1 << 20))
            read["files"] += 1
        except OSError:
            pass
look("own environment", "\n".join(f"{k}={v}" for k, v in os.environ.items()).encode())
print("READ", read["environ"], read["files"], read["parent_environ"])
print("FOUND", sorted(set(found)) if found else "nothing")
"""


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _record_launch_credentials(system: LocalSystem, wanted: Path) -> None:
    """Append to `wanted` the hash of each launch credential the launcher hands a pilot: of its
    signature, the part of the JWT shaped like a token (43 characters, no dots)."""
    assert system.launcher is not None
    issue = system.launcher.credential_for

    def recorded(pilot_id: str) -> str:
        credential = issue(pilot_id)
        with wanted.open("a") as f:
            f.write(_sha(credential.rsplit(".", 1)[1]) + "\n")
        return credential

    system.launcher.credential_for = recorded


def test_a_payload_finds_no_credential_of_its_pilot_or_of_the_admin(
    system: LocalSystem,
) -> None:
    # Given the admin's token, and the launch credential each pilot is given, recorded as it
    # is issued (hashed, outside the pilots' work directories)
    assert system.launcher is not None
    wanted = system.opts.home / "wanted.txt"
    wanted.write_text(_sha(system.token) + "\n")
    _record_launch_credentials(system, wanted)
    script = system.opts.home / "scan.py"
    script.write_text(SCAN)
    spec = system.opts.home / "scan.yaml"
    task = {"name": "scan", "command": [sys.executable, str(script), str(wanted)], "n_jobs": 1}
    spec.write_text(json.dumps(task))  # JSON is YAML

    # When a payload scans everything it can read (submitted from this process, whose
    # environment holds no token: a CLI started with SKYPANDA_TOKEN in its environment would
    # be readable by a payload of the same Unix user; see the README's security section)
    api = ApiClient(system.url, system.token)
    task = api.call("POST", "/v1/tasks", json.loads(spec.read_text()))
    wait_until(
        lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "done",
        what="the scan task to end done",
    )
    (job,) = api.call("GET", f"/v1/tasks/{task['id']}/jobs")["jobs"]
    log = cli(system, "logs", job["id"]).stdout

    # Then its pilot's launch credential was among those looked for
    assert len(wanted.read_text().split()) >= 2
    # And it read environments (its pilot's among them) and files, and found no credential
    read = next(line for line in log.splitlines() if line.startswith("READ"))
    _, environs, files, parent = read.split()
    assert int(environs) > 0 and int(files) > 0 and parent == "1", read
    assert "FOUND nothing" in log, log
