"""The console under its Content-Security-Policy in a real browser: every page renders and runs its script
with no violation reported, and an inline style that sneaks in is reported (so the check can fail)."""

from typing import Any

import pytest

from tests.web.helpers import CHROMIUM, DESKTOP
from tests.web.seed import BOARD_A2, PASSWORD, SCHOOL_A, County

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing: the console's browser tests need Debian's chromium", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing (make setup)")
expect = sync_api.expect

# Runs in every document before the page's own script (injected by the browser, outside the policy).
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', (event) => {
    window.__violations.push(event.violatedDirective + ' ' + (event.blockedURI || 'inline'));
});
"""


class Visitor:
    """A signed-in browser page that keeps every policy violation it sees, by event and on the console."""

    def __init__(self, browser: Any, county: County, username: str) -> None:
        self.context = browser.new_context(viewport=DESKTOP, base_url=county.url, locale="zh-CN")
        self.context.add_init_script(RECORD_VIOLATIONS)
        self.page = self.context.new_page()
        self.page.on("dialog", lambda dialog: dialog.accept())
        self.console: list[str] = []
        self.page.on("console", self._on_console)
        self.visit("/login")
        self.page.fill("input[name=username]", username)
        self.page.fill("input[name=password]", PASSWORD)
        self.page.click("button[type=submit]")
        self.page.wait_for_load_state("networkidle")

    def _on_console(self, message: Any) -> None:
        if "Content Security Policy" in message.text:
            self.console.append(message.text)

    def visit(self, path: str) -> list[str]:
        """Open `path`, let its script run, and return the violations seen there (and on the console)."""
        self.console = []
        response = self.page.goto(path)
        assert response is not None and response.status == 200, f"{path}: {response and response.status}"
        assert "content-security-policy" in response.headers
        self.page.wait_for_load_state("networkidle")
        return self.page.evaluate("window.__violations") + self.console

    def close(self) -> None:
        self.context.close()


@pytest.mark.parametrize(
    ("username", "paths"),
    [
        ("county", ["/county", "/orders", "/orders?status=all", "/alarms", "/attendance", "/commands"]),
        ("admin_a", [f"/schools/{SCHOOL_A}", f"/devices/{BOARD_A2}", f"/devices/{BOARD_A2}?report=1", "/roster"]),
        ("tech", ["/orders"]),
    ],
)
def test_console_pages_meet_the_policy(browser, county: County, username: str, paths: list[str]) -> None:
    visitor = Visitor(browser, county, username)
    try:
        seen = {path: visitor.visit(path) for path in ["/login", *paths]}
        order = visitor.page.locator("a[href^='/orders/']").first
        if username != "admin_a" and order.count():
            seen["an order"] = visitor.visit(order.get_attribute("href"))
        # The script ran: the console's language switch and forms are wired up as usual.
        expect(visitor.page.locator("a.lang")).to_be_visible()
    finally:
        visitor.close()

    assert {path: found for path, found in seen.items() if found} == {}


def test_an_inline_style_is_reported(browser, county: County) -> None:
    visitor = Visitor(browser, county, "county")
    try:
        visitor.visit("/county")
        visitor.page.evaluate("document.body.setAttribute('style', 'background: red')")
        visitor.page.wait_for_function("window.__violations.length > 0")
        violations = visitor.page.evaluate("window.__violations")
        background = visitor.page.evaluate("getComputedStyle(document.body).backgroundColor")
    finally:
        visitor.close()

    assert any(v.startswith("style-src") for v in violations), violations
    assert background != "rgb(255, 0, 0)"
