#!/usr/bin/env bash
# A/B of `skypanda bench throughput`, interleaved: scripts/bench-ab/throughput.sh BEFORE AFTER
# (each the `shared/` folder of a checkout; run with the venv's python on PATH).
set -u
before=${1:?the shared/ folder of the old checkout}; after=${2:-shared}
for round in 1 2 3 4 5 6; do
  for side in before after; do
    path=$before; [ "$side" = after ] && path=$after
    r=$(PYTHONPATH=$path python -m skypanda bench throughput --jobs 4000 --pilots 2 --json 2>/dev/null | tail -1)
    echo "{\"side\":\"$side\",\"round\":$round,\"result\":$r}"
  done
done
