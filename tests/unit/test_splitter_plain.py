"""A command without placeholders is each job's own copy of it, as rendering would make it."""

from __future__ import annotations

from skypanda.domain.models import TaskSpec
from skypanda.domain.splitter import render, split


def test_a_command_without_braces_is_copied_per_job_as_render_makes_it() -> None:
    # Given a task whose command has no placeholder
    spec = TaskSpec.model_validate(
        {"name": "t", "command": ["run", "--fast", "a=b"], "queue": "q", "inputs": ["x", "y"]}
    )
    # When it is split
    jobs = list(split(spec))
    # Then each job's command is what rendering gives, and a list of its own
    for job in jobs:
        assert job.command == render(spec.command, task="t", index=job.index, inputs=job.inputs)
    assert jobs[0].command is not jobs[1].command
    assert jobs[0].command is not spec.command


def test_escaped_braces_are_still_rendered() -> None:
    # Given literal braces written twice (they are rendered once)
    spec = TaskSpec.model_validate(
        {"name": "t", "command": ["echo", "{{x}}", "{index}"], "queue": "q", "n_jobs": 2}
    )
    # Then the split renders them, as it renders placeholders
    assert [j.command for j in split(spec)] == [["echo", "{x}", "0"], ["echo", "{x}", "1"]]
