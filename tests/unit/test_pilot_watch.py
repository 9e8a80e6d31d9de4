"""Specification of `skypanda.pilot.watch`: /proc parsing, the payload's tree, looping decisions.

Parsers are tested on sample text, the readers on a fake /proc directory and on real process
trees (Linux only), the looping decision as a table, the workdir scan on real files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from skypanda.pilot.watch import (
    MB,
    ProcStat,
    SessionIndex,
    is_looping,
    mb,
    newest_mtime,
    parse_stat,
    parse_statm_rss,
    rss_bytes,
    scan_sessions,
    session_pids,
    tree_usage,
)

linux_only = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")

# -- parsing -------------------------------------------------------------------------------------

STAT = "4242 (python3) S 4200 4242 4242 34816 4242 4194304 1234 0 0 0 12 3 0 0 20 0 1 0 99 0 0"


def test_parse_stat_reads_pid_state_parent_group_and_session() -> None:
    assert parse_stat(STAT) == ProcStat(4242, "S", 4200, 4242, 4242)


@pytest.mark.parametrize("comm", ["a b", "x) S 1 2 3 (y", "))", "", "é"])
def test_parse_stat_survives_any_command_name(comm: str) -> None:
    # Given a command name with spaces, parentheses or fake fields (a process chooses its own)
    text = f"77 ({comm}) Z 1 70 60 0 -1 0\n"
    # Then the fields after the last ")" are read
    stat = parse_stat(text)
    assert stat == ProcStat(77, "Z", 1, 70, 60)
    assert not stat.alive


@pytest.mark.parametrize(
    "text", ["", "garbage", "12 (sh) S 1", "x (sh) S 1 2 3", "12 (sh) S a 2 3"]
)
def test_parse_stat_rejects_what_is_not_a_stat_line(text: str) -> None:
    with pytest.raises(ValueError):
        parse_stat(text)


def test_parse_statm_rss_is_resident_pages_times_page_size() -> None:
    assert parse_statm_rss("10000 2500 300 20 0 4000 0\n", 4096) == 2500 * 4096
    with pytest.raises(ValueError):
        parse_statm_rss("10000", 4096)


@pytest.mark.parametrize(
    ("nbytes", "whole_mb"), [(0, 0), (1, 1), (MB, 1), (MB + 1, 2), (612 * MB - 5, 612)]
)
def test_mb_rounds_up(nbytes: int, whole_mb: int) -> None:
    assert mb(nbytes) == whole_mb


# -- readers on a fake /proc ---------------------------------------------------------------------


def fake_proc(root: Path, processes: dict[int, tuple[str, int, int | None]]) -> Path:
    """Write stat (and statm, unless its resident pages are None) for pid: (state, sid, pages)."""
    for pid, (state, sid, pages) in processes.items():
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "stat").write_text(f"{pid} (cmd {pid}) {state} 1 {sid} {sid} 0 -1 0\n")
        if pages is not None:
            (root / str(pid) / "statm").write_text(f"9999 {pages} 0 0 0 0 0\n")
    return root


def test_scan_groups_live_processes_by_session_and_skips_the_odd_ones(tmp_path: Path) -> None:
    # Given a /proc with a session of three (one a zombie), another session, kernel threads
    # (session 0), a non-process entry, a process gone before its stat was read, garbage
    proc = fake_proc(
        tmp_path,
        {10: ("S", 10, 1), 11: ("R", 10, 2), 12: ("Z", 10, 0), 20: ("S", 20, 1), 2: ("S", 0, 0)},
    )
    (proc / "self").mkdir()
    (proc / "99").mkdir()
    (proc / "98").mkdir()
    (proc / "98" / "stat").write_text("not a stat line")
    # When scanned
    sessions = scan_sessions(str(proc))
    # Then each session lists its live processes, nothing else
    assert {sid: sorted(pids) for sid, pids in sessions.items()} == {10: [10, 11], 20: [20]}
    assert session_pids(10, str(proc)) == [10, 11]
    assert session_pids(30, str(proc)) == []
    assert scan_sessions(str(tmp_path / "missing")) == {}


def test_tree_usage_sums_rss_and_leaves_out_processes_gone_meanwhile(tmp_path: Path) -> None:
    # Given three pids, one already gone (no statm) and one with a broken statm
    proc = fake_proc(tmp_path, {10: ("S", 10, 100), 11: ("S", 10, 50), 12: ("S", 10, None)})
    (proc / "13").mkdir()
    (proc / "13" / "statm").write_text("")
    page = os.sysconf("SC_PAGE_SIZE")
    # When the tree's usage is taken
    usage = tree_usage([12, 11, 10, 13], str(proc))
    # Then the live ones are summed
    assert usage.pids == (10, 11)
    assert usage.rss_bytes == 150 * page
    assert rss_bytes(11, str(proc)) == 50 * page
    assert rss_bytes(12, str(proc)) is None


def test_session_index_shares_a_scan_while_it_is_fresh(tmp_path: Path) -> None:
    # Given an index over a /proc whose session gains a process after the first look
    proc = fake_proc(tmp_path / "proc", {10: ("S", 10, 1)})
    fresh, lasting = SessionIndex(str(proc), max_age_s=0), SessionIndex(str(proc), max_age_s=60)
    assert fresh.pids(10) == [10] and lasting.pids(10) == [10]
    fake_proc(proc, {11: ("S", 10, 1)})
    # Then an index with a fresh-enough scan does not look again; one whose scan is old does
    assert lasting.pids(10) == [10]
    assert sorted(fresh.pids(10)) == [10, 11]


# -- readers on real process trees ---------------------------------------------------------------


class Tree:
    """A real shell started in its own session, which prints `label pid` lines."""

    def __init__(self, script: str, **env: str) -> None:
        self.proc = subprocess.Popen(
            ["sh", "-c", script],
            env={**os.environ, "PY": sys.executable, **env},
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
        )
        self.pids: dict[str, int] = {}

    def read(self, *labels: str) -> dict[str, int]:
        assert self.proc.stdout is not None
        while not set(labels) <= set(self.pids):
            label, pid = self.proc.stdout.readline().split()
            self.pids[label] = int(pid)
        return self.pids

    def kill(self) -> None:
        for pid in self.pids.values():  # the escaped ones are not in the group
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def trees() -> Iterator[list[Tree]]:
    started: list[Tree] = []
    yield started
    for tree in started:
        tree.kill()


@linux_only
def test_the_tree_is_the_session_children_grandchildren_orphans_but_not_escapees(
    trees: list[Tree],
) -> None:
    # Given a shell in its own session with a child, a grandchild (under an inner shell), an
    # orphan (its parent exited), and a process that left the session with setsid
    escapee = (
        "import os, time; os.setsid(); print('escaped', os.getpid(), flush=True); time.sleep(9)"
    )
    script = (
        "echo leader $$; "
        "sleep 30 & echo child $!; "
        'sh -c "sleep 30 & echo grandchild \\$!; wait" & echo inner $!; '
        "(sleep 30 & echo orphan $!); "
        '"$PY" -c "$ESCAPEE" & '
        "wait"
    )
    tree = Tree(script, ESCAPEE=escapee)
    trees.append(tree)
    pids = tree.read("leader", "child", "grandchild", "inner", "orphan", "escaped")
    # When the payload's session is scanned
    found = session_pids(tree.proc.pid)
    # Then everything it started is found, except the escapee
    assert pids["leader"] == tree.proc.pid
    expected = {pids[label] for label in ("leader", "child", "grandchild", "inner", "orphan")}
    assert set(found) == expected
    assert pids["escaped"] not in found
    # And the orphan's parent is no longer its shell, yet it still belongs to the tree
    with open(f"/proc/{pids['orphan']}/stat") as f:
        assert parse_stat(f.read()).ppid != pids["leader"]


def vm_rss(pid: int) -> int:
    """A process's VmRSS from /proc/PID/status, in bytes: a second opinion on statm."""
    with open(f"/proc/{pid}/status") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


@linux_only
def test_tree_usage_sums_the_memory_of_the_whole_tree(trees: list[Tree]) -> None:
    # Given a tree whose grandchild holds 64 MB (bytearray zero-fills: the pages are resident)
    hog = (
        "import os, time; b = bytearray(64 * 2**20); "
        "print('hog', os.getpid(), flush=True); time.sleep(9)"
    )
    tree = Tree('echo leader $$; sh -c \'"$PY" -c "$HOG"; :\' & wait', HOG=hog)
    trees.append(tree)
    pids = tree.read("leader", "hog")
    # When the tree's usage is taken
    usage = tree_usage(session_pids(tree.proc.pid))
    # Then it counts the grandchild's 64 MB, and agrees with the sum of each process's VmRSS
    assert pids["hog"] in usage.pids and pids["leader"] in usage.pids
    assert len(usage.pids) == 3  # leader, inner shell, hog
    assert usage.rss_bytes > 64 * MB
    assert abs(usage.rss_bytes - sum(vm_rss(pid) for pid in usage.pids)) < 2 * MB


@linux_only
def test_a_tree_that_ended_is_empty(trees: list[Tree]) -> None:
    tree = Tree("echo leader $$")
    trees.append(tree)
    tree.read("leader")
    tree.proc.wait()
    assert session_pids(tree.proc.pid) == []
    assert tree_usage([tree.proc.pid]) == tree_usage([])


# -- looping -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last_output", "newest", "now", "looping"),
    [
        (100.0, None, 109.9, False),  # quiet, but not yet for the timeout
        (100.0, None, 110.0, True),  # quiet for exactly the timeout
        (100.0, 50.0, 120.0, True),  # old files do not help
        (100.0, 105.0, 114.0, False),  # a file changed after the last output
        (100.0, 105.0, 115.0, True),  # ... and then nothing for the timeout
        (108.0, 50.0, 115.0, False),  # recent output, old files
        (100.0, 200.0, 150.0, False),  # a file from the future (clock skew) counts as recent
    ],
)
def test_is_looping_decision_table(
    last_output: float, newest: float | None, now: float, looping: bool
) -> None:
    assert is_looping(last_output, newest, now, timeout_s=10.0) is looping


def test_newest_mtime_sees_nested_files_but_not_through_symlinks(tmp_path: Path) -> None:
    # Given a workdir with an old file, a newer file two levels down, and a symlink to a
    # still newer file outside it
    work = tmp_path / "work"
    (work / "a" / "b").mkdir(parents=True)
    (work / "old").write_text("x")
    (work / "a" / "b" / "new").write_text("x")
    outside = tmp_path / "outside"
    outside.write_text("x")
    (work / "link").symlink_to(outside)
    for path, mtime in [(work, 10), (work / "a", 10), (work / "a" / "b", 10), (work / "old", 20)]:
        os.utime(path, (mtime, mtime))
    os.utime(work / "a" / "b" / "new", (30, 30))
    os.utime(work / "link", (5, 5), follow_symlinks=False)
    os.utime(outside, (40, 40))
    # Then the newest is the nested file (the link's own time counts, not its target's)
    assert newest_mtime(work) == 30
    # And a missing workdir has none
    assert newest_mtime(tmp_path / "missing") is None


def test_newest_mtime_stops_after_max_entries(tmp_path: Path) -> None:
    # Given a workdir of 5 files, the newest deep in a subdirectory
    for i in range(5):
        (tmp_path / f"f{i}").write_text("x")
        os.utime(tmp_path / f"f{i}", (10, 10))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "new").write_text("x")
    os.utime(tmp_path / "sub" / "new", (50, 50))
    os.utime(tmp_path / "sub", (10, 10))
    os.utime(tmp_path, (10, 10))
    # Then a scan bounded to the top level's 6 entries does not reach it; a larger one does
    assert newest_mtime(tmp_path, max_entries=6) == 10
    assert newest_mtime(tmp_path, max_entries=7) == 50
