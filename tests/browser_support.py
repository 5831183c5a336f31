"""What the graph page's tests share: a real headless Chromium driven by selenium, and the rule
that a missing tool skips a test on a developer's machine but fails it in CI.

    require("chromium", shutil.which("chromium") is not None)   # skip here, fail where CI is set
    driver = start_chromium(window=(1400, 900))                  # Debian's chromium + chromedriver

The browser is the system's (`apt-get install chromium chromium-driver`, done by .ci/run):
nothing is downloaded at test time (selenium's own driver manager is never asked).
"""

import os
import shutil
import tempfile

import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


def require(what: str, available: bool) -> None:
    """Skip the test when `what` is missing, unless the environment variable CI is set: CI must run it."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not installed, and CI must run this test (.ci/run installs it)")
    pytest.skip(f"{what} is not installed")


def chromium_paths():
    """(browser, driver) paths, or None where either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def start_chromium(window=(1400, 900)):
    """A headless Chromium session with a fresh profile (skipped, or failed in CI, if none is installed)."""
    paths = chromium_paths()
    require("chromium and chromium-driver", paths is not None)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        require("selenium", False)
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in CHROMIUM_FLAGS + [f"--window-size={window[0]},{window[1]}",
                                  f"--user-data-dir={tempfile.mkdtemp(prefix='minigrad-chromium-')}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(paths[1]), options=options)
