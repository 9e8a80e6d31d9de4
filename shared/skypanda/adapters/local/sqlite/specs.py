"""Parsed specs kept by their stored text: a workflow's or task's spec read again is not parsed
again while its text is the same.

A spec holds every input of its task (a million-job workflow's is tens of MB of JSON): parsing
it costs about a second, where reading its text costs milliseconds. The planner reads a
workflow and its tasks each time a task ends, the monitor on every page. An entry is used only
when the stored text is the one it was parsed from (a task's spec may change: `place_task`), so
it can never be stale; specs are frozen models, so sharing one is safe.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from cachetools import LRUCache

from skypanda.domain.models import TaskSpec
from skypanda.domain.workflow import WorkflowSpec

T = TypeVar("T")

KEPT_CHARS = 32 * 1024 * 1024
"""The stored texts kept per kind, in characters (a million-job workflow's is about 15 M); the
least recently read go first. Their parsed specs are mostly those the handlers keep anyway
(`handlers.known`), so a kept entry costs about its text."""
SMALL = 4096
"""Specs shorter than this are parsed each time (cheaper than keeping them)."""


def _chars(entry: tuple[str, object]) -> int:
    return len(entry[0])


class SpecCache(Generic[T]):
    """Id -> (stored text, parsed spec), for texts of SMALL characters or more."""

    def __init__(self, parse: Callable[[str], T], kept_chars: int = KEPT_CHARS) -> None:
        self._parse = parse
        self._kept: LRUCache[str, tuple[str, T]] = LRUCache(kept_chars, getsizeof=_chars)
        self._lock = threading.Lock()

    def parse(self, key: str, text: str) -> T:
        """The spec of `text`, stored under `key`: parsed once while the text stays the same."""
        if len(text) < SMALL:
            return self._parse(text)
        with self._lock:
            found = self._kept.get(key)
        if found is not None and found[0] == text:
            return found[1]
        spec = self._parse(text)
        with self._lock, contextlib.suppress(ValueError):  # (larger than the whole budget)
            self._kept[key] = (text, spec)
        return spec


def _workflow_spec(text: str) -> WorkflowSpec:
    return WorkflowSpec.model_validate_json(text)


def _task_spec(text: str) -> TaskSpec:
    return TaskSpec.model_validate_json(text)


# Shared by every store of the process: an entry is used only for the very text it was parsed
# from, whichever database that text comes from.
WORKFLOW_SPECS: SpecCache[WorkflowSpec] = SpecCache(_workflow_spec)
TASK_SPECS: SpecCache[TaskSpec] = SpecCache(_task_spec)
