"""The web console in a real browser: the technician's flow on a phone, the county's figures against the
API's, a school admin's reach, the QR label's fault report, and the things people expect of a web page."""

import io
import re

import pytest
import segno

from cloud.web import i18n
from simulator.stack import http_json
from tests.web.helpers import CHROMIUM, PHONE, screenshot
from tests.web.seed import BOARD_A2, BOARD_B1, SCHOOL_A, SCHOOL_B, SENSOR_A1, County

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: the console's browser tests need Debian's chromium (make setup installs it)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing (make setup)")
Page = sync_api.Page
expect = sync_api.expect

# The console polls every 8 s; allow two rounds and a slow machine.
LIVE_TIMEOUT_MS = 25_000


def _photo() -> bytes:
    buffer = io.BytesIO()
    segno.make("esp32 repaired").save(buffer, kind="png", scale=4)
    return buffer.getvalue()


def _fits(page: Page, width: int) -> None:
    """Nothing on the page is wider than the screen (no sideways scrolling on a phone)."""
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"{page.url} is {scroll_width}px wide on a {width}px screen"


def _tile(page: Page, figure: str) -> str:
    return page.locator(f"[data-figure={figure}] .num").inner_text().strip()


def _tile_note(page: Page, figure: str) -> str:
    return page.locator(f"[data-figure={figure}] small").first.inner_text().strip()


def _order_of(county: County, device: str) -> int:
    orders = county.api("GET", f"/work-orders?device={device}", user="tech")["items"]
    assert orders, f"no work order for {device}"
    return int(orders[0]["id"])


def test_technician_resolves_an_order_on_a_phone_and_the_county_figures_follow(signed_in, county: County) -> None:
    order_id = _order_of(county, SENSOR_A1)
    county_page = signed_in("county")
    county_page.goto("/county")
    resolved_before = county.api("GET", "/figures?scope=county")["figures"]["resolved"]
    assert _tile_note(county_page, "mttr_h") == i18n.translate("zh-CN", "of_orders", n=resolved_before)
    watcher = signed_in("county")
    watcher.goto("/orders?status=all")
    badge = watcher.locator(f"[data-live='order:{order_id}']").first
    expect(badge).to_have_text("已派单")

    phone = signed_in("tech", viewport=PHONE)
    expect(phone).to_have_url(re.compile(r"/orders$"))
    expect(phone.locator("h1")).to_have_text("我的工单")
    card = phone.locator(f"a[href='/orders/{order_id}']")
    expect(card).to_be_visible()
    _fits(phone, PHONE["width"])
    screenshot(phone, "technician-orders-phone")

    card.click()
    expect(phone.locator("dl.facts").first).to_contain_text("教学楼")
    expect(phone.locator("dl.facts").first).to_contain_text("101")
    expect(phone.locator("body")).to_contain_text("sensor_fault")
    _fits(phone, PHONE["width"])
    screenshot(phone, "technician-order-phone")

    phone.click("button[data-action=accept]")
    expect(phone.locator(f".row [data-live='order:{order_id}']")).to_have_text("已接单")
    expect(phone.locator("#flash")).to_have_text("已完成")
    # The county's list shows the change by itself, without a reload.
    expect(badge).to_have_text("已接单", timeout=LIVE_TIMEOUT_MS)

    phone.click("button[data-action=start]")
    expect(phone.locator(f".row [data-live='order:{order_id}']")).to_have_text("处理中")

    form = phone.locator("#resolve-form")
    form.locator("textarea[name=notes]").fill("更换 CO2 传感器模块，读数恢复正常")
    form.locator("input[name=part]").first.fill("CO2 传感器 SCD40")
    form.locator("input[name=minutes]").fill("35")
    form.locator("input[name=photo]").set_input_files(
        files=[{"name": "repair.png", "mimeType": "image/png", "buffer": _photo()}]
    )
    _fits(phone, PHONE["width"])
    screenshot(phone, "technician-resolve-phone")
    phone.click("button[data-action=resolve]")
    expect(phone.locator(f".row [data-live='order:{order_id}']")).to_have_text("已解决")
    expect(phone.locator(".journal")).to_contain_text("CO2 传感器 SCD40 × 1")
    expect(phone.locator(".photos img")).to_have_count(1)
    expect(badge).to_have_text("已解决", timeout=LIVE_TIMEOUT_MS)

    detail = county.api("GET", f"/work-orders/{order_id}")
    assert detail["status"] == "resolved"
    assert detail["parts"] == {"CO2 传感器 SCD40": 1}
    assert detail["time_spent_min"] == 35
    assert len(detail["attachments"]) == 1

    county_page.reload()
    after = county.api("GET", "/figures?scope=county")["figures"]
    assert after["resolved"] == resolved_before + 1
    assert _tile_note(county_page, "mttr_h") == i18n.translate("zh-CN", "of_orders", n=after["resolved"])
    assert _tile(county_page, "mttr_h") == f"{after['mttr_h']:.2f}"
    assert _tile(county_page, "sla_compliance") == i18n.percent(after["sla_compliance"])
    screenshot(county_page, "county-dashboard")


def test_the_county_figures_on_screen_equal_the_api(signed_in, county: County) -> None:
    page = signed_in("county")
    page.goto("/county")
    first = page.locator("input[name=from]").input_value()
    last = page.locator("input[name=to]").input_value()
    report = county.api("GET", f"/figures?scope=county&from={first}&to={last}")
    figures = report["figures"]
    for name in ("online_rate", "fault_rate", "sla_compliance", "coverage"):
        assert _tile(page, name) == i18n.percent(figures[name]), name
    for name in ("mttr_h", "blackboard_hours_per_day"):
        assert _tile(page, name) == ("—" if figures[name] is None else f"{figures[name]:.2f}"), name
    assert _tile_note(page, "online_rate") == i18n.translate("zh-CN", "of_devices", n=figures["devices"])
    for school in report["schools"]:
        cells = page.locator(f"tr[data-school={school['school_code']}] td").all_inner_texts()
        assert cells[0] == school["school_name"]
        assert cells[1] == i18n.percent(school["online_rate"])
        assert cells[2] == i18n.percent(school["fault_rate"])
        assert cells[4] == i18n.percent(school["sla_compliance"])
        assert cells[5] == i18n.percent(school["coverage"])
        assert cells[6] == str(school["devices"])
    expect(page.locator("svg.chart")).to_have_count(3)
    expect(page.locator("tr[data-team]")).to_have_count(1)

    with page.expect_download() as download:
        page.click("a[href^='/county/export.csv']")
    exported = download.value.path().read_bytes()
    status, _ = http_json("GET", f"{county.url}/api/v1/figures?scope=county", token=county.tokens["county"])
    assert status == 200
    assert exported.decode("utf-8-sig").splitlines()[0].startswith("scope,id,from,to,school_code")
    assert len(exported.decode("utf-8-sig").splitlines()) == len(report["schools"]) + 2

    page.click(f"tr[data-school={SCHOOL_B}] a")
    expect(page).to_have_url(re.compile(f"/schools/{SCHOOL_B}$"))
    expect(page.locator(".room h3").first).to_contain_text("201")
    expect(page.locator(f"[data-live='device:{BOARD_B1}']")).to_be_visible()


def test_a_school_admin_reaches_only_their_own_school(signed_in, county: County) -> None:
    page = signed_in("admin_a")
    expect(page).to_have_url(re.compile(f"/schools/{SCHOOL_A}$"))
    screenshot(page, "school-classrooms")

    for path, code in (
        (f"/schools/{SCHOOL_B}", 404),
        (f"/devices/{BOARD_B1}", 404),
        (f"/d/{BOARD_B1}", 404),
        ("/county", 403),
        ("/county/export.csv", 403),
    ):
        response = page.goto(path)
        assert response is not None and response.status == code, path
        expect(page.locator(".error-text")).to_be_visible()
    other_orders = county.api("GET", f"/work-orders?school={SCHOOL_B}")["items"]
    for order in other_orders:
        response = page.goto(f"/orders/{order['id']}")
        assert response is not None and response.status == 404
    page.goto(f"/orders?status=all&school={SCHOOL_B}")
    expect(page.locator(".order-card")).to_have_count(0)
    live = page.evaluate(
        "keys => fetch('/live?keys=' + keys, {headers: {'X-Requested-With': 'fetch'}}).then(r => r.json())",
        f"device:{BOARD_B1}",
    )
    assert live == {}
    # A forged post with the page's own CSRF token is refused by the data layer, not by a hidden button.
    answer = page.evaluate(
        """async ([device]) => {
            const body = new FormData();
            body.append('csrf', document.querySelector('meta[name=csrf-token]').content);
            body.append('description', 'not my school');
            const r = await fetch('/devices/' + device + '/report', {method: 'POST', body,
                headers: {'X-Requested-With': 'fetch'}});
            return [r.status, await r.json()];
        }""",
        [BOARD_B1],
    )
    assert answer[0] == 404, answer
    answer = page.evaluate(
        """async ([school]) => {
            const body = new FormData();
            body.append('csrf', document.querySelector('meta[name=csrf-token]').content);
            body.append('name', 'power_off'); body.append('school', school); body.append('role', 'blackboard');
            const r = await fetch('/commands', {method: 'POST', body, headers: {'X-Requested-With': 'fetch'}});
            return [r.status, await r.json()];
        }""",
        [SCHOOL_B],
    )
    assert answer[0] in (403, 404), answer
    # Without the CSRF token the post is refused before it reaches the data layer.
    answer = page.evaluate(
        """async () => {
            const body = new FormData(); body.append('description', 'x');
            const r = await fetch('/devices/esp32-00000000a101/report', {method: 'POST', body});
            return r.status;
        }"""
    )
    assert answer == 403


def test_a_fault_reported_from_a_qr_label(browser, county: County, signed_in) -> None:
    context = browser.new_context(viewport=PHONE, base_url=county.url)
    try:
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(f"/d/{BOARD_A2}")
        expect(page).to_have_url(re.compile(r"/login\?next="))
        screenshot(page, "login")
        page.fill("input[name=username]", "admin_a")
        page.fill("input[name=password]", "web-console-pw-1")
        page.click("button[type=submit]")
        expect(page).to_have_url(re.compile(f"/devices/{BOARD_A2}\\?report=1"))
        form = page.locator("#report form")
        expect(form).to_be_visible()
        form.locator("textarea[name=description]").fill("黑板无法开机，电源灯不亮")
        form.locator("select[name=urgency]").select_option("high")
        _fits(page, PHONE["width"])
        screenshot(page, "qr-fault-report-phone")
        page.click("button[data-action=report]")
        expect(page).to_have_url(re.compile(r"/orders/\d+$"))
        expect(page.locator("#flash")).to_contain_text("已提交报修")
        order_id = int(page.url.rsplit("/", 1)[1])
        order = county.api("GET", f"/work-orders/{order_id}")
        assert order["device_id"] == BOARD_A2 and order["source"] == "manual" and order["urgency"] == "high"

        # Reporting the same fault twice fails with the data layer's message on screen.
        page.goto(f"/devices/{BOARD_A2}?report=1")
        page.locator("#report textarea[name=description]").fill("还是不亮")
        page.click("button[data-action=report]")
        expect(page.locator("#flash.error")).to_contain_text(f"work order {order_id}")
        expect(page).to_have_url(re.compile(f"/devices/{BOARD_A2}"))
    finally:
        context.close()


def test_school_pages_filters_language_and_paging(signed_in, county: County) -> None:
    page = signed_in("admin_a")
    page.goto("/attendance")
    rows = page.locator("tbody tr")
    expect(rows.first).to_contain_text("101")
    cells = rows.first.locator("td").all_inner_texts()
    assert cells[2:4] == ["2", "3"], cells
    screenshot(page, "school-attendance")

    page.goto("/roster")
    expect(page.locator("tbody")).to_contain_text("张三")
    page.fill("form[action='/roster/add'] input[name=card_pseudonym]", "card-001")
    page.fill("form[action='/roster/add'] input[name=person_name]", "重复的卡")
    page.click("form[action='/roster/add'] button[type=submit]")
    expect(page.locator("#flash.error")).to_be_visible()
    screenshot(page, "school-roster")

    page.goto("/alarms")
    page.select_option("select[name=state]", "raise")
    page.click("form.filters button[type=submit]")
    expect(page).to_have_url(re.compile(r"state=raise"))
    page.reload()
    expect(page.locator("select[name=state]")).to_have_value("raise")
    page.goto("/alarms")
    expect(page).to_have_url(re.compile(r"state=raise"))
    expect(page.locator("tbody")).to_contain_text("sensor_fault")
    screenshot(page, "school-alarms")

    page.goto(f"/schools/{SCHOOL_A}")
    page.click("button[data-action=all-boards-off]")
    expect(page.locator("#flash")).to_contain_text("2")
    commands = county.api("GET", "/commands", user="admin_a")
    assert commands[0]["name"] == "power_off" and commands[0]["devices"] == 2

    page.click("a.lang")
    expect(page.locator("header nav")).to_contain_text("Orders")
    expect(page.locator("h2").first).to_have_text("Classrooms")
    page.goto("/commands")
    expect(page.locator("[data-live^='batch:']").first).to_contain_text("queued")
    screenshot(page, "school-commands-en")
    page.click("a.lang")
    expect(page.locator("header nav")).to_contain_text("工单")
