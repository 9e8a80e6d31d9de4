"""A key's values read by the raw RE2 search (ASCII inputs) are those the binding's `findall`
and `finditer` give: same matches, same groups, same handling of empty matches."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skypanda.domain import dag
from skypanda.domain.patterns import compile_user_pattern, subject

PATTERNS = [
    r"v(\d+)",
    r"p(\d+)",
    r"\d+",
    r"x*",
    r"(a)?b",
    r"(a*)",
    r"(\w+)-(\d+)",
    r"^v(\d+)",
    r"(\d+)$",
    r"(?:ab|a)(c?)",
    r"\b(\w)",
    r"(?i)V(\d)",
    r"",
    r"(.)",
    r"[^,]*",
]
TEXT = st.text(alphabet="abcvxpAV0129-_,.\n ", max_size=40)


def reference(pattern: str, inputs: list[str]) -> set[str]:
    """The values as the binding's own `findall`/`finditer` give them."""
    compiled = compile_user_pattern(pattern, "key")
    out: set[str] = set()
    for text in inputs:
        dag._values(compiled, subject(text), out)
    return out


def test_the_raw_search_is_there_with_this_binding() -> None:
    # Given the google-re2 binding installed
    # Then the fast path is in use (else every key would fall back to findall, silently slow)
    assert dag._raw_search(compile_user_pattern(r"v(\d+)", "key")) is not None


@pytest.mark.parametrize("pattern", PATTERNS)
@settings(max_examples=60, deadline=None)
@given(inputs=st.lists(TEXT, max_size=4))
def test_ascii_inputs_give_the_values_findall_gives(pattern: str, inputs: list[str]) -> None:
    # Given ASCII inputs (read by the raw search)
    # Then the values are the binding's own
    assert dag.key_values(compile_user_pattern(pattern, "key"), inputs) == reference(
        pattern, inputs
    )


@pytest.mark.parametrize("pattern", [r"v(\d+)", r"(\w)", r"x*", r"(.)"])
def test_non_ascii_and_mixed_inputs_give_the_values_findall_gives(pattern: str) -> None:
    # Given inputs with and without characters beyond ASCII (those go through findall)
    inputs = ["v12é", "év3", "v000123d004", "x\u00e9x", "\ud800v9", "plain"]
    # Then the values are the binding's own, whichever path each input took
    assert dag.key_values(compile_user_pattern(pattern, "key"), inputs) == reference(
        pattern, inputs
    )


def test_an_input_is_searched_in_its_first_16_kib_only() -> None:
    # Given an ASCII input whose only match lies beyond the searched part
    text = "a" * (16 * 1024) + "v7"
    # Then it has no value, as with findall
    assert dag.key_values(compile_user_pattern(r"v(\d)", "key"), [text]) == set()
    assert dag.key_values(compile_user_pattern(r"v(\d)", "key"), ["v8" + text]) == {"8"}
