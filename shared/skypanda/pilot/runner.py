"""Run one payload as a real subprocess: stream its output, enforce its limits, kill on demand.

The payload runs in its own session, so the pilot can kill everything it started (children,
grandchildren) with one signal to the process group, and leftovers cannot outlive the job. A
pilot killed with SIGKILL cannot clean up: it records each live payload's group id in a
directory, and whoever finds the pilot dead (the local launcher) kills those groups.

The payload's environment (see `payload_env`) holds the pilot's own, the job's env, then:

    SKYPANDA_JOB_ID     the job's id
    SKYPANDA_ATTEMPT    the attempt number (1, 2, ...)
    SKYPANDA_WORKDIR    the payload's working directory
    SKYPANDA_FLAGS      absolute path of an empty file (FLAGS_FILE in the workdir) where the
                        payload may append `name=value` lines, e.g.
                        `echo converged=yes >> "$SKYPANDA_FLAGS"`; workflow conditions test them

With a payload user (`--payload-user`, see `sandbox`) the payload runs as that user, in its
job directory handed over to it (mode 0700), with HOME set to that directory and USER and
LOGNAME to the user's name (before the job's env, which may set them). Starting it then costs
a fork of the pilot (subprocess does not vfork to switch users).

While the payload runs, the pilot watches it (see `watch`): about every SAMPLE_S it sums the
resident memory of the payload's process tree, keeps the peak (`PayloadResult.max_rss_mb`), and
kills the payload as OUT_OF_MEMORY when the sum exceeds the job's `resources.memory_mb`; with a
`looping_timeout_s`, it kills it as LOOPING_JOB once that long passes with no output and no
file change in its workdir. Its walltime (MAX_TIME_EXCEEDED) and `should_stop` kill it too.

After the payload ends (also when it failed or was killed) the pilot reads that file with
`parse_flags` into `PayloadResult.flags`, sent with the job's final report. Blank lines and
`#` comments are skipped; a later line wins over an earlier one; bad lines and flags beyond
the limits (MAX_FLAGS names, MAX_FLAG_CHARS for name plus value) are dropped and noted in the
job's log, never failing the job.

POSIX only (process groups, poll); standard library only (the pilot ships as a zipapp).
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skypanda.pilot.sandbox import PayloadUser, hand_over
from skypanda.pilot.supervise import PayloadIO, kill_group
from skypanda.pilot.watch import SAMPLE_S, PayloadWatch
from skypanda.wire.codes import ErrorCode

KILL_GRACE_S = 3.0
"""Seconds between SIGTERM and SIGKILL: time for a payload to flush and clean up."""

OUTPUT_LINGER_S = 1.0
"""After the payload's group is gone, how long to keep reading a pipe someone else still holds
open (a process that left the group with setsid) before giving up on the rest of the output."""

FLAGS_FILE = ".skypanda-flags"
"""The file, in the payload's workdir, whose absolute path the payload gets as $SKYPANDA_FLAGS."""
FLAG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}")
"""What a flag's name must be (whole name)."""
MAX_FLAGS = 32
"""Flags kept per job: the first this many names (as the server's JobReport allows)."""
MAX_FLAG_CHARS = 1000
"""Characters of a flag's name plus value (as the server's JobReport allows)."""
MAX_FLAGS_FILE_BYTES = 1024 * 1024
"""Bytes of the flags file read; the rest is ignored (and noted)."""
_MAX_FLAG_NOTES = 5


@dataclass
class PayloadResult:
    """How one payload run ended.

    Attributes:
        status: "finished" (exit 0) or "failed".
        exit_code: the process exit code (negative: killed by that signal), None if not started.
        error_code: why it failed (an ErrorCode value), None when finished.
        error_diag: one line for humans; empty when finished.
        started_at: epoch seconds when the pilot tried to start it.
        ended_at: epoch seconds when it was over (output fully delivered).
        flags: what the payload wrote to $SKYPANDA_FLAGS (see `parse_flags`); {} if nothing.
        max_rss_mb: the largest resident memory of the payload's process tree seen by the
            watch's samples, in MB (2**20 bytes); None if never sampled (it ended before the
            first sample, or there is no /proc). Peaks between samples are missed.
    """

    status: str
    exit_code: int | None
    error_code: int | None
    error_diag: str
    started_at: float
    ended_at: float
    flags: dict[str, str] = field(default_factory=dict)
    max_rss_mb: int | None = None


def run_payload(
    job: dict[str, Any],
    workdir: Path,
    *,
    on_output: Callable[[bytes], None],
    should_stop: Callable[[], int | None],
    poll_s: float = 0.2,
    kill_grace_s: float = KILL_GRACE_S,
    groups: Path | None = None,
    looping_timeout_s: float | None = None,
    sample_s: float = SAMPLE_S,
    user: PayloadUser | None = None,
    base_env: Mapping[str, str] | None = None,
) -> PayloadResult:
    """Run a job's command to its end, or until a limit of it or `should_stop` ends it.

    Args:
        job: the job as the server sends it: id, attempt, command (argv list), env,
            resources {memory_mb, cores, walltime_s}. Over memory_mb (the payload's
            process tree's summed RSS) it is killed as OUT_OF_MEMORY; past walltime_s as
            MAX_TIME_EXCEEDED. A missing or zero limit is no limit.
        workdir: the payload's working directory; created if missing.
        on_output: called, in this thread, with raw output bytes (stdout and stderr
            merged) as they arrive; all calls have happened when this function returns.
        should_stop: polled every `poll_s`; None to go on, or an error code (e.g.
            ErrorCode.KILLED_BY_SERVER) to kill the payload and fail the job with it.
        poll_s: how often to poll `should_stop`.
        kill_grace_s: seconds between SIGTERM and SIGKILL when killing.
        groups: a directory where the payload's process group id is recorded (an empty file
            named after it) while the group may be alive, so that whoever finds this pilot
            dead (the local launcher) can kill what it left running; see `skypanda.wire.groups`.
        looping_timeout_s: kill the payload as LOOPING_JOB once this long passes with no
            output and no file change in its workdir; None (or 0): never.
        sample_s: how often the payload's memory (and its looping) is checked.
        user: run the payload as this user (see `sandbox`); None: as the pilot's user.
        base_env: the pilot's own environment as `pilot_env` gives it, read once by a pilot
            that runs many payloads (None: read now).

    Returns:
        The result, with the flags the payload wrote (also when it failed or was killed).
        Failures of the payload are results, never exceptions.
    """
    started_at = time.time()
    argv = [str(word) for word in job.get("command") or []]
    flags = flags_path(workdir)
    try:
        proc, pipe = _start(argv, job, workdir, user, flags, base_env)
    except (OSError, ValueError) as e:
        diag = f"cannot start {argv[0] if argv else '(empty command)'!r}: {e}"
        return PayloadResult(
            "failed", None, ErrorCode.PAYLOAD_NOT_STARTED, diag, started_at, time.time()
        )
    record = _record_group(groups, proc.pid)
    io = PayloadIO(proc, on_output, pipe=pipe)
    try:
        watch = PayloadWatch(
            proc.pid,  # start_new_session: the payload's session id is its pid
            workdir,
            last_output=lambda: io.last_output,
            memory_limit_mb=float((job.get("resources") or {}).get("memory_mb") or 0),
            looping_timeout_s=looping_timeout_s,
            sample_s=sample_s,
        )
        killed = _supervise(proc, io, job, should_stop, watch, poll_s, kill_grace_s)
    finally:
        # Whatever happened (also an exception in should_stop), nothing of the job survives.
        leftovers = kill_group(proc, kill_grace_s, io)
        if record is not None:
            record.unlink(missing_ok=True)
        io.drain(OUTPUT_LINGER_S)
        io.close()
    if killed is not None:
        io.deliver(f"[skypanda-pilot] killed: {killed[1]}\n".encode())
    elif leftovers:
        io.deliver(b"[skypanda-pilot] killed processes the payload left running\n")
    flags_read, notes = read_flags(flags, owner=None if user is None else user.uid)
    for note in notes:
        io.deliver(f"[skypanda-pilot] flags: {note}\n".encode())
    result = _result(proc.returncode, killed, started_at)
    result.flags = flags_read
    result.max_rss_mb = watch.peak_mb
    return result


def _start(
    argv: list[str],
    job: dict[str, Any],
    workdir: Path,
    user: PayloadUser | None,
    flags: Path,
    base_env: Mapping[str, str] | None,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start the payload in its own session, output merged into one pipe; as `user` if given.
    Returns the process and the read end of its output pipe (the caller's to close).

    Raises:
        OSError: the workdir cannot be made or handed over, or the command cannot be executed.
        ValueError: the command is empty or holds a NUL byte.
    """
    if not argv or not argv[0]:
        raise ValueError("the job has an empty command")
    try:  # in a reused job directory (`workdirs`), the flags file is there: one lstat
        _new_flags_file(flags)
    except FileNotFoundError:  # a new job directory
        workdir.mkdir(parents=True, exist_ok=True)
        _new_flags_file(flags)
    if user is not None:
        hand_over(workdir, user)
    env = payload_env(job, workdir, user, base=base_env, flags=flags)
    # Found once, not by the exec's own search of PATH for every payload (a failed exec per
    # entry before the right one); not for a payload user, whose rights may differ.
    found = None if user is not None else executable(argv[0], env.get("PATH"))
    try:
        return _popen(argv, found, workdir, env, user)
    except OSError:
        if found is None:
            raise
        _found.pop((argv[0], env.get("PATH")), None)  # gone or changed since: search again
        return _popen(argv, None, workdir, env, user)


def _popen(
    argv: list[str],
    found: str | None,
    workdir: Path,
    env: dict[str, str],
    user: PayloadUser | None,
) -> tuple[subprocess.Popen[bytes], int]:
    """The payload started; its output pipe made here (Popen would wrap its end in a buffered
    file, three system calls and an object per payload that the pilot never reads through)."""
    out, into = os.pipe2(os.O_CLOEXEC)
    try:
        proc = subprocess.Popen(
            argv,
            executable=found,
            cwd=str(workdir),
            env=env,
            stdin=_devnull(),
            stdout=into,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=None if user is None else user.uid,
            group=None if user is None else user.gid,
            extra_groups=None if user is None else [],
        )
    except BaseException:
        os.close(out)
        raise
    finally:
        os.close(into)
    return proc, out


_null: list[int] = []
_null_lock = threading.Lock()


def _devnull() -> int:
    """A descriptor of /dev/null for payloads' standard input, opened once per pilot."""
    if not _null:
        with _null_lock:
            if not _null:
                _null.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
    return _null[0]


def _new_flags_file(flags: Path) -> None:
    """Make the empty flags file, never through a link left there: a file that an earlier run
    left is replaced, unless it is already what a new one would be (a regular empty file of
    the pilot's, with one link: a reused job directory's, see `workdirs`), which is kept."""
    mode = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        os.close(os.open(flags, mode, 0o644))
    except FileExistsError:
        if not fresh_flags_file(flags):
            flags.unlink()
            os.close(os.open(flags, mode, 0o644))


def fresh_flags_file(path: Path) -> bool:
    """Whether the file at `path` is as `_new_flags_file` makes one: a regular empty file (not
    a link) of the pilot's user, readable and writable by it, with no other name."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o600 != 0o600:
        return False
    return st.st_size == 0 and st.st_nlink == 1 and st.st_uid == os.geteuid()


EXECUTABLE_TTL_S = 10.0
"""How long a command's place on PATH is remembered (`executable`)."""
_found: dict[tuple[str, str | None], tuple[str, float]] = {}


def executable(name: str, path: str | None) -> str | None:
    """Where a search of `path` (a PATH value; None: the default) finds the command `name`,
    as exec would (the first executable file), remembered for EXECUTABLE_TTL_S; None when
    the exec should search itself: a name with a slash, a PATH with a relative entry (searched
    from the payload's workdir), or nothing found (the exec's own error then says why)."""
    if "/" in name:
        return None
    key = (name, path)
    now = time.monotonic()
    hit = _found.get(key)
    if hit is not None and now - hit[1] < EXECUTABLE_TTL_S:
        return hit[0]
    dirs = (os.defpath if path is None else path).split(os.pathsep)
    if not all(os.path.isabs(d) for d in dirs):
        return None
    for directory in dirs:
        full = os.path.join(directory, name)
        if os.path.isfile(full) and os.access(full, os.X_OK):
            _found[key] = (full, now)
            return full
    return None


PILOT_SECRETS = frozenset({"SKYPANDA_TOKEN", "SKYPANDA_GCS_TOKEN"})


def pilot_env() -> dict[str, str]:
    """The pilot's own environment without its credentials (PILOT_SECRETS: its API token, its
    Cloud Storage token): a payload must not act as the pilot. A pilot reads it once, not per
    payload (copying os.environ item by item costs more than starting a short payload)."""
    return {k: v for k, v in os.environ.items() if k not in PILOT_SECRETS}


def payload_env(
    job: dict[str, Any],
    workdir: Path,
    user: PayloadUser | None = None,
    *,
    base: Mapping[str, str] | None = None,
    flags: Path | None = None,
) -> dict[str, str]:
    """The payload's environment: the pilot's own (`base`, else `pilot_env()` now), the
    job's, then skypanda's variables (`flags`: the flags file's path, if known already).

    A job that needs a token of its own sets it in its env. For a payload run as `user`, HOME
    is its workdir (the pilot's HOME is not its to write) and USER and LOGNAME its name,
    unless the job's env sets them.
    """
    env = dict(pilot_env() if base is None else base)
    if user is not None:
        env.update(HOME=str(workdir), USER=user.name, LOGNAME=user.name)
    env.update({str(k): str(v) for k, v in (job.get("env") or {}).items()})
    env["SKYPANDA_JOB_ID"] = str(job.get("id", ""))
    env["SKYPANDA_ATTEMPT"] = str(job.get("attempt", 1))
    env["SKYPANDA_WORKDIR"] = str(workdir)
    env["SKYPANDA_FLAGS"] = str(flags_path(workdir) if flags is None else flags)
    return env


def flags_path(workdir: Path) -> Path:
    """The absolute path of the payload's flags file ($SKYPANDA_FLAGS) in `workdir`."""
    path = workdir / FLAGS_FILE
    return path if path.is_absolute() and ".." not in path.parts else Path(os.path.abspath(path))


def read_flags(path: Path, owner: int | None = None) -> tuple[dict[str, str], list[str]]:
    """Read a payload's flags file: the flags and notes on what was dropped (see parse_flags).

    A missing file gives no flags; an unreadable one, a symbolic link, or one that is not a
    regular file (a payload could leave a FIFO there, whose open would block), gives none and
    a note; so does, with `owner` (the payload user's uid), a file of another owner. A payload
    must not make the pilot read a file of the pilot's into the job's log. Only the first
    MAX_FLAGS_FILE_BYTES are read. Never raises.
    """
    try:  # most payloads write no flag: an empty regular file is told by its lstat alone
        st = os.lstat(path)
    except FileNotFoundError:
        return {}, []
    except OSError:
        st = None
    if (
        st is not None
        and stat.S_ISREG(st.st_mode)
        and not st.st_size
        and owner in (None, st.st_uid)
    ):
        return {}, []
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except FileNotFoundError:
        return {}, []
    except OSError as e:
        return {}, [f"cannot read {path.name}: {e.strerror or e}"]
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return {}, [f"{path.name} is not a regular file: ignored"]
        if owner is not None and st.st_uid != owner:
            return {}, [f"{path.name} is not the payload's (owner uid {st.st_uid}): ignored"]
        data = _read_up_to(fd, MAX_FLAGS_FILE_BYTES + 1) if st.st_size else b""
    except OSError as e:
        return {}, [f"cannot read {path.name}: {e.strerror or e}"]
    finally:
        os.close(fd)
    notes = []
    if len(data) > MAX_FLAGS_FILE_BYTES:
        # Cut at the last whole line, so no flag is read with half its value.
        data = data[: data.rfind(b"\n", 0, MAX_FLAGS_FILE_BYTES) + 1]
        notes.append(f"the file is larger than {MAX_FLAGS_FILE_BYTES} bytes: the rest is ignored")
    flags, problems = parse_flags(data.decode("utf-8", errors="replace"))
    return flags, notes + problems


def _read_up_to(fd: int, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while size < limit:
        part = os.read(fd, limit - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def parse_flags(text: str) -> tuple[dict[str, str], list[str]]:
    """Parse `name=value` lines (a payload's flags file) into flags; pure.

    Blank lines and lines starting with "#" are skipped. A name matches FLAG_NAME; the value is
    the rest of the line after the first "=", as it is (only the line's "\\n" is removed). A
    later line of a name replaces its value. Dropped, each with a note: lines that are not
    `name=value` with a valid name, lines whose name and value together exceed
    MAX_FLAG_CHARS (an earlier value of the name stays), and new names past the first
    MAX_FLAGS.

    Returns:
        The flags, in the order their names first appeared, and notes for humans (at most
        a few, then a count of the rest).
    """
    flags: dict[str, str] = {}
    problems: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        name, equals, value = line.partition("=")
        if not equals:
            problems.append(f"line {number}: not name=value: {_clip(line)!r}")
        elif not FLAG_NAME.fullmatch(name):
            problems.append(f"line {number}: bad flag name {_clip(name)!r}")
        elif len(name) + len(value) > MAX_FLAG_CHARS:
            problems.append(f"line {number}: flag {name!r} longer than {MAX_FLAG_CHARS} characters")
        elif name not in flags and len(flags) >= MAX_FLAGS:
            problems.append(f"line {number}: flag {name!r} beyond the first {MAX_FLAGS}")
        else:
            flags[name] = value
    notes = problems[:_MAX_FLAG_NOTES]
    if len(problems) > _MAX_FLAG_NOTES:
        notes.append(f"{len(problems) - _MAX_FLAG_NOTES} more line(s) dropped")
    return flags, notes


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _result(returncode: int, killed: tuple[int, str] | None, started_at: float) -> PayloadResult:
    ended_at = time.time()
    if killed is not None:
        return PayloadResult("failed", returncode, killed[0], killed[1], started_at, ended_at)
    if returncode == 0:
        return PayloadResult("finished", 0, None, "", started_at, ended_at)
    if returncode < 0:
        diag = f"killed by signal {_signal_name(-returncode)} (exit code {returncode})"
    else:
        diag = f"exit code {returncode}"
    return PayloadResult("failed", returncode, ErrorCode.PAYLOAD_FAILED, diag, started_at, ended_at)


def _supervise(
    proc: subprocess.Popen[bytes],
    io: PayloadIO,
    job: dict[str, Any],
    should_stop: Callable[[], int | None],
    watch: PayloadWatch,
    poll_s: float,
    kill_grace_s: float,
) -> tuple[int, str] | None:
    """Wait for the payload, reading its output; on walltime, a stop request or the watch's
    word, kill it and say why. The checks run every `poll_s` (output wakes the wait sooner)."""
    walltime = float((job.get("resources") or {}).get("walltime_s") or 0) or None
    deadline = time.monotonic() + walltime if walltime else None
    next_check = time.monotonic() + poll_s
    while True:
        now = time.monotonic()
        due = next_check if deadline is None else min(next_check, deadline)
        if io.wait(max(0.0, due - now)):
            return None
        now = time.monotonic()
        if now < due:
            continue  # woken by output
        next_check = now + poll_s
        reason: tuple[int, str] | None = None
        if deadline is not None and now >= deadline:
            reason = (ErrorCode.MAX_TIME_EXCEEDED, f"walltime {walltime:g}s exceeded")
        else:
            code = should_stop()
            if code is not None:
                reason = (code, f"stopped by the pilot: {_code_name(code)}")
            else:
                reason = watch.check()
        if reason is not None:
            kill_group(proc, kill_grace_s, io)
            return reason


RECORD_SOURCE = ".record"
"""In the groups directory: the empty file every record is a hard link to (see `_record_group`)."""


def _record_group(groups: Path | None, pgid: int) -> Path | None:
    """Note a payload's process group in `groups` (best effort: a safety net only): an empty
    file named after it, made as a hard link to RECORD_SOURCE. A link only adds a name to the
    directory, where a new file also costs an inode (on ext4 it took 2-10 times longer, per
    job); where links are not allowed, a new file it is.

    Why not PR_SET_PDEATHSIG: it needs a preexec_fn, which forces subprocess to fork the whole
    pilot instead of using vfork, and tripled the cost of starting a short payload.
    """
    if groups is None:
        return None
    path = groups / str(pgid)
    source = groups / RECORD_SOURCE
    try:
        try:
            os.link(source, path)
        except FileNotFoundError:  # the first payload: make the directory and the source once
            groups.mkdir(parents=True, exist_ok=True)
            os.close(os.open(source, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
            os.link(source, path)
    except FileExistsError:  # a record left by an earlier group of that id: it is ours now
        pass
    except OSError:  # no hard links here
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
        except OSError:
            return None
    return path


def _code_name(code: int) -> str:
    try:
        return f"{ErrorCode(code).name} ({int(code)})"
    except ValueError:
        return str(int(code))


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
