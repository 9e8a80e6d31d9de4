"""Watch a started payload from one thread: read its output as it comes, notice its exit the
moment it happens, kill its process group.

`PayloadIO` waits on the payload's output pipe and on its exit (a process file descriptor,
Linux 5.3+) with one poll(), in the thread that supervises the payload. A reader thread per
payload cost a short job more than its own start does (a thread made, started, handed the pipe
and joined for every job); one poll() of both also wakes the supervisor the moment the payload
exits, where `Popen.wait(timeout)` polls with doubling sleeps. Output still reaches its callback
as it is written (a running job's log is live), and while a killed payload takes its grace, its
output is read on (`kill_group`), so a payload printing as it cleans up never blocks on a full
pipe.

Where the kernel gives no process file descriptor, the exit is polled (`Popen.poll`) between
waits on the pipe of at most EXIT_POLL_S.

POSIX only (process groups, poll); standard library only (the pilot ships as a zipapp).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

READ_SIZE = 65536
EXIT_POLL_S = 0.05
"""Without a process file descriptor: the longest wait on the pipe between looks at the exit."""
_PIPE_EVENTS = select.POLLIN | select.POLLHUP | select.POLLERR


class PayloadIO:
    """A started payload's output pipe and exit, watched together (see the module docstring).

    `wait` delivers output to `on_output` as it comes and says when the payload exited (it is
    then reaped); `drain` reads the rest of the output; `close` releases the descriptors. Used
    by one thread.
    """

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        on_output: Callable[[bytes], None],
        *,
        pipe: int | None = None,
    ) -> None:
        """`pipe`: the read end of the payload's output pipe, closed by `close`; by default,
        the process's own (stdout=PIPE)."""
        self._fd = pipe  # ours to close
        if pipe is None:
            assert proc.stdout is not None  # stdout=PIPE
            pipe = proc.stdout.fileno()
        self._proc = proc
        self._on_output = on_output
        self._broken = False
        self._pipe: int | None = pipe  # None once its end was read
        self._pidfd: int | None = None
        self._poll = select.poll()
        self._poll.register(self._pipe, _PIPE_EVENTS)
        with contextlib.suppress(AttributeError, OSError):  # an older kernel or Python
            self._pidfd = os.pidfd_open(proc.pid)
            self._poll.register(self._pidfd, select.POLLIN)
        self.exited = False
        self.last_output = time.time()
        """Epoch seconds of the latest output read (when reading began, until there is some)."""

    def deliver(self, chunk: bytes) -> None:
        """Pass a chunk on; a failing callback is logged once and then skipped."""
        if self._broken:
            return
        try:
            self._on_output(chunk)
        except Exception:
            self._broken = True
            log.exception("output callback failed; the rest of this payload's output is dropped")

    def wait(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the payload's exit, reading its output meanwhile; return
        early after reading some. True once it exited (and was reaped)."""
        if self.exited:
            return True
        if self._pidfd is None:  # the exit is polled: never wait on the pipe alone for long
            timeout_s = min(timeout_s, EXIT_POLL_S)
        if self._proc.poll() is None:  # (with nothing registered, poll() just sleeps)
            for fd, _ in self._poll.poll(max(timeout_s, 0.0) * 1000):
                if fd == self._pipe:
                    self._read()
        if self._proc.poll() is not None:  # reaps it: the exit is known at once
            self._exit_seen()
        return self.exited

    def drain(self, linger_s: float) -> None:
        """Read the output left in the pipe until its end, or `linger_s` from now once the pipe
        falls silent (someone outside the payload's group still holds it open)."""
        deadline = time.monotonic() + linger_s
        while self._pipe is not None:
            if self._poll.poll(100):
                self._read()
            elif time.monotonic() >= deadline:
                return

    def close(self) -> None:
        """Release the pipe and the process file descriptor."""
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self._fd is not None:
            os.close(self._fd)
        elif self._proc.stdout is not None:
            self._proc.stdout.close()
        self._pipe = self._fd = None

    def _read(self) -> None:
        assert self._pipe is not None
        try:
            chunk = os.read(self._pipe, READ_SIZE)
        except OSError:
            chunk = b""
        if not chunk:  # the end of the output (every writer closed it)
            self._poll.unregister(self._pipe)
            self._pipe = None
            return
        self.last_output = time.time()
        self.deliver(chunk)

    def _exit_seen(self) -> None:
        self.exited = True
        if self._pidfd is not None:
            self._poll.unregister(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None


def kill_group(proc: subprocess.Popen[bytes], grace_s: float, io: PayloadIO | None = None) -> bool:
    """Kill the payload's process group (SIGTERM, then SIGKILL after `grace_s`); reap the leader.
    With `io`, the payload's output is read on during the grace.

    Returns:
        True if any process of the group was still there to be killed.
    """
    pgid = proc.pid  # start_new_session: the payload leads its own group
    if proc.poll() is not None and not group_alive(pgid):
        return False
    signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if proc.poll() is not None and not group_alive(pgid):
            return True
        if io is None:
            time.sleep(0.05)
        else:
            io.wait(min(0.05, max(deadline - time.monotonic(), 0.0)))
    signal_group(pgid, signal.SIGKILL)
    proc.wait()
    return True


def group_alive(pgid: int) -> bool:
    """True while a process of the group is still running (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Killed orphans stay zombies until init reaps them, which some container inits do
    # only every few seconds; where /proc tells us, look past them.
    return _live_member_in_proc(pgid) if os.path.isdir("/proc/self") else True


def _live_member_in_proc(pgid: int) -> bool:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            state, pgrp = fields[0], int(fields[2])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or unreadable
        if pgrp == pgid and state not in (b"Z", b"X"):
            return True
    return False


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
