"""Query parameters, checked: a bad one is a 422 that names it. The parsers of filters
(moments, states) are shared by the JSON routes and the monitor's pages."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from enum import Enum
from typing import TypeVar

from flask import request

from skypanda.domain.errors import InvalidInput

E = TypeVar("E", bound=Enum)


def int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise InvalidInput(f"query parameter {name} must be an integer, not {raw!r}") from e
    if not low <= value <= high:
        raise InvalidInput(f"query parameter {name} must be between {low} and {high}")
    return value


def parse_moment(raw: str, field: str) -> float | None:
    """A moment a filter names: "" (none), seconds since the epoch, or an ISO 8601 date or
    date-time, UTC unless it says (a browser's datetime-local field sends "2026-12-03T16:20").

    Raises:
        InvalidInput: naming the field and the forms it takes.
    """
    text = raw.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError as e:
            raise InvalidInput(
                f"{field}: {raw[:40]!r} is not a moment (use seconds since the epoch, "
                "YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC unless it says)",
                field=field,
            ) from e
        value = (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()
    if not math.isfinite(value) or not 0 <= value < 1e11:
        raise InvalidInput(f"{field}: {raw[:40]!r} is not a moment", field=field)
    return value


def parse_states(values: Iterable[str], kind: type[E], field: str = "status") -> frozenset[E]:
    """Every value given (repeated, or comma-separated; empty ones skipped), each one of
    `kind`'s values.

    Raises:
        InvalidInput: naming the unknown state and the states there are.
    """
    out: set[E] = set()
    for raw in values:
        for part in raw.split(","):
            if not part.strip():
                continue
            try:
                out.add(kind(part.strip()))
            except ValueError as e:
                known = ", ".join(s.value for s in kind)
                raise InvalidInput(
                    f"{field}: unknown state {part.strip()[:40]!r} (one of {known})", field=field
                ) from e
    return frozenset(out)
