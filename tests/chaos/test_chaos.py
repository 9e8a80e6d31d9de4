"""The embedded system under faults keeps its promises (issue 13): a small `skypanda bench
chaos`, through the same code as the command.

Forty jobs run on real pilots of a real `skypanda up` process while a pilot is SIGKILLed and
another SIGTERMed, the server is SIGKILLed and comes back after an outage, and delivered
events are delivered again. Faults fire as the jobs progress (a share of them ended), not at
fixed times, and the run waits for the jobs to end; then the payloads' own records and the
database are checked.
"""

from __future__ import annotations

from typing import Any

import pytest

from skypanda.cli.bench_chaos import ChaosOptions, run_chaos
from skypanda.cli.chaos_checks import (
    OTHER,
    PILOT_SIGKILL,
    PILOT_SIGTERM,
    REDELIVER,
    SERVER_SIGKILL,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SCHEDULE = (
    (0.05, REDELIVER),
    (0.15, PILOT_SIGKILL),
    (0.25, PILOT_SIGTERM),
    (0.35, REDELIVER),
    (0.45, SERVER_SIGKILL),
)
"""Each fault with the share of jobs ended at which it fires: the outage last, so that more
than half of the jobs are left to run through it."""
OUTAGE_S = 20.0
"""Longer than the pilots' old retry budget at its shortest (about 16 s)."""


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run for the module's tests: about 35 s here; the jobs get 120 s at most to end
    (then the run stops everything and reports what did not end)."""
    opts = ChaosOptions(
        jobs=40, seed=7, pilots=2, schedule=SCHEDULE, outage_s=OUTAGE_S,
        heartbeat_interval_s=1.0, heartbeat_timeout_s=10.0, timeout_s=120.0, min_gap_s=1.0,
    )  # fmt: skip
    return run_chaos(opts, tmp_path_factory.mktemp("chaos"))


def test_every_job_ends_none_runs_twice_at_once_and_the_database_is_intact(
    chaos: dict[str, Any],
) -> None:
    # Given every fault of the schedule was injected while jobs were left to run
    assert chaos["faults"] == {PILOT_SIGKILL: 1, PILOT_SIGTERM: 1, SERVER_SIGKILL: 1,
                               REDELIVER: 2}, chaos["faults_skipped"]  # fmt: skip
    assert chaos["events_redelivered"] > 0
    # Then every job ended, and finished (attempts were left: a fault costs one at most)
    assert (chaos["jobs"], chaos["not_ended"], chaos["finished"]) == (40, 0, 40)
    # And no attempt ran twice, and no two runs of a job were alive at once
    assert chaos["duplicates"] == 0
    assert chaos["overlaps"] == 0
    # And a SIGTERMed pilot's jobs cost no attempt, nor did anything but a fault
    assert chaos["counted_by_cause"][PILOT_SIGTERM] == 0
    assert chaos["counted_by_cause"][OTHER] == 0
    # And the database passes its integrity check and agrees with itself and the records
    assert chaos["integrity"] == "ok"
    assert chaos["consistent"]
    assert chaos["dead_events"] == 0
    assert chaos["problems"] == []


def test_a_server_outage_costs_no_attempt(chaos: dict[str, Any]) -> None:
    # Given the server was SIGKILLed with jobs running and stayed down for OUTAGE_S
    assert chaos["faults"][SERVER_SIGKILL] == 1
    # Then no attempt that ended during the outage, or just after it, was counted
    assert chaos["attempts_from_outages"] == 0
