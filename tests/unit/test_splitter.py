"""Specification of the splitter: how a task is cut into jobs and how each job's argv is made."""

import itertools
import re
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skypanda.domain.errors import InvalidInput
from skypanda.domain.models import JobSpec, TaskSpec
from skypanda.domain.splitter import check_command, count_jobs, render, split


def spec(command: list[str] | None = None, **fields: Any) -> TaskSpec:
    return TaskSpec(name="reco", command=command or ["run", "{input}"], **fields)


# --- cutting a task into jobs ------------------------------------------------------------------


def test_one_job_per_input_by_default() -> None:
    # Given a task with three inputs and the default files_per_job
    task = spec(["run", "{input}"], inputs=["a.root", "b.root", "c.root"])

    # When it is split
    jobs = list(split(task))

    # Then there is one job per input, in order, indexed from 0
    assert jobs == [
        JobSpec(index=0, command=["run", "a.root"], inputs=["a.root"]),
        JobSpec(index=1, command=["run", "b.root"], inputs=["b.root"]),
        JobSpec(index=2, command=["run", "c.root"], inputs=["c.root"]),
    ]


def test_files_per_job_groups_inputs_and_the_last_group_may_be_smaller() -> None:
    # Given five inputs, two per job
    task = spec(["run", "{inputs}"], inputs=["a", "b", "c", "d", "e"], files_per_job=2)

    # When it is split
    jobs = list(split(task))

    # Then inputs are grouped in order and the last group holds the remainder
    assert [job.inputs for job in jobs] == [["a", "b"], ["c", "d"], ["e"]]
    assert [job.index for job in jobs] == [0, 1, 2]
    assert [job.command for job in jobs] == [["run", "a", "b"], ["run", "c", "d"], ["run", "e"]]
    assert count_jobs(task) == 3


def test_files_per_job_larger_than_the_inputs_makes_one_job() -> None:
    task = spec(inputs=["a", "b"], files_per_job=10)
    assert [job.inputs for job in split(task)] == [["a", "b"]]


def test_n_jobs_without_inputs_makes_that_many_jobs_with_no_inputs() -> None:
    # Given a task with n_jobs and no inputs
    task = spec(["gen", "--seed={index}", "{task}"], n_jobs=4)

    # When it is split
    jobs = list(split(task))

    # Then there are n_jobs jobs with no inputs, each told its index
    assert [job.index for job in jobs] == [0, 1, 2, 3]
    assert all(job.inputs == [] for job in jobs)
    assert [job.command for job in jobs] == [["gen", f"--seed={i}", "reco"] for i in range(4)]
    assert all(job.parents == [] for job in jobs)


@pytest.mark.parametrize(
    "task",
    [
        spec(inputs=["a"]),
        spec(inputs=list("abcdefg"), files_per_job=3),
        spec(inputs=list("abcdef"), files_per_job=3),
        spec(inputs=list("abc"), files_per_job=100),
        spec(n_jobs=1),
        spec(n_jobs=17),
    ],
    ids=["1-input", "7-by-3", "6-by-3", "3-by-100", "n_jobs=1", "n_jobs=17"],
)
def test_count_jobs_is_the_number_of_jobs_split_yields(task: TaskSpec) -> None:
    assert count_jobs(task) == len(list(split(task)))


def test_split_is_lazy() -> None:
    # Given a task with ten million jobs
    task = spec(["gen", "{index}"], n_jobs=10_000_000)

    # When we take the first three jobs
    started = time.monotonic()
    first = list(itertools.islice(split(task), 3))
    elapsed = time.monotonic() - started

    # Then they come at once: nothing else was made
    assert [job.command for job in first] == [["gen", "0"], ["gen", "1"], ["gen", "2"]]
    assert elapsed < 1.0
    # And counting does not need the jobs either
    assert count_jobs(task) == 10_000_000


# --- placeholders ------------------------------------------------------------------------------


def test_input_placeholder_is_the_inputs_joined_by_commas() -> None:
    argv = render(["run", "--in={input}"], task="t", index=0, inputs=["a", "b", "c"])
    assert argv == ["run", "--in=a,b,c"]


def test_inputs_placeholder_expands_into_one_word_per_input() -> None:
    argv = render(["run", "{inputs}", "--fast"], task="t", index=0, inputs=["a", "b"])
    assert argv == ["run", "a", "b", "--fast"]


def test_input_placeholders_are_empty_when_a_job_has_no_inputs() -> None:
    # With n_jobs there are no files: {input} is empty and {inputs} yields no word
    argv = render(["run", "{inputs}", "x{input}x"], task="t", index=5, inputs=[])
    assert argv == ["run", "xx"]


def test_index_and_task_placeholders() -> None:
    argv = render(["run", "{task}-{index}.out", "{index}"], task="reco", index=7, inputs=["a"])
    assert argv == ["run", "reco-7.out", "7"]


def test_doubled_braces_are_literal_braces() -> None:
    # Given a command with escaped braces (e.g. a shell or JSON fragment)
    command = ["sh", "-c", "echo {{a}} ${{HOME}} {index}", '{{"k": "{input}"}}']

    # When it is checked and rendered, Then the escapes become single braces
    check_command(command)
    argv = render(command, task="t", index=2, inputs=["f"])
    assert argv == ["sh", "-c", "echo {a} ${HOME} 2", '{"k": "f"}']


def test_input_values_are_not_interpreted_as_placeholders() -> None:
    # Braces inside input names are data, not format fields
    argv = render(["run", "{input}", "{inputs}"], task="t", index=0, inputs=["{index}", "}{"])
    assert argv == ["run", "{index},}{", "{index}", "}{"]


def test_a_command_without_placeholders_is_the_same_for_every_job() -> None:
    jobs = list(split(spec(["true"], inputs=["a", "b"])))
    assert [job.command for job in jobs] == [["true"], ["true"]]
    assert [job.inputs for job in jobs] == [["a"], ["b"]]


# --- bad placeholders --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "problem"),
    [
        ("{foo}", "unknown placeholder {foo}"),
        ("--x={Input}", "unknown placeholder {Input}"),
        ("{}", "unknown placeholder {}"),
        ("{0}", "unknown placeholder {0}"),
        ("{input.name}", "unknown placeholder {input.name}"),
        ("{input[0]}", "unknown placeholder {input[0]}"),
        ("{", "Single '{'"),
        ("}", "Single '}'"),
        ("a{index", "expected '}'"),
        ("--files={inputs}", "{inputs} must stand alone"),
        ("{inputs}{inputs}", "{inputs} must stand alone"),
        ("{inputs},", "{inputs} must stand alone"),
        ("{inputs!r}", "{inputs} must stand alone"),
    ],
)
def test_bad_placeholders_are_rejected_naming_the_word(word: str, problem: str) -> None:
    # Given a command whose second word is bad
    command = ["run", word, "{index}"]

    # When it is checked, Then InvalidInput names command[1], the word and the problem
    with pytest.raises(InvalidInput, match=re.escape(f"command[1] {word!r}")) as info:
        check_command(command)
    assert problem in info.value.message
    assert info.value.context["field"] == "command.1"


def test_unknown_placeholder_message_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as info:
        check_command(["{nope}"])
    assert "known: {index}, {input}, {inputs}, {iteration}, {task}" in info.value.message


@pytest.mark.parametrize("fields", [{"inputs": ["a", "b"]}, {"n_jobs": 3}])
def test_split_rejects_a_bad_command_before_yielding_any_job(fields: dict[str, Any]) -> None:
    # Given a task whose command has an unknown placeholder
    task = spec(["run", "{input}", "{oops}"], **fields)

    # When we ask for the first job, Then the command is rejected and no job is made
    jobs = split(task)
    with pytest.raises(InvalidInput, match=re.escape("command[2]")):
        next(jobs)


@pytest.mark.parametrize(
    "word",
    ["{index:q}", "{input:d}", "{input!x}", "{index:{nope}}"],
)
def test_placeholders_that_cannot_be_rendered_are_rejected_up_front(word: str) -> None:
    # Given a known placeholder with a conversion or format spec that cannot be applied
    command = ["run", word]

    # When the command is checked, Then InvalidInput names the word, before anything is stored
    with pytest.raises(InvalidInput, match=re.escape(f"command[1] {word!r}")):
        check_command(command)


# --- property: every input in exactly one job --------------------------------------------------

input_names = st.text(alphabet="abcxyz0123456789_./{}", min_size=1, max_size=8)


@settings(max_examples=150)
@given(
    inputs=st.lists(input_names, min_size=1, max_size=60),
    files_per_job=st.integers(min_value=1, max_value=12),
)
def test_every_input_lands_in_exactly_one_job_in_order(
    inputs: list[str], files_per_job: int
) -> None:
    # Given any list of inputs (duplicates allowed) and any group size
    task = spec(
        ["run", "{index}", "{inputs}", "--csv={input}"], inputs=inputs, files_per_job=files_per_job
    )

    # When the task is split
    jobs = list(split(task))

    # Then the groups, concatenated, are the inputs in order: each appears in exactly one job
    assert [name for job in jobs for name in job.inputs] == inputs
    # And indexes are 0..n-1 with n == count_jobs
    assert [job.index for job in jobs] == list(range(count_jobs(task)))
    # And no group is empty or larger than files_per_job; only the last may be smaller
    sizes = [len(job.inputs) for job in jobs]
    assert all(1 <= size <= files_per_job for size in sizes)
    assert all(size == files_per_job for size in sizes[:-1])
    # And each job's argv carries exactly its own inputs
    for job in jobs:
        assert job.command == ["run", str(job.index), *job.inputs, "--csv=" + ",".join(job.inputs)]


@settings(max_examples=50)
@given(n_jobs=st.integers(min_value=1, max_value=300))
def test_n_jobs_yields_indexes_zero_to_n_minus_one(n_jobs: int) -> None:
    jobs = list(split(spec(["gen", "{index}"], n_jobs=n_jobs)))
    assert [job.index for job in jobs] == list(range(n_jobs))
    assert [job.command[1] for job in jobs] == [str(i) for i in range(n_jobs)]
