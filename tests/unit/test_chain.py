"""`start_after` (domain.chain): one trigger, end statuses of its kind, and the decision."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from skypanda.domain.chain import StartAfter
from skypanda.domain.errors import InvalidInput
from skypanda.formats.taskfile import parse_task, parse_workflow


def test_the_default_status_is_done_and_one_status_may_be_a_string() -> None:
    assert StartAfter(task="t1").status == ["done"]
    assert StartAfter.model_validate({"task": "t1", "status": "failed"}).status == ["failed"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "give task: ID or workflow: ID"),
        ({"task": "t1", "workflow": "w1"}, "give task: ID or workflow: ID"),
        ({"task": "t1", "status": "running"}, "running is not an end of a task"),
        ({"workflow": "w1", "status": "finished"}, "finished is not an end of a workflow"),
        ({"task": "t1", "status": []}, "at least 1 item"),
        ({"task": "../etc"}, "string should match pattern"),
    ],
)
def test_a_bad_start_after_says_what_is_wrong(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=f"(?i){message}"):
        StartAfter.model_validate(data)


def test_the_decision_and_its_reasons_name_the_trigger() -> None:
    after = StartAfter(workflow="w1", status=["done", "failed"])

    assert after.starts_on("failed")
    assert not after.starts_on("aborted")
    assert after.waiting_reason() == "waiting for workflow w1 to end done or failed"
    assert after.not_started_reason("aborted") == (
        "not started: workflow w1 ended aborted (start_after wanted done or failed)"
    )


def test_task_and_workflow_files_carry_start_after() -> None:
    task = parse_task("name: b\ncommand: [x]\nn_jobs: 1\nstart_after: {task: t1}\n")
    assert task.start_after == StartAfter(task="t1")
    wf = parse_workflow(
        "name: w\nstart_after: {workflow: w1, status: [done, failed]}\n"
        "tasks: [{name: a, command: [x], n_jobs: 1}]\n"
    )
    assert wf.start_after == StartAfter(workflow="w1", status=["done", "failed"])


def test_a_workflow_task_cannot_have_its_own_start_after() -> None:
    text = "name: w\ntasks: [{name: a, command: [x], n_jobs: 1, start_after: {task: t1}}]\n"
    with pytest.raises(InvalidInput, match="give it to the workflow, not to its task"):
        parse_workflow(text)
