"""Specification of the splitter: how a task is cut into jobs and how each job's argv is made."""

import itertools
import re
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from skypanda.domain.errors import InvalidInput
from skypanda.domain.models import JobSpec, TaskSpec
from skypanda.domain.splitter import check_command, check_split, count_jobs, render, split


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
    assert (
        "known: {first_event}, {index}, {input}, {inputs}, {iteration}, {n_events}, "
        "{skip_events}, {task}"
    ) in info.value.message


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


# --- split by events ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "ranges"),
    [
        pytest.param({"n_events": 10, "events_per_job": 5}, [(0, 5), (5, 5)], id="exact"),
        pytest.param(
            {"n_events": 12, "events_per_job": 5}, [(0, 5), (5, 5), (10, 2)], id="last-shorter"
        ),
        pytest.param(
            {"n_events": 3, "events_per_job": 5, "first_event": 100}, [(100, 3)], id="offset"
        ),
        pytest.param({"n_events": 1, "events_per_job": 1}, [(0, 1)], id="one-event"),
    ],
)
def test_events_without_inputs_cut_consecutive_ranges(
    fields: dict[str, Any], ranges: list[tuple[int, int]]
) -> None:
    # Given an event-generation task (no inputs)
    task = spec(["gen", "{first_event}", "{n_events}", "{skip_events}"], **fields)

    # When it is split, Then each job covers the next range; nothing is skipped without files
    jobs = list(split(task))
    assert [job.command for job in jobs] == [["gen", str(f), str(n), "0"] for f, n in ranges]
    assert all(job.inputs == [] for job in jobs)
    assert count_jobs(task) == len(ranges)


def test_events_per_input_cuts_each_file_and_no_job_spans_two_files() -> None:
    # Given two files of 5 events each, 2 events per job, event numbers from 100
    task = spec(
        ["sim", "{input}", "{first_event}", "{skip_events}", "{n_events}"],
        inputs=["a.evnt", "b.evnt"],
        events_per_input=5,
        events_per_job=2,
        first_event=100,
    )

    # When it is split
    jobs = list(split(task))

    # Then each file is cut into 2+2+1 events; numbers run on across files; skip is per file
    assert [job.command[1:] for job in jobs] == [
        ["a.evnt", "100", "0", "2"],
        ["a.evnt", "102", "2", "2"],
        ["a.evnt", "104", "4", "1"],
        ["b.evnt", "105", "0", "2"],
        ["b.evnt", "107", "2", "2"],
        ["b.evnt", "109", "4", "1"],
    ]
    assert [job.inputs for job in jobs] == [["a.evnt"]] * 3 + [["b.evnt"]] * 3
    assert count_jobs(task) == 6


# --- split by size -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "limit", "groups"),
    [
        pytest.param([1, 2, 3, 4], 5, [[0, 1], [2], [3]], id="greedy-in-order"),
        pytest.param([5, 5], 5, [[0], [1]], id="exactly-the-limit"),
        pytest.param([1, 9, 1, 1], 5, [[0], [1], [2, 3]], id="too-big-alone"),
        pytest.param([0, 0, 0], 1, [[0, 1, 2]], id="empty-files"),
        pytest.param([2.5, 2.5, 0.1], 5, [[0, 1], [2]], id="fractions"),
    ],
)
def test_size_groups_inputs_greedily_up_to_the_limit(
    sizes: list[float], limit: float, groups: list[list[int]]
) -> None:
    # Given inputs with sizes and a size limit per job
    names = [f"f{i}" for i in range(len(sizes))]
    task = spec(["run", "{inputs}"], inputs=names, input_sizes_mb=sizes, size_per_job_mb=limit)

    # When it is split, Then inputs are grouped in order; an input over the limit is alone
    jobs = list(split(task))
    assert [job.inputs for job in jobs] == [[names[i] for i in g] for g in groups]
    assert [job.command for job in jobs] == [["run", *job.inputs] for job in jobs]
    assert count_jobs(task) == len(groups)


# --- an explicit job list ----------------------------------------------------------------------


def test_an_explicit_job_list_makes_one_job_per_entry() -> None:
    task = spec(["run", "{index}", "{input}"], jobs=[["a", "b"], ["c"], ["a"]])
    jobs = list(split(task))
    assert jobs == [
        JobSpec(index=0, command=["run", "0", "a,b"], inputs=["a", "b"]),
        JobSpec(index=1, command=["run", "1", "c"], inputs=["c"]),
        JobSpec(index=2, command=["run", "2", "a"], inputs=["a"]),
    ]
    assert count_jobs(task) == 3


# --- one split mode per task -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        pytest.param({"n_jobs": 2, "n_events": 4, "events_per_job": 1}, "one split mode", id="2"),
        pytest.param({"jobs": [["a"]], "n_jobs": 1}, "jobs, not several", id="jobs-n_jobs"),
        pytest.param({"inputs": ["a"], "jobs": [["a"]]}, "jobs or inputs", id="jobs-inputs"),
        pytest.param(
            {"inputs": ["a"], "n_events": 4, "events_per_job": 1},
            "events_per_input",
            id="n_events-with-inputs",
        ),
        pytest.param({"n_events": 4}, "n_events needs events_per_job", id="no-events_per_job"),
        pytest.param(
            {"inputs": ["a"], "events_per_input": 4},
            "events_per_input needs events_per_job",
            id="per-input-no-per-job",
        ),
        pytest.param(
            {"events_per_input": 4, "events_per_job": 1},
            "events_per_input needs inputs",
            id="per-input-no-inputs",
        ),
        pytest.param(
            {"inputs": ["a"], "events_per_input": 4, "events_per_job": 5},
            "never spans input files",
            id="job-larger-than-file",
        ),
        pytest.param(
            {"n_jobs": 2, "events_per_job": 2},
            "events_per_job and first_event need",
            id="events_per_job-without-events",
        ),
        pytest.param({"inputs": ["a"], "first_event": 3}, "first_event need", id="stray-first"),
        pytest.param(
            {"inputs": ["a"], "size_per_job_mb": 3}, "needs input_sizes_mb", id="size-without-sizes"
        ),
        pytest.param(
            {"inputs": ["a"], "input_sizes_mb": [1]},
            "needs size_per_job_mb",
            id="sizes-without-limit",
        ),
        pytest.param(
            {"inputs": ["a", "b"], "input_sizes_mb": [1], "size_per_job_mb": 3},
            "1 sizes for 2 inputs",
            id="sizes-length",
        ),
        pytest.param(
            {"size_per_job_mb": 3, "input_sizes_mb": [1]},
            "size_per_job_mb needs inputs",
            id="size-without-inputs",
        ),
        pytest.param(
            {"inputs": ["a"], "input_sizes_mb": [-1], "size_per_job_mb": 3},
            "greater than or equal",
            id="negative-size",
        ),
        pytest.param(
            {
                "inputs": ["a", "b"],
                "files_per_job": 2,
                "input_sizes_mb": [1, 1],
                "size_per_job_mb": 3,
            },
            "combined with size_per_job_mb",
            id="files-and-size",
        ),
        pytest.param({"jobs": []}, "at least 1", id="empty-job-list"),
        pytest.param({"jobs": [["a"], []]}, "at least 1", id="job-without-inputs"),
        pytest.param({}, "give either inputs", id="no-mode"),
    ],
)
def test_split_fields_are_validated_with_messages_naming_them(
    fields: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(says)):
        spec(**fields)


def test_event_placeholders_need_a_task_split_by_events() -> None:
    task = spec(["run", "{input}", "{n_events}"], inputs=["a"])
    with pytest.raises(InvalidInput, match=re.escape("uses {n_events}, but only a task split")):
        next(split(task))


def test_staged_inputs_are_checked_per_job_in_every_mode() -> None:
    # Given staged inputs with the same local name: fine in separate jobs, refused in one
    same = ["gs://a/x.root", "gs://b/x.root"]
    check_split(spec(inputs=same, input_sizes_mb=[1, 1], size_per_job_mb=1, stage_in=True))
    with pytest.raises(InvalidInput, match="both be staged in"):
        check_split(spec(inputs=same, input_sizes_mb=[1, 1], size_per_job_mb=2, stage_in=True))
    with pytest.raises(InvalidInput, match="both be staged in"):
        check_split(spec(jobs=[same], stage_in=True))
    with pytest.raises(InvalidInput, match="event placeholders"):
        check_split(
            spec(
                ["sim", "{first_event}"],
                inputs=same,
                events_per_input=2,
                events_per_job=1,
                stage_in=True,
            )
        )


def test_counting_a_huge_event_task_makes_no_jobs() -> None:
    # Given a task of 10^15 events, one per job
    task = spec(["gen", "{first_event}"], n_events=10**15, events_per_job=1)
    # When its jobs are counted, Then it is immediate; the first job is made lazily
    started = time.perf_counter()
    assert count_jobs(task) == 10**15
    assert next(split(task)).command == ["gen", "0"]
    assert time.perf_counter() - started < 1.0


# --- properties of the new modes ---------------------------------------------------------------


@settings(max_examples=150)
@given(
    n_events=st.integers(min_value=1, max_value=500),
    events_per_job=st.integers(min_value=1, max_value=60),
    first_event=st.integers(min_value=0, max_value=10**6),
)
def test_event_ranges_partition_the_events_exactly(
    n_events: int, events_per_job: int, first_event: int
) -> None:
    # Given any event count, job size and offset
    task = spec(
        ["gen", "{first_event}", "{n_events}"],
        n_events=n_events,
        events_per_job=events_per_job,
        first_event=first_event,
    )
    # When split
    jobs = list(split(task))
    # Then the ranges, in order, are consecutive and cover [first, first + n) exactly
    ranges = [(int(j.command[1]), int(j.command[2])) for j in jobs]
    expected_first = first_event
    for first, count in ranges:
        assert first == expected_first
        assert 1 <= count <= events_per_job
        expected_first += count
    assert expected_first == first_event + n_events
    assert all(count == events_per_job for _, count in ranges[:-1])
    assert count_jobs(task) == len(jobs)


@settings(max_examples=100)
@given(
    n_files=st.integers(min_value=1, max_value=20),
    events_per_input=st.integers(min_value=1, max_value=40),
    data=st.data(),
)
def test_events_per_input_partition_each_file_and_all_events(
    n_files: int, events_per_input: int, data: st.DataObject
) -> None:
    events_per_job = data.draw(st.integers(min_value=1, max_value=events_per_input))
    inputs = [f"f{i}" for i in range(n_files)]
    task = spec(
        ["sim", "{first_event}", "{n_events}", "{skip_events}"],
        inputs=inputs,
        events_per_input=events_per_input,
        events_per_job=events_per_job,
    )
    jobs = list(split(task))
    # Every job reads one file; files come in order; within a file, skip runs 0..events_per_input
    assert all(len(j.inputs) == 1 for j in jobs)
    assert [name for name, _ in itertools.groupby(j.inputs[0] for j in jobs)] == inputs
    next_event = 0
    for job in jobs:
        first, count, skip = (int(w) for w in job.command[1:])
        file_index = inputs.index(job.inputs[0])
        assert first == next_event == file_index * events_per_input + skip
        assert 1 <= count <= events_per_job and skip + count <= events_per_input
        next_event += count
    assert next_event == n_files * events_per_input
    assert count_jobs(task) == len(jobs)


@settings(max_examples=150)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=100), min_size=1, max_size=60),
    limit=st.integers(min_value=1, max_value=150),
)
def test_size_groups_never_exceed_the_limit_unless_one_input_does(
    sizes: list[int], limit: int
) -> None:
    inputs = [f"f{i}" for i in range(len(sizes))]
    task = spec(["run", "{inputs}"], inputs=inputs, input_sizes_mb=sizes, size_per_job_mb=limit)
    jobs = list(split(task))
    # Every input is in exactly one job, in order
    assert [name for job in jobs for name in job.inputs] == inputs
    size_of = dict(zip(inputs, sizes, strict=True))
    totals = [sum(size_of[n] for n in job.inputs) for job in jobs]
    for job, total in zip(jobs, totals, strict=True):
        assert job.inputs  # no empty job
        assert total <= limit or len(job.inputs) == 1
    # And greedy: the next job's first input would not have fitted in the previous job
    for (prev, total), job in zip(zip(jobs, totals, strict=True), jobs[1:], strict=False):
        assert total + size_of[job.inputs[0]] > limit, prev.inputs
    assert count_jobs(task) == len(jobs)


@settings(max_examples=100)
@given(groups=st.lists(st.lists(input_names, min_size=1, max_size=5), min_size=1, max_size=30))
def test_an_explicit_job_list_keeps_every_entry_in_order(groups: list[list[str]]) -> None:
    task = spec(["run", "{inputs}"], jobs=groups)
    jobs = list(split(task))
    assert [job.inputs for job in jobs] == groups
    assert [job.index for job in jobs] == list(range(count_jobs(task)))
