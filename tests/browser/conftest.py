"""Headless Chromium driving the admin, served by pytest-django's live server.

Needs Debian's `chromium` and `chromium-driver` (the browser's own downloaders cannot reach
the network here). Without them the tests are skipped with that reason, unless
REQUIRE_BROWSER=1 (CI sets it), where a missing browser fails instead.
"""

import os
import shutil

import pytest

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    # Without these Chromium keeps trying to reach Google's services on a closed network.
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,1000",
)


def chromium_paths() -> tuple[str | None, str | None]:
    return shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary, driver = chromium_paths()
    if not (binary and driver):
        message = "headless Chromium not installed: apt-get install chromium chromium-driver"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    options = Options()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.implicitly_wait(5)
    yield chrome
    chrome.quit()


@pytest.fixture
def logged_in(browser, live_server, django_user_model):
    """The browser, logged in to the admin as a staff member through the login form."""
    from selenium.webdriver.common.by import By

    django_user_model.objects.create_superuser("ops", "ops@example.com", "browser-test-pw")
    browser.get(f"{live_server.url}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys("ops")
    browser.find_element(By.NAME, "password").send_keys("browser-test-pw")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # The user tools (with "Log out") appear once the admin index has loaded.
    browser.find_element(By.ID, "logout-form")
    browser.base_url = live_server.url
    return browser
