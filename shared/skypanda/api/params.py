"""Query parameters, checked: a bad one is a 422 that names it."""

from __future__ import annotations

from flask import request

from skypanda.domain.errors import InvalidInput


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
