"""Watch a running payload: its process tree's memory (from /proc) and whether it is looping.

The payload's tree is every live process in the payload's session. The runner starts each
payload with start_new_session=True, so the session id is the payload's pid, and children,
grandchildren and orphans (re-parented to init when their parent exits) all keep it. A process
that leaves the session with setsid() is not counted: it has escaped the pilot's watch, as it
escapes the pilot's kill (which signals the payload's process group).

Memory is the sum of the tree's resident set sizes (/proc/PID/statm). Shared pages (libraries,
copy-on-write pages after fork) are counted once per process that maps them, so the sum can be
above what the tree really costs the node; it is what PanDA's pilot compares too (maxRSS).

A job is looping when it has written no output and changed no file in its workdir for its
looping timeout: `is_looping` decides, `newest_mtime` looks at the workdir (a bounded scan).

Pure parsing and decisions, thin readers of /proc and the workdir; Linux only (elsewhere there
is no /proc, and `PayloadWatch` measures nothing). Standard library only.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from skypanda.wire.codes import ErrorCode

PROC = "/proc"
SAMPLE_S = 0.5
"""How often a running payload's memory is sampled (and its looping checked)."""
MAX_SCAN_ENTRIES = 10_000
"""Entries of a workdir looked at, at most, to find its newest modification."""
MB = 1024 * 1024
"""A job's memory_mb counts units of 2**20 bytes, as the pilot's own memory_mb does."""


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/PID/stat the watch needs."""

    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int

    @property
    def alive(self) -> bool:
        """False for zombies (exited, not yet reaped) and dead processes: they hold no memory."""
        return self.state not in ("Z", "X", "x")


def parse_stat(text: str) -> ProcStat:
    """Parse the text of /proc/PID/stat; pure.

    The command name (second field) is in parentheses and may hold spaces and ")", so the
    fields are split after the last ")".

    Raises:
        ValueError: the text is not a stat line.
    """
    head, paren, tail = text.rpartition(")")
    pid_text, _, _ = head.partition(" (")
    fields = tail.split()
    if not paren or len(fields) < 4:
        raise ValueError(f"not a /proc/PID/stat line: {text[:80]!r}")
    return ProcStat(int(pid_text), fields[0], int(fields[1]), int(fields[2]), int(fields[3]))


def parse_statm_rss(text: str, page_size: int) -> int:
    """Resident bytes from the text of /proc/PID/statm (its second field, in pages); pure.

    Raises:
        ValueError: the text is not a statm line.
    """
    fields = text.split()
    if len(fields) < 2:
        raise ValueError(f"not a /proc/PID/statm line: {text[:80]!r}")
    return int(fields[1]) * page_size


def _read(path: str) -> str | None:
    """A small /proc file's text, or None if its process is gone (or it cannot be read).

    Processes end while the tree is read: ENOENT and ESRCH are normal here, not errors.
    """
    try:
        with open(path, "rb") as f:
            return f.read().decode("ascii", errors="replace")
    except OSError:
        return None


def scan_sessions(proc: str = PROC) -> dict[int, list[int]]:
    """The pids of every live process under `proc`, by session id (session 0 left out)."""
    sessions: dict[int, list[int]] = {}
    try:
        entries = os.listdir(proc)
    except OSError:
        return sessions
    for entry in entries:
        if not entry.isdigit():
            continue
        text = _read(f"{proc}/{entry}/stat")
        try:
            stat = parse_stat(text) if text is not None else None
        except ValueError:
            continue
        if stat is not None and stat.session > 0 and stat.alive:
            sessions.setdefault(stat.session, []).append(stat.pid)
    return sessions


def session_pids(sid: int, proc: str = PROC) -> list[int]:
    """The pids of the live processes in session `sid` (one scan of `proc`), sorted."""
    return sorted(scan_sessions(proc).get(sid, []))


def rss_bytes(pid: int, proc: str = PROC, page_size: int | None = None) -> int | None:
    """The resident bytes of one process; None if it is gone."""
    text = _read(f"{proc}/{pid}/statm")
    try:
        return parse_statm_rss(text, page_size or _page_size()) if text is not None else None
    except ValueError:
        return None


def _page_size() -> int:
    return int(os.sysconf("SC_PAGE_SIZE"))


@dataclass(frozen=True)
class TreeUsage:
    """A payload tree's processes and their summed resident memory at one moment."""

    pids: tuple[int, ...]
    rss_bytes: int


def tree_usage(pids: list[int], proc: str = PROC) -> TreeUsage:
    """Sum the resident memory of `pids`; those gone meanwhile are left out."""
    page_size = _page_size()
    found: list[int] = []
    total = 0
    for pid in sorted(pids):
        rss = rss_bytes(pid, proc, page_size)
        if rss is not None:
            found.append(pid)
            total += rss
    return TreeUsage(tuple(found), total)


class SessionIndex:
    """One scan of /proc, shared by all payloads the pilot watches while it is fresh.

    A scan reads every process's stat file (tens of microseconds each); a pilot with many slots
    on a busy node would otherwise repeat it for each payload at each sample. Thread-safe.
    """

    def __init__(self, proc: str = PROC, max_age_s: float = SAMPLE_S / 2) -> None:
        self.proc = proc
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._sessions: dict[int, list[int]] = {}
        self._scanned_at: float | None = None
        self.has_proc = os.path.isdir(f"{proc}/self")
        """Whether there is a /proc to read (looked at once, not for every payload)."""

    def pids(self, sid: int) -> list[int]:
        """The live pids of session `sid`, from a scan at most `max_age_s` old."""
        with self._lock:
            now = time.monotonic()
            if self._scanned_at is None or now - self._scanned_at > self._max_age_s:
                self._sessions = scan_sessions(self.proc)
                self._scanned_at = now
            return list(self._sessions.get(sid, []))


SHARED_INDEX = SessionIndex()


def is_looping(
    last_output: float, newest_mtime: float | None, now: float, timeout_s: float
) -> bool:
    """True when neither output nor a file change came within `timeout_s` before `now`; pure.

    Args:
        last_output: epoch seconds of the payload's latest output (its start if none yet).
        newest_mtime: the newest modification time seen in its workdir (None: nothing seen).
        now: epoch seconds now.
        timeout_s: the job's looping timeout.

    A modification time in the future (a file server's clock ahead of ours) counts as recent
    activity: the watch errs towards not killing.
    """
    last_activity = last_output if newest_mtime is None else max(last_output, newest_mtime)
    return now - last_activity >= timeout_s


def newest_mtime(root: Path, max_entries: int = MAX_SCAN_ENTRIES) -> float | None:
    """The newest modification time of `root` and what is under it; None if unreadable.

    Breadth first, symlinks not followed, at most `max_entries` entries: files deeper in a
    larger tree are not seen (but creating or removing a file changes its directory's mtime).
    Files vanishing during the scan are skipped. The pilot's flags file needs no exception: the
    pilot writes it only before the payload starts; a later change is the payload's.
    """
    try:
        newest = os.stat(root).st_mtime
    except OSError:
        return None
    todo, seen = deque([root]), 0
    while todo and seen < max_entries:
        try:
            with os.scandir(todo.popleft()) as entries:
                for entry in entries:
                    seen += 1
                    if seen > max_entries:
                        break
                    try:
                        newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
                        if entry.is_dir(follow_symlinks=False):
                            todo.append(Path(entry.path))
                    except OSError:
                        continue
        except OSError:
            continue
    return newest


def mb(nbytes: int) -> int:
    """Bytes as whole MB, rounded up (so a usage just over a limit never reads as equal)."""
    return math.ceil(nbytes / MB)


class PayloadWatch:
    """Samples one running payload; says when it must be killed for its memory or looping.

    Call `check` often (every poll of the runner); it samples only every `sample_s`.
    """

    def __init__(
        self,
        sid: int,
        workdir: Path,
        *,
        last_output: Callable[[], float],
        memory_limit_mb: float | None,
        looping_timeout_s: float | None,
        sample_s: float = SAMPLE_S,
        index: SessionIndex = SHARED_INDEX,
    ) -> None:
        self._sid = sid
        self._workdir = workdir
        self._last_output = last_output
        self._limit_mb = memory_limit_mb or None
        self._looping_timeout_s = looping_timeout_s or None
        self._sample_s = sample_s
        self._index = index
        self._has_proc = index.has_proc
        self._next_sample = time.monotonic() + sample_s
        self._mtime: float | None = None
        self.peak_rss_bytes: int | None = None

    @property
    def peak_mb(self) -> int | None:
        """The largest tree memory sampled, in MB; None if never sampled (no /proc, too short)."""
        return None if self.peak_rss_bytes is None else mb(self.peak_rss_bytes)

    def check(self) -> tuple[int, str] | None:
        """Sample if due: None to go on, or (error code, diagnosis) to kill the payload."""
        now = time.monotonic()
        if now < self._next_sample:
            return None
        self._next_sample = now + self._sample_s
        return self._check_memory() or self._check_looping()

    def _check_memory(self) -> tuple[int, str] | None:
        if not self._has_proc:
            return None
        usage = tree_usage(self._index.pids(self._sid), self._index.proc)
        if not usage.pids:
            return None  # all ended between the poll and the sample
        self.peak_rss_bytes = max(self.peak_rss_bytes or 0, usage.rss_bytes)
        if self._limit_mb is not None and usage.rss_bytes > self._limit_mb * MB:
            used = mb(usage.rss_bytes)
            return (
                ErrorCode.OUT_OF_MEMORY,
                f"payload used {used} MB, over the job's {self._limit_mb:g} MB",
            )
        return None

    def _check_looping(self) -> tuple[int, str] | None:
        timeout = self._looping_timeout_s
        if timeout is None or not self._silent_for(timeout):
            return None
        # Scan the workdir only when what is known says "looping": while the payload keeps
        # writing output or files, that is at most once per timeout.
        self._mtime = newest_mtime(self._workdir)
        if not self._silent_for(timeout):
            return None
        silent = time.time() - max(self._last_output(), self._mtime or 0.0)
        return (
            ErrorCode.LOOPING_JOB,
            f"looping: no output and no file change in the workdir for {silent:.0f}s "
            f"(looping timeout {timeout:g}s)",
        )

    def _silent_for(self, timeout_s: float) -> bool:
        return is_looping(self._last_output(), self._mtime, time.time(), timeout_s)
