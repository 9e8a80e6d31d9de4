"""The monitor's JSON (api.monitor_data) over HTTP on a running local system: a task whose jobs
ran in real pilots, read back through filters, cursors and aggregates, and bad parameters
refused with a message naming them. The payloads' peak memory comes from the pilots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from skypanda.cli.bench_monitor import run_monitor
from skypanda.pilot.client import ApiClient, ApiError
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import wait_until

# 60 MB held for a second (the pilot samples memory every fraction of one), then exit 0 for
# the first four jobs and 3 for the others.
PAYLOAD = (
    "import sys, time; b = b'x' * (60 * 1024 * 1024); time.sleep(1.0); "
    "sys.exit(0 if int(sys.argv[1]) < 4 else 3)"
)


def every_page(api: ApiClient, path: str, key: str, **params: Any) -> list[list[Any]]:
    pages: list[list[Any]] = []
    cursor = None
    while True:
        body = api.call("GET", path, params={**params, **({"cursor": cursor} if cursor else {})})
        pages.append(body[key])
        cursor = body["next"]
        if cursor is None:
            return pages
        assert len(pages) < 50


@pytest.fixture
def ended_task(system: LocalSystem, api: ApiClient) -> dict[str, Any]:
    task: dict[str, Any] = api.call(
        "POST",
        "/v1/tasks",
        {"name": "mon-data", "command": ["python3", "-c", PAYLOAD, "{index}"], "n_jobs": 6,
         "max_attempts": 1, "resources": {"memory_mb": 500}},
    )  # fmt: skip
    done = wait_until(
        lambda: (
            (t := api.call("GET", f"/v1/tasks/{task['id']}"))["status"]
            in ("failed", "finished", "done")
            and t
        ),
        120,
        "the task to end",
    )
    assert done["status"] == "failed", done
    return task


def test_lists_filters_cursors_and_aggregates(api: ApiClient, ended_task: dict[str, Any]) -> None:
    tid = ended_task["id"]
    me = api.call("GET", "/v1/whoami")["name"]

    # Jobs: paged two at a time to the end, each once; filtered by state and by error code
    pages = every_page(api, f"/v1/tasks/{tid}/jobs", "jobs", limit=2)
    assert [len(p) for p in pages] == [2, 2, 2]
    assert [j["index"] for p in pages for j in p] == list(range(6))
    failed = api.call("GET", f"/v1/tasks/{tid}/jobs", params={"status": "failed"})
    assert [j["index"] for j in failed["jobs"]] == [4, 5] and failed["next"] is None
    code = failed["jobs"][0]["error_code"]
    by_code = api.call("GET", f"/v1/tasks/{tid}/jobs", params={"error_code": str(code)})
    assert [j["index"] for j in by_code["jobs"]] == [4, 5]
    both = api.call("GET", f"/v1/tasks/{tid}/jobs", params={"status": "failed,finished"})
    assert len(both["jobs"]) == 6

    # The error summary: one code, two jobs, with a diagnosis and a job to open
    (row,) = api.call("GET", f"/v1/tasks/{tid}/errors")["errors"]
    assert row["error_code"] == code and row["count"] == 2
    assert row["example_job"] in {j["id"] for j in failed["jobs"]}

    # Memory: the pilots measured each payload's 60 MB against the 500 asked
    points = api.call("GET", f"/v1/tasks/{tid}/memory")["points"]
    assert len(points) == 6
    assert all(p["requested_mb"] == 500 and 50 <= p["used_mb"] < 500 for p in points), points
    job = api.call("GET", f"/v1/jobs/{points[0]['job_id']}")
    assert job["max_rss_mb"] == points[0]["used_mb"]
    assert job["attempts"][-1]["max_rss_mb"] == points[0]["used_mb"]

    # Durations (about a second each), the timeline, the throughput and the failures
    buckets = api.call("GET", f"/v1/tasks/{tid}/durations")["buckets"]
    assert sum(b["count"] for b in buckets) == 4 and all(b["start"] >= 0.5 for b in buckets)
    line = api.call("GET", f"/v1/tasks/{tid}/timeline", params={"points": "5"})["points"]
    assert len(line) == 5 and line[-1]["finished"] == 4 and line[-1]["failed"] == 2
    ended = api.call("GET", "/v1/stats/throughput", params={"owner": me})["per_minute"]
    totals: dict[str, int] = {}
    for b in ended:
        totals[b["label"]] = totals.get(b["label"], 0) + b["count"]
    assert totals == {"finished": 4, "failed": 2}
    assert api.call("GET", "/v1/stats/failures")["by_code"] == [
        {"error_code": str(code), "count": 2}
    ]

    # Tasks and workflows: filters, and the `next` of a last page is null
    mine = api.call("GET", "/v1/tasks", params={"owner": me, "status": "failed", "name": "mon-"})
    assert [t["id"] for t in mine["tasks"]] == [tid] and mine["next"] is None
    assert api.call("GET", "/v1/tasks", params={"status": "done"})["tasks"] == []
    assert api.call("GET", "/v1/workflows", params={"owner": me}) == {"workflows": [], "next": None}

    # The fleet: the queue's state and its pilots, paged
    (queue,) = api.call("GET", "/v1/queues/status")["queues"]
    assert queue["queue"] == "local" and queue["activated"] == 0
    assert sum(queue["pilots"].values()) >= 1
    pilots = every_page(api, "/v1/pilots", "pilots", limit=1)
    ids = [p["id"] for page in pilots for p in page]
    assert len(ids) == len(set(ids)) == sum(queue["pilots"].values())


@pytest.mark.parametrize(
    ("path", "params", "says"),
    [
        ("/v1/tasks", {"status": "bogus"}, "query parameter status: unknown state 'bogus'"),
        ("/v1/tasks", {"cursor": "garbage!"}, "cursor 'garbage!' is not one this list gave"),
        ("/v1/tasks", {"since": "yesterday"}, "query parameter since: 'yesterday' is not a moment"),
        ("/v1/tasks", {"since": "100", "until": "50"}, "until must be after since"),
        ("/v1/tasks", {"limit": "0"}, "query parameter limit must be between"),
        ("/v1/workflows", {"status": "done,nope"}, "unknown state 'nope'"),
        ("/v1/pilots", {"status": "gone"}, "query parameter status"),
        ("/v1/stats/throughput", {"since": "0"}, "since may reach back at most 86400 s"),
        ("/v1/stats/failures", {"limit": "x"}, "query parameter limit must be an integer"),
    ],
)
def test_bad_parameters_are_refused_naming_them(
    api: ApiClient, path: str, params: dict[str, str], says: str
) -> None:
    with pytest.raises(ApiError) as e:
        api.call("GET", path, params=params)
    assert e.value.status == 422 and says in e.value.message, e.value.message


def test_a_cursor_from_other_filters_is_refused(api: ApiClient) -> None:
    for i in range(3):
        api.call("POST", "/v1/tasks", {"name": f"q{i}", "command": ["true"], "n_jobs": 1})
    first = api.call("GET", "/v1/tasks", params={"limit": "1"})
    assert first["next"] is not None
    with pytest.raises(ApiError) as e:
        api.call("GET", "/v1/tasks", params={"limit": "1", "name": "q", "cursor": first["next"]})
    assert e.value.status == 422 and "filters" in e.value.message
    with pytest.raises(ApiError) as e:
        api.call("GET", "/v1/tasks/nope/errors")
    assert e.value.status == 404


def test_bench_monitor_times_every_read_on_a_built_store(tmp_path: Path) -> None:
    # A small run of `skypanda bench monitor`: every view, route and page it times answered
    # 200 (it stops otherwise), and a second run on the same home measures without building.
    first = run_monitor(3000, 1, tmp_path)
    assert first["jobs"] == 3000 and first["tasks"] >= 3
    assert len(first["views"]) >= 20 and len(first["routes"]) >= 15
    assert all(t["max_ms"] >= 0 for t in first["routes"].values())
    again = run_monitor(3000, 1, tmp_path)
    assert again["tasks"] == first["tasks"] and set(again["routes"]) == set(first["routes"])
