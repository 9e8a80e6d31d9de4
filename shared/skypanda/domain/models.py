"""Value objects, re-exported from the modules that define them by concept:

- `values`: the strict base, durations, names, `Resources`;
- `data`: staged inputs' local names, output patterns and files;
- `taskspec`: what a user submits (`TaskSpec`, retry rules, queue choice, split modes, `JobSpec`);
- `records`: what the system stores of the work (`Task`, `Job`, `Attempt`, `JobReport`);
- `fleet`: where jobs run (`Queue`, `Pilot`).

Models are pydantic: they validate at construction and name the field that is wrong. Stored
objects are frozen; a change is a new object made by `model_copy(update=...)`.
"""

from __future__ import annotations

from skypanda.domain.data import (
    MAX_EVENTS,
    MAX_OUTPUT_PATTERNS,
    MAX_OUTPUTS,
    STAGE_IN_SCHEMES,
    OutputFile,
    check_output_name,
    check_output_pattern,
    staged_name,
)
from skypanda.domain.fleet import (
    AUTO_QUEUE,
    Pilot,
    Queue,
    QueueStatus,
)
from skypanda.domain.records import (
    MAX_FLAGS,
    REPORTABLE,
    Attempt,
    Job,
    JobReport,
    Task,
)
from skypanda.domain.taskspec import (
    EVENT_MODES,
    JobSpec,
    QueueChoice,
    RetryRule,
    SplitMode,
    TaskSpec,
    check_job_source,
    split_mode,
)
from skypanda.domain.values import (
    NAME_PATTERN,
    Duration,
    Resources,
    Strict,
    jsonable,
    parse_duration,
)

__all__ = [
    "AUTO_QUEUE",
    "EVENT_MODES",
    "MAX_EVENTS",
    "MAX_FLAGS",
    "MAX_OUTPUTS",
    "MAX_OUTPUT_PATTERNS",
    "NAME_PATTERN",
    "REPORTABLE",
    "STAGE_IN_SCHEMES",
    "Attempt",
    "Duration",
    "Job",
    "JobReport",
    "JobSpec",
    "OutputFile",
    "Pilot",
    "Queue",
    "QueueChoice",
    "QueueStatus",
    "Resources",
    "RetryRule",
    "SplitMode",
    "Strict",
    "Task",
    "TaskSpec",
    "check_job_source",
    "check_output_name",
    "check_output_pattern",
    "jsonable",
    "parse_duration",
    "split_mode",
    "staged_name",
]
