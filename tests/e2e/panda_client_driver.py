"""Calls panda-client's Python API (`pandaclient.Client`) as a user's script does.

Runs in panda-client's own virtualenv (never the project's), started by
`tests/e2e/panda_client.py`: `python panda_client_driver.py CALL ARGS_JSON`, where CALL is a
function of `pandaclient.Client` (e.g. `getTaskStatus`, `killTask`, `retryTask`,
`insertTaskParams`, `getJobStatus`) or `wait_status` (ARGS_JSON `[task_id, [words...],
timeout_s]`: getTaskStatus until it answers one of the words). The result is printed as one
line `RESULT <json>` after whatever the client itself prints. Standard library and
pandaclient only: it imports nothing of skypanda.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def _plain(value: Any) -> Any:
    """JSON-able form of what the client returns: JobSpecs as their attribute dicts."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "_attributes"):
        return {name: _plain(getattr(value, name, None)) for name in value._attributes}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def wait_status(task_id: int, words: list[str], timeout_s: float) -> Any:
    """Ask the task's status until it is one of `words` (or the time is up): the last answer."""
    from pandaclient import Client

    deadline = time.monotonic() + timeout_s
    while True:
        answer = Client.getTaskStatus(task_id)
        if (answer[0] == 0 and answer[1] in words) or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def main() -> None:
    from pandaclient import Client

    call, args = sys.argv[1], json.loads(sys.argv[2])
    function = wait_status if call == "wait_status" else getattr(Client, call)
    result = function(*args)
    print("RESULT " + json.dumps(_plain(result)), flush=True)


if __name__ == "__main__":
    main()
