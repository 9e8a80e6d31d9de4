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

from skypanda.domain.errors import MAX_PROBLEMS, InvalidInput, clip, summarise
from skypanda.domain.models import TaskSpec
from skypanda.domain.workflow import WorkflowSpec
from skypanda.formats.limits import check_nodes

MAX_FILE_BYTES = 64 * 1024 * 1024
LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML was built with it; the pure-Python one otherwise."""


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
    """One line per problem (the first MAX_PROBLEMS, then how many more)."""
    lines = []
    for err in errors[:MAX_PROBLEMS]:
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        field = ".".join(str(p) for p in loc) or "(top level)"
        node = node_at(root, loc)
        where = f"line {node.start_mark.line + 1}: " if node is not None else ""
        lines.append(f"{source}: {where}{field}: {err['msg']}")
    return summarise(lines, len(errors), sep="\n")


def load_yaml(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """The YAML document in `text`: its node tree (for line numbers) and its data.

    Parsed once, with libyaml's C parser where PyYAML has it (tens of times faster than the
    pure-Python one); the node tree is checked against `formats.limits` (depth, size once its
    aliases are expanded, text) before any value is built from it.

    Raises:
        InvalidInput: too large, too deep, an alias bomb, or not YAML.
    """
    if len(text) > MAX_FILE_BYTES:
        raise InvalidInput(f"{source}: file is larger than {MAX_FILE_BYTES} bytes")
    try:
        root = yaml.compose(text, Loader=LOADER)
    except yaml.YAMLError as e:
        raise InvalidInput(f"{source}: not valid YAML: {_first_line(e)}") from e
    except RecursionError as e:
        raise InvalidInput(f"{source}: nested too deeply") from e
    if root is None:
        return None, None
    check_nodes(root, source)
    try:
        return root, LOADER("").construct_document(root)
    except yaml.YAMLError as e:
        raise InvalidInput(f"{source}: not valid YAML: {_first_line(e)}") from e


def _first_line(e: yaml.YAMLError) -> str:
    """PyYAML's message, without the quoted source it appends (which can be long)."""
    return clip(str(e), 500)


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
        errors = e.errors(include_url=False, include_input=False)
        raise InvalidInput(_describe(errors, root, source), errors=len(errors)) from e


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
