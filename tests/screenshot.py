"""Take docs/web.png and docs/web-phone.png: the page in headless Chromium, mid-conversation with a socket client.

Run ``.venv/bin/python -m tests.screenshot`` after changing anything in tinytcp/web/static/;
the PNG records a digest of those files, and tests/test_browser.py fails when it is stale.
"""

from __future__ import annotations

import sys

from tests.browser import MISSING, PHONE_SCREENSHOT, SCREENSHOT, chromium, page_digest, stamp_png, text_of, wait_for
from tests.support import RunningServer, read_lines


def main() -> int:
    if MISSING:
        print(MISSING, file=sys.stderr)
        return 1
    from selenium.webdriver.common.keys import Keys

    server = RunningServer("--web-port", "0")
    driver = chromium(1100, 1070)
    try:
        driver.get(f"http://127.0.0.1:{server.ports_of('web', 1)[0]}/")
        wait_for(driver, lambda d: "Connected" in text_of(d, "connection"), what="WELCOME")
        with server.connect() as bob, server.connect() as guest:
            read_lines(bob, 1)
            read_lines(guest, 1)
            bob.sendall(b"NICK bob\n")
            read_lines(bob, 1)
            driver.switch_to.active_element.send_keys("ann" + Keys.ENTER)
            wait_for(driver, lambda d: d.find_element("id", "message").is_enabled(), what="NICK ann")
            bob.sendall(b"SAY hi ann, I am on nc\n")
            wait_for(driver, lambda d: "I am on nc" in text_of(d, "chat"), what="bob's message")
            driver.switch_to.active_element.send_keys("hello bob, this is a browser" + Keys.ENTER)
            wait_for(driver, lambda d: "this is a browser" in text_of(d, "chat"), what="ann's message")
            driver.switch_to.active_element.send_keys(Keys.TAB + Keys.TAB + Keys.TAB + "HELP" + Keys.ENTER)
            wait_for(driver, lambda d: "HELP TIME" in text_of(d, "console-log"), what="HELP's reply")
            driver.switch_to.active_element.send_keys("rev stressed" + Keys.ENTER)
            wait_for(driver, lambda d: "REVERSE desserts" in text_of(d, "console-log"), what="REVERSE's reply")
            wait_for(driver, lambda d: "online\n3" in text_of(d, "status"), what="the status")
            driver.execute_script("window.scrollTo(0, 0)")
            png = driver.get_screenshot_as_png()
            driver.set_window_size(390, 844)
            driver.execute_script("document.getElementById('message').focus(); window.scrollTo(0, 0)")
            phone = driver.get_screenshot_as_png()
    finally:
        driver.quit()
        server.stop()
    for path, image in ((SCREENSHOT, png), (PHONE_SCREENSHOT, phone)):
        path.write_bytes(stamp_png(image, page_digest()))
        print(f"wrote {path} ({len(image)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
