"""Specification of `skypanda.pilot.workdirs`: a job's directory is reused only when the job
left it as a new one, and a job never sees what an earlier job left.

Real directories and real payloads (`run_payload`), no mocks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from skypanda.pilot.runner import FLAGS_FILE, PayloadResult, run_payload
from skypanda.pilot.workdirs import SPARE_PREFIX, Workdirs

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the pilot is POSIX only")

SEE = (
    "import os, json; print(json.dumps([os.getcwd(), os.environ['SKYPANDA_WORKDIR'], "
    "sorted(os.listdir('.')), os.path.getsize(os.environ['SKYPANDA_FLAGS'])]))"
)


def run(job_id: str, command: list[str], workdir: Path) -> tuple[PayloadResult, bytes]:
    out: list[bytes] = []
    spec: dict[str, Any] = {"id": job_id, "attempt": 1, "command": command}
    result = run_payload(spec, workdir, on_output=out.append, should_stop=lambda: None)
    return result, b"".join(out)


def spares(base: Path) -> list[str]:
    return sorted(p.name for p in base.iterdir() if p.name.startswith(SPARE_PREFIX))


def test_a_directory_left_as_new_is_the_next_jobs_under_its_name(tmp_path: Path) -> None:
    # Given a job that ran and left nothing but its empty flags file
    dirs = Workdirs(tmp_path)
    first = dirs.take("a.1")
    result, _ = run("a", ["true"], first)
    assert result.status == "finished"
    inode = first.stat().st_ino
    dirs.give_back(first)

    # Then its directory is kept as a spare, under no job's name
    assert not first.exists() and len(spares(tmp_path)) == 1

    # When the next job takes a directory, it is that spare renamed to the job's name
    second = dirs.take("b.1")
    assert second == tmp_path / "b.1" and second.stat().st_ino == inode
    assert spares(tmp_path) == []

    # And the job sees what a new directory shows: itself, empty but for an empty flags file
    result, out = run("b", [sys.executable, "-c", SEE], second)
    assert result.status == "finished", out
    assert out.decode().strip() == f'["{second}", "{second}", ["{FLAGS_FILE}"], 0]'


@pytest.mark.parametrize(
    "leave",
    [
        "open('left.txt', 'w').write('x')",  # a file of its own
        "os.mkdir('sub')",  # a directory
        "open(os.environ['SKYPANDA_FLAGS'], 'a').write('done=yes\\n')",  # a flag
        "os.remove(os.environ['SKYPANDA_FLAGS']); os.symlink('/etc/hostname', "
        "os.environ['SKYPANDA_FLAGS'])",  # its flags file swapped for a link
        "os.link(os.environ['SKYPANDA_FLAGS'], '../elsewhere')",  # a second name for it
        "os.chmod('.', 0o700)",  # the directory's mode changed
    ],
)
def test_a_directory_the_job_left_something_in_stays_under_the_jobs_name(
    tmp_path: Path, leave: str
) -> None:
    # Given a job that leaves something behind
    base = tmp_path / "base"
    base.mkdir()
    dirs = Workdirs(base)
    workdir = dirs.take("a.1")
    result, out = run("a", [sys.executable, "-c", f"import os; {leave}"], workdir)
    assert result.status == "finished", out

    # When it is over
    dirs.give_back(workdir)

    # Then its directory stays as it was, and the next job gets a new one
    assert workdir.is_dir() and spares(base) == []
    nxt = dirs.take("b.1")
    assert not nxt.exists()
    result, out = run("b", [sys.executable, "-c", SEE], nxt)
    assert out.decode().strip() == f'["{nxt}", "{nxt}", ["{FLAGS_FILE}"], 0]'


def test_without_reuse_every_job_gets_a_new_directory(tmp_path: Path) -> None:
    # Given the directories of a pilot with a payload user (no reuse)
    dirs = Workdirs(tmp_path, reuse=False)
    first = dirs.take("a.1")
    run("a", ["true"], first)

    # When the job is over, its directory stays; the next job's is new
    dirs.give_back(first)
    assert first.is_dir() and spares(tmp_path) == []
    assert not dirs.take("b.1").exists()


def test_spares_are_kept_up_to_the_limit_and_removed_at_close(tmp_path: Path) -> None:
    # Given three jobs over at once, with room for two spares
    dirs = Workdirs(tmp_path, keep=2)
    taken = [dirs.take(f"{name}.1") for name in "abc"]
    for workdir in taken:
        run(workdir.name, ["true"], workdir)
    for workdir in taken:
        dirs.give_back(workdir)

    # Then two are spares and the third stays under its job's name
    assert len(spares(tmp_path)) == 2 and taken[2].is_dir()

    # And closing removes the spares, nothing else
    dirs.close()
    assert spares(tmp_path) == [] and taken[2].is_dir()


def test_a_spare_never_replaces_a_directory_with_content(tmp_path: Path) -> None:
    # Given a spare, and a directory of the next job's name already holding a file
    dirs = Workdirs(tmp_path)
    first = dirs.take("a.1")
    run("a", ["true"], first)
    dirs.give_back(first)
    existing = tmp_path / "b.1"
    existing.mkdir()
    (existing / "kept.txt").write_text("kept")

    # When the job takes its directory
    workdir = dirs.take("b.1")

    # Then it is that directory, its content untouched, and the spare is gone
    assert workdir == existing and (existing / "kept.txt").read_text() == "kept"
    assert spares(tmp_path) == []
    result, _ = run("b", ["true"], workdir)
    assert result.status == "finished"


def test_running_payloads_leaves_no_descriptor_open(tmp_path: Path) -> None:
    # Given the pilot's open descriptors after a first payload (/dev/null is opened once)
    dirs = Workdirs(tmp_path)

    def one(name: str, command: list[str]) -> None:
        workdir = dirs.take(f"{name}.1")
        run(name, command, workdir)
        dirs.give_back(workdir)

    one("first", ["true"])
    before = sorted(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    if before is None:
        pytest.skip("no /proc/self/fd here")

    # When payloads run: ending, failing, printing, and one that cannot start
    for k in range(20):
        one(f"ok{k}", ["true"])
        one(f"fail{k}", ["false"])
        one(f"out{k}", ["echo", "hello"])
    one("missing", [str(tmp_path / "no-such-command")])

    # Then no descriptor was left open
    assert sorted(os.listdir("/proc/self/fd")) == before
