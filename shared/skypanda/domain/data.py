"""Data a job stages in and out: local names of staged inputs, output patterns and files."""

from __future__ import annotations

import posixpath
import urllib.parse

from pydantic import (
    Field,
    field_validator,
)

from skypanda.domain.values import Int, Strict, Text, storable

STAGE_IN_SCHEMES = ("file", "http", "https", "gs")
"""URL schemes a pilot can stage an input from (see skypanda.pilot.staging)."""
MAX_OUTPUT_PATTERNS = 100
MAX_OUTPUTS = 1000
"""Output files one job may record (files its patterns match, uploaded after it succeeded)."""
_SHA256 = r"^[0-9a-f]{64}$"
MAX_EVENTS = 10**15
"""Bound on event numbers and counts (a task's job count is bounded separately)."""
MAX_OUTPUT_BYTES = 2**50
"""One output file: a pebibyte."""


def staged_name(url: str) -> str:
    """The name an input URL is staged in as, in the job's working directory: the last part
    of its path (percent-decoded, except for gs:// whose object names are literal), e.g.
    `gs://bucket/run1/hits.root` -> `hits.root`. skypanda.pilot.staging.local_name applies
    the same rule on the pilot (a test holds them together).

    Raises:
        ValueError: not a URL the pilot can fetch, or it names no file.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in STAGE_IN_SCHEMES:
        raise ValueError(
            f"cannot stage in {url!r}: use a {', '.join(s + '://' for s in STAGE_IN_SCHEMES)} URL"
        )
    if scheme.lower() == "gs":
        bucket, _, path = rest.partition("/")
        if not bucket:
            raise ValueError(f"cannot stage in {url!r}: no bucket (write gs://bucket/object)")
    else:
        path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    name = posixpath.basename(path)
    if name in ("", ".", "..") or "\0" in name:
        raise ValueError(f"cannot stage in {url!r}: its path names no file")
    return name


def check_output_pattern(pattern: str) -> str:
    """A glob pattern of output files, relative to the job's working directory.

    Raises:
        ValueError: empty, absolute, climbing out with `..`, or too long.
    """
    if not pattern.strip() or len(pattern) > 256 or "\0" in pattern:
        raise ValueError(f"output pattern {pattern!r} must be 1 to 256 characters")
    if pattern.startswith("/") or "\\" in pattern:
        raise ValueError(f"output pattern {pattern!r} must be relative to the job's directory")
    if ".." in pattern.split("/"):
        raise ValueError(f"output pattern {pattern!r} must not climb out of it with '..'")
    return pattern


def check_output_name(name: str) -> str:
    """An output's name: its path relative to the job's working directory (`a.txt`,
    `plots/a.png`), also the last part of its blob key.

    Raises:
        ValueError: empty, absolute, with `.`/`..`/empty parts, control characters or
            backslashes, or longer than 512 characters.
    """
    parts = name.split("/")
    if not name or len(name) > 512 or any(p in ("", ".", "..") for p in parts):
        raise ValueError(
            f"output name {name!r} must be a relative path of 1 to 512 characters, "
            "without empty, '.' or '..' parts"
        )
    if "\\" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError(f"output name {name!r} must not hold backslashes or control characters")
    return name


class OutputFile(Strict):
    """One output a pilot uploaded after its job succeeded (stage-out)."""

    name: str
    uri: Text = Field(min_length=1, max_length=2048)
    size: Int = Field(ge=0, le=MAX_OUTPUT_BYTES)
    sha256: str = Field(pattern=_SHA256)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return storable(check_output_name(name))
