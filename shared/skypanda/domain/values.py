"""The base of every model: strict frozen pydantic values, bounded numbers, durations, names,
texts and resources.

Whatever a model accepts must be storable and readable back (as JSON, in SQLite and Firestore)
and usable where it goes (a number in a launcher's API, a string in a process's argv or
environment). So a number a user or a queue file sets is finite (JSON has no infinity: it was
stored as null and never read back), strictly typed (an int is not `"10"` nor `true`; an int
stays accepted where a float is wanted, as JSON and YAML give it) and bounded; a text that goes
to a process holds no NUL, and no text holds a lone surrogate (not UTF-8).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
"""An environment variable's name as a shell and every exec understand it (no `=`, no NUL)."""

# --- bounds ------------------------------------------------------------------------------------
# Each bound is well past what real work asks for and well inside what the stores (int64,
# double), the launchers' APIs and one machine can hold.
MAX_MEMORY_MB = 4_000_000
"""Memory of one job or pilot: 4 TB, the largest single machines."""
MAX_CORES = 1024
"""Cores of one job or pilot: the largest single machines."""
MAX_GPUS = 64
MIN_DURATION_S = 0.1
"""Shortest duration one sets (walltime, heartbeat, timeouts): below it a pilot would heartbeat
or poll in a busy loop, and a job would be killed before it started."""
MAX_DURATION_S = 30 * 86_400
"""Longest duration one sets (a job's walltime, a queue's intervals and timeouts): 30 days."""
MAX_PRIORITY = 1_000_000
"""Priorities lie in -MAX_PRIORITY..MAX_PRIORITY."""
MAX_ATTEMPTS = 100
INT32_MAX = 2**31 - 1
EXIT_CODE_MIN, EXIT_CODE_MAX = -(2**31), 2**32 - 1
"""A payload's exit code: 0..255 on POSIX, a negative signal number as Python reports a killed
process, or a Windows 32-bit (unsigned) code. Anything else is not an exit code (and 2**70
would overflow SQLite's and Firestore's 64-bit integers)."""
MAX_ARG_CHARS = 128 * 1024
"""One command word, input or environment value: Linux's MAX_ARG_STRLEN, the longest string
exec passes to a process."""
MAX_ENV_VARS = 1000
MAX_ENV_NAME_CHARS = 256

# --- numbers -----------------------------------------------------------------------------------
Int = Annotated[int, Field(strict=True)]
"""An integer: not a string ("10"), a bool (true) or a float (10.0)."""
Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]
"""A finite number (an int is accepted): not a string, a bool, an infinity or NaN."""
Flag = Annotated[bool, Field(strict=True)]
"""true or false: not 1, "yes" or "true"."""
Priority = Annotated[Int, Field(ge=-MAX_PRIORITY, le=MAX_PRIORITY)]
ExitCode = Annotated[Int, Field(ge=EXIT_CODE_MIN, le=EXIT_CODE_MAX)]
ErrorCodeNumber = Annotated[Int, Field(ge=0, le=INT32_MAX)]
"""An error code (skypanda.wire.codes, PanDA's pilot codes)."""


def parse_duration(value: object) -> object:
    """Accept seconds as a number or a string such as '90', '30s', '10m', '2h', '1d'."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (use seconds, or e.g. '30s', '10m', '2h')")
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


Seconds = Annotated[
    float,
    BeforeValidator(parse_duration),
    Field(strict=True, allow_inf_nan=False, ge=MIN_DURATION_S),
]
"""A finite duration of at least MIN_DURATION_S, in seconds or as '30s', '10m', '2h', '1d'. No
upper bound: what the system itself lengthens (a job's walltime, raised by retry rules when its
queue sets no maximum) must stay readable."""
Duration = Annotated[Seconds, Field(le=MAX_DURATION_S)]
"""A duration a user or a queue file sets: MIN_DURATION_S to MAX_DURATION_S."""


# --- texts -------------------------------------------------------------------------------------
_SURROGATE = re.compile("[\ud800-\udfff]")
_ENV_NAME = re.compile(ENV_NAME_PATTERN)


def storable(text: str) -> str:
    """Text that can be stored as UTF-8.

    Raises:
        ValueError: it holds a lone surrogate (JSON's `"\\ud800"`).
    """
    found = _SURROGATE.search(text)
    if found is not None:
        raise ValueError(f"holds a lone surrogate (not UTF-8) at offset {found.start()}")
    return text


def check_storable(value: Any, where: str = "") -> None:
    """Every text in a JSON-like value (dicts, lists, strings) can be stored.

    Raises:
        ValueError: naming where the first text that cannot be stored is.
    """
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, dict):
            stack += [(k, f"{at} (a name)") for k in item]
            stack += [(v, f"{at}.{k}" if str(k).isidentifier() else f"{at}[{k!r}]")
                      for k, v in item.items()]  # fmt: skip
        elif isinstance(item, list):
            stack += [(v, f"{at}.{i}") for i, v in enumerate(item)]
        elif isinstance(item, str):
            try:
                storable(item)
            except ValueError as e:
                raise ValueError(f"{at.lstrip('.') or 'text'}: {e}") from e


def passable(text: str) -> str:
    """Text that can be passed to a process (argv, environment) and stored.

    Raises:
        ValueError: it holds a NUL character or a lone surrogate.
    """
    at = text.find("\0")
    if at >= 0:
        raise ValueError(f"holds a NUL character at offset {at}")
    return storable(text)


def _env_name(name: str) -> str:
    if not _ENV_NAME.fullmatch(name) or len(name) > MAX_ENV_NAME_CHARS:
        raise ValueError(
            f"environment variable name {name[:100]!r} must be letters, digits and _ (not "
            f"starting with a digit; no '=' or NUL), at most {MAX_ENV_NAME_CHARS} characters"
        )
    return name


Text = Annotated[str, AfterValidator(storable)]
"""Any text that can be stored."""
Arg = Annotated[str, Field(max_length=MAX_ARG_CHARS), AfterValidator(passable)]
"""A command word, an input, an environment value: passable to a process."""
EnvName = Annotated[str, AfterValidator(_env_name)]
Env = Annotated[dict[EnvName, Arg], Field(max_length=MAX_ENV_VARS)]
"""Environment variables a job's payload gets, checked when submitted (not on the pilot)."""


class Strict(BaseModel):
    """Frozen, no field that is not declared, and no infinite or NaN float anywhere."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Resources(Strict):
    """What one job needs; a pilot only receives jobs that fit its own resources."""

    memory_mb: Int = Field(default=2000, ge=1, le=MAX_MEMORY_MB)
    cores: Int = Field(default=1, ge=1, le=MAX_CORES)
    walltime_s: Seconds = Field(default=3600.0, alias="walltime")

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )

    def fits(self, capacity: Resources) -> bool:
        return self.memory_mb <= capacity.memory_mb and self.cores <= capacity.cores


def _settable(resources: Resources) -> Resources:
    if resources.walltime_s > MAX_DURATION_S:
        raise ValueError(
            f"walltime {resources.walltime_s:g} s is more than {MAX_DURATION_S} s (30 days), "
            "the longest a job may ask for"
        )
    return resources


Request = Annotated[Resources, AfterValidator(_settable)]
"""Resources as a task or a queue file sets them: a walltime of at most MAX_DURATION_S too (a
job's own may grow past it by retry rules, see `Seconds`)."""


def jsonable(model: BaseModel) -> dict[str, Any]:
    """A model as plain JSON-able values (enums as strings)."""
    return model.model_dump(mode="json")
