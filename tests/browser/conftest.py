"""The browser tests' world: one headless Chromium for the session (Debian's, driven by
Playwright), one embedded skypanda per test module with users alice and bob, and a screenshot
of each page a test looks at.

Chromium is Debian's `/usr/bin/chromium` (`scripts/install-chromium` installs it); Playwright
never downloads a browser here. Each browser context is a fresh profile (Playwright launches
Chromium on a new temporary user-data-dir and each context is private: no cookie crosses from
one user to the other). Screenshots go to $SKYPANDA_SCREENSHOTS, else
`test-artifacts/screenshots` in the repository (ignored by git).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from skypanda.domain.identity import Role
from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalOptions, LocalSystem
from tests.e2e.conftest import REPO, fast_queue

CHROMIUM = Path(os.environ.get("SKYPANDA_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]  # fmt: skip
WAIT_MS = 60_000
"""How long an expectation waits for the page (CI runs on 2 busy cores)."""


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"the browser tests need Chromium at {CHROMIUM} (Debian: apt-get install chromium; "
            "`scripts/install-chromium` installs it)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def shots() -> Path:
    where = os.environ.get("SKYPANDA_SCREENSHOTS") or str(REPO / "test-artifacts" / "screenshots")
    path = Path(where)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class World:
    system: LocalSystem
    tokens: dict[str, str]
    root: Path

    @property
    def url(self) -> str:
        return self.system.url

    def api(self, who: str) -> ApiClient:
        return ApiClient(self.system.url, self.tokens[who])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """An embedded skypanda (real pilots) with two users, for one test module."""
    root = tmp_path_factory.mktemp("monitor")
    system = LocalSystem(
        LocalOptions(home=root / "home", queue=fast_queue(max_pilots=2), tick_s=0.3)
    ).start()
    try:
        tokens = {who: system.users.add(who, Role.USER) for who in ("alice", "bob")}
        yield World(system, tokens, root)
    finally:
        system.stop()


@pytest.fixture
def page_as(
    browser: Any, world: World, shots: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], Any]]:
    """A new private browser context logged in as `who` through the login form; the page."""
    contexts: list[Any] = []

    def login(who: str) -> Any:
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        page = context.new_page()
        reply = page.goto(world.url + "/ui/tasks")
        assert reply is not None and reply.status == 401  # not logged in: the login form
        page.fill("#token", world.tokens[who])
        page.click("#login")
        page.wait_for_url(re.compile(r"/ui/tasks"))
        assert page.inner_text("#whoami") == who
        return page

    yield login
    for context in contexts:
        context.close()


def shoot(page: Any, shots: Path, name: str) -> Path:
    """Save a full-page screenshot as `<name>.png`."""
    path = shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
