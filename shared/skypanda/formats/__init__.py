"""The files users write (task, workflow and queue YAML) read into domain values, and the
workflow shapes the benchmarks generate."""
