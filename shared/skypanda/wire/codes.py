"""Error codes a job can end with, numbered as PanDA's pilot numbers them where PanDA has one.

A job that ran and exited non-zero carries its `exit_code` and `PAYLOAD_FAILED`; the codes
below say why the pilot or the server ended a job. `skypanda jobs` and the API show both.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """Why a job attempt ended badly. 11xx/12xx/13xx are PanDA pilot error codes."""

    STAGE_IN_FAILED = 1099
    STAGE_OUT_FAILED = 1137
    KILLED_BY_SERVER = 1144
    LOOPING_JOB = 1150
    SIGTERM = 1201
    OUT_OF_MEMORY = 1212
    MAX_TIME_EXCEEDED = 1213
    PREEMPTED = 1379
    # skypanda's own (no PanDA pilot number):
    PAYLOAD_FAILED = 9000  # the payload exited non-zero; see exit_code
    PAYLOAD_NOT_STARTED = 9001  # the command could not be executed (not found, not executable)
    LOST_HEARTBEAT = 9002  # the pilot holding the job stopped heartbeating
    TASK_ABORTED = 9003  # the job's task was killed
    NEVER_DELIVERED = 9004  # claimed for a pilot that never got it (its acquire reply was lost)
    SERVER_UNREACHABLE = 9005  # the pilot could not reach the server (an outage, not the job)
    GIVEN_BACK = 9006  # held, never started: its pilot gave it back, busy with a long payload


DESCRIPTIONS: dict[ErrorCode, str] = {
    ErrorCode.STAGE_IN_FAILED: "stage-in of an input failed",
    ErrorCode.STAGE_OUT_FAILED: "stage-out of an output failed",
    ErrorCode.KILLED_BY_SERVER: "killed on the server's command",
    ErrorCode.LOOPING_JOB: "looping job: no output and no file change for too long",
    ErrorCode.SIGTERM: "the pilot received SIGTERM",
    ErrorCode.OUT_OF_MEMORY: "the payload used more memory than the job asked for",
    ErrorCode.MAX_TIME_EXCEEDED: "the payload ran past the job's walltime",
    ErrorCode.PREEMPTED: "the pilot's node was preempted",
    ErrorCode.PAYLOAD_FAILED: "the payload exited with a non-zero code",
    ErrorCode.PAYLOAD_NOT_STARTED: "the payload's command could not be started",
    ErrorCode.LOST_HEARTBEAT: "the pilot running the job stopped heartbeating",
    ErrorCode.TASK_ABORTED: "the job's task was killed",
    ErrorCode.NEVER_DELIVERED: "claimed for a pilot that never received it",
    ErrorCode.SERVER_UNREACHABLE: "the pilot could not reach the server (not counted)",
    ErrorCode.GIVEN_BACK: "given back unstarted by a pilot busy with a long payload",
}

NOT_COUNTED: frozenset[ErrorCode] = frozenset(
    {
        ErrorCode.PREEMPTED,
        ErrorCode.SIGTERM,
        ErrorCode.NEVER_DELIVERED,
        ErrorCode.SERVER_UNREACHABLE,
        ErrorCode.GIVEN_BACK,
    }
)
"""Attempts that end with these codes are requeued without counting against max_attempts."""
