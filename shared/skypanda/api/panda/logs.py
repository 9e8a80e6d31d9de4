"""A PanDA pilot's log tarball, read back from its DDM endpoint's directory.

The real pilot stages a job's log out as a tarball (`<lfn>.log.tgz`) with `mv` to the path
`ddmendpoints.json` gives it (`mapping.ddm_path`), then names it in its final update
(`xml`: guid, fsize, adler32, surl). On a machine that shares that directory with skypanda
(the embedded system), the tarball is read from there, checked, and what a user wants from a
job's log (the payload's own output) is taken out of it.

What a pilot names is not trusted: the file read is the one skypanda placed the job's log at
(never a path from the request; the `surl` must name that same file), a regular file (no
link followed, no FIFO opened), at most MAX_TARBALL_BYTES, whose size and adler32 are the ones
the pilot reported. The tarball is read as a stream with at most MAX_UNPACKED_BYTES unpacked,
so a small archive cannot make the server unpack gigabytes.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from skypanda.api.panda.mapping import StagedFile
from skypanda.domain.errors import InvalidInput

MAX_TARBALL_BYTES = 64 * 1024 * 1024
"""The largest log tarball read (a PanDA job's log tarball is a few MB)."""
MAX_UNPACKED_BYTES = 256 * 1024 * 1024
"""The most bytes unpacked from one tarball (its members are read in order, as a stream)."""
MAX_OUTPUT_BYTES = 4 * 1024 * 1024
"""The most of each of the payload's stdout and stderr kept in the job's log (their ends)."""
MAX_MEMBERS = 10_000
"""The most tarball members looked at (tarfile keeps each one it reads in memory)."""
PAYLOAD_FILES = ("payload.stdout", "payload.stderr")
"""What the pilot's tarball holds of the payload's own output (in its top directory)."""


class TarballRefused(InvalidInput):
    """A staged-out log tarball skypanda will not read, saying why."""


@dataclass(frozen=True)
class PayloadOutput:
    """What a log tarball held of the payload's output, by file name (as text)."""

    files: dict[str, str]

    def text(self) -> str:
        """The payload's stdout, then its stderr under a heading when it has any."""
        out = self.files.get("payload.stdout", "")
        err = self.files.get("payload.stderr", "")
        if out and not out.endswith("\n"):
            out += "\n"
        return out + (f"[panda pilot] payload.stderr:\n{err}" if err.strip() else "")


def read_tarball(root: Path, relative: str, staged: StagedFile) -> bytes:
    """The log tarball at `root/relative`, checked against what the pilot reported.

    Raises:
        TarballRefused: the surl names another file, the file is missing, not a regular
            file, reached through a link, too large, or not the size or adler32 reported.
    """
    path = root / relative
    expected = f"file://localhost{path}"
    if staged.surl and staged.surl != expected:
        raise TarballRefused(f"the log's surl {staged.surl!r} is not where skypanda's DDM "
                             f"endpoint puts it ({expected})", field="surl")  # fmt: skip
    data = _read_regular(root, relative)
    if staged.fsize is not None and staged.fsize != len(data):
        raise TarballRefused(f"{staged.lfn} is {len(data)} bytes, the pilot reported "
                             f"{staged.fsize}", field="fsize")  # fmt: skip
    adler = f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    if staged.adler32.lower() != adler:
        raise TarballRefused(f"{staged.lfn} has adler32 {adler}, the pilot reported "
                             f"{staged.adler32 or 'none'}", field="adler32")  # fmt: skip
    return data


def _read_regular(root: Path, relative: str) -> bytes:
    """Read `root/relative`, following no link on the way (each directory opened relative to
    the last with O_NOFOLLOW), and only a regular file of at most MAX_TARBALL_BYTES."""
    parts = PurePosixPath(relative).parts
    if not parts or any(p in ("", ".", "..") or "/" in p for p in parts):
        raise TarballRefused(f"{relative!r} is not a path under the DDM directory", field="surl")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    fds: list[int] = []
    try:
        fds.append(os.open(root, flags | os.O_DIRECTORY))
        for name in parts[:-1]:
            fds.append(os.open(name, flags | os.O_DIRECTORY, dir_fd=fds[-1]))
        fd = os.open(parts[-1], flags, dir_fd=fds[-1])
    except OSError as e:
        raise TarballRefused(f"the log file {relative} cannot be read under {root}: "
                             f"{e.strerror}", field="surl") from e  # fmt: skip
    finally:
        for d in fds:
            os.close(d)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise TarballRefused(f"the log file {relative} is not a regular file", field="surl")
        if info.st_size > MAX_TARBALL_BYTES:
            raise TarballRefused(f"the log file {relative} is {info.st_size:,} bytes, more "
                                 f"than {MAX_TARBALL_BYTES:,}", field="fsize")  # fmt: skip
        return f.read(MAX_TARBALL_BYTES + 1)[:MAX_TARBALL_BYTES]


class _Capped(io.RawIOBase):
    """A stream that fails once more than `limit` bytes were read from it."""

    def __init__(self, inner: io.BufferedIOBase, limit: int) -> None:
        self.inner, self.left = inner, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(min(len(buffer), self.left + 1))
        self.left -= len(data)
        if self.left < 0:
            raise TarballRefused(f"the log tarball unpacks to more than "
                                 f"{MAX_UNPACKED_BYTES:,} bytes", field="xml")  # fmt: skip
        buffer[: len(data)] = data
        return len(data)


def payload_output(tarball: bytes, unpack_limit: int = MAX_UNPACKED_BYTES) -> PayloadOutput:
    """The payload's stdout and stderr from a pilot's log tarball (`<dir>/payload.stdout`),
    each its last MAX_OUTPUT_BYTES, decoded as UTF-8 (undecodable bytes replaced).

    Raises:
        TarballRefused: not a gzipped tar, or one that unpacks to more than `unpack_limit`.
    """
    found: dict[str, str] = {}
    stream = io.BufferedReader(_Capped(gzip.GzipFile(fileobj=io.BytesIO(tarball)), unpack_limit))
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for number, member in enumerate(tar, start=1):
                if number > MAX_MEMBERS:
                    raise TarballRefused(f"the log tarball holds more than {MAX_MEMBERS:,} "
                                         "files", field="xml")  # fmt: skip
                name = PurePosixPath(member.name)
                if member.isfile() and len(name.parts) <= 2 and name.name in PAYLOAD_FILES:
                    f = tar.extractfile(member)
                    assert f is not None  # (a regular file)
                    data = _tail(f, member.size)
                    found[name.name] = data.decode("utf-8", errors="replace")
                    if len(found) == len(PAYLOAD_FILES):
                        break  # (the rest is the pilot's own files)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise TarballRefused(f"the log file is not a gzipped tar: {e}", field="xml") from e
    return PayloadOutput(found)


def _tail(f: IO[bytes], size: int) -> bytes:
    """The last MAX_OUTPUT_BYTES of a member (read through: a tar stream does not seek)."""
    skip = max(0, size - MAX_OUTPUT_BYTES)
    while skip > 0:
        chunk = f.read(min(skip, 1024 * 1024))
        if not chunk:
            break
        skip -= len(chunk)
    data = f.read(MAX_OUTPUT_BYTES)
    if size > MAX_OUTPUT_BYTES:
        return b"[panda pilot] ... (the start of this output is in the log tarball)\n" + data
    return data
