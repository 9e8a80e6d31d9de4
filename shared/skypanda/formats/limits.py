"""Bounds on what a document may be before anything is built from it: how deep, how many values,
how many characters once YAML's aliases are expanded, and no string that cannot be stored.

One pass over the parsed JSON value, or over YAML's composed node tree (so an alias bomb, a
small file whose anchors expand to gigabytes, is refused before it is expanded). Iterative, so
depth is a count and never Python's recursion limit. A refusal is InvalidInput naming the
bound and where it was crossed.

A lone surrogate (JSON's `"\\ud800"`) or a NUL in any string is refused: neither can be stored
as UTF-8 text or passed to a process, so accepting them would fail later, on a pilot or in a
store, where the user cannot see why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from skypanda.domain.errors import InvalidInput

MAX_DEPTH = 64
"""Nesting of lists and mappings: a task file needs about 6."""
MAX_VALUES = 4_000_000
"""Values in one document once expanded: a million-input task is about a million."""
MAX_CHARS = 256 * 1024 * 1024
"""Characters of all strings in one document once expanded."""
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class Limits:
    depth: int = MAX_DEPTH
    values: int = MAX_VALUES
    chars: int = MAX_CHARS


DEFAULT = Limits()


def _bad_text(text: str, where: str) -> InvalidInput:
    found = _BAD_TEXT.search(text)
    assert found is not None
    what = "a NUL character" if found.group() == "\x00" else "a lone surrogate (not UTF-8)"
    return InvalidInput(f"{where}: a string holds {what} at offset {found.start()}")


def check_value(value: Any, source: str, limits: Limits = DEFAULT) -> None:
    """Check a parsed JSON value (dicts, lists, str, numbers, bool, None).

    Raises:
        InvalidInput: too deep, too many values or characters, or a string that cannot be text.
    """
    values = chars = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        values += 1
        if isinstance(item, str):
            chars += len(item)
            if _BAD_TEXT.search(item):
                raise _bad_text(item, source)
        elif isinstance(item, dict | list):
            if depth > limits.depth:
                raise InvalidInput(f"{source}: nested deeper than {limits.depth} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        if values > limits.values:
            raise InvalidInput(f"{source}: more than {limits.values:,} values")
        if chars > limits.chars:
            raise InvalidInput(f"{source}: more than {limits.chars:,} characters of text")


def check_nodes(root: yaml.Node, source: str, limits: Limits = DEFAULT) -> None:
    """Check a composed YAML node tree as it would be once its aliases are expanded (an alias
    is the node it names: the same object, met again), without expanding it.

    Each node's expanded size (values, characters) is computed once, children first, so the
    pass costs the tree's size, not its expansion's.

    Raises:
        InvalidInput: too deep, too large once expanded, a recursive alias, or bad text.
    """
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, chars) once expanded
    on_path: set[int] = set()
    # (node, depth, children pushed?): a node is sized after its children
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, expanded = stack.pop()
        key = id(node)
        if expanded:
            on_path.discard(key)
            kids = _children(node)
            values = 1 + sum(sizes[id(k)][0] for k in kids)
            chars = sum(sizes[id(k)][1] for k in kids)
            if values > limits.values:
                raise InvalidInput(f"{source}: more than {limits.values:,} values once its "
                                   "aliases are expanded")  # fmt: skip
            if chars > limits.chars:
                raise InvalidInput(f"{source}: more than {limits.chars:,} characters of text "
                                   "once its aliases are expanded")  # fmt: skip
            sizes[key] = (values, chars)
            continue
        if key in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            text = str(node.value)
            if _BAD_TEXT.search(text):
                raise _bad_text(text, f"{source}: line {node.start_mark.line + 1}")
            sizes[key] = (1, len(text))
            continue
        if key in on_path:
            raise InvalidInput(f"{source}: line {node.start_mark.line + 1}: a recursive alias")
        if depth > limits.depth:
            raise InvalidInput(f"{source}: line {node.start_mark.line + 1}: nested deeper than "
                               f"{limits.depth} levels")  # fmt: skip
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((k, depth + 1, False) for k in _children(node) if id(k) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []
