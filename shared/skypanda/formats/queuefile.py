"""Queue files (`skypanda queues apply FILE`): a YAML list of queue definitions, validated as a
whole, with errors that name the queue, the field and the line (as task files do)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from skypanda.domain.errors import InvalidInput
from skypanda.domain.models import Queue
from skypanda.formats.taskfile import load_yaml, node_at

MAX_QUEUES = 1000


def _line(root: yaml.Node | None, loc: list[int | str]) -> str:
    node = node_at(root, loc)
    return f"line {node.start_mark.line + 1}: " if node is not None else ""


def _validate(
    item: Any, index: int, root: yaml.Node | None, source: str
) -> tuple[Queue | None, list[str]]:
    name = item.get("name") if isinstance(item, dict) else None
    label = f"queue {name!r}" if isinstance(name, str) else f"queue #{index + 1}"
    if not isinstance(item, dict):
        return None, [f"{source}: {_line(root, [index])}{label}: must be a mapping of fields"]
    try:
        return Queue.model_validate(item), []
    except ValidationError as e:
        out = []
        for err in e.errors():
            loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
            field = ".".join(str(p) for p in loc) or "(queue)"
            out.append(f"{source}: {_line(root, [index, *loc])}{label}: {field}: {err['msg']}")
        return None, out


def parse_queues(text: str, source: str = "<queues>") -> list[Queue]:
    """Parse and validate a queue file: all of it, or nothing.

    Raises:
        InvalidInput: not YAML, not a list, a queue not valid, or a name given twice; the
            message names every bad queue, its field and its line.
    """
    root, data = load_yaml(text, source)
    if not isinstance(data, list) or not data:
        raise InvalidInput(f"{source}: a queue file is a non-empty list of queues (- name: ...)")
    if len(data) > MAX_QUEUES:
        raise InvalidInput(f"{source}: {len(data)} queues; at most {MAX_QUEUES} per file")
    queues: list[Queue] = []
    problems: list[str] = []
    seen: set[str] = set()
    for i, item in enumerate(data):
        queue, errors = _validate(item, i, root, source)
        problems += errors
        if queue is not None:
            if queue.name in seen:
                problems.append(
                    f"{source}: {_line(root, [i, 'name'])}queue {queue.name!r}: defined twice"
                )
            seen.add(queue.name)
            queues.append(queue)
    if problems:
        raise InvalidInput("\n".join(problems), errors=len(problems))
    return queues


def load_queue_file(path: Path) -> list[Queue]:
    """Read and validate a queue file. Raises InvalidInput (also if unreadable)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{path}: cannot read file: {e}") from e
    return parse_queues(text, str(path))
