"""The guest's sign-in in Debian's Chromium at a phone's size, with JavaScript switched off (the
portal must work without it): the sign-in page with a promotion, the code step, the success page.
Screenshots go to docs/screenshots/portal-*.png."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.portal.app import create_portal_app
from tests.peers.smsru_standin import SmsRuStandIn
from tests.portal_support import PHONE, Clocks, RecordingGateway, clocked, portal_config, portal_system
from tests.web_support import serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE_VIEWPORT = {"width": 390, "height": 844}
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def poster_jpeg() -> bytes:
    """A promotion picture: a warm banner with a white disc, as a phone photo would be."""
    image = np.full((400, 800, 3), (40, 110, 230), np.uint8)
    cv2.circle(image, (620, 200), 130, (255, 255, 255), -1)
    cv2.rectangle(image, (60, 150), (420, 250), (255, 255, 255), -1)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


@pytest.mark.slow
async def test_sign_in_on_a_phone_without_javascript(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed (apt-get install -y chromium)")
    playwright = pytest.importorskip("playwright.async_api", reason="Playwright is missing (pip install playwright)")
    async with SmsRuStandIn.running() as sms:
        cfg = portal_config(tmp_path, sms=sms.sms_config())
        async with portal_system(cfg) as system, serve(create_portal_app(cfg, system)) as client:
            # As on a real gateway, which knows the phone's MAC: the success page then says "connected".
            clocked(system, Clocks(), RecordingGateway(macs={"127.0.0.1": "aa:bb:cc:00:00:01"}))
            promo = await system.promotions.create(
                "Кофе в подарок",
                "<p>К любой покупке от 500 ₽ — <b>капучино бесплатно</b> до конца недели.</p>",
            )
            jpeg = await system.promo_images.prepare(poster_jpeg())
            await system.promotions.set_image(promo.id, await system.promo_images.store(promo.id, jpeg))
            base = f"http://127.0.0.1:{client.port}"
            async with playwright.async_playwright() as p:
                browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                try:
                    context = await browser.new_context(
                        viewport=PHONE_VIEWPORT,
                        is_mobile=True,
                        has_touch=True,
                        java_script_enabled=False,
                        locale="ru-RU",
                    )
                    page = await context.new_page()
                    started = time.perf_counter()
                    await page.goto(f"{base}/")
                    first_view_s = time.perf_counter() - started
                    await page.get_by_role("heading", name="Кофе в подарок").wait_for()
                    image = page.locator("img.promo-image")
                    assert await image.evaluate("img => img.complete && img.naturalWidth") > 0
                    await page.screenshot(path=str(SCREENSHOTS / "portal-login.png"), full_page=True)

                    # Labels name the fields: this is how a screen reader finds them too.
                    await page.get_by_label("Номер мобильного телефона").fill("+7 916 123-45-67")
                    await page.locator("#phone-pd").check()
                    await page.get_by_role("button", name="Получить код").click()
                    await page.wait_for_url(f"{base}/login/code")
                    code = sms.last_code(PHONE)
                    assert code is not None
                    await page.get_by_label("Код из SMS").fill(code)
                    await page.screenshot(path=str(SCREENSHOTS / "portal-code.png"), full_page=True)
                    await page.get_by_role("button", name="Войти").click()
                    await page.wait_for_url(f"{base}/welcome")
                    status = page.get_by_role("status")
                    assert (await status.inner_text()).startswith("Доступ открыт до ")
                    await page.screenshot(path=str(SCREENSHOTS / "portal-success.png"), full_page=True)
                finally:
                    await browser.close()
    # Generous: a busy 2-core machine; the page itself is a few kilobytes from localhost.
    assert first_view_s < 5, first_view_s
    for name in ("portal-login.png", "portal-code.png", "portal-success.png"):
        assert (SCREENSHOTS / name).stat().st_size > 10_000
