"""The base of every model: strict frozen pydantic values, durations, names, resources."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


def parse_duration(value: object) -> object:
    """Accept seconds as a number or a string such as '90', '30s', '10m', '2h', '1d'."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (use seconds, or e.g. '30s', '10m', '2h')")
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]


class Strict(BaseModel):
    """Frozen, and no field that is not declared."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(Strict):
    """What one job needs; a pilot only receives jobs that fit its own resources."""

    memory_mb: int = Field(default=2000, ge=1, le=4_000_000)
    cores: int = Field(default=1, ge=1, le=1024)
    walltime_s: Duration = Field(default=3600.0, alias="walltime")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def fits(self, capacity: Resources) -> bool:
        return self.memory_mb <= capacity.memory_mb and self.cores <= capacity.cores


def jsonable(model: BaseModel) -> dict[str, Any]:
    """A model as plain JSON-able values (enums as strings)."""
    return model.model_dump(mode="json")
