"""The real panda-client (PyPI `panda-client` 2.2.0: `prun`, `pbook`, `pandaclient.Client`)
works against skypanda unchanged, through the PanDA facade's `/api/v1` routes.

A user set up as for PanDA (`PANDA_URL`, `PANDA_AUTH=oidc`, a token from their OIDC provider)
submits tasks with `prun` (it uploads its sandbox, then posts the task parameters it builds),
reads their status, kills one and retries one with the client's Python API, and `pbook show`
lists them with their states; another user can neither kill them nor see them. skypanda's own
pilots run the jobs. A client without a valid token gets the 401 every route gives; what
skypanda does not support (a Rucio input dataset, a sandbox holding files) is refused with a
message the client prints. See `tests/e2e/panda_client.py` for how the client is installed
and where its tokens come from.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from skypanda.api.panda.mapping import panda_id
from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import Gate, fast_queue, wait_until
from tests.e2e.panda_client import (
    AUDIENCE,
    Issuer,
    PandaClient,
    install_panda_client,
    oidc_issuer,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(360)]


@pytest.fixture(scope="session")
def client_venv() -> Path:
    return install_panda_client()


@pytest.fixture
def issuer(monkeypatch: pytest.MonkeyPatch) -> Iterator[Issuer]:
    """An OIDC provider the next skypanda made trusts (its OIDC adapter reads the variables
    when the system is made)."""
    with oidc_issuer() as found:
        monkeypatch.setenv("SKYPANDA_OIDC_ISSUER", found.url)
        monkeypatch.setenv("SKYPANDA_OIDC_AUDIENCE", AUDIENCE)
        yield found


@pytest.fixture
def system(make_system: Callable[..., LocalSystem], issuer: Issuer) -> LocalSystem:
    return make_system(fast_queue(max_pilots=3))


def _alice(client_venv: Path, system: LocalSystem, issuer: Issuer, tmp_path: Path) -> PandaClient:
    token = issuer.token("alice", "Alice Smith")
    return PandaClient(client_venv, system.url, token, tmp_path / "alice")


def _submit(client: PandaClient, *args: str) -> int:
    """Submit with `prun`: the jediTaskID it read from the reply (as prun reads it)."""
    ran = client.prun(*args)
    assert ran.returncode == 0, ran.output
    found = re.search(r"jediTaskID=(\d+)", ran.output)
    assert found is not None, ran.output
    return int(found.group(1))


def _jobs(client: PandaClient, api: ApiClient, task_id: int) -> list[dict[str, Any]]:
    """The task's jobs as `Client.getJobStatus` describes them, by the PandaIDs
    `Client.getPandaIDsWithTaskID` gives (the same jobs skypanda lists for the task), with
    skypanda's job id under `skypanda`."""
    code, ids = client.call("getPandaIDsWithTaskID", task_id).result()
    assert code == 0, ids
    listed = api.call("GET", f"/v1/tasks/t{task_id:012x}/jobs", params={"offset": 0})["jobs"]
    by_panda_id = {panda_id(job["id"]): job["id"] for job in listed}
    assert sorted(ids) == sorted(by_panda_id), (ids, listed)
    code, jobs = client.call("getJobStatus", ids).result()
    assert code == 0 and [job["PandaID"] for job in jobs] == ids, jobs
    return [{**job, "skypanda": by_panda_id[job["PandaID"]]} for job in jobs]


def _wait(client: PandaClient, api: ApiClient, task_id: int, *words: str) -> str:
    """`client.wait_status`; on a timeout the error also says what skypanda sees: every
    task's jobs and the queue's pilots."""
    try:
        return client.wait_status(task_id, *words)
    except AssertionError as e:
        seen = []
        for task in api.call("GET", "/v1/tasks")["tasks"]:
            jobs = api.call("GET", f"/v1/tasks/{task['id']}/jobs", params={"offset": 0})["jobs"]
            seen += [(j["id"], j["status"], j["pilot_id"], j["error_diag"]) for j in jobs]
        pilots = api.call("GET", "/v1/pilots")["pilots"]
        fleet = [(p["id"], p["status"], p["n_jobs"], p["reason"]) for p in pilots]
        raise AssertionError(f"{e}\njobs: {seen}\npilots: {fleet}") from e


def _shown(output: str) -> dict[int, str]:
    """pbook show's table: {JediTaskID: Status}."""
    rows = {}
    for line in output.splitlines():
        cells = line.split()
        if len(cells) >= 5 and cells[0].isdigit():
            rows[int(cells[0])] = cells[2]
    return rows


def test_prun_submits_the_client_reads_kills_and_retries_and_pbook_shows_them(
    client_venv: Path, system: LocalSystem, issuer: Issuer, tmp_path: Path
) -> None:
    # Given alice, set up for panda-client with a token of her OIDC provider, and three
    # payloads: one that works, one that fails its first run only, one held until killed
    alice = _alice(client_venv, system, issuer, tmp_path)
    api = ApiClient(system.url, system.token)  # skypanda's own view, to cross-check
    marker = tmp_path / "failed-once"
    flaky = f"test -e {marker} || {{ touch {marker}; exit 7; }}"
    gate = Gate(tmp_path / "gate")  # never released: that payload runs until it is killed

    # When she submits the first two with prun, as she would to PanDA
    ok = _submit(alice, "--exec", "echo seed=%RNDM:10 | tee out.txt", "--nJobs", "3",
                 "--outputs", "out.txt", "--outDS", "user.alice.ok", "--noBuild")  # fmt: skip
    once = _submit(alice, "--exec", flaky, "--nJobs", "1", "--maxAttempt", "1",
                   "--outDS", "user.alice.once", "--noBuild")  # fmt: skip

    # Then the client API reads each status back: skypanda's pilots run the first to done,
    # its three jobs finished, each with its own %RNDM:10 (JEDI's numbers: 11, 12, 13) in
    # its log and in the out.txt skypanda kept of it
    assert _wait(alice, api, ok, "done", "failed", "aborted") == "done"
    jobs = _jobs(alice, api, ok)
    assert [(j["jobStatus"], j["jediTaskID"]) for j in jobs] == [("finished", ok)] * 3, jobs
    logs = "".join(api.call("GET", f"/v1/jobs/{j['skypanda']}/log") for j in jobs)
    assert sorted(re.findall(r"^seed=(\d+)$", logs, re.M)) == ["11", "12", "13"], logs
    kept = [out for j in jobs for out in api.call("GET", f"/v1/jobs/{j['skypanda']}")["outputs"]]
    assert {(o["name"], o["sha256"]) for o in kept} == {
        ("out.txt", hashlib.sha256(f"seed={n}\n".encode()).hexdigest()) for n in (11, 12, 13)
    }, kept
    # and the payload that fails once leaves its task failed (one attempt allowed)
    assert _wait(alice, api, once, "failed", "done") == "failed"
    ((job,),) = [_jobs(alice, api, once)]
    assert (job["jobStatus"], job["attemptNr"], job["exeErrorCode"]) == ("failed", 1, 7), job
    assert marker.exists()

    # When she submits the third (alone: a pilot may hold a job it took in advance behind a
    # payload that never ends), and it runs
    held = _submit(alice, "--exec", gate.script(mark="held"), "--nJobs", "1",
                   "--outDS", "user.alice.held", "--noBuild")  # fmt: skip
    assert len({ok, once, held}) == 3
    wait_until(lambda: "held" in gate.started(), timeout=90, what="the held payload to start")
    assert _wait(alice, api, held, "running") == "running"

    # When bob, another user, tries to kill it, and lists his tasks
    bob = PandaClient(client_venv, system.url, issuer.token("bob", "Bob Jones"), tmp_path / "bob")
    code, (accepted, diag) = bob.call("killTask", held).result()
    # Then he is refused (not his task), and his pbook show lists none of hers
    assert (code, accepted) == (0, False) and "alice" in diag, diag
    shown = bob.pbook("show")
    assert shown.returncode == 0 and "PBook user: Bob Jones" in shown.output, shown.output
    assert _shown(shown.output) == {}, shown.output

    # When she kills the held task while its payload runs
    code, (accepted, diag) = alice.call("killTask", held).result()
    assert (code, accepted) == (0, True), diag
    # Then it ends aborted
    assert _wait(alice, api, held, "aborted") == "aborted"

    # When she retries the failed task: its job runs again (a new attempt), and works
    code, (data, message) = alice.call("retryTask", once).result()
    assert code == 0 and data in (0, True), message
    assert _wait(alice, api, once, "done") == "done"
    ((job,),) = [_jobs(alice, api, once)]
    assert (job["jobStatus"], job["attemptNr"]) == ("finished", 2), job

    # Then pbook show lists the three with their states, for the user her token names
    shown = alice.pbook("show")
    assert shown.returncode == 0, shown.output
    assert "PBook user: Alice Smith" in shown.output
    assert _shown(shown.output) == {ok: "done", held: "aborted", once: "done"}, shown.output


def test_the_client_api_submits_task_parameters_of_its_own(
    client_venv: Path, system: LocalSystem, issuer: Issuer, tmp_path: Path
) -> None:
    # Given alice, and task parameters as a script or a plugin (Rubin's BPS) builds them for
    # Client.insertTaskParams: a program (transPath) and its arguments
    alice = _alice(client_venv, system, issuer, tmp_path)
    params = {
        "taskName": "user.alice.api", "uniqueTaskName": True, "vo": "skypanda",
        "prodSourceLabel": "user", "transPath": "echo", "noInput": True, "nEvents": 2,
        "nEventsPerJob": 1, "maxAttempt": 2,
        "jobParameters": [{"type": "constant", "value": "api says hello"}],
    }  # fmt: skip

    # When she inserts them
    code, (returned, message) = alice.call("insertTaskParams", params).result()

    # Then the task is taken (return code 0, the jediTaskID in the message) and its two jobs
    # run to done with her program
    assert (code, returned) == (0, 0), message
    found = re.search(r"jediTaskID=(\d+)", message)
    assert found is not None, message
    task = int(found.group(1))
    api = ApiClient(system.url, system.token)
    assert _wait(alice, api, task, "done", "failed", "aborted") == "done"
    jobs = _jobs(alice, api, task)
    assert [j["jobStatus"] for j in jobs] == ["finished"] * 2, jobs
    for job in jobs:
        assert api.call("GET", f"/v1/jobs/{job['skypanda']}/log") == "api says hello\n"
    # and the same name again is refused while that task stands (uniqueTaskName)
    code, (returned, message) = alice.call("insertTaskParams", params).result()
    assert code == 0 and returned != 0 and "user.alice.api" in message, message


@pytest.mark.parametrize("credential", ["none", "forged"])
def test_a_client_without_a_valid_token_gets_the_401(
    client_venv: Path, system: LocalSystem, issuer: Issuer, tmp_path: Path, credential: str
) -> None:
    # Given panda-client set up without PANDA_AUTH (then it sends no credential over http),
    # or with a token like the provider's but signed with another key
    forger = Issuer()
    forger.url = issuer.url
    token = None if credential == "none" else forger.token("alice", "Alice Smith")
    client = PandaClient(client_venv, system.url, token, tmp_path / "client")

    # When it asks for a task's status
    ran = client.call("getTaskStatus", 123456789)

    # Then the server refused it with the 401 (the client prints its body) and no status
    assert ran.result() == [255, None], ran.output
    says = "missing bearer token" if credential == "none" else "invalid OIDC token"
    assert '"error":"Unauthorized"' in ran.output.replace(" ", ""), ran.output
    assert says in ran.output, ran.output


def test_prun_prints_what_skypanda_does_not_support(
    client_venv: Path, system: LocalSystem, issuer: Issuer, tmp_path: Path
) -> None:
    # Given alice, set up for panda-client
    alice = _alice(client_venv, system, issuer, tmp_path)

    # When she submits over a Rucio input dataset
    dataset = "data18_13TeV:data18_13TeV.00348885.physics_Main.deriv.DAOD_PHYS.r13286_p4910"
    ran = alice.prun("--exec", "cat %IN", "--inDS", dataset, "--outDS", "user.alice.rucio",
                     "--noBuild")  # fmt: skip
    # Then prun fails with skypanda's message naming the field it does not support
    assert ran.returncode != 0, ran.output
    failed = re.search(r"task submission failed\. (.*)", ran.output)
    assert failed is not None, ran.output
    assert "dsForIN" in failed.group(1) and "Rucio" in failed.group(1), ran.output

    # When she runs prun where her files are (its sandbox holds them)
    ran = alice.prun("--exec", "sh analyse.sh", "--outDS", "user.alice.files", "--noBuild",
                     files={"analyse.sh": "echo analysed\n"})  # fmt: skip
    # Then prun stops before submitting, with skypanda's message naming the file
    assert ran.returncode != 0 and "failed to upload sandbox" in ran.output, ran.output
    assert "cannot ship prun's sandbox" in ran.output and "analyse.sh" in ran.output, ran.output
    # and neither was submitted
    shown = alice.pbook("show")
    assert shown.returncode == 0 and "PBook user: Alice Smith" in shown.output, shown.output
    assert _shown(shown.output) == {}, shown.output
