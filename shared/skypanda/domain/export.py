"""The task graph of a workflow as Graphviz DOT or Mermaid text.

Nodes are tasks (with their state when known), edges say how a task waits: `after` (the whole
task), `job i` or `by KEY` (job by job), `when ...` (a condition). Edges inside a job graph file
are not drawn (the file is not read here). Loops are drawn as clusters / subgraphs.
"""

from __future__ import annotations

from collections.abc import Mapping

from skypanda.domain.planner import describe
from skypanda.domain.workflow import INDEX, CompiledWorkflow

FORMATS = ("dot", "mermaid")


def _edges(cw: CompiledWorkflow) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for name in cw.order:
        t = cw.spec.task(name)
        out += [(a, name, "after") for a in t.after]
        out += [(d.task, name, "job i" if d.by == INDEX else f"by {d.by}") for d in t.depends]
        if t.when is not None:
            out.append((t.when.task, name, f"when {describe(t.when)}"))
    return out


def _lines(name: str, states: Mapping[str, str]) -> list[str]:
    return [name, states[name]] if name in states else [name]


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _q(text: str) -> str:
    """A DOT quoted string."""
    return '"' + _esc(text) + '"'


def _qlines(lines: list[str]) -> str:
    """A DOT quoted label of several lines."""
    return '"' + "\\n".join(_esc(line) for line in lines) + '"'


def to_dot(cw: CompiledWorkflow, states: Mapping[str, str] | None = None) -> str:
    states = states or {}
    lines = [f"digraph {_q(cw.spec.name)} {{", "  rankdir=LR;", "  node [shape=box];"]
    for lp in cw.spec.loops:
        lines.append(f"  subgraph {_q('cluster_' + lp.name)} {{")
        title = f"loop {lp.name} until {describe(lp.until)}, max {lp.max_iterations}"
        lines.append(f"    label={_q(title)};")
        lines += [f"    {_q(n)};" for n in lp.tasks]
        lines.append("  }")
    for name in cw.order:
        lines.append(f"  {_q(name)} [label={_qlines(_lines(name, states))}];")
    for a, b, label in _edges(cw):
        lines.append(f"  {_q(a)} -> {_q(b)} [label={_q(label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mid(name: str) -> str:
    """A Mermaid node id: names may hold . and -, which ids may not; the escape is one to one
    (letters and digits kept, `_` doubled, anything else `_xHH`)."""
    out = []
    for c in name:
        if c.isascii() and c.isalnum():
            out.append(c)
        elif c == "_":
            out.append("__")
        else:
            out.append(f"_x{ord(c):02x}")
    return "t_" + "".join(out)


def _mtext(text: str) -> str:
    """Mermaid label text: quotes and pipes would end the label."""
    return text.replace('"', "#quot;").replace("|", "#124;")


def _mlines(lines: list[str]) -> str:
    return "<br/>".join(_mtext(line) for line in lines)


def to_mermaid(cw: CompiledWorkflow, states: Mapping[str, str] | None = None) -> str:
    states = states or {}
    lines = ["flowchart LR"]
    in_loop = set(cw.loop_of)
    for lp in cw.spec.loops:
        title = _mtext(f"loop {lp.name} until {describe(lp.until)}")
        lines.append(f'  subgraph {_mid(lp.name)}["{title}"]')
        lines += [f'    {_mid(n)}["{_mlines(_lines(n, states))}"]' for n in lp.tasks]
        lines.append("  end")
    for name in cw.order:
        if name not in in_loop:
            lines.append(f'  {_mid(name)}["{_mlines(_lines(name, states))}"]')
    for a, b, label in _edges(cw):
        lines.append(f"  {_mid(a)} -->|{_mtext(label)}| {_mid(b)}")
    return "\n".join(lines) + "\n"


def export(cw: CompiledWorkflow, fmt: str, states: Mapping[str, str] | None = None) -> str:
    """Raises ValueError for an unknown format (callers check against FORMATS first)."""
    if fmt == "dot":
        return to_dot(cw, states)
    if fmt == "mermaid":
        return to_mermaid(cw, states)
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
