"""The web monitor in a real browser (headless Chromium), against a real embedded skypanda with
real pilots: what a user does when a task fails, what another user may not do, the workflow
graph, the queues and plots, and the ways in and out (login form, `skypanda monitor` link,
logout). Each page looked at is saved as a screenshot (see conftest)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from skypanda.api.monitor import charts
from skypanda.formats.taskfile import load_file
from tests.browser.conftest import WAIT_MS, World, shoot
from tests.e2e.conftest import REPO, cli, wait_until

pytestmark = pytest.mark.e2e
expect.set_options(timeout=WAIT_MS)
PageAs = Callable[[str], Any]


def _status(world: World, task_id: str) -> str:
    return str(world.api("alice").call("GET", f"/v1/tasks/{task_id}")["status"])


def test_a_user_finds_a_failed_task_reads_why_retries_it_and_sees_it_finish(
    world: World, page_as: PageAs, shots: Path
) -> None:
    # Given alice's task whose job fails while its input is missing (the test provides it later)
    fixed = world.root / "input-fixed"
    script = (
        f'echo "reading the input"; if [ -e {shlex.quote(str(fixed))} ]; then echo "all good"; '
        'exit 0; fi; echo "cannot open input.dat" >&2; exit 3'
    )
    spec = {"name": "flaky", "command": ["sh", "-c", script], "n_jobs": 1, "max_attempts": 1}
    task_id = world.api("alice").call("POST", "/v1/tasks", spec)["id"]
    wait_until(lambda: _status(world, task_id) == "failed", what="the task to fail")

    # When alice opens the monitor, logs in and filters her tasks on the failed state
    page = page_as("alice")
    page.check("input[name=status][value=failed]")
    page.click("#filter")
    row = page.locator("#tasks tbody tr", has_text="flaky")
    expect(row).to_have_count(1)
    expect(row.locator(".badge")).to_have_text("failed")
    shoot(page, shots, "01-tasks-filtered-failed")

    # Then the task page shows it failed and why: the error summary names the code
    row.locator(f"a[href='/ui/tasks/{task_id}']").click()
    expect(page.locator("h1 .badge")).to_have_text("failed")
    expect(page.locator("#errors tbody tr")).to_have_count(1)
    expect(page.locator("#errors")).to_contain_text("9000")
    expect(page.locator("#actions #act-retry")).to_be_visible()
    expect(page.locator("[data-chart=timeline]")).to_have_attribute("data-drawn", "1")
    expect(page.locator("#spec")).to_contain_text("name: flaky")
    shoot(page, shots, "02-task-failed")

    # When she opens the failing job, she reads its error, its attempt and its log
    page.locator("#errors tbody a").first.click()
    expect(page.locator("#job-status .badge")).to_have_text("failed")
    expect(page.locator("#job-error")).to_contain_text("error 9000")
    expect(page.locator("#job-error")).to_contain_text("exit code 3")
    attempt = page.locator("#attempts tbody tr")
    expect(attempt).to_have_count(1)
    expect(attempt).to_contain_text("local")  # the queue it ran on
    expect(page.locator("#log-text")).to_contain_text("cannot open input.dat")
    shoot(page, shots, "03-job-failed")
    with page.expect_download() as download:
        page.click("#download-log")
    whole = Path(download.value.path()).read_text()
    assert "reading the input" in whole and "cannot open input.dat" in whole

    # When the input is fixed and she retries the task, confirming in the dialog
    fixed.write_text("")
    page.click(f"h1 a[href='/ui/tasks/{task_id}']")
    page.click("#act-retry")
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm-text")).to_contain_text("Retry task flaky?")
    shoot(page, shots, "04-task-confirm-retry")
    page.click("#confirm-ok")
    expect(page.locator("#note")).to_contain_text("Retried: 1 job run again")

    # Then the page follows the task live until it is done
    expect(page.locator("h1 .badge")).to_have_text("done")
    expect(page.locator("#counts")).to_contain_text("finished")
    expect(page.locator("#actions")).to_have_count(0)  # nothing left to do on a done task
    shoot(page, shots, "05-task-done")
    page.locator("#job-table tbody a").first.click()
    expect(page.locator("#attempts tbody tr")).to_have_count(2)  # both attempts are kept
    expect(page.locator("#log-text")).to_contain_text("all good")
    shoot(page, shots, "06-job-second-attempt")


def test_a_user_sees_no_actions_on_someone_elses_task_and_cannot_post_one(
    world: World, page_as: PageAs, shots: Path
) -> None:
    # Given alice's task, running until the test lets it end
    go = world.root / "go-shared"
    script = f"while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.1; done; echo finished"
    spec = {"name": "alices", "command": ["sh", "-c", script], "n_jobs": 1}
    task_id = world.api("alice").call("POST", "/v1/tasks", spec)["id"]
    try:
        wait_until(lambda: _status(world, task_id) == "running", what="the task to run")
        # Alice, its owner, is offered the actions
        alice = page_as("alice")
        alice.goto(f"{world.url}/ui/tasks/{task_id}")
        expect(alice.locator("#actions #act-kill")).to_be_visible()

        # When bob opens it
        bob = page_as("bob")
        bob.goto(f"{world.url}/ui/tasks/{task_id}")
        expect(bob.locator("h1 .badge")).to_have_text("running")
        # Then he reads it but is offered no action
        expect(bob.locator("#actions")).to_have_count(0)
        expect(bob.locator("button#act-kill")).to_have_count(0)
        shoot(bob, shots, "07-task-of-someone-else")

        # And a kill posted with his own session and CSRF token is refused, naming the owner
        csrf = bob.locator("input[name=csrf]").first.get_attribute("value")
        status, text = _post(bob, f"/ui/tasks/{task_id}/kill", {"csrf": csrf})
        assert status == 403 and "belongs to alice; bob cannot kill" in text
        # And one without the CSRF token is refused before anything is looked at
        status, text = _post(bob, f"/ui/tasks/{task_id}/kill", {})
        assert status == 403 and "CSRF" in text
        assert _status(world, task_id) == "running"
    finally:
        go.write_text("")
    wait_until(lambda: _status(world, task_id) == "done", what="alice's task to end")


def _post(page: Any, path: str, form: dict[str, str | None]) -> tuple[int, str]:
    """POST a form from the page (the browser sends its session cookie)."""
    result: list[Any] = page.evaluate(
        """async ([path, form]) => {
            const reply = await fetch(path, {method: "POST", body: new URLSearchParams(form)});
            return [reply.status, await reply.text()];
        }""",
        [path, {k: v for k, v in form.items() if v is not None}],
    )
    return int(result[0]), str(result[1])


def test_the_workflow_page_draws_the_task_graph_with_states_and_iterations(
    world: World, page_as: PageAs, shots: Path
) -> None:
    # Given the refine-loop example (a loop of fit and check that converges at iteration 3)
    spec = load_file(REPO / "workflows" / "refine-loop.yaml")
    body = {"workflow": spec.model_dump(mode="json", by_alias=True, exclude_none=True)}
    wf_id = world.api("alice").call("POST", "/v1/workflows", body)["id"]
    wait_until(
        lambda: world.api("alice").call("GET", f"/v1/workflows/{wf_id}")["status"] == "done",
        what="the workflow to end",
    )
    # When alice opens it from the workflows list
    page = page_as("alice")
    page.click("header nav a:text('Workflows')")
    page.locator(f"#workflows a[href='/ui/workflows/{wf_id}']").click()
    # Then the graph is drawn: one box per task, with its state, the loop's iterations
    expect(page.locator("#dag")).to_have_attribute("data-drawn", "1")
    nodes = page.locator("#dag g.node")
    expect(nodes).to_have_count(4)
    expect(page.locator("#dag g.node[data-task=fit]")).to_contain_text("iteration 3")
    expect(page.locator("#dag g.node[data-task=publish]")).to_have_attribute("data-status", "done")
    expect(page.locator("#dag g.node[data-task=give_up]")).to_have_attribute(
        "data-status", "skipped"
    )
    expect(page.locator("#dag g.cluster")).to_contain_text("loop refine")
    expect(page.locator("#dag g.edge")).to_have_count(3)  # fit->check, check->publish, give_up
    # And every iteration's task is listed with its progress
    expect(page.locator("#wf-tasks tbody tr")).to_have_count(8)  # fit and check x3, 2 after
    shoot(page, shots, "08-workflow")
    # A box opens its task
    page.locator("#dag g.node[data-task=publish]").click()
    expect(page.locator("h1")).to_contain_text("publish")


def test_queues_pilots_and_plots_are_drawn(
    world: World, page_as: PageAs, shots: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the jobs the tests above ran, and one that failed for good
    spec = {"name": "broken", "command": ["sh", "-c", "exit 7"], "n_jobs": 2, "max_attempts": 1}
    task_id = world.api("alice").call("POST", "/v1/tasks", spec)["id"]
    wait_until(lambda: _status(world, task_id) == "failed", what="the task to fail")
    # When alice opens the queues page
    page = page_as("alice")
    page.click("header nav a:text('Queues & pilots')")
    queue = page.locator("#queues tbody tr", has_text="local")
    expect(queue).to_have_count(1)
    expect(page.locator("#pilots tbody tr").first).to_be_visible()
    queue.locator("a").first.click()
    expect(page.locator("#activated")).to_be_visible()
    shoot(page, shots, "09-queues")
    # And the plots: jobs ended per minute by state, failures by code
    page.click("header nav a:text('Plots')")
    expect(page.locator("[data-chart=throughput]")).to_have_attribute("data-drawn", "1")
    expect(page.locator("[data-chart=failures]")).to_have_attribute("data-drawn", "1")
    shoot(page, shots, "10-plots")
    # And a big task's charts come after its page (here every task counts as big)
    monkeypatch.setattr(charts, "EMBED_JOBS", 0)
    page.goto(f"{world.url}/ui/tasks/{task_id}")
    expect(page.locator("[data-chart=timeline]")).to_have_attribute("data-drawn", "1")
    expect(page.locator("[data-chart=durations]")).to_have_attribute("data-drawn", "empty")
    assert page.locator("#data-timeline").count() == 0  # not in the page: fetched
    # And the tasks list shows everyone's with the owner filter
    page.goto(f"{world.url}/ui/tasks?owner=*")
    expect(page.locator("#tasks tbody tr").first).to_be_visible()
    shoot(page, shots, "11-tasks-everyone")


def test_a_one_time_link_from_skypanda_monitor_logs_in_and_logout_ends_the_session(
    world: World, browser: Any, shots: Path
) -> None:
    # Given the link `skypanda monitor` prints for the admin who started the system
    run = cli(world.system, "monitor")
    assert run.returncode == 0, run.stderr
    link = run.stdout.strip()
    assert re.fullmatch(re.escape(world.url) + r"/ui/login\?code=[\w=-]+", link), link
    me = world.system.users.users()[0].name
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    try:
        page = context.new_page()
        # When it is opened, the user is logged in and the address keeps no code
        page.goto(link)
        page.wait_for_url(re.compile(r"/ui/tasks$"))
        expect(page.locator("#whoami")).to_have_text(me)
        cookie = next(c for c in context.cookies() if c["name"] == "skypanda_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
        # And it works once only
        other = browser.new_context()
        try:
            again = other.new_page()
            reply = again.goto(link)
            assert reply is not None and reply.status == 401
            expect(again.locator("#login-problem")).to_contain_text("used already")
            shoot(again, shots, "12-login-link-used")
        finally:
            other.close()
        # When the user logs out, the session is gone
        page.click("#logout")
        page.wait_for_url(re.compile(r"/ui/login"))
        reply = page.goto(f"{world.url}/ui/tasks")
        assert reply is not None and reply.status == 401
        expect(page.locator("#token")).to_be_visible()
        shoot(page, shots, "00-login")
    finally:
        context.close()


def test_a_user_kills_one_running_job_from_its_page_and_its_task_goes_on(
    world: World, page_as: PageAs, shots: Path
) -> None:
    # Given alice's task of two jobs: the first would run until the test lets it end
    go = world.root / "go-kill-job"
    script = (
        f'if [ "$1" = 0 ]; then while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.1; done; fi; '
        "echo done"
    )
    command = ["sh", "-c", script, "sh", "{index}"]
    spec = {"name": "one-stuck", "command": command, "n_jobs": 2, "max_attempts": 3}
    task_id = world.api("alice").call("POST", "/v1/tasks", spec)["id"]
    try:

        def first() -> dict[str, Any]:  # ({} until the task is split)
            jobs = world.api("alice").call("GET", f"/v1/tasks/{task_id}/jobs")["jobs"]
            return next((j for j in jobs if j["index"] == 0), {})

        wait_until(lambda: first().get("status") == "running", what="the first job to run")
        job_id = first()["id"]
        # When alice opens that job's page and kills it, confirming
        page = page_as("alice")
        page.goto(f"{world.url}/ui/jobs/{job_id}")
        page.click("#act-kill-job")
        expect(page.locator("#confirm-text")).to_contain_text("Only this job")
        page.click("#confirm-ok")
        # Then the page says its pilot stops it, and it ends cancelled, not retried
        expect(page.locator("#note")).to_contain_text("Kill requested")
        expect(page.locator("#act-kill-job")).to_have_count(0)
        shoot(page, shots, "11-job-kill-requested")
        wait_until(lambda: first()["status"] == "cancelled", what="the killed job to end")
        assert first()["attempt"] == 1
        # And the task's other job ran on: the task ends failed (one cancelled), not killed
        wait_until(lambda: _status(world, task_id) in ("failed", "done"), what="the task's end")
        jobs = world.api("alice").call("GET", f"/v1/tasks/{task_id}/jobs")["jobs"]
        assert sorted(j["status"] for j in jobs) == ["cancelled", "finished"]
    finally:
        go.write_text("")
