"""The payload of `skypanda bench chaos`: a script run by path (`python -I -S chaos_payload.py
RECORDS SEED MIN_S MAX_S`), standard library only; nothing imports it.

It records every run of a job in `RECORDS/<job id>.rec`, one line per event, appended with
O_APPEND (lines of concurrent runs never mix):

    start JOB ATTEMPT PILOT PID T0 0 LOCK    when it starts
    end   JOB ATTEMPT PILOT PID T0 T1 LOCK   when it ran to its end (exit 0)
    term  JOB ATTEMPT PILOT PID T0 T1 LOCK   when a SIGTERM stopped it (exit 143)

A run SIGKILLed leaves only its start line. LOCK says whether the run held the job's lock
(`RECORDS/<job id>.lock`, flock) from its start: `alone`, or `overlap` when another run of the
same job held it, i.e. was alive at that moment. The kernel drops a lock when its process dies,
SIGKILL included, so `overlap` is never a run that already died: two runs of one job alive at
once are seen even when neither lived to write its end.

It sleeps for a time drawn from the job id and SEED (between MIN_S and MAX_S), the same for
every attempt of a job.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
import zlib


def main(argv: list[str]) -> int:
    records, seed, low, high = argv[0], argv[1], float(argv[2]), float(argv[3])
    job = os.environ["SKYPANDA_JOB_ID"]
    attempt = os.environ["SKYPANDA_ATTEMPT"]
    pilot = os.path.basename(os.path.dirname(os.environ["SKYPANDA_WORKDIR"]))
    lock = os.open(os.path.join(records, job + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held = "alone"
    except OSError:
        held = "overlap"
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    out = os.open(os.path.join(records, job + ".rec"), flags, 0o600)
    start = time.time()

    def record(kind: str, end: float) -> None:
        line = f"{kind} {job} {attempt} {pilot} {os.getpid()} {start:.6f} {end:.6f} {held}\n"
        os.write(out, line.encode())

    def on_term(signum: int, frame: object) -> None:
        record("term", time.time())
        os._exit(143)

    signal.signal(signal.SIGTERM, on_term)  # first: a run stopped at once still says so
    record("start", 0.0)
    span = max(0.0, high - low)
    time.sleep(low + span * (zlib.crc32(f"{seed}:{job}".encode()) % 1000) / 1000)
    record("end", time.time())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
