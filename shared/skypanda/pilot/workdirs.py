"""Job directories without a new inode per job: a directory a job left as it found it is kept
as a spare, and the next job's directory is that spare renamed.

Every job runs in a directory of its own, `<job id>.<attempt>` in the pilot's work root, where
it may leave files (they stay there, under the job's name). Most short jobs leave nothing but
their empty flags file (`runner.FLAGS_FILE`). Making a directory and a file costs the file
system two new inodes, which on ext4 took 0.04 ms on a quiet disk and 0.2-1 ms of system CPU
per job while another process wrote heavily (more than starting a short payload); renaming a
directory costs about 0.03 ms. So once a job is over, a directory that holds nothing, or only
an empty flags file, is renamed to a spare name (`SPARE_PREFIX`, never a job's: those end in
`.<attempt>`), and the next job's directory is a spare renamed to that job's name. What a job
sees is the same: a directory of its own, named after it, empty but for an empty flags file.

A directory is reused only when it looks exactly as a new one would: a real directory (not a
link) of the pilot's user with its first mode and at most one block of entries, holding nothing
or a regular empty flags file with one link. Not with a payload user (`sandbox`): its job's
directory is handed over to that user, who could keep a way into it.

Standard library only (the pilot ships as a zipapp).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
import threading
from pathlib import Path

from skypanda.pilot.runner import FLAGS_FILE, fresh_flags_file

SPARE_PREFIX = ".spare-"
"""Names of the spare directories in the work root."""
SMALL_DIR_BYTES = 4096
"""A directory larger than this (a job made many entries, then removed them) is not reused:
its size does not shrink, and every look into it would read it all."""


class Workdirs:
    """The job directories of one pilot's work root (see the module docstring).

    `take` a job's directory before it runs, `give_back` it once the job is over. Used by the
    pilot's worker threads at once; spares are at most `keep` (one per payload slot is enough).
    """

    def __init__(self, base: Path, *, reuse: bool = True, keep: int = 64) -> None:
        self._base = base
        self._reuse = reuse
        self._keep = keep
        self._spares: list[Path] = []
        self._names = itertools.count()
        self._lock = threading.Lock()
        self._mode: int | None = None  # of a directory the pilot made, read once

    def take(self, name: str) -> Path:
        """The directory for a job (`name`: `<job id>.<attempt>`): a spare renamed to it, if
        there is one, else the path, for the runner to make (`runner.run_payload`)."""
        target = self._base / name
        with self._lock:
            spare = self._spares.pop() if self._spares else None
        if spare is not None:
            try:
                os.rename(spare, target)  # fails on a directory of that name with entries
            except OSError:
                self._discard(spare)
        return target

    def give_back(self, workdir: Path) -> None:
        """A job is over (its processes gone): keep its directory as a spare if it holds
        nothing that the job left; else it stays, under the job's name. Never raises."""
        if not self._reuse:
            return
        try:
            if not self._as_new(workdir):
                return
            with self._lock:
                if len(self._spares) >= self._keep:
                    return
                spare = self._base / f"{SPARE_PREFIX}{next(self._names)}"
                os.rename(workdir, spare)
                self._spares.append(spare)
        except OSError:
            return

    def close(self) -> None:
        """Remove the spares (at the pilot's end). Never raises."""
        with self._lock:
            spares, self._spares = self._spares, []
        for spare in spares:
            self._discard(spare)

    def _as_new(self, workdir: Path) -> bool:
        """Whether `workdir` looks as a new job directory would (see the module docstring)."""
        st = os.lstat(workdir)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            return False
        if st.st_size > SMALL_DIR_BYTES or st.st_mode != self._new_mode():
            return False
        with os.scandir(workdir) as entries:
            found = [entry.name for entry in itertools.islice(entries, 2)]
        if not found:
            return True
        return found == [FLAGS_FILE] and fresh_flags_file(workdir / FLAGS_FILE)

    def _new_mode(self) -> int:
        """The mode of a directory the pilot makes (its umask applied), learnt once."""
        if self._mode is None:
            probe = self._base / f"{SPARE_PREFIX}probe-{os.getpid()}"
            probe.mkdir(exist_ok=True)
            try:
                self._mode = os.lstat(probe).st_mode
            finally:
                probe.rmdir()
        return self._mode

    def _discard(self, spare: Path) -> None:
        with contextlib.suppress(OSError):
            (spare / FLAGS_FILE).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            spare.rmdir()
