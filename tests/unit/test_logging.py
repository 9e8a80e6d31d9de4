"""Specification of `wire.logs`: Cloud Logging's structured entries, labels from context, the
request's trace, readable text on a terminal, and one handler however often it is set up."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from skypanda.wire import logs
from skypanda.wire.logs import (
    LABELS_KEY,
    SOURCE_KEY,
    TRACE_KEY,
    CloudFormatter,
    LogEvent,
    TextFormatter,
    event,
    parse_trace,
)

TRACE = "105445aa7843bc8bf206b12000100000"


def record(msg: str = "hello %s", *args: Any, level: int = logging.INFO, **extra: Any) -> Any:
    """A record made as a logger makes it (`extra` included)."""
    made: list[logging.LogRecord] = []
    logger = logging.getLogger("skypanda.test.records")
    logger.propagate = False
    handler = logging.Handler()
    handler.emit = made.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.log(level, msg, *(args or ("world",)), extra=extra or None)
    finally:
        logger.removeHandler(handler)
    return made[0]


def entry(rec: logging.LogRecord, project: str | None = "proj") -> dict[str, Any]:
    line = CloudFormatter(project).format(rec)
    assert "\n" not in line  # one entry per line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_an_entry_has_severity_message_time_and_source_location() -> None:
    found = entry(record(level=logging.WARNING))
    assert found["severity"] == "WARNING"
    assert found["message"] == "hello world"
    assert found["time"].endswith("Z") and "T" in found["time"]
    assert found["logger"] == "skypanda.test.records"
    assert found[SOURCE_KEY]["file"].endswith("test_logging.py")
    assert found[SOURCE_KEY]["function"] == "record"
    assert found[SOURCE_KEY]["line"].isdigit()
    assert LABELS_KEY not in found and TRACE_KEY not in found


@pytest.mark.parametrize(
    ("level", "severity"),
    [(logging.DEBUG, "DEBUG"), (logging.INFO, "INFO"), (logging.ERROR, "ERROR"),
     (logging.CRITICAL, "CRITICAL"), (25, "INFO")],
)  # fmt: skip
def test_levels_map_to_cloud_logging_severities(level: int, severity: str) -> None:
    assert entry(record(level=level))["severity"] == severity


def test_labels_come_from_the_context_and_the_call_and_end_with_the_block() -> None:
    # Given labels set around the work and a monitored event with its own
    with logs.labels(task="t1", owner="alice"), logs.labels(queue="q"):
        extra = event(LogEvent.JOB_ENDED, {"job": "j1"}, status="failed", error_code=9000,
                      duration_s=1.5)  # fmt: skip
        inside = entry(record(**extra))
    outside = entry(record())
    # Then the entry carries them all, and the event's fields in its payload
    assert inside[LABELS_KEY] == {"task": "t1", "owner": "alice", "queue": "q", "job": "j1"}
    assert (inside["event"], inside["status"], inside["error_code"]) == (
        "job.ended",
        "failed",
        9000,
    )
    assert inside["duration_s"] == 1.5
    # And nothing is left once the blocks ended
    assert LABELS_KEY not in outside and "event" not in outside


def test_labels_do_not_leak_into_other_threads() -> None:
    seen: list[dict[str, Any]] = []
    with logs.labels(task="mine"):
        worker = threading.Thread(target=lambda: seen.append(entry(record())))
        worker.start()
        worker.join()
    assert LABELS_KEY not in seen[0]


def test_a_monitored_event_names_only_its_known_fields_and_labels() -> None:
    with pytest.raises(ValueError, match="unknown event or fields"):
        event(LogEvent.JOB_ENDED, status="x", colour="blue")
    with pytest.raises(ValueError, match="unknown event or fields"):
        event("job.exploded")
    with pytest.raises(ValueError, match="unknown log labels"):
        event(LogEvent.TASK_SUBMITTED, {"tenant": "x"})
    with pytest.raises(ValueError, match="unknown log labels"), logs.labels(colour="red"):
        pass


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}, (TRACE, "00f067aa0ba902b7", True)),
        ({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-00"}, (TRACE, "00f067aa0ba902b7", False)),
        ({"X-Cloud-Trace-Context": f"{TRACE}/1;o=1"}, (TRACE, "0000000000000001", True)),
        ({"X-Cloud-Trace-Context": TRACE.upper()}, (TRACE, "", False)),
        ({"X-Cloud-Trace-Context": "not-a-trace"}, None),
        ({"traceparent": "garbage"}, None),
        ({}, None),
    ],
)
def test_a_trace_is_read_from_traceparent_or_the_cloud_trace_header(
    headers: dict[str, str], expected: tuple[str, str, bool] | None
) -> None:
    assert parse_trace(headers) == expected


def test_an_entry_carries_the_requests_trace_qualified_by_the_project() -> None:
    with logs.trace({"X-Cloud-Trace-Context": f"{TRACE}/17;o=1"}):
        traced = entry(record(), project="my-proj")
    assert traced[TRACE_KEY] == f"projects/my-proj/traces/{TRACE}"
    assert traced["logging.googleapis.com/spanId"] == format(17, "016x")
    assert traced["logging.googleapis.com/trace_sampled"] is True
    assert TRACE_KEY not in entry(record())


def test_an_exception_goes_to_stack_trace() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        rec = record("failed %s", "now", level=logging.ERROR)
        rec.exc_info = sys.exc_info()
    found = entry(rec)
    assert found["severity"] == "ERROR" and found["message"] == "failed now"
    assert "Traceback" in found["stack_trace"] and "RuntimeError: boom" in found["stack_trace"]


def test_text_on_a_terminal_is_readable_with_its_labels() -> None:
    with logs.labels(job="j9", task="t9"):
        line = TextFormatter("skypanda-pilot ").format(record("job %s ended", "j9"))
    assert line.endswith("INFO skypanda.test.records: job j9 ended [job=j9 task=t9]")
    assert line.split(" ")[2] == "skypanda-pilot"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_or_text_is_chosen_by_the_variable_the_platform_and_the_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("SKYPANDA_LOG_FORMAT", "K_SERVICE", "CLOUD_RUN_JOB", "FUNCTION_TARGET",
                 "KUBERNETES_SERVICE_HOST"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    # A terminal or a file, locally: text; under functions-framework, JSON unless a terminal
    assert logs.wants_json() is False
    assert logs.wants_json(serverless=True, stream=io.StringIO()) is True
    assert logs.wants_json(serverless=True, stream=Tty()) is False
    # On Google Cloud, or in any Kubernetes pod: JSON
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert logs.wants_json() is True
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    monkeypatch.setenv("CLOUD_RUN_JOB", "pilots")
    assert logs.wants_json() is True
    # The variable decides over everything
    monkeypatch.setenv("SKYPANDA_LOG_FORMAT", "text")
    assert logs.wants_json() is False
    monkeypatch.setenv("SKYPANDA_LOG_FORMAT", "JSON")
    assert logs.wants_json(serverless=True, stream=Tty()) is True
    monkeypatch.setenv("SKYPANDA_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="SKYPANDA_LOG_FORMAT='xml'"):
        logs.wants_json()


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """The root and skypanda loggers as they were, restored after the test."""
    top, package = logging.getLogger(), logging.getLogger("skypanda")
    saved = (list(top.handlers), top.level, package.level, logging.raiseExceptions)
    yield top
    top.handlers[:] = saved[0]
    top.setLevel(saved[1])
    package.setLevel(saved[2])
    logging.captureWarnings(False)


def test_configure_installs_one_handler_however_often_it_runs(
    root: logging.Logger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SKYPANDA_LOG_LEVEL", raising=False)
    # Given logging set up three times (the last keeping what is there)
    first = logs.configure(json_lines=True, level="WARNING")
    second = logs.configure(json_lines=True, level="WARNING")
    kept = logs.configure(json_lines=False, keep=True)
    ours = [h for h in root.handlers if getattr(h, "_skypanda_handler", False)]
    assert ours == [second] and kept is second and first not in root.handlers
    # When skypanda logs at INFO and WARNING, and a library at INFO
    logging.getLogger("skypanda.x").info("quiet")
    logging.getLogger("skypanda.x").warning("loud")
    logging.getLogger("urllib3.x").info("library chatter")
    # Then only the warning reaches stderr, as JSON
    lines = capsys.readouterr().err.splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["loud"]
    with pytest.raises(ValueError, match="log level 'LOUD'"):
        logs.configure(level="loud")


def test_the_level_variable_wins_over_the_callers_level(
    root: logging.Logger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SKYPANDA_LOG_LEVEL", "debug")
    logs.configure(json_lines=False, level="WARNING")
    logging.getLogger("skypanda.x").debug("details")
    assert "DEBUG skypanda.x: details" in capsys.readouterr().err


def test_events_are_announced_to_listeners_whatever_the_log_level(root: logging.Logger) -> None:
    # Given a listener (the API server's histograms), a broken one, and logs at ERROR only
    heard: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    def broken(*_: Any) -> None:
        raise RuntimeError("listener bug")

    def good(name: str, labels: Any, fields: Any) -> None:
        heard.append((name, dict(labels), dict(fields)))

    logs.listen(broken)
    logs.listen(good)
    logs.listen(good)  # once is enough
    logging.getLogger("skypanda").setLevel(logging.ERROR)
    try:
        # When an event is announced inside a labelled block
        with logs.labels(task="t1"):
            logs.announce(LogEvent.JOB_DISPATCHED, {"queue": "q"}, {"latency_s": 2.5})
    finally:
        logs.unlisten(broken)
        logs.unlisten(good)
    # Then the good listener heard it once, with the context's labels; the broken one did not
    # stop it (its failure is logged, not raised)
    assert heard == [("job.dispatched", {"task": "t1", "queue": "q"}, {"latency_s": 2.5})]
