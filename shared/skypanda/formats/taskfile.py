"""Task and workflow files: YAML (or JSON) into a validated TaskSpec or WorkflowSpec, with errors
that name field and line. A document with a `tasks:` list is a workflow.

PyYAML's composed node tree keeps each value's position; a pydantic error's `loc` is walked down
that tree to report the line of the offending value (or of its parent, for a missing field).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from skypanda.domain.errors import InvalidInput
from skypanda.domain.models import TaskSpec
from skypanda.domain.workflow import WorkflowSpec

MAX_FILE_BYTES = 64 * 1024 * 1024


def node_at(root: yaml.Node | None, loc: Sequence[int | str]) -> yaml.Node | None:
    node = root
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == key), node)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
    return node


def _describe(errors: list[Any], root: yaml.Node | None, source: str) -> str:
    lines = []
    for err in errors:
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        field = ".".join(str(p) for p in loc) or "(top level)"
        node = node_at(root, loc)
        where = f"line {node.start_mark.line + 1}: " if node is not None else ""
        lines.append(f"{source}: {where}{field}: {err['msg']}")
    return "\n".join(lines)


def load_yaml(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """The YAML document in `text`: its node tree (for line numbers) and its data.

    Raises:
        InvalidInput: too large, or not YAML.
    """
    if len(text) > MAX_FILE_BYTES:
        raise InvalidInput(f"{source}: file is larger than {MAX_FILE_BYTES} bytes")
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InvalidInput(f"{source}: not valid YAML: {e}") from e


def _document(text: str, source: str) -> tuple[yaml.Node | None, dict[str, Any]]:
    root, data = load_yaml(text, source)
    if not isinstance(data, dict):
        raise InvalidInput(
            f"{source}: a task or workflow file must be a mapping of fields (name, command, ...)"
        )
    return root, data


def parse_spec(text: str, source: str = "<task>") -> TaskSpec | WorkflowSpec:
    """Parse and validate a task or workflow document (a workflow has a `tasks` list).

    Raises:
        InvalidInput: not YAML, not a mapping, or not valid; the message names field and line.
    """
    root, data = _document(text, source)
    model: type[TaskSpec] | type[WorkflowSpec] = WorkflowSpec if "tasks" in data else TaskSpec
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise InvalidInput(_describe(e.errors(), root, source), errors=len(e.errors())) from e


def parse_task(text: str, source: str = "<task>") -> TaskSpec:
    """Parse and validate a task document.

    Raises:
        InvalidInput: not YAML, not a mapping, or not a valid task; the message names the field
            and the line.
    """
    spec = parse_spec(text, source)
    if not isinstance(spec, TaskSpec):
        raise InvalidInput(f"{source}: this is a workflow (it has tasks:); submit it as one")
    return spec


def parse_workflow(text: str, source: str = "<workflow>") -> WorkflowSpec:
    """Parse and validate a workflow document. Raises InvalidInput."""
    spec = parse_spec(text, source)
    if not isinstance(spec, WorkflowSpec):
        raise InvalidInput(f"{source}: a workflow needs a tasks: list")
    return spec


def load_file(path: Path) -> TaskSpec | WorkflowSpec:
    """Read and validate a task or workflow file. Raises InvalidInput (also if unreadable)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{path}: cannot read file: {e}") from e
    return parse_spec(text, str(path))


def graph_path(spec: WorkflowSpec, workflow_file: Path) -> Path | None:
    """Where a workflow's job graph file is: relative to the workflow file."""
    if spec.graph is None:
        return None
    return (workflow_file.parent / spec.graph).resolve()
