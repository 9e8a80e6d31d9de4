"""User regexes (retry rules' `pattern`, workflow `keys`) run in linear time (issue 13).

Python's `re` backtracks: `(a+)+$` against 22 a's and a `!` takes about half a second here, and
every further `a` doubles it, so at 40 characters it runs for days while holding the GIL (the
whole server frozen). None of these tests runs `re` on such a pattern; they show that the
patterns skypanda compiles answer at once, that what RE2 cannot do (or would read differently)
is refused at submission with a message naming the field, and that the semantics users rely on
(search in a diagnosis, every match of a key, its group 1) are the same as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from skypanda.domain.dag import key_index, key_values
from skypanda.domain.errors import InvalidInput
from skypanda.domain.models import Resources, RetryRule, TaskSpec
from skypanda.domain.patterns import (
    MAX_PATTERN_CHARS,
    MAX_SUBJECT_CHARS,
    compile_user_pattern,
    subject,
)
from skypanda.domain.retry import Limits, decide
from skypanda.domain.workflow import WorkflowSpec, WorkflowTask

# (pattern, a text it backtracks on in Python's re: no match where every split is tried)
CATASTROPHIC = [
    ("(a+)+$", "a" * 40 + "!"),
    ("(a|aa)+b", "a" * 50),
    ("(x+x+)+y", "x" * 45),
    ("^(a+)+$", "a" * 30 + "b"),
]
WITHIN_S = 2.0  # generous: re2 takes microseconds, the machine may be busy


def _within(seconds: float, work: Callable[[], Any]) -> Any:
    """`work()`'s result, run in a thread; AssertionError if it took longer than `seconds`."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(work()), daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still matching after {seconds} s"
    assert out, "the work raised"
    assert time.monotonic() - started < seconds
    return out[0]


def _task(**fields: Any) -> dict[str, Any]:
    return {"name": "t", "command": ["true"], "n_jobs": 1, **fields}


def _wtask(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": ["true"], **fields}


# --- catastrophic patterns answer at once ------------------------------------------------------


@pytest.mark.parametrize(("pattern", "text"), CATASTROPHIC)
def test_a_catastrophic_retry_pattern_is_searched_at_once(pattern: str, text: str) -> None:
    # Given a task whose retry rule has a backtracking pattern, accepted at submission
    spec = TaskSpec.model_validate(_task(retry_rules=[{"pattern": pattern, "action": "no_retry"}]))

    # When a failed attempt's diagnosis is the text it backtracks on (and the same, long)
    def both() -> list[bool]:
        return [
            decide(
                spec.retry_rules, error_code=9000, exit_code=1, diag=diag, failures=0,
                resources=Resources(), limits=Limits(memory_mb=4000),
            ).retry
            for diag in (text, f"payload said: {text * 90}"[:4000])
        ]  # fmt: skip

    # Then the rule is decided within the bound: it does not match, so the job is retried
    assert _within(WITHIN_S, both) == [True, True]


@pytest.mark.parametrize(("pattern", "text"), CATASTROPHIC)
def test_a_catastrophic_key_is_read_from_inputs_at_once(pattern: str, text: str) -> None:
    # Given a workflow task whose key has a backtracking pattern, over inputs it backtracks on
    task = WorkflowTask.model_validate(
        _wtask("a", inputs=[f"{text}/{i}" for i in range(50)], keys={"k": pattern})
    )
    # When the key's values are read from every job's inputs, Then it ends within the bound,
    # finding none (no input matches)
    assert _within(WITHIN_S, lambda: key_index(task, "k")) == {}


def test_a_catastrophic_pattern_still_finds_a_match_after_the_trap() -> None:
    # Given the trap followed by a real match (Python's re would try every split of the x's
    # first), When searched, Then the match is found, at once
    pattern = compile_user_pattern("(x+x+)+y", "pattern")
    m = _within(WITHIN_S, lambda: pattern.search("x" * 45 + "!" + "xxy"))
    assert m is not None and m.group(0) == "xxy" and m.group(1) == "xx"


# --- refused at submission, with a message naming the field --------------------------------


REFUSED = [
    ("(a)\\1", "invalid escape sequence: \\1"),  # backreference
    ("(?P<x>a)(?P=x)", "invalid perl operator"),  # named backreference
    ("(?=a)a", "invalid perl operator: (?="),  # lookahead
    ("(?<!a)b", "invalid perl operator: (?<"),  # lookbehind
    ("(?>a+)b", "invalid perl operator"),  # atomic group
    ("a++b", "bad repetition operator"),  # possessive
    ("(?x) a b", "invalid perl operator"),  # verbose
    ("a\\Z", "write \\z for the end of the text"),
    ("a{,3}", "write {0,n} for at most n repetitions"),  # RE2 would read it as text
    ("\\C", "\\C (any byte) can split a character"),
    ("\\u00e9", "write \\x{hhhh}"),
    ("a{1001}", "invalid repetition size"),
    ("\\pL{1000}", "pattern too large"),
    ("(", "missing )"),
]


@pytest.mark.parametrize(("pattern", "says"), REFUSED)
def test_a_retry_pattern_re2_cannot_run_is_refused_at_submission(pattern: str, says: str) -> None:
    with pytest.raises(ValidationError) as e:
        TaskSpec.model_validate(_task(retry_rules=[{"pattern": pattern, "action": "retry"}]))
    (error,) = e.value.errors()
    assert error["loc"] == ("retry_rules", 0)
    assert "bad pattern" in error["msg"] and says in error["msg"]
    assert "RE2 syntax: no backreferences or lookaround" in error["msg"]


@pytest.mark.parametrize(("pattern", "says"), REFUSED)
def test_a_key_re2_cannot_run_is_refused_at_submission(pattern: str, says: str) -> None:
    spec = {"name": "w", "tasks": [_wtask("a", inputs=["v1"], keys={"visit": pattern})]}
    with pytest.raises(ValidationError) as e:
        WorkflowSpec.model_validate(spec)
    (error,) = e.value.errors()
    assert error["loc"] == ("tasks", 0, "keys")
    assert "key 'visit': bad regular expression" in error["msg"] and says in error["msg"]
    assert "RE2 syntax: no backreferences or lookaround" in error["msg"]


def test_a_pattern_longer_than_the_limit_is_refused_before_it_is_compiled() -> None:
    with pytest.raises(InvalidInput, match=f"at most {MAX_PATTERN_CHARS:,}") as e:
        compile_user_pattern("a" * (MAX_PATTERN_CHARS + 1), "pattern")
    assert e.value.context == {"field": "pattern"}
    assert compile_user_pattern("a" * MAX_PATTERN_CHARS, "pattern").search("a" * 1000)


def test_a_pattern_that_is_not_valid_unicode_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not valid Unicode"):
        compile_user_pattern("a\ud800", "pattern")


@pytest.mark.parametrize("pattern", ["a\\{,3}", "[{]", "x{,", "x{,y}", "\\\\{2}", "a{0,3}"])
def test_braces_re2_reads_like_python_are_accepted(pattern: str) -> None:
    assert compile_user_pattern(pattern, "pattern") is not None


# --- the same semantics as before ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "diag", "matched"),
    [
        ("bad config", "x: bad config line 3", True),  # searched anywhere, not matched
        ("^bad config", "x: bad config", False),
        ("config$", "bad config", True),
        ("(?i)OUT OF MEMORY", "payload: out of memory", True),
        ("killed by signal (SIGKILL|SIGTERM)", "killed by signal SIGKILL (exit code -9)", True),
        ("exit code \\d+$", "exit code 137", True),
        ("", "anything", True),
    ],
)
def test_a_retry_pattern_is_searched_in_the_diagnosis(
    pattern: str, diag: str, matched: bool
) -> None:
    rule = RetryRule(pattern=pattern, codes=[9000], action="no_retry")
    d = decide(
        [rule], error_code=9000, exit_code=1, diag=diag, failures=0,
        resources=Resources(), limits=Limits(memory_mb=4000),
    )  # fmt: skip
    assert d.retry is not matched


@pytest.mark.parametrize(
    ("pattern", "inputs", "values"),
    [
        (r"v(\d+)", ["v101/d1"], {"101"}),  # group 1
        (r"v\d+", ["v101/d1"], {"v101"}),  # no group: the whole match
        (r"(?P<visit>\d+)", ["v7p8"], {"7", "8"}),  # a named group is group 1
        (r"p(\d+)", ["v101:p1+p2"], {"1", "2"}),  # every match in an input
        (r"v(\d+)?", ["v", "v7"], {"7"}),  # an optional group that did not take part: none
        (r"^(\w+)/", ["é/1", "a/1"], {"a"}),  # \w is ASCII (RE2)
        (r"^([\pL\pN_]+)/", ["é/1"], {"é"}),  # ... Unicode when asked
        (r"(é+)", ["xéé"], {"éé"}),  # values are characters, not bytes
    ],
)
def test_key_values_are_every_match_or_its_group_one(
    pattern: str, inputs: list[str], values: set[str]
) -> None:
    assert key_values(compile_user_pattern(pattern, "regular expression"), inputs) == values


def test_a_key_with_two_groups_is_still_refused() -> None:
    with pytest.raises(ValidationError, match="key 'k': use at most one group"):
        WorkflowTask.model_validate(_wtask("a", inputs=["v1"], keys={"k": "(v)(?P<n>\\d)"}))


def test_a_pattern_is_compiled_once_and_reused() -> None:
    first = compile_user_pattern("v(\\d+)-cached", "pattern")
    assert compile_user_pattern("v(\\d+)-cached", "regular expression") is first


# --- bounded subjects --------------------------------------------------------------------------


def test_a_diagnosis_is_searched_in_its_first_16_kib() -> None:
    # Given a match just inside and one just outside the bound
    inside = "x" * (MAX_SUBJECT_CHARS - 6) + "needle"
    outside = "x" * MAX_SUBJECT_CHARS + "needle"
    pattern = compile_user_pattern("needle", "pattern")
    # Then only the first is found
    assert pattern.search(subject(inside)) is not None
    assert pattern.search(subject(outside)) is None


def test_a_lone_surrogate_in_a_text_is_read_as_a_replacement_character() -> None:
    # Given an input that JSON can carry but UTF-8 (and so RE2) cannot
    text = "v1\ud800v2"
    # When a key is read from it, Then it is read, the surrogate as U+FFFD, nothing else moved
    assert subject(text) == "v1\ufffdv2"
    assert key_values(compile_user_pattern(r"v(\d)", "regular expression"), [text]) == {
        "1",
        "2",
    }
