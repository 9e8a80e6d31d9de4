"""Bounds on documents before anything is built from them (formats.limits, api.bodies): alias
bombs, depth, size, text that cannot be stored, non-finite numbers, capped error messages."""

from __future__ import annotations

import json

import pytest
import yaml

from skypanda.api.bodies import parse_json
from skypanda.domain.errors import InvalidInput, summarise
from skypanda.formats.limits import Limits, check_nodes, check_value
from skypanda.formats.taskfile import parse_spec


def _alias_bomb(levels: int = 9, fan: int = 10) -> str:
    """About 1 KB of YAML that expands to fan**levels strings."""
    lines = ['l0: &l0 ["' + "x" * 100 + '"]']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fan) + "]")
    return "\n".join([*lines, "name: bomb", "command: [echo]", f"inputs: *l{levels}", ""])


def test_an_alias_bomb_is_refused_before_it_is_expanded() -> None:
    text = _alias_bomb()
    assert len(text) < 2000
    with pytest.raises(InvalidInput, match="once its aliases are expanded"):
        parse_spec(text, "bomb.yaml")


def test_aliases_that_stay_small_are_fine() -> None:
    text = "name: t\ncommand: [echo]\ninputs: [&v a.fits, *v, b.fits]\n"
    spec = parse_spec(text, "ok.yaml")
    assert spec.inputs == ["a.fits", "a.fits", "b.fits"]  # type: ignore[union-attr]


def test_a_recursive_alias_and_deep_nesting_are_named() -> None:
    with pytest.raises(InvalidInput, match="line 1: a recursive alias"):
        parse_spec("a: &x [*x]\n", "rec.yaml")
    with pytest.raises(InvalidInput, match="nested deeper than 64 levels"):
        parse_spec("a: " + "[" * 80 + "]" * 80 + "\n", "deep.yaml")
    with pytest.raises(InvalidInput, match="nested deeper than 64 levels"):
        check_value(json.loads("[" * 80 + "]" * 80), "body")


def test_counts_include_every_value_and_every_character() -> None:
    small = Limits(depth=10, values=5, chars=10)
    check_value(["abc", "def"], "body", small)
    with pytest.raises(InvalidInput, match="more than 5 values"):
        check_value([1, 2, 3, 4, 5], "body", small)
    with pytest.raises(InvalidInput, match="more than 10 characters"):
        check_value({"abcdef": "ghijk"}, "body", small)
    root = yaml.compose("a: &s xxxxxx\nb: *s\n", Loader=yaml.SafeLoader)
    assert root is not None
    with pytest.raises(InvalidInput, match="more than 10 characters of text once"):
        check_nodes(root, "doc", small)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": NaN}', "NaN: numbers must be finite"),
        ('{"a": -Infinity}', "-Infinity: numbers must be finite"),
        ('{"a": 1e400}', "overflows a number"),
        ('{"a": "\\udfff"}', "a lone surrogate"),
        ('{"a\\u0000": 1}', "a NUL character"),
        ("[" * 100_000 + "]" * 100_000, "nested"),
        ("{", "is not JSON"),
    ],
)
def test_json_that_cannot_be_stored_or_read_back_is_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_json(text.encode())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[" * 65 + b"]" * 65, "nested deeper than 64 levels"),  # past the depth, no recursion
        (b'{"a": "\xed\xa0\x80"}', "a lone surrogate"),  # a raw surrogate, not an escape
        (b'{"a": "x\\\\u0000"}', None),  # a backslash then "u0000": plain text, fine
        (b"[" * 64 + b"]" * 64, None),  # exactly the deepest allowed
    ],
)
def test_small_plain_bodies_are_checked_as_thoroughly(raw: bytes, message: str | None) -> None:
    # A body told within the bounds from its text alone skips the walk over its values: the
    # ones at the edges are judged as the walk would judge them
    if message is None:
        assert parse_json(raw) is not None
        check_value(json.loads(raw), "the same")  # and the walk agrees
        return
    with pytest.raises(InvalidInput, match=message):
        parse_json(raw)


@pytest.mark.timeout(480)  # a million values parsed: 12 s of CPU, minutes on a busy machine
def test_a_million_bad_values_make_one_short_message() -> None:
    # It was a million errors: 15 s, 1.1 GB and a 47 MB message (issue 13)
    body = {"name": "x", "command": ["echo"], "inputs": list(range(1_000_000))}
    with pytest.raises(InvalidInput) as e:
        parse_spec(json.dumps(body), "many.json")
    assert e.value.message.endswith(
        "inputs: Value error, item 0 is int, not a string "
        "(and 999,999 more values that are not strings)"
    )
    assert e.value.context["errors"] == 1


def test_many_different_problems_are_listed_first_then_counted() -> None:
    body = {"name": "x", "command": ["echo"], "n_jobs": 1, "env": {f"{i}x": "v" for i in range(50)}}
    with pytest.raises(InvalidInput) as e:
        parse_spec(json.dumps(body), "env.json")
    assert len(e.value.message) < 5_000
    assert e.value.message.endswith("and 30 more")


def test_summarise_lists_the_first_problems_and_counts_the_rest() -> None:
    assert summarise(["a", "b"]) == "a; b"
    assert summarise([str(i) for i in range(25)]).endswith("; 19; and 5 more")
    assert summarise(["a"], total=10) == "a; and 9 more"
