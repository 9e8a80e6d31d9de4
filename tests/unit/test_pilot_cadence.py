"""A pilot beats and sends its running jobs' output at its queue's cadence (the queue settings
the server answers registration with), unless its own flags say otherwise."""

from __future__ import annotations

from typing import Any

import pytest

from skypanda.pilot import agent
from skypanda.pilot.client import ApiClient
from skypanda.pilot.config import DEFAULT_HEARTBEAT_S, DEFAULT_LOG_FLUSH_S, PilotConfig


class _Made:
    """Stands in for the Reporter and Heartbeat threads: keeps what they were made with."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def start(self) -> None:
        """Not started: the test only looks at the intervals."""


CLOUD = {"heartbeat_interval_s": 300.0, "log_flush_interval_s": 60.0}


@pytest.mark.parametrize(
    ("flags", "queue", "beat", "flush"),
    [
        ({}, CLOUD, 300.0, 60.0),  # the queue's cadence
        ({"heartbeat_interval_s": 7.0, "log_flush_s": 3.0}, CLOUD, 7.0, 3.0),  # the pilot's own
        ({}, {}, DEFAULT_HEARTBEAT_S, DEFAULT_LOG_FLUSH_S),  # a server that sends neither
    ],
)
def test_the_pilot_talks_at_its_queue_s_cadence_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
    flags: dict[str, float],
    queue: dict[str, float],
    beat: float,
    flush: float,
) -> None:
    # Given a pilot registered on a queue with `queue` settings, started with `flags`
    monkeypatch.setattr(agent, "Reporter", _Made)
    monkeypatch.setattr(agent, "Heartbeat", _Made)
    cfg = PilotConfig(server="http://127.0.0.1:1", token=None, queue="q", **flags)
    pilot = agent._Pilot(cfg, ApiClient(cfg.server, None))
    pilot.queue_cfg = dict(queue)

    # When it starts its background talk
    pilot._start_threads()
    assert pilot._executor is not None
    pilot._executor.shutdown()

    # Then it beats and flushes output at the expected intervals
    reporter, heartbeat = pilot._reporter, pilot._heartbeat
    assert isinstance(reporter, _Made) and isinstance(heartbeat, _Made)
    assert (heartbeat.args[2], reporter.args[3]) == (beat, flush)
