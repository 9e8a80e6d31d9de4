"""The monitor over HTTP as a browser speaks it (Flask's test client keeps cookies like one): the
login form and its nonce, the session cookie's attributes, CSRF on every POST, what a session
stops at (revocation, a pilot's token), login links, the audit trail, and the live routes.
Real SQLite store; no Chromium needed here (tests/browser/test_monitor.py drives one)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skypanda.adapters.local.tokens import LocalTokens
from skypanda.api.app import create_app
from skypanda.api.monitor import charts
from skypanda.domain.identity import Role
from skypanda.domain.jobflow import log_key
from skypanda.domain.models import Queue
from skypanda.handlers.pipeline import Pipeline
from skypanda.handlers.services import Services
from skypanda.runtime.router import Router
from tests.support import FakeClock, sqlite_services


class Site:
    def __init__(self, svc: Services, users: LocalTokens, app: Any) -> None:
        self.svc = svc
        self.users = users
        self.app = app
        self.tokens = {
            "alice": users.add("alice", Role.USER),
            "bob": users.add("bob", Role.USER),
            "pilot": users.add("pilot1", Role.PILOT),
        }

    def browser(self, base_url: str = "http://localhost") -> Any:
        """A client that keeps cookies, as a browser does."""
        client = self.app.test_client()
        client.environ_base["wsgi.url_scheme"] = base_url.split(":")[0]
        return client

    def login(self, who: str, scheme: str = "http") -> Any:
        client = self.browser(scheme)
        reply = login_form(client, self.tokens[who], scheme=scheme)
        assert reply.status_code == 303, reply.get_data(as_text=True)
        return client

    def task(self, owner: str, n_jobs: int = 2) -> str:
        body = {"name": "work", "command": ["true"], "n_jobs": n_jobs}
        reply = self.app.test_client().post("/v1/tasks", json=body, headers=self.bearer(owner))
        assert reply.status_code == 201, reply.get_json()
        Router(Pipeline(self.svc), self.svc.store).drain()  # split it into jobs
        return str(reply.get_json()["id"])

    def bearer(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with sqlite_services(tmp_path, FakeClock(), Queue(name="local")) as svc:
        users = LocalTokens(tmp_path / "users.json")
        yield Site(svc, users, create_app(svc, users, session_key=b"s" * 32))


def _field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} field"
    return found.group(1)


def login_form(client: Any, token: str, *, scheme: str = "http", path: str = "/ui/tasks") -> Any:
    """Open a page, get the login form (401), post the token with the form's nonce."""
    shown = client.get(path, base_url=f"{scheme}://localhost")
    assert shown.status_code == 401
    html = shown.get_data(as_text=True)
    form = {"token": token, "nonce": _field(html, "nonce"), "next": _field(html, "next")}
    return client.post("/ui/login", data=form, base_url=f"{scheme}://localhost")


def _cookie(reply: Any, name: str) -> str:
    headers = [h for h in reply.headers.getlist("Set-Cookie") if h.startswith(name + "=")]
    assert len(headers) == 1, reply.headers.getlist("Set-Cookie")
    return str(headers[0])


def _csrf(client: Any, path: str = "/ui/tasks") -> str:
    return _field(client.get(path).get_data(as_text=True), "csrf")


def test_a_page_asked_for_without_a_session_is_the_login_form_which_returns_to_it(
    site: Site,
) -> None:
    client = site.browser()
    # When a page is opened with no session
    shown = client.get("/ui/jobs/j1?attempt=2")
    # Then the answer is 401 with the login form, which will come back to that page
    assert shown.status_code == 401 and shown.mimetype == "text/html"
    html = shown.get_data(as_text=True)
    assert 'id="token"' in html and _field(html, "next") == "/ui/jobs/j1?attempt=2"
    nonce_cookie = _cookie(shown, "skypanda_login")
    assert "HttpOnly" in nonce_cookie and "SameSite=Strict" in nonce_cookie
    assert "Path=/ui/login" in nonce_cookie
    # And the form brings the user there once logged in
    form = {"token": site.tokens["alice"], "nonce": _field(html, "nonce"), "next": "/ui/plots"}
    reply = client.post("/ui/login", data=form)
    assert reply.status_code == 303 and reply.headers["Location"] == "/ui/plots"
    assert client.get("/ui/plots").status_code == 200


def test_the_session_cookie_is_private_strict_expiring_and_secure_under_https(
    site: Site,
) -> None:
    reply = login_form(site.browser(), site.tokens["alice"])
    cookie = _cookie(reply, "skypanda_session")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
    assert "Max-Age=43200" in cookie and "Secure" not in cookie
    assert site.tokens["alice"] not in cookie  # the token travels sealed
    secure = login_form(site.browser("https"), site.tokens["alice"], scheme="https")
    assert "Secure" in _cookie(secure, "skypanda_session")


def test_a_wrong_token_a_pilots_token_or_a_form_from_elsewhere_starts_no_session(
    site: Site,
) -> None:
    client = site.browser()
    wrong = login_form(client, "not-a-token")
    assert wrong.status_code == 401
    assert "invalid bearer token" in wrong.get_data(as_text=True)
    assert "skypanda_session=" not in " ".join(wrong.headers.getlist("Set-Cookie"))
    empty = login_form(client, "")
    assert empty.status_code == 401 and "enter your skypanda token" in empty.get_data(as_text=True)
    # A pilot's credential is no way into the monitor
    pilot = login_form(client, site.tokens["pilot"])
    assert pilot.status_code == 403 and "pilot1 (pilot) may not call" in pilot.get_data(
        as_text=True
    )
    # A form posted from another site carries no nonce cookie (login CSRF)
    stranger = site.browser()
    posted = stranger.post("/ui/login", data={"token": site.tokens["alice"], "nonce": "x"})
    assert posted.status_code == 401
    assert "login form expired or came from elsewhere" in posted.get_data(as_text=True)


def test_every_post_with_the_session_needs_its_csrf_token(site: Site) -> None:
    task_id = site.task("alice")
    alice = site.login("alice")
    # Without the token (a form on another site), refused before anything happens
    refused = alice.post(f"/ui/tasks/{task_id}/pause", data={})
    assert refused.status_code == 403 and "CSRF" in refused.get_data(as_text=True)
    refused = alice.post(f"/ui/tasks/{task_id}/pause", data={"csrf": "guessed"})
    assert refused.status_code == 403
    assert site.svc.tasks.get_task(task_id).status != "paused"
    # With it, done, and the page says so
    done = alice.post(f"/ui/tasks/{task_id}/pause", data={"csrf": _csrf(alice)})
    assert done.status_code == 303
    assert done.headers["Location"] == f"/ui/tasks/{task_id}?done=pause&n=0"
    assert site.svc.tasks.get_task(task_id).status == "paused"
    page = alice.get(done.headers["Location"]).get_data(as_text=True)
    assert "Paused: no new job starts until it is resumed." in page
    assert 'id="act-resume"' in page and 'id="act-pause"' not in page
    # Logging out needs it too
    assert alice.post("/ui/logout", data={}).status_code == 403
    out = alice.post("/ui/logout", data={"csrf": _csrf(alice)})
    assert out.status_code == 303 and alice.get("/ui/tasks").status_code == 401


def test_actions_on_someone_elses_task_are_not_offered_and_refused(site: Site) -> None:
    task_id = site.task("alice")
    bob = site.login("bob")
    page = bob.get(f"/ui/tasks/{task_id}").get_data(as_text=True)
    assert 'id="actions"' not in page
    csrf = _csrf(bob)
    for verb, form in [("kill", {}), ("pause", {}), ("priority", {"priority": "5"})]:
        reply = bob.post(f"/ui/tasks/{task_id}/{verb}", data={"csrf": csrf, **form})
        assert reply.status_code == 403, verb
        assert "belongs to alice; bob cannot" in reply.get_data(as_text=True)
    assert site.svc.tasks.get_task(task_id).status == "ready"


def test_bad_input_is_a_page_naming_the_problem(site: Site) -> None:
    task_id = site.task("alice")
    alice = site.login("alice")
    csrf = _csrf(alice)
    bad = alice.post(f"/ui/tasks/{task_id}/priority", data={"csrf": csrf, "priority": "high"})
    assert bad.status_code == 422 and "priority must be a whole number" in bad.get_data(
        as_text=True
    )
    for path, message in [
        ("/ui/tasks/nope", "no task"),
        ("/ui/tasks?since=soon", "since: &#39;soon&#39; is not a moment"),
        ("/ui/tasks?status=weird", "unknown state"),
        (f"/ui/tasks/{task_id}?error_code=x", "error_code must be an integer"),
        ("/ui/tasks?cursor=garbage", "cursor"),
    ]:
        reply = alice.get(path)
        assert 400 <= reply.status_code < 500, path
        assert message in reply.get_data(as_text=True), path


def test_a_revoked_user_is_logged_out_at_the_next_click(site: Site) -> None:
    alice = site.login("alice")
    assert alice.get("/ui/tasks").status_code == 200
    site.users.revoke("alice")
    reply = alice.get("/ui/tasks")
    assert reply.status_code == 401
    assert "skypanda_session=;" in " ".join(reply.headers.getlist("Set-Cookie"))  # forgotten


def test_a_login_link_is_made_for_a_bearer_only_and_opens_a_session_once(site: Site) -> None:
    made = site.app.test_client().post("/ui/link", headers=site.bearer("alice"))
    assert made.status_code == 201
    url = made.get_json()["url"]
    assert url.startswith("http://localhost/ui/login?code=")
    # A page cannot mint one from a session
    alice = site.login("alice")
    assert alice.post("/ui/link", data={"csrf": _csrf(alice)}).status_code == 403
    # The link logs a browser in, once
    browser = site.browser()
    reply = browser.get(url.removeprefix("http://localhost"))
    assert reply.status_code == 303 and reply.headers["Location"] == "/ui/tasks"
    assert "alice" in browser.get("/ui/tasks").get_data(as_text=True)
    again = site.browser().get(url.removeprefix("http://localhost"))
    assert again.status_code == 401 and "used already" in again.get_data(as_text=True)


def test_actions_from_the_monitor_are_in_the_audit_trail(site: Site) -> None:
    task_id = site.task("alice")
    alice = site.login("alice")
    alice.post(f"/ui/tasks/{task_id}/pause", data={"csrf": _csrf(alice)})
    bob = site.login("bob")
    bob.post(f"/ui/tasks/{task_id}/kill", data={"csrf": _csrf(bob)})
    entries = site.svc.audit.list_audit(target_id=task_id, actor=None, since=None, before=None,
                                        limit=10)  # fmt: skip
    seen = sorted((e.actor, e.action, str(e.outcome)) for e in entries)
    assert seen == [
        ("alice", "create_task", "done"),  # by the API
        ("alice", "monitor.pause_task", "done"),
        ("bob", "monitor.kill_task", "refused"),
    ]


def test_pages_are_not_cached_and_run_only_the_monitors_scripts(site: Site) -> None:
    alice = site.login("alice")
    reply = alice.get("/ui/tasks")
    assert reply.headers["Cache-Control"] == "no-store"
    csp = reply.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    # The vendored libraries are served from the package, behind the login like every page
    for lib in ("uplot/uPlot.iife.min.js", "dagre/dagre.min.js"):
        with alice.get(f"/ui/static/vendor/{lib}") as served:  # a file: closed after
            assert served.status_code == 200 and served.mimetype == "text/javascript"
    assert site.browser().get("/ui/static/monitor.js").status_code == 401


def test_the_live_routes_answer_counts_and_a_log_tail_and_the_log_downloads_whole(
    site: Site,
) -> None:
    task_id = site.task("alice", n_jobs=3)
    alice = site.login("alice")
    live = alice.get(f"/ui/live/tasks?task={task_id}&task=unknown").get_json()
    assert live["tasks"][task_id]["counts"] == {"activated": 3}
    assert live["tasks"][task_id]["total"] == 3 and "unknown" not in live["tasks"]
    too_many = alice.get("/ui/live/tasks?" + "&".join(f"task=t{i}" for i in range(101)))
    assert too_many.status_code == 422 and "at most 100" in too_many.get_json()["message"]
    # A job's log: its tail live, the whole as a download
    job_id = f"{task_id}-000000000000"
    job_id = site.svc.jobs.list_jobs(task_id, limit=1)[0].id
    site.svc.blobs.append(log_key(job_id, 1), b"x" * 70_000 + b"the end\n")
    tail = alice.get(f"/ui/live/jobs/{job_id}").get_json()
    assert tail["status"] == "activated" and tail["tail"].endswith("the end\n")
    assert len(tail["tail"]) == 64 * 1024
    whole = alice.get(f"/ui/jobs/{job_id}/log?attempt=1")
    assert whole.headers["Content-Disposition"] == f'attachment; filename="{job_id}-attempt1.log"'
    assert len(whole.get_data()) == 70_008
    missing = alice.get(f"/ui/live/jobs/{job_id}?attempt=2")
    assert missing.status_code == 422  # no attempt 2 yet


def test_a_big_tasks_charts_come_after_its_page_one_by_one(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = site.task("alice", n_jobs=3)
    alice = site.login("alice")
    # A small task carries its charts
    page = alice.get(f"/ui/tasks/{task_id}").get_data(as_text=True)
    assert 'id="data-timeline"' in page and "data-src=" not in page
    # A big one (here: more than one job) carries where to fetch each instead
    monkeypatch.setattr(charts, "EMBED_JOBS", 1)
    page = alice.get(f"/ui/tasks/{task_id}").get_data(as_text=True)
    assert 'id="data-timeline"' not in page
    assert f'data-src="/ui/live/tasks/{task_id}/charts/timeline"' in page
    timeline = alice.get(f"/ui/live/tasks/{task_id}/charts/timeline").get_json()
    assert [s["label"] for s in timeline["series"]] == ["activated"]
    assert alice.get(f"/ui/live/tasks/{task_id}/charts/memory").get_json() == []
    unknown = alice.get(f"/ui/live/tasks/{task_id}/charts/pie")
    assert unknown.status_code == 422
    assert unknown.get_json()["message"] == "no chart 'pie'; there are timeline, durations, memory"


def test_the_session_opens_the_monitor_only_never_the_json_api(site: Site) -> None:
    # A page on another site could make the browser send the cookie to /v1 too: it counts
    # for nothing there (the API takes bearer tokens only)
    alice = site.login("alice")
    assert alice.get("/ui/tasks").status_code == 200
    reply = alice.get("/v1/whoami")
    assert reply.status_code == 401 and "missing bearer token" in reply.get_json()["message"]
    assert alice.post("/v1/tasks", json={"name": "x", "command": ["true"]}).status_code == 401


def test_a_job_is_killed_from_its_page_by_its_owner_only(site: Site) -> None:
    task_id = site.task("alice", n_jobs=2)
    job_id = site.svc.jobs.list_jobs(task_id, limit=1)[0].id
    # Bob reads alice's job but is offered no action, and his post is refused
    bob = site.login("bob")
    page = bob.get(f"/ui/jobs/{job_id}").get_data(as_text=True)
    assert 'id="act-kill-job"' not in page
    refused = bob.post(f"/ui/jobs/{job_id}/kill", data={"csrf": _csrf(bob)})
    assert refused.status_code == 403 and "bob" in refused.get_data(as_text=True)
    assert site.svc.jobs.get_job(job_id).status == "activated"
    # Alice, its owner, is offered the kill; without the CSRF token it is refused
    alice = site.login("alice")
    assert 'id="act-kill-job"' in alice.get(f"/ui/jobs/{job_id}").get_data(as_text=True)
    assert alice.post(f"/ui/jobs/{job_id}/kill", data={}).status_code == 403
    done = alice.post(f"/ui/jobs/{job_id}/kill", data={"csrf": _csrf(alice)})
    assert done.status_code == 303
    assert done.headers["Location"] == f"/ui/jobs/{job_id}?done=job_killed"
    # The queued job is cancelled, its task's other job is not, and the page says so
    assert site.svc.jobs.get_job(job_id).status == "cancelled"
    (other,) = [j for j in site.svc.jobs.list_jobs(task_id, limit=5) if j.id != job_id]
    assert other.status == "activated"
    page = alice.get(done.headers["Location"]).get_data(as_text=True)
    assert "Killed: the job was queued, and is cancelled." in page
    assert 'id="act-kill-job"' not in page  # nothing left to kill
    # Again: nothing is written, and the page says it had ended
    again = alice.post(f"/ui/jobs/{job_id}/kill", data={"csrf": _csrf(alice)})
    assert again.headers["Location"] == f"/ui/jobs/{job_id}?done=job_ended"
    # An unknown job is a page naming the problem; the trail has every try, refusals too
    assert alice.post("/ui/jobs/nope/kill", data={"csrf": _csrf(alice)}).status_code == 404
    entries = site.svc.audit.list_audit(target_id=job_id, actor=None, since=None, before=None,
                                        limit=10)  # fmt: skip
    seen = sorted((e.actor, e.action, str(e.outcome)) for e in entries)
    assert seen == [
        ("alice", "monitor.kill_job", "done"),
        ("alice", "monitor.kill_job", "done"),
        ("alice", "monitor.kill_job", "refused"),  # without its CSRF token
        ("bob", "monitor.kill_job", "refused"),
    ]


def test_a_job_s_page_says_how_long_it_waited_for_a_pilot(site: Site) -> None:
    # Given a job queued (activated) and claimed by a pilot 42 s later
    task_id = site.task("alice", n_jobs=1)
    (job,) = site.svc.jobs.list_jobs(task_id, limit=1)
    alice = site.login("alice")
    assert "for a pilot" not in alice.get(f"/ui/jobs/{job.id}").get_data(as_text=True)
    clock = site.svc.clock
    assert isinstance(clock, FakeClock)
    clock.advance(42)
    (claimed,) = site.svc.jobs.claim_jobs("local", "p1", 1, Queue(name="x").pilot_resources,
                                          clock.now())  # fmt: skip
    # Then its page says how long it waited
    page = alice.get(f"/ui/jobs/{job.id}").get_data(as_text=True)
    assert claimed.id == job.id and "<dt>Waited</dt><dd>42 s for a pilot (ready " in page
