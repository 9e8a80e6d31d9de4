"""The skypanda pilot: pulls jobs from a queue, runs their payloads, reports back.

Standard library only (plus `skypanda.wire`), so that it can ship as a single-file
zipapp into any payload image with Python >= 3.9. Run it as `python -m skypanda.pilot.agent`.

    ApiClient, ApiError      JSON over HTTP with retries (also used by the CLI); patient
                             calls ride out a server outage (outage)
    run_payload              run one payload: output streaming, walltime, kill, and the
                             flags it wrote to the file named by $SKYPANDA_FLAGS (runner)
    PilotConfig, parse_args  how a pilot runs, from the command line (config)
    run_pilot, main          the pull-mode pilot loop (agent; its parts in held, reporting
                             and outcomes)

The agent's names are imported lazily, so that `python -m skypanda.pilot.agent` does not find
the module already imported by this package (runpy warns about that).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from skypanda.pilot.client import ApiClient, ApiError
from skypanda.pilot.runner import PayloadResult, run_payload

if TYPE_CHECKING:
    from skypanda.pilot.agent import (
        PILOT_VERSION,
        PilotConfig,
        acquire_size,
        main,
        parse_args,
        run_pilot,
    )

_AGENT_NAMES = frozenset(
    {"PILOT_VERSION", "PilotConfig", "acquire_size", "main", "parse_args", "run_pilot"}
)

__all__ = [
    "PILOT_VERSION",
    "ApiClient",
    "ApiError",
    "PayloadResult",
    "PilotConfig",
    "acquire_size",
    "main",
    "parse_args",
    "run_payload",
    "run_pilot",
]


def __getattr__(name: str) -> Any:
    if name in _AGENT_NAMES:
        from skypanda.pilot import agent

        return getattr(agent, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
