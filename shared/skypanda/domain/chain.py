"""Chaining: a task or workflow that starts only when another one, submitted separately, ends
with a wanted status (PanDA's ProdSys chains, psequencer; Argo Events' dependencies).

The chained submission is stored held (a task `pending`, a workflow `registered` without its
registered event), and the other's end event decides it: start it, or end it `skipped` with a
reason naming the trigger and the status it ended with. The decisions are here, without I/O.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from skypanda.domain.states import TASK_FINAL, WORKFLOW_FINAL
from skypanda.domain.values import Strict

MAX_TRIGGER_ID_CHARS = 200
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
TASK_END_NAMES = frozenset(str(s) for s in TASK_FINAL)
WORKFLOW_END_NAMES = frozenset(str(s) for s in WORKFLOW_FINAL)


class StartAfter(Strict):
    """`start_after:` of a task or workflow file: wait for one task or one workflow (by id) to
    end with one of `status` (default `done`; one status or a list)."""

    task: str | None = Field(
        default=None, min_length=1, max_length=MAX_TRIGGER_ID_CHARS, pattern=_ID_PATTERN
    )
    workflow: str | None = Field(
        default=None, min_length=1, max_length=MAX_TRIGGER_ID_CHARS, pattern=_ID_PATTERN
    )
    status: list[str] = Field(default_factory=lambda: ["done"], min_length=1, max_length=10)

    @field_validator("status", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_trigger(self) -> StartAfter:
        if (self.task is None) == (self.workflow is None):
            raise ValueError("start_after names one trigger: give task: ID or workflow: ID")
        ends = TASK_END_NAMES if self.task is not None else WORKFLOW_END_NAMES
        bad = [s for s in self.status if s not in ends]
        if bad:
            raise ValueError(
                f"start_after.status: {', '.join(bad)} is not an end of a {self.kind} "
                f"(one of {', '.join(sorted(ends))})"
            )
        return self

    @property
    def kind(self) -> Literal["task", "workflow"]:
        return "task" if self.task is not None else "workflow"

    @property
    def trigger_id(self) -> str:
        return self.task or self.workflow or ""

    def starts_on(self, status: str) -> bool:
        """Whether the trigger ending with `status` starts the chained submission."""
        return status in self.status

    def waiting_reason(self) -> str:
        return f"waiting for {self.kind} {self.trigger_id} to end {' or '.join(self.status)}"

    def not_started_reason(self, status: str) -> str:
        return (
            f"not started: {self.kind} {self.trigger_id} ended {status} "
            f"(start_after wanted {' or '.join(self.status)})"
        )
