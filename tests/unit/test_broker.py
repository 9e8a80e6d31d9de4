"""Brokerage as a pure function: which queue a task goes to, and why others are rejected."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skypanda.domain.broker import Load, Needs, broker, misfits, rejection, weight
from skypanda.domain.models import Queue, QueueStatus, Resources, TaskSpec


def q(name: str, **fields: Any) -> Queue:
    fields.setdefault("pilot_resources", Resources(memory_mb=16000, cores=8))
    return Queue(name=name, **fields)


CASES = [
    # (what, needs, queues, loads, chosen, rejected)
    ("one online queue that fits", Needs(), [q("a")], {}, "a", {}),
    (
        "offline and too small are rejected with reasons",
        Needs(memory_mb=8000),
        [q("q1", status="offline"), q("q2", max_memory_per_core_mb=4000), q("q3")],
        {},
        "q3",
        {"q1": "offline", "q2": "8000 MB > 4000 MB max (4000 MB/core x 1 core)"},
    ),
    (
        "memory per core scales with cores",
        Needs(memory_mb=8000, cores=2),
        [q("a", max_memory_per_core_mb=4000)],
        {},
        "a",
        {},
    ),
    (
        "cores above the limit",
        Needs(cores=4),
        [q("a", max_cores=2)],
        {},
        None,
        {"a": "4 cores > 2 max"},
    ),
    (
        "walltime above the limit",
        Needs(walltime_s=7200),
        [q("a", max_walltime_s="1h")],
        {},
        None,
        {"a": "walltime 7200 s > 3600 s max"},
    ),
    ("gpus", Needs(gpus=1), [q("cpu"), q("gpu", gpus=2)], {}, "gpu", {"cpu": "1 GPUs > 0"}),
    (
        "test queue only when included",
        Needs(),
        [q("t", status="test")],
        {},
        None,
        {"t": "test queue (include it by name to use it)"},
    ),
    ("test queue included by name", Needs(include=("t",)), [q("t", status="test")], {}, "t", {}),
    ("excluded", Needs(exclude=("a",)), [q("a"), q("b")], {}, "b", {"a": "excluded"}),
    ("include list limits the choice", Needs(include=("b",)), [q("a"), q("b")], {}, "b", {}),
    (
        "an included name that is no queue",
        Needs(include=("nope",)),
        [q("a")],
        {},
        None,
        {"nope": "no such queue"},
    ),
    ("no queues at all", Needs(), [], {}, None, {"(all)": "no queue is defined"}),
    (
        "the less loaded queue wins",
        Needs(),
        [q("a"), q("b")],
        {"a": Load(running=1, queued=100), "b": Load(running=1, queued=0)},
        "b",
        {},
    ),
    (
        "more running with the same backlog wins",
        Needs(),
        [q("a"), q("b")],
        {"a": Load(running=1, queued=5), "b": Load(running=9, queued=5)},
        "b",
        {},
    ),
    ("ties go to the first name", Needs(), [q("b"), q("a"), q("c")], {}, "a", {}),
]


@pytest.mark.parametrize(
    ("needs", "queues", "loads", "chosen", "rejected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_broker_table(
    needs: Needs,
    queues: list[Queue],
    loads: dict[str, Load],
    chosen: str | None,
    rejected: dict[str, str],
) -> None:
    decision = broker(needs, queues, loads)
    assert decision.queue == chosen
    assert decision.rejected == rejected


def test_reason_names_each_queue_and_why() -> None:
    # Given one offline queue and one too small for the task
    queues = [q("q1", status="offline"), q("q2", max_memory_per_core_mb=4000)]
    # When a task needing 8000 MB is brokered
    decision = broker(Needs(memory_mb=8000), queues, {})
    # Then nothing is chosen and the reason reads like PanDA's
    assert decision.queue is None
    assert decision.reason == "q1: offline; q2: 8000 MB > 4000 MB max (4000 MB/core x 1 core)"


def test_needs_of_a_task_spec() -> None:
    spec = TaskSpec.model_validate(
        {"name": "t", "command": ["x"], "n_jobs": 1, "resources": {"memory_mb": 3000, "cores": 2},
         "queues": {"include": ["a"], "exclude": ["b"], "gpus": 1}}
    )  # fmt: skip
    assert spec.queue == "auto"
    assert Needs.of(spec) == Needs(3000, 2, 3600.0, 1, ("a",), ("b",))


def test_weight_is_pandas() -> None:
    assert weight(Load(running=0, queued=0)) == pytest.approx(0.1)
    assert weight(Load(running=9, queued=10)) == pytest.approx(0.5)
    assert weight(Load(running=5, queued=0)) > weight(Load(running=5, queued=1))
    assert weight(Load(running=6, queued=1)) > weight(Load(running=5, queued=1))


# -- properties ------------------------------------------------------------------------------------

queue_st = st.builds(
    lambda i, status, cores, mem, per_core, max_cores, wall, gpus: Queue(
        name=f"q{i}",
        status=status,
        pilot_resources=Resources(memory_mb=mem, cores=cores),
        max_memory_per_core_mb=per_core,
        max_cores=None if max_cores is None else min(max_cores, cores),
        max_walltime_s=wall,
        gpus=gpus,
    ),
    st.integers(0, 20),
    st.sampled_from(list(QueueStatus)),
    st.integers(1, 16),
    st.integers(500, 64000),
    st.none() | st.integers(500, 8000),
    st.none() | st.integers(1, 16),
    st.none() | st.floats(60, 86400),
    st.integers(0, 4),
)
queues_st = st.lists(queue_st, max_size=8, unique_by=lambda x: x.name)
needs_st = st.builds(
    Needs,
    memory_mb=st.integers(100, 64000),
    cores=st.integers(1, 16),
    walltime_s=st.floats(1, 100000),
    gpus=st.integers(0, 2),
    include=st.lists(st.sampled_from([f"q{i}" for i in range(22)]), max_size=4).map(tuple),
    exclude=st.lists(st.sampled_from([f"q{i}" for i in range(22)]), max_size=2).map(tuple),
)
loads_st = st.dictionaries(
    st.sampled_from([f"q{i}" for i in range(21)]),
    st.builds(Load, running=st.integers(0, 1000), queued=st.integers(0, 10000)),
)


@settings(max_examples=300)
@given(needs_st, queues_st, loads_st)
def test_chosen_queue_is_eligible_and_fits(
    needs: Needs, queues: list[Queue], loads: dict[str, Load]
) -> None:
    decision = broker(needs, queues, loads)
    eligible = [x for x in queues if rejection(needs, x) is None]
    # a choice is made exactly when some queue is eligible
    assert (decision.queue is None) == (not eligible)
    if decision.queue is None:
        assert decision.reason
        return
    chosen = next(x for x in queues if x.name == decision.queue)
    # the chosen queue fits and is allowed
    assert misfits(needs, chosen) == []
    assert chosen.status is QueueStatus.ONLINE or chosen.name in needs.include
    assert chosen.status is not QueueStatus.OFFLINE
    assert chosen.name not in needs.exclude
    assert not needs.include or chosen.name in needs.include
    assert needs.memory_mb <= chosen.pilot_resources.memory_mb
    assert needs.cores <= chosen.cores_limit
    # and no eligible queue weighs more
    best = weight(loads.get(chosen.name, Load()))
    assert all(weight(loads.get(x.name, Load())) <= best for x in eligible)
    assert decision.ranking[0][0] == chosen.name
    assert [w for _, w in decision.ranking] == sorted(
        (w for _, w in decision.ranking), reverse=True
    )


@given(needs_st, queues_st, loads_st)
def test_broker_is_deterministic_in_queue_order(
    needs: Needs, queues: list[Queue], loads: dict[str, Load]
) -> None:
    assert broker(needs, queues, loads) == broker(needs, list(reversed(queues)), loads)
