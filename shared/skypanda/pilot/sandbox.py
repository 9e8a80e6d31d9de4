"""Payloads as another Unix user (`--payload-user NAME|UID`): who, the checks, the hand-over.

A pilot run as root (or with the capabilities in NEEDED_CAPS) starts each payload as the
payload user: its uid, its primary gid, no supplementary groups. The payload then cannot read
what belongs to the pilot's user (its token files, mode 0600), nor the pilot's environment or
memory (/proc/PID/environ and /proc/PID/mem need the same uid), nor signal or ptrace it. The
pilot's work root is made mode 0711 (searchable, so a payload reaches its own directory by
its path, but not listable) and its record of payload groups 0700; each job's directory is
handed over to the payload user, mode 0700 (`hand_over`).

Where the pilot, with its own rights, touches something for a payload, it must not lend them:
- it reads file:// inputs as the payload user (`read_as`), never as itself;
- it creates the flags file without following a link, and reads it and the outputs only if
  they are regular files of the job directory's owner, reached without a symbolic link
  leaving the directory (`open_inside`): a payload cannot point them at a file of the pilot.

What remains: payloads of one pilot share the user, so each can read the others'
environments and reach their directories (if it knows their names); and a payload reaches
whatever the payload user may (world-readable files, the network, a cloud metadata server).

POSIX only; standard library only, Python 3.9 (the pilot ships as a zipapp).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from skypanda.wire.groups import GROUPS_DIR

log = logging.getLogger(__name__)

NEEDED_CAPS = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
}
"""What the pilot does for payloads of another user, by capability bit: hand them their
directory, read and remove what they leave, kill them, and switch to their ids."""


@dataclass(frozen=True)
class PayloadUser:
    """The Unix user payloads run as: `uid`, and `gid` its primary group; never root.

    Raises:
        ValueError: the uid is 0 (root) or negative.
    """

    name: str
    uid: int
    gid: int

    def __post_init__(self) -> None:
        if self.uid == 0:
            raise ValueError(f"payload user {self.name!r} is root: that is no isolation")
        if self.uid < 0 or self.gid < 0:
            raise ValueError(f"payload user {self.name!r}: uid and gid must be >= 0")


def resolve_payload_user(
    spec: str, *, euid: int | None = None, status: str | None = None
) -> PayloadUser:
    """The payload user named by `spec` (a login name or a numeric uid), checked for use.

    Args:
        spec: a user name or uid with an entry in the password database.
        euid: the pilot's effective uid (default: this process's).
        status: the text of /proc/self/status (default: read it, where there is one), whose
            CapEff line tells the pilot's capabilities; without it, only root may switch.

    Raises:
        ValueError: the user does not exist; it is root or the pilot's own user (no
            isolation); or the pilot lacks the rights to run payloads as another user.
    """
    spec = spec.strip()
    try:
        entry = pwd.getpwuid(int(spec)) if spec.isdigit() else pwd.getpwnam(spec)
    except (KeyError, OverflowError, ValueError):
        raise ValueError(f"payload user {spec!r} does not exist") from None
    user = PayloadUser(entry.pw_name, entry.pw_uid, entry.pw_gid)  # refuses root
    euid = os.geteuid() if euid is None else euid
    if user.uid == euid:
        raise ValueError(
            f"payload user {user.name!r} is the pilot's own user (uid {euid}): no isolation"
        )
    missing = _missing_caps(euid, _read_status() if status is None else status)
    if missing:
        raise ValueError(
            f"the pilot (uid {euid}) cannot run payloads as {user.name!r}: it lacks "
            f"{', '.join(missing)} (run it as root, with them)"
        )
    return user


def _missing_caps(euid: int, status: str) -> list[str]:
    """The NEEDED_CAPS the pilot lacks, by the CapEff line of `status`; without one, all of
    them unless it is root."""
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            effective = int(line.split(":", 1)[1].strip(), 16)
            return [name for name, bit in NEEDED_CAPS.items() if not effective >> bit & 1]
    return [] if euid == 0 else list(NEEDED_CAPS)


def _read_status() -> str:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


# -- the pilot's work root and a job's directory -------------------------------------------------


def make_base(workdir: str | None, prefix: str, user: PayloadUser | None) -> tuple[Path, bool]:
    """The pilot's work root: `workdir` (created if missing), or a new temporary directory.

    With a payload user it is made mode 0711, and its record of payload groups 0700: payloads
    reach their own directory by its path but cannot list the work root (a file the pilot
    itself put there is kept from them by its own mode). Every directory above it must be
    searchable by the payload user, or payloads cannot use their absolute paths: a warning
    says so (mode bits are read, ACLs are not).

    Returns:
        The directory, and whether the pilot made it (and removes it when it ends).

    Raises:
        OSError: it cannot be made; or, with a payload user, it belongs to another user than
            the pilot (who could then change what the pilot reads and writes there).
    """
    if workdir:
        base, owned = Path(workdir), False
        base.mkdir(parents=True, exist_ok=True)
    else:
        base, owned = Path(tempfile.mkdtemp(prefix=prefix)), True
    if user is not None:
        owner = os.stat(base).st_uid
        if owner != os.geteuid():
            raise OSError(f"work root {base} belongs to uid {owner}, not to the pilot")
        os.chmod(base, 0o711)
        groups = base / GROUPS_DIR
        groups.mkdir(mode=0o700, exist_ok=True)
        os.chmod(groups, 0o700)
        blocked = unreachable(base, user)
        if blocked is not None:
            log.warning(
                "payload user %s cannot search %s: payloads will not reach their directory by "
                "its path ($SKYPANDA_WORKDIR, $SKYPANDA_FLAGS); make it searchable (o+x)",
                user.name,
                blocked,
            )
    return base, owned


def unreachable(path: Path, user: PayloadUser) -> Path | None:
    """The first directory above `path` that `user` may not search, by its mode bits (ACLs
    are not read); None if none."""
    for parent in reversed(Path(os.path.abspath(path)).parents):
        try:
            st = os.stat(parent)
        except OSError:
            return parent
        if st.st_uid == user.uid:
            bit = stat.S_IXUSR
        elif st.st_gid == user.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return parent
    return None


def hand_over(workdir: Path, user: PayloadUser) -> None:
    """Give a job's directory and everything in it (staged inputs, the flags file) to `user`,
    the directory mode 0700.

    Walked through directory descriptors without following symbolic links (`os.fwalk`), so a
    link cannot lead the chown out of the directory.

    Raises:
        OSError: an entry could not be changed.
    """
    os.chmod(workdir, 0o700)
    os.chown(workdir, user.uid, user.gid)
    for _, dirs, files, dirfd in os.fwalk(workdir):
        for name in dirs + files:
            os.chown(name, user.uid, user.gid, dir_fd=dirfd, follow_symlinks=False)


# -- files the pilot reads for a payload ---------------------------------------------------------


def open_inside(path: Path, root: Path) -> BinaryIO:
    """Open, for reading, a file a payload left under `root` (its job directory).

    It must be a regular file owned by `root`'s owner, whose real path stays inside `root`:
    checked on the open file (through /proc/self/fd where there is one), so a symbolic link
    swapped in after a check cannot lead the pilot to a file of its own. A link inside `root`
    to a file inside `root` is followed.

    Raises:
        OSError: it cannot be opened, or is not such a file.
    """
    top, real = os.path.realpath(root), os.path.realpath(path)
    if not real.startswith(top + os.sep):
        raise OSError(f"{path.name} leads out of the job's directory")
    fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path.name} is not a regular file")
        owner = os.stat(top).st_uid
        if st.st_uid != owner:
            raise OSError(f"{path.name} belongs to uid {st.st_uid}, not to the job (uid {owner})")
        link = f"/proc/self/fd/{fd}"
        if os.path.islink(link) and not os.readlink(link).startswith(top + os.sep):
            raise OSError(f"{path.name} leads out of the job's directory")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def read_as(path: str, user: PayloadUser) -> Iterator[IO[bytes]]:
    """A stream of the file at `path`, read with the rights of `user` (by `cat` run as it),
    not the pilot's: a job gets no file its payload could not read itself.

    Raises:
        OSError: `cat` cannot be started, or could not read the file (its message), checked
            once the body read the stream to its end.
    """
    env = {"PATH": os.environ.get("PATH") or "/usr/bin:/bin", "LC_ALL": "C"}
    try:
        proc = subprocess.Popen(
            ["cat", "--", path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,  # not the pilot's: a process of the payload user shows its environment
            user=user.uid,
            group=user.gid,
            extra_groups=[],
        )
    except OSError as e:
        raise OSError(f"cannot start cat as user {user.name}: {e}") from e
    assert proc.stdout is not None and proc.stderr is not None
    try:
        yield proc.stdout
        error = proc.stderr.read(4096).decode("utf-8", errors="replace").strip()
        if proc.wait() != 0:
            raise OSError(f"as user {user.name}: {error or f'cat exit code {proc.returncode}'}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
