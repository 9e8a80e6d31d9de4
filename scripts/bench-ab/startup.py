"""CLI start-up, before vs after, interleaved in one run.

    python scripts/bench-ab/startup.py RUNS BEFORE_SHARED [AFTER_SHARED]

Each run imports `skypanda.cli.main` in a fresh interpreter with the tree first on PYTHONPATH;
then `-X importtime` counts the modules loaded and those of Google's clients and grpc.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time


def main() -> None:
    runs = int(sys.argv[1])
    trees = {"before": sys.argv[2], "after": sys.argv[3] if len(sys.argv) > 3 else "shared"}
    times: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(runs):
        for name, path in trees.items():
            env = {**os.environ, "PYTHONPATH": path}
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import skypanda.cli.main"], env=env, check=True)
            times[name].append(time.perf_counter() - start)
    for name, path in trees.items():
        env = {**os.environ, "PYTHONPATH": path}
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import skypanda.cli.main"],
            env=env, capture_output=True, text=True, check=True,
        ).stderr  # fmt: skip
        loaded = [line.rsplit("|", 1)[-1].strip() for line in err.splitlines() if "|" in line]
        google = [m for m in loaded if m.split(".")[0] in ("google", "grpc")]
        print(
            f"{name}: median {statistics.median(times[name]) * 1000:.0f} ms, "
            f"min {min(times[name]) * 1000:.0f} ms over {runs} runs; "
            f"modules loaded {len(loaded)}, google/grpc modules {len(google)}"
        )
    ratio = statistics.median(times["after"]) / statistics.median(times["before"])
    print(f"after/before = {ratio:.2f}")


if __name__ == "__main__":
    main()
