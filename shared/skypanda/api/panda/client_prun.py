"""prun's task parameters (JEDI's runGen wrapper) as a skypanda command: pure, no I/O.

prun names no `transPath`: JEDI runs its `runGen` wrapper, whose arguments are prun's
`jobParameters`. They hold the user's `--exec` between a constant `-p "` and a closing `"`,
URL-quoted (`urllib.parse.quote`) and cut into pieces joined without spaces, with
`%RNDM:N` as a `${SEQNUMBER}` pseudo-input of offset N; and, before it, runGen's own options
(`-j`, `--sourceURL`, `-r`, the sandbox `-a`, the outputs map `-o "{'out.txt': lfn}"`).

Here the `--exec` text runs as `sh -c <exec>` in the job's working directory (runGen runs it
with a shell too): `${SEQNUMBER}` becomes the shell arithmetic `$((N + 1 + index))` (JEDI's
numbers N+1, N+2, ... for jobs 0, 1, ...), `%IN` the job's inputs joined by commas, and
`${FIRSTEVENT}`, `${MAXEVENTS}`, `${SKIPEVENTS}` the job's events. The outputs map's files
are the task's `outputs` (kept in skypanda's storage, not registered in a Rucio dataset).
runGen's other options mean nothing without runGen and are dropped; the sandbox (`-a`) is
checked when it is uploaded (`client.upload_cache_file`: only an empty one is taken).
"""

from __future__ import annotations

import ast
import re
import shlex
import urllib.parse
from dataclasses import dataclass
from typing import Any

from skypanda.api.panda.mapping import PandaInputError

MAX_OUTPUTS_MAP_CHARS = 100_000
EXEC_OPEN = '-p "'
EXEC_CLOSE = '"'
_RUCIO = "Rucio datasets are not supported by skypanda: list the files with pfnList"
_EVENT_HOLDERS = {"FIRSTEVENT": "{first_event}", "MAXEVENTS": "{n_events}",
                  "SKIPEVENTS": "{skip_events}"}  # fmt: skip
_HOLDER = re.compile(r"\$\{([A-Za-z_/]+)\}|%IN\b")
_JEDI_ONLY = frozenset({"SN", "SN/P", "SURL", "LIB", "JEDITASKID", "OUT", "DB", "DBR",
                        "MIDDLENAME", "RNDM", "SEQNUMBER", "IN", "IN/T", "IN/L"})  # fmt: skip
"""JEDI's placeholders with no meaning in a skypanda job's --exec (others are the shell's)."""


@dataclass(frozen=True)
class RunGen:
    """What skypanda makes of prun's job parameters: the command and the output patterns."""

    command: list[str]
    outputs: list[str]


def is_prun(items: list[Any]) -> bool:
    """Whether `jobParameters` are prun's (runGen's), holding an `--exec` block."""
    return any(
        isinstance(i, dict) and i.get("type") == "constant" and i.get("value") == EXEC_OPEN
        for i in items
    )


def run_gen(items: list[Any]) -> RunGen:
    """The command and outputs of prun's `jobParameters` (see the module docstring).

    Raises:
        PandaInputError: an input or secondary dataset (Rucio), an unclosed `--exec`, a
            placeholder skypanda cannot fill, a malformed outputs map; naming
            `jobParameters`.
    """
    start = next(i for i, item in enumerate(items) if _constant(item) == EXEC_OPEN)
    end = next((i for i in range(start + 1, len(items)) if _constant(items[i]) == EXEC_CLOSE),
               None)  # fmt: skip
    if end is None:
        raise PandaInputError("jobParameters: the --exec block (-p \") is not closed",
                              field="jobParameters")  # fmt: skip
    outputs: list[str] = []
    for i, item in enumerate(items[:start] + items[end + 1 :]):
        _check_wrapper_item(i, item)
        outputs += _outputs(item)
    text = "".join(
        _exec_piece(start + 1 + i, item) for i, item in enumerate(items[start + 1 : end])
    )
    if not text.strip():
        raise PandaInputError("jobParameters: the --exec command is empty", field="jobParameters")
    return RunGen(["sh", "-c", text], outputs)


def _constant(item: Any) -> str | None:
    if isinstance(item, dict) and item.get("type") == "constant":
        value = item.get("value")
        return value if isinstance(value, str) else None
    return None


def _check_wrapper_item(i: int, item: Any) -> None:
    """runGen's own options: constants and output templates are fine (dropped); an input
    dataset is not."""
    if not isinstance(item, dict):
        raise PandaInputError(f"jobParameters[{i}] must be an object", field="jobParameters")
    role = item.get("param_type")
    if item.get("type") == "template" and role != "output" and role != "log":
        raise PandaInputError(f"jobParameters: {role} dataset "
                              f"{str(item.get('dataset'))[:100]!r}: {_RUCIO}",
                              field="jobParameters")  # fmt: skip


def _outputs(item: dict[str, Any]) -> list[str]:
    """The local file names of runGen's outputs map (`-o "{'out.txt': lfn, ...}"`)."""
    value = _constant(item)
    if value is None or not value.startswith("-o "):
        return []
    if len(value) > MAX_OUTPUTS_MAP_CHARS:
        raise PandaInputError(f"jobParameters: the outputs map is over {MAX_OUTPUTS_MAP_CHARS:,} "
                              "characters", field="jobParameters")  # fmt: skip
    try:
        words = shlex.split(value)
        mapping = ast.literal_eval(words[1]) if len(words) == 2 else None
    except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
        raise PandaInputError(f"jobParameters: the outputs map {value[:100]!r} is malformed",
                              field="jobParameters") from e  # fmt: skip
    if not isinstance(mapping, dict) or not all(isinstance(k, str) for k in mapping):
        raise PandaInputError(f"jobParameters: the outputs map {value[:100]!r} is malformed",
                              field="jobParameters")  # fmt: skip
    return [k.removeprefix("regex|") for k in mapping]


def _exec_piece(i: int, item: Any) -> str:
    where = f"jobParameters[{i}]"
    if not isinstance(item, dict):
        raise PandaInputError(f"{where} must be an object", field="jobParameters")
    if item.get("type") == "template":
        if item.get("param_type") == "pseudo_input" and item.get("value") == "${SEQNUMBER}":
            offset = item.get("offset", 0)
            if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                raise PandaInputError(f"{where}: offset must be a whole number",
                                      field="jobParameters")  # fmt: skip
            return f"$(({offset + 1}+{{index}}))"
        raise PandaInputError(f"{where}: {item.get('param_type')} dataset "
                              f"{str(item.get('dataset'))[:100]!r} in --exec: {_RUCIO}",
                              field="jobParameters")  # fmt: skip
    value = _constant(item)
    if value is None:
        raise PandaInputError(f"{where}: type must be constant or template", field="jobParameters")
    return _holders(where, urllib.parse.unquote(value))


def _holders(where: str, text: str) -> str:
    out, last = [], 0
    for m in _HOLDER.finditer(text):
        out.append(_escape(text[last : m.start()]))
        name = m.group(1)
        if name is None:
            out.append("{input}")
        elif name in _EVENT_HOLDERS:
            out.append(_EVENT_HOLDERS[name])
        elif name not in _JEDI_ONLY:
            out.append(_escape(m.group(0)))  # the shell's own ${NAME}
        else:
            raise PandaInputError(f"{where}: placeholder ${{{name}}} in --exec is not one "
                                  "skypanda fills (%RNDM, %IN, %FIRSTEVENT, %MAXEVENTS, "
                                  "%SKIPEVENTS)", field="jobParameters")  # fmt: skip
        last = m.end()
    out.append(_escape(text[last:]))
    return "".join(out)


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")
