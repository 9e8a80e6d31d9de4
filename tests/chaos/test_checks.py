"""The chaos bench's checks find what they look for: given made-up records and database rows,
an overlap, a duplicate and a counted attempt are each seen and put down to their cause."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import click
import pytest

from skypanda.cli.bench_chaos import ChaosOptions, parse_schedule, plan
from skypanda.cli.chaos_checks import (
    OTHER,
    OUTAGE,
    PILOT_SIGKILL,
    PILOT_SIGTERM,
    REDELIVER,
    SERVER_SIGKILL,
    Database,
    Fault,
    Run,
    analyse,
    cause,
    duplicates,
    overlaps,
    read_runs,
)
from skypanda.wire.codes import ErrorCode


def test_records_are_read_into_runs_and_a_killed_run_has_no_end(tmp_path: Path) -> None:
    # Given a job's record: attempt 1 SIGKILLed (a start only), attempt 2 ran to its end
    (tmp_path / "j1.rec").write_text(
        "start j1 1 pA 11 10.0 0.0 alone\n"
        "start j1 2 pB 12 20.0 0.0 alone\n"
        "end j1 2 pB 12 20.0 21.5 alone\n"
    )
    # Then it reads as two runs, the first with no end
    runs = read_runs(tmp_path)
    assert [(r.attempt, r.pilot, r.end, r.how) for r in runs] == [
        (1, "pA", None, ""),
        (2, "pB", 21.5, "end"),
    ]


def test_a_run_started_while_another_was_alive_is_an_overlap() -> None:
    # Given runs of one job: the lock says the second started while another held it, and
    # the third started before the second recorded its end
    runs = [
        Run("j", 1, "pA", 1, start=0.0, end=None),
        Run("j", 2, "pB", 2, start=5.0, end=9.0, how="end", lock="overlap"),
        Run("j", 3, "pC", 3, start=8.0, end=12.0, how="end"),
        Run("k", 1, "pA", 4, start=0.0, end=1.0, how="end"),
        Run("k", 2, "pB", 5, start=1.5, end=2.0, how="end"),
    ]
    # Then both are overlaps, and the runs of the other job, one after the other, are not
    found = overlaps(runs)
    assert len(found) == 2
    assert all(line.startswith("job j attempt") for line in found)


def test_one_attempt_run_twice_is_a_duplicate() -> None:
    runs = [Run("j", 1, "pA", 1, 0.0, 1.0, "end"), Run("j", 1, "pB", 2, 2.0, 3.0, "end")]
    assert duplicates(runs) == ["job j attempt 1 ran 2 times"]


def test_a_counted_attempt_is_put_down_to_the_fault_that_explains_it() -> None:
    faults = [
        Fault(PILOT_SIGKILL, at=10.0, target="pK"),
        Fault(PILOT_SIGTERM, at=20.0, target="pT"),
        Fault(SERVER_SIGKILL, at=100.0, target="1", back_at=130.0),
    ]

    def attempt(pilot: str, ended: float) -> dict[str, object]:
        return {"pilot_id": pilot, "ended_at": ended}

    assert cause(attempt("pK", 15.0), faults, grace_s=30) == PILOT_SIGKILL
    assert cause(attempt("pT", 21.0), faults, grace_s=30) == PILOT_SIGTERM
    assert cause(attempt("pX", 110.0), faults, grace_s=30) == OUTAGE
    assert cause(attempt("pX", 155.0), faults, grace_s=30) == OUTAGE  # just after it
    assert cause(attempt("pX", 170.0), faults, grace_s=30) == OTHER
    assert cause(attempt("pX", 50.0), faults, grace_s=30) == OTHER


def _job(job_id: str, status: str, attempt: int, failures: int) -> dict[str, object]:
    return {"id": job_id, "task_id": "t", "status": status, "attempt": attempt,
            "failures": failures, "max_attempts": 3}  # fmt: skip


def _attempt(
    job_id: str, attempt: int, pilot: str, code: int | None, ended_at: float
) -> dict[str, object]:
    return {"job_id": job_id, "attempt": attempt, "pilot_id": pilot, "error_code": code,
            "status": "finished" if code is None else "failed", "ended_at": ended_at}  # fmt: skip


def test_the_figures_count_attempts_by_cause_and_flag_what_did_not_end() -> None:
    # Given a finished job that lost an attempt to a server outage, and a job still running
    db = Database(
        integrity="ok",
        jobs=[_job("a", "finished", attempt=2, failures=1), _job("b", "running", 1, 0)],
        attempts=[
            _attempt("a", 1, "p1", int(ErrorCode.LOST_HEARTBEAT), ended_at=105.0),
            _attempt("a", 2, "p2", None, ended_at=140.0),
        ],
        tasks=[{"id": "t", "status": "running", "n_jobs": 2, "made": 2, "finished": 1}],
        pilots=Counter({"running": 1}),
        dead_events=0,
        pending_events=0,
    )
    runs = [
        Run("a", 1, "p1", 1, 90.0, None),
        Run("a", 2, "p2", 2, 131.0, 139.0, "end"),
        Run("b", 1, "p2", 3, 132.0, None),
    ]
    faults = [Fault(SERVER_SIGKILL, 100.0, "1", back_at=130.0)]
    # When it is analysed
    found = analyse(db, runs, faults, grace_s=30)
    # Then the counted attempt is put down to the outage, and what did not end is named
    assert found.figures["attempts_from_outages"] == 1
    assert found.figures["not_ended"] == 1
    assert found.figures["overlaps"] == found.figures["duplicates"] == 0
    assert not found.figures["consistent"]
    assert "job b did not end: running" in found.problems
    assert "task t did not end: running" in found.problems


def test_a_schedule_is_read_from_the_command_line_and_drawn_reproducibly() -> None:
    assert parse_schedule("server_sigkill@0.1, redeliver@0.5") == (
        (0.1, SERVER_SIGKILL),
        (0.5, REDELIVER),
    )
    with pytest.raises(click.BadParameter, match="KIND@SHARE"):
        parse_schedule("server_sigkill@2")
    opts = ChaosOptions(pilot_kills=2, pilot_terms=1, server_kills=1, redeliveries=3)
    drawn = plan(opts, random.Random(5))
    assert drawn == plan(opts, random.Random(5))
    assert sorted(k for _, k in drawn) == sorted(
        [PILOT_SIGKILL] * 2 + [PILOT_SIGTERM] + [SERVER_SIGKILL] + [REDELIVER] * 3
    )
    shares = [s for s, _ in drawn]
    assert shares == sorted(shares)
    assert 0.05 <= shares[0] <= shares[-1] <= 0.75
