"""`GET /metrics` after a real run on the embedded default, read with the Prometheus client's own
parser: the gauges equal what the store holds, the histograms counted what happened; who may
scrape it; and the pilots' log lines as JSON entries (SKYPANDA_LOG_FORMAT=json)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from skypanda.domain.identity import Role
from skypanda.domain.states import PILOT_LIVE, TASK_FINAL, TaskStatus
from skypanda.pilot.client import ApiClient, ApiError
from skypanda.runtime.local import LocalOptions, LocalSystem
from skypanda.wire.logs import LABELS_KEY, SOURCE_KEY
from tests.e2e.conftest import fast_queue, wait_until

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, token: str | None) -> tuple[int, str]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(f"{url}/metrics", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read().decode()


def samples(text: str) -> Samples:
    """Every sample, by (sample name, sorted labels), as the Prometheus client parses it."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def named(found: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in found.items() if n == name}


@dataclass
class Run:
    system: LocalSystem
    scraper: str
    before: Samples
    after: Samples
    tasks: list[str]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """A run on the embedded default: 4 jobs that finish, 2 that fail twice (2 attempts each),
    pilots launched as processes writing JSON lines; scraped before and after, once every
    pilot has ended (nothing moves between the scrape and the store's reads)."""
    saved = os.environ.get("SKYPANDA_LOG_FORMAT")
    os.environ["SKYPANDA_LOG_FORMAT"] = "json"  # the pilots inherit it
    home = tmp_path_factory.mktemp("metrics") / "home"
    system = LocalSystem(LocalOptions(home=home, queue=fast_queue(), tick_s=0.3)).start()
    try:
        scraper = system.users.add("scraper", Role.MONITOR)
        status, text = scrape(system.url, scraper)
        assert status == 200, text
        api = ApiClient(system.url, system.token)
        ok = api.call("POST", "/v1/tasks", {"name": "ok", "command": ["true"], "n_jobs": 4})
        bad = api.call(
            "POST", "/v1/tasks",
            {"name": "bad", "command": ["sh", "-c", "exit 3"], "n_jobs": 2, "max_attempts": 2},
        )  # fmt: skip
        tasks = [ok["id"], bad["id"]]

        def settled() -> bool:
            ended = all(system.store.get_task(t).status in TASK_FINAL for t in tasks)
            idle = not system.store.list_pilots(live=True)
            return ended and idle and not system.store.pending_events(1)  # all delivered

        wait_until(settled, timeout=120, what="tasks ended, pilots gone, events delivered")
        status, after = scrape(system.url, scraper)
        assert status == 200, after
        yield Run(system, scraper, samples(text), samples(after), tasks)
    finally:
        system.stop()
        if saved is None:
            os.environ.pop("SKYPANDA_LOG_FORMAT", None)
        else:
            os.environ["SKYPANDA_LOG_FORMAT"] = saved


def test_gauges_equal_the_stores_counts(run: Run) -> None:
    store = run.system.store
    # Jobs ended, by status and error code: as the store's jobs say
    jobs = [j for t in run.tasks for j in store.list_jobs(t, limit=100)]
    expected = Counter((str(j.status), "none" if j.error_code is None else str(j.error_code))
                       for j in jobs)  # fmt: skip
    ended = named(run.after, "skypanda_jobs_ended")
    got = {(dict(k)["status"], dict(k)["error_code"]): v for k, v in ended.items()}
    assert got == {k: float(n) for k, n in expected.items()}
    assert got == {("finished", "none"): 4.0, ("failed", "9000"): 2.0}
    # Queue depth: nothing waits on the queue
    assert named(run.after, "skypanda_queue_activated_jobs") == {(("queue", "local"),): 0.0}
    # Pilots by queue and state: as the store's pilots say (all ended by now)
    pilots = Counter((p.queue, str(p.status)) for p in store.list_pilots())
    by_state = named(run.after, "skypanda_pilots")
    assert {(dict(k)["queue"], dict(k)["status"]): v for k, v in by_state.items()} == {
        k: float(n) for k, n in pilots.items()
    }
    assert not any(s in PILOT_LIVE for _, s in pilots)


def _delta(run: Run, name: str, status: str) -> float:
    key = (name, (("status", status),))
    return run.after.get(key, 0.0) - run.before.get(key, 0.0)


def test_histograms_counted_the_runs_events(run: Run) -> None:
    # Each attempt's end, by the status it ended with (the failed ones twice: retried once);
    # each task's end; each attempt's dispatch (8: the failed ones' retries too)
    job = "skypanda_job_duration_seconds_count"
    assert _delta(run, job, "finished") == 4
    assert _delta(run, job, "failed") == 4
    task = "skypanda_task_duration_seconds_count"
    assert _delta(run, task, str(TaskStatus.DONE)) == 1
    assert _delta(run, task, str(TaskStatus.FAILED)) == 1
    latency = ("skypanda_dispatch_latency_seconds_count", (("queue", "local"),))
    assert run.after[latency] - run.before.get(latency, 0.0) == 8


def test_only_admins_and_the_monitor_role_may_scrape(run: Run) -> None:
    url, users = run.system.url, run.system.users
    assert scrape(url, None)[0] == 401
    assert scrape(url, "not-a-token")[0] == 401
    assert scrape(url, users.add("alice", Role.USER))[0] == 403
    assert scrape(url, run.system.token)[0] == 200  # the admin's
    # and the monitor role reads, but may not act
    api = ApiClient(url, run.scraper)
    assert scrape(url, run.scraper)[0] == 200
    with pytest.raises(ApiError) as refused:
        api.call("POST", "/v1/tasks", {"name": "x", "command": ["true"]})
    assert refused.value.status == 403


def test_pilots_write_one_json_entry_per_line_with_their_labels(run: Run) -> None:
    logs = sorted(Path(run.system.opts.home, "pilots").glob("*.log"))
    assert logs, "no pilot ran"
    ran_jobs = 0
    for path in logs:
        pilot = path.stem
        for n, line in enumerate(path.read_text().splitlines(), 1):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                pytest.fail(f"{path.name} line {n} is not a JSON entry: {line[:300]!r}")
            assert entry["severity"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
            assert entry["message"] and entry["time"].endswith("Z")
            assert set(entry[SOURCE_KEY]) == {"file", "line", "function"}
            labels = entry.get(LABELS_KEY, {})
            if labels:  # from registration on: the pilot and its queue
                assert labels["pilot"] == pilot and labels["queue"] == "local", line
            if entry["message"].startswith("job "):
                ran_jobs += 1
                assert labels["job"] in entry["message"], line
    assert ran_jobs >= 8  # 4 finished, 2 x 2 failed attempts: one line each at least
