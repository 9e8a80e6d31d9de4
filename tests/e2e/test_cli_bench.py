"""`skypanda bench cli` measures the installed command's start-up."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli_up import run_cli


def test_bench_cli_times_version_and_status(tmp_path: Path) -> None:
    # When the benchmark runs (two runs each: the figures, not the budget, are checked here:
    # the budget holds on an idle machine, and tests share two busy cores)
    done = run_cli(tmp_path, "bench", "cli", "--runs", "2", "--json", timeout=300)
    # Then it reports the median, min, max and CPU time of both commands, and the target
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["runs"] == 2 and result["target_s"] == 0.3
    for name in ("version", "status"):
        r = result[name]
        assert 0 < r["min_s"] <= r["median_s"] <= r["max_s"]
        assert r["cpu_median_s"] > 0
    assert result["within_target"] == (
        max(result["version"]["median_s"], result["status"]["median_s"]) <= 0.3
    )
