"""The console's browser tests: a real cloud process with a seeded county, driven by Debian's Chromium."""

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest

from simulator.stack import CloudServer
from tests.web.helpers import ARTIFACTS, CHROMIUM, DESKTOP
from tests.web.seed import PASSWORD, County, seed

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def county(tmp_path_factory: pytest.TempPathFactory) -> Iterator[County]:
    """A running cloud with two schools, their people and devices, and one open work order."""
    workdir = tmp_path_factory.mktemp("web-cloud")
    env = {
        "CLASSOPS_CLOUD_MEDIA_DIR": str(workdir / "media"),
    }
    with mock.patch.dict(os.environ, env):
        cloud = CloudServer(workdir)
        cloud.start()
    try:
        yield seed(cloud)
    finally:
        cloud.stop()
        log = workdir / "cloud.log"
        if log.exists():
            ARTIFACTS.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, ARTIFACTS.parent / "web-cloud.log")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless; never a downloaded browser."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: the console's browser tests need Debian's chromium (make setup)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing (make setup)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def signed_in(browser, county: County) -> Iterator[Callable[..., Any]]:
    """Open a fresh browser context and sign in through the login form as one of the seeded people."""
    contexts = []

    def open_as(username: str, *, viewport: dict[str, int] = DESKTOP) -> Any:
        context = browser.new_context(viewport=viewport, base_url=county.url, locale="zh-CN", accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        # Every confirm() of the console is answered yes, as a person would after reading it.
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto("/login")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")
        return page

    yield open_as
    for context in contexts:
        context.close()
