"""The embedded store parses a big workflow's or task's spec once while its stored text stays the
same (adapters/local/sqlite/specs.py), and parses it again when the text changes."""

from __future__ import annotations

from pathlib import Path

from skypanda.adapters.local.sqlite import SqliteStore
from skypanda.adapters.local.sqlite.specs import SMALL, SpecCache
from skypanda.domain.models import Task, TaskSpec
from skypanda.domain.states import TaskStatus
from skypanda.domain.workflow import Workflow, WorkflowSpec
from tests.support import FakeClock

from .conftest import make_queue


def _counting() -> tuple[SpecCache[str], list[str]]:
    parsed: list[str] = []

    def parse(text: str) -> str:
        parsed.append(text)
        return text.upper()

    return SpecCache(parse, kept_chars=10 * SMALL), parsed


def test_a_big_text_is_parsed_once_while_it_stays_the_same() -> None:
    cache, parsed = _counting()
    big = "x" * SMALL
    first = cache.parse("t1", big)
    assert cache.parse("t1", "".join(["x"] * SMALL)) is first  # equal text, another string
    assert len(parsed) == 1


def test_a_changed_text_is_parsed_again_and_a_small_one_every_time() -> None:
    cache, parsed = _counting()
    cache.parse("t1", "x" * SMALL)
    assert cache.parse("t1", "y" * SMALL) == "Y" * SMALL  # the same id, a new spec
    cache.parse("t2", "small")
    cache.parse("t2", "small")
    assert len(parsed) == 4


def test_texts_over_the_budget_are_parsed_every_time_and_the_oldest_go_first() -> None:
    cache, parsed = _counting()
    huge = "z" * (11 * SMALL)
    assert cache.parse("t0", huge) == huge.upper()
    assert cache.parse("t0", huge) == huge.upper()  # not kept: larger than the whole budget
    for k in range(6):  # 2 * SMALL characters each: the first ones leave
        cache.parse(f"t{k + 1}", str(k) * (2 * SMALL))
    cache.parse("t1", "0" * (2 * SMALL))
    assert len(parsed) == 2 + 6 + 1


def test_the_store_returns_specs_equal_to_what_was_stored(tmp_path: Path, clock: FakeClock) -> None:
    # Given a workflow and a task with specs big enough to be kept
    store = SqliteStore(tmp_path / "s.db", clock=clock.now)
    try:
        store.put_queue(make_queue("q"))
        inputs = [f"v{i:06d}d{i % 20:03d}" for i in range(2000)]
        body = {"name": "a", "command": ["true"], "queue": "q", "inputs": inputs}
        spec = WorkflowSpec.model_validate({"name": "w", "tasks": [body]})
        wf = Workflow(id="w1", spec=spec, owner="me", created_at=1.0, updated_at=1.0)
        task_spec = TaskSpec.model_validate(body)
        task = Task(id="t1", spec=task_spec, owner="me", n_jobs=2000, created_at=1.0,
                    updated_at=1.0, workflow_id="w1", status=TaskStatus.PENDING)  # fmt: skip
        store.add_workflow(wf, [task], [])
        # When they are read twice
        # Then each read gives the stored spec (the second from the cache)
        for _ in range(2):
            assert store.get_workflow("w1").spec == spec
            assert store.workflow_tasks("w1")[0].spec == task_spec
            assert store.get_task("t1", counts=False).spec == task_spec
        # And a spec changed in the store (a pending task placed) is read as changed
        moved = task_spec.model_copy(update={"queue": "q2"})
        assert store.place_task("t1", moved, [])
        assert store.get_task("t1", counts=False).spec.queue == "q2"
    finally:
        store.close()
