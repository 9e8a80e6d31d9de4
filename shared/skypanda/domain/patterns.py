r"""User regular expressions (workflow `keys`, retry rules' `pattern`), matched in linear time.

Python's `re` backtracks: `(x+x+)+y` searched in forty x's runs for years, holding the GIL all
along, so one user's pattern would freeze the whole server (health, router, sweep). User
patterns are compiled with RE2 instead (the `google-re2` binding): a match costs time linear in
the text whatever the pattern, and the binding releases the GIL while it matches. Bounds:
patterns of at most MAX_PATTERN_CHARS, RE2's memory per pattern at most MAX_MEM (a pattern
that needs more is refused), texts searched in their first MAX_SUBJECT_CHARS (`subject`).

RE2 syntax is Python's for what users write in practice, with these differences:

- refused at submission: backreferences (`\1`, `(?P=name)`), lookaround (`(?=`, `(?!`,
  `(?<=`, `(?<!`), atomic groups and possessive quantifiers, conditionals, `(?x)` and
  `(?#...)`, repetition counts over 1000; `\Z` (write `\z`); `\C` (one byte: it can split a
  character); `{,n}` (Python's `{0,n}`, which RE2 would read as literal text: write `{0,n}`);
- matched differently: `$` (without `(?m)`) only at the very end of the text, where Python's
  also matches before a final newline; `\d`, `\w`, `\s` and `\b` are ASCII where Python's
  are Unicode (`\pN`, `\pL` and `[[:space:]]` say the Unicode or POSIX thing explicitly);
- accepted in addition: `\z`, `\pL`, `[[:alpha:]]`, `\Q...\E`, `(?U)` (ungreedy), `(?<name>`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, Protocol, cast

import re2  # type: ignore[import-untyped]

from skypanda.domain.errors import InvalidInput, clip

MAX_PATTERN_CHARS = 1000
"""Longest user pattern accepted."""

MAX_MEM = 2 * 1024 * 1024
"""RE2's memory budget per compiled pattern (program and matching cache), in bytes. RE2 keeps
128 compiled patterns (and so does `compile_user_pattern`'s cache): at most 256 MiB, in the
worst case of patterns built to fill their cache; a few KiB each in practice."""

MAX_SUBJECT_CHARS = 16 * 1024
"""User patterns search the first 16,384 characters of a text (a diagnosis, an input name):
RE2 is linear, this bounds the constant. Diagnoses are at most 4000 characters anyway."""

SYNTAX = "skypanda uses RE2 syntax: no backreferences or lookaround"

_SURROGATES = dict.fromkeys(range(0xD800, 0xE000), "\ufffd")


class Match(Protocol):
    """What a match offers (the parts of `re.Match` that skypanda uses)."""

    def group(self, index: int = 0, /) -> str | None: ...


class Pattern(Protocol):
    """A compiled user pattern (the parts of `re.Pattern` that skypanda uses)."""

    @property
    def pattern(self) -> str: ...

    @property
    def groups(self) -> int: ...

    def search(self, text: str) -> Match | None: ...

    def finditer(self, text: str) -> Iterator[Match]: ...

    def findall(self, text: str) -> list[Any]: ...


def compile_user_pattern(pattern: str, field: str) -> Pattern:
    """`pattern` compiled for linear-time matching (cached: rules and keys are matched often).

    Args:
        pattern: the user's regular expression.
        field: what it is, for the message ("pattern", "regular expression").

    Raises:
        InvalidInput: too long, not valid Unicode, refused by RE2 (syntax it lacks, or more
            memory than MAX_MEM), or a construct RE2 would read differently from Python.
    """
    if len(pattern) > MAX_PATTERN_CHARS:
        raise InvalidInput(
            f"bad {field} ({len(pattern):,} characters): at most {MAX_PATTERN_CHARS:,}",
            field=field,
        )
    problem = _differs(pattern)
    if problem is None:
        try:
            return _compiled(pattern)
        except re2.error as e:
            problem = _reason(e)
        except UnicodeEncodeError as e:
            problem = f"not valid Unicode ({e.reason})"
    raise InvalidInput(f"bad {field} {clip(pattern, 100)!r}: {problem} ({SYNTAX})", field=field)


def subject(text: str) -> str:
    """The part of `text` a user pattern searches: its first MAX_SUBJECT_CHARS characters, a
    lone surrogate (which UTF-8, and so RE2, cannot hold) read as U+FFFD."""
    text = text[:MAX_SUBJECT_CHARS]
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            text = text.translate(_SURROGATES)
    return text


def _options() -> object:
    options = re2.Options()
    options.max_mem = MAX_MEM
    options.log_errors = False  # a user's bad pattern is their error, not a line in our log
    return options


_OPTIONS = _options()


@functools.lru_cache(maxsize=128)
def _compiled(pattern: str) -> Pattern:
    return cast(Pattern, re2.compile(pattern, _OPTIONS))


def _reason(e: Exception) -> str:
    raw = e.args[0] if e.args else ""
    reason = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    if "\\Z" in reason:
        reason += " (write \\z for the end of the text)"
    elif any(f"\\{c}" in reason for c in "uUN"):
        reason += " (write \\x{hhhh} for a character by its code)"
    if "too large" in reason:
        reason += f" (more than RE2's {MAX_MEM // 2**20} MiB per pattern)"
    return reason


def _differs(pattern: str) -> str | None:
    """Why RE2 would read `pattern` differently from Python, or None: `\\C` (one byte, which
    can split a character) and `{,n}` (Python's `{0,n}`, literal text to RE2)."""
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\":
            if pattern[i + 1 : i + 2] == "C":
                return "\\C (any byte) can split a character: write . for any character"
            i += 2
            continue
        if pattern.startswith("{,", i):
            end = pattern.find("}", i)
            count = pattern[i + 2 : end]
            if end != -1 and (count == "" or (count.isascii() and count.isdigit())):
                return (
                    "write {0,n} for at most n repetitions, \\{ for a brace "
                    "(RE2 would read {,n} as text)"
                )
        i += 1
    return None
