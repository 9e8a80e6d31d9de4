"""A report's children released in its own request on the gcp backend (issue 17), on the
emulators: the job.ended event is flagged `in_request`, so the `release` function (Eventarc)
skips the children step the request does; the request says when it is done
(`Outbox.mark_released`), and a release it never did (the request died between the report's
commit and the release) is found by the sweep (`lost_events`) and sent again, unflagged, to
be released in full."""

from __future__ import annotations

import time
from typing import Any

import pytest

from skypanda.domain.records import JobReport
from skypanda.domain.states import WORKFLOW_FINAL, JobStatus, WorkflowStatus
from skypanda.handlers import dispatch
from skypanda.handlers.services import Services
from skypanda.handlers.sweep import resend_lost
from skypanda.runtime.emulated import EmulatedCloud
from skypanda.runtime.gcp import PILOT_LONG_POLL_S, PILOT_REPORT_DELAY_S
from tests.e2e import test_critical_path_cloud as cloud_path
from tests.e2e.conftest import wait_until
from tests.e2e.test_critical_path_cloud import Pilot, _jobs, _pipeline

pytestmark = pytest.mark.e2e

quiet = cloud_path.quiet  # the fixture: the gcp backend on the emulators, launching no pilot

RESEND_AFTER_S = 300.0  # EmulatedOptions.resend_lost_after_s


def _event(cloud: EmulatedCloud, event_id: str) -> dict[str, Any]:
    """The outbox document of an event (through the system's own client)."""
    doc = cloud.firestore.collection(cloud.store.collection("events")).document(event_id).get()
    assert doc.exists, event_id
    return doc.to_dict() or {}


def _nothing_for_the_sweep(cloud: EmulatedCloud, event_id: str) -> bool:
    """Once the event was handled (the release function marks it so after the release,
    through the Eventarc stand-in: a moment after the reply), the sweep would not send it
    again."""
    wait_until(lambda: _event(cloud, event_id)["delivered"], 90, f"{event_id} to be handled")
    return event_id not in _lost_later(cloud)


def _report_then_die(
    cloud: EmulatedCloud, pilot: Pilot, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pilot's report that `job_id` finished commits, and its request dies before it
    releases the job's children."""

    def dies(svc: Services, ended: Any) -> None:
        raise RuntimeError("the function instance died")

    with monkeypatch.context() as patch:
        patch.setattr(dispatch, "_release_now", dies)
        with pytest.raises(RuntimeError):
            dispatch.update(cloud.svc, pilot.id, [_finished(job_id)], {}, acquire_n=1)


def _finished(job_id: str) -> JobReport:
    return JobReport(job_id=job_id, attempt=1, status=JobStatus.FINISHED, exit_code=0)


def _lost_later(cloud: EmulatedCloud) -> dict[str, dict[str, Any]]:
    """What the sweep would send again once the re-send delay has passed: id -> data."""
    lost = cloud.store.lost_events(time.time() + RESEND_AFTER_S + 1, 100)
    return {s.event.id: s.event.data for s in lost}


def test_a_release_the_request_never_did_is_done_by_the_sweeps_resend(
    quiet: EmulatedCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a workflow a -> b -> c on the emulators, and a pilot holding a
    wf = _pipeline(quiet, ["a", "b", "c"])
    pilot = Pilot(quiet)
    (a,) = wait_until(lambda: pilot.acquire(wait_s=5), 90, "a to be activated")
    ended_a = f"job-ended:{a['id']}:1:finished"

    # When a's report commits and the request dies before it releases a's children
    _report_then_die(quiet, pilot, a["id"], monkeypatch)

    # Then a's end is stored flagged, not said released; the release function (Eventarc)
    # handles it and leaves the children to the request: b is still not released
    assert quiet.bridge is not None
    wait_until(lambda: _event(quiet, ended_a)["delivered"], 90, "a's end to be handled")
    stored = _event(quiet, ended_a)
    assert stored["released"] is False and '"in_request": true' in stored["data"]
    assert _jobs(quiet, wf)["b"].status is JobStatus.DEFINED
    # And the sweep, once the re-send delay has passed, would send it again, unflagged
    lost = _lost_later(quiet)
    assert ended_a in lost and "in_request" not in lost[ended_a]

    # When the sweep runs then
    resend_lost(quiet.svc, time.time() + RESEND_AFTER_S + 1)
    # Then the end is delivered again (Pub/Sub) and released in full: b is activated
    b_id = _jobs(quiet, wf)["b"].id
    wait_until(
        lambda: quiet.store.get_job(b_id).status is JobStatus.ACTIVATED, 90, "b to be released"
    )
    assert _event(quiet, ended_a)["released"] is True and _nothing_for_the_sweep(quiet, ended_a)

    # When b's report releases c in its request as usual
    (b,) = pilot.acquire()
    reply = pilot.report(b, "finished", acquire=1)
    # Then c is in the reply, and b's end is said released: nothing for the sweep
    (c,) = reply["jobs"]
    ended_b = f"job-ended:{b['id']}:1:finished"
    stored = _event(quiet, ended_b)
    assert stored["released"] is True and '"in_request": true' in stored["data"]
    assert _nothing_for_the_sweep(quiet, ended_b)
    # And the workflow ends done, each job run once
    pilot.report(c, "finished", acquire=0)
    wait_until(lambda: quiet.store.get_workflow(wf.id).status in WORKFLOW_FINAL, 90, "the end")
    assert quiet.store.get_workflow(wf.id).status is WorkflowStatus.DONE
    assert {(j.status, j.attempt) for j in _jobs(quiet, wf).values()} == {(JobStatus.FINISHED, 1)}


def test_a_release_that_failed_in_the_request_is_sent_on_at_once(
    quiet: EmulatedCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a workflow a -> b, and a pilot holding a (told at registration to long-poll
    # as long as the dispatch function lets it)
    wf = _pipeline(quiet, ["a", "b"])
    pilot = Pilot(quiet)
    assert pilot.registered["long_poll_s"] == PILOT_LONG_POLL_S
    assert pilot.registered["report_delay_s"] == PILOT_REPORT_DELAY_S  # each /update is billed
    (a,) = wait_until(lambda: pilot.acquire(wait_s=5), 90, "a to be activated")
    # When the release in a's report's request fails (Firestore refused it)
    with monkeypatch.context() as patch:
        patch.setattr(dispatch, "_release_now", lambda svc, ended: None)
        pilot.report(a, "finished", acquire=0)
    # Then its end is sent on unflagged (Pub/Sub) and released in full, with no sweep
    b_id = _jobs(quiet, wf)["b"].id
    wait_until(
        lambda: quiet.store.get_job(b_id).status is JobStatus.ACTIVATED, 90, "b to be released"
    )
    assert _nothing_for_the_sweep(quiet, f"job-ended:{a['id']}:1:finished")


def test_a_report_sent_again_after_its_request_died_releases_the_children_at_once(
    quiet: EmulatedCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a workflow a -> b, and a pilot holding a
    wf = _pipeline(quiet, ["a", "b"])
    pilot = Pilot(quiet)
    (a,) = wait_until(lambda: pilot.acquire(wait_s=5), 90, "a to be activated")

    # When a's report commits, its request dies before it releases a's children (the pilot
    # hears a 5xx: Firestore said "call already cancelled" of a commit that had landed) ...
    _report_then_die(quiet, pilot, a["id"], monkeypatch)
    b_id = _jobs(quiet, wf)["b"].id
    assert quiet.store.get_job(b_id).status is JobStatus.DEFINED
    # ... and the pilot sends the same report again
    reply = pilot.report(a, "finished", acquire=1)

    # Then it is accepted, and b is released in its request: in its reply, not 300 s later
    assert reply["results"] == [{"job_id": a["id"], "accepted": True, "reason": ""}]
    assert [j["id"] for j in reply["jobs"]] == [b_id]
    # And a's end is said released: nothing left for the sweep; a ran once
    ended_a = f"job-ended:{a['id']}:1:finished"
    wait_until(lambda: _event(quiet, ended_a)["released"], 90, "a's end said released")
    assert _nothing_for_the_sweep(quiet, ended_a)
    assert quiet.store.get_job(a["id"]).attempt == 1
