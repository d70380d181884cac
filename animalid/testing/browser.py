"""A real headless browser for the operations page's tests: Debian's Chromium through
Selenium and Debian's chromedriver (Selenium Manager is never asked to download one).

Flags as this machine needs them (root, no GPU, no network beyond the page): a fresh
profile folder per browser, no background traffic, a fixed window size so
screenshots compare.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--disable-extensions", "--window-size=1400,1000")


def browser_missing() -> str:
    """Why no browser can run here ("" when one can): for pytest's skip."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).exists():
            return f"{path} is missing: apt-get install {package} (the Makefile's test packages)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (requirements.txt)"
    return ""


@contextmanager
def headless_chromium():
    """A Selenium WebDriver on a fresh headless Chromium, quit at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
