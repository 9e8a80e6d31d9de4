"""The intake handler: a submission by message is validated as a task file is, and one key of
one owner makes one task or workflow, however often it comes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skypanda.domain.errors import InvalidInput
from skypanda.domain.events import Submission
from skypanda.domain.models import Queue
from skypanda.handlers import intake
from skypanda.handlers.services import Services
from tests.support import FakeClock, sqlite_services

TASK = "name: hello\ncommand: [echo, hi]\nn_jobs: 2\nqueue: local\n"
WORKFLOW = """name: flow
tasks:
  - name: a
    command: [echo, a]
    n_jobs: 1
    queue: local
  - name: b
    command: [echo, b]
    n_jobs: 1
    queue: local
    after: [a]
"""


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    with sqlite_services(tmp_path, FakeClock(), Queue(name="local")) as services:
        yield services


def _sub(body: str = TASK, *, key: str = "k1", owner: str = "alice", **kw: str) -> Submission:
    fields = {"kind": "task", "body": body, "key": key, "owner": owner,
              "content_type": "application/yaml", **kw}  # fmt: skip
    return Submission.model_validate(fields)


def test_a_task_is_stored_under_an_id_derived_from_owner_and_key(svc: Services) -> None:
    # When alice's submission is handled
    intake.handle(svc, _sub())
    # Then her task is stored, registered, under the id her key makes
    task = svc.tasks.get_task(intake.submission_id("task", "alice", "k1"))
    assert (task.owner, task.spec.name, task.n_jobs) == ("alice", "hello", 2)


def test_the_same_key_handled_three_times_makes_one_task(svc: Services) -> None:
    # When the same submission is delivered three times, and republished with another body
    for _ in range(3):
        intake.handle(svc, _sub())
    intake.handle(svc, _sub(TASK.replace("hello", "again")))
    # Then there is one task: the first
    tasks = svc.tasks.list_tasks()
    assert [t.spec.name for t in tasks] == ["hello"]


def test_keys_are_per_owner(svc: Services) -> None:
    intake.handle(svc, _sub(owner="alice"))
    intake.handle(svc, _sub(owner="bob"))
    assert sorted(t.owner for t in svc.tasks.list_tasks()) == ["alice", "bob"]


def test_a_workflow_is_stored_once_per_key(svc: Services) -> None:
    for _ in range(2):
        intake.handle(svc, _sub(WORKFLOW, kind="workflow"))
    (wf,) = svc.workflows.list_workflows()
    assert wf.id == intake.submission_id("workflow", "alice", "k1")
    assert {t.spec.name for t in svc.workflows.workflow_tasks(wf.id)} == {"a", "b"}


def test_json_is_taken_as_a_json_task_file_is(svc: Services) -> None:
    body = '{"name": "j", "command": ["true"], "n_jobs": 1, "queue": "local"}'
    intake.handle(svc, _sub(body, content_type="application/json"))
    assert [t.spec.name for t in svc.tasks.list_tasks()] == ["j"]


@pytest.mark.parametrize(
    ("body", "fields", "says"),
    [
        ("name: [unclosed", {}, "not valid YAML"),
        (TASK + "colour: blue\n", {}, "colour"),
        (TASK.replace("local", "nowhere"), {}, "unknown queue 'nowhere'"),
        (WORKFLOW, {}, "this is a workflow"),
        (TASK, {"kind": "workflow"}, "a workflow needs a tasks: list"),
        (TASK, {"kind": "job"}, "kind must be one of"),
        (TASK, {"content_type": "text/plain"}, "content_type must be one of"),
    ],
)
def test_a_bad_submission_is_refused_and_nothing_is_stored(
    svc: Services, body: str, fields: dict[str, str], says: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        intake.handle(svc, _sub(body, **fields))
    assert says in refused.value.message
    assert not refused.value.retryable
    assert svc.tasks.list_tasks() == [] and svc.workflows.list_workflows() == []
