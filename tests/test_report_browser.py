# SPDX-License-Identifier: GPL-2.0-only
"""The report page in headless Chromium (Debian's chromium and chromedriver, driven by
Selenium): it loads from file:// with no console errors and no fetches, draws one lane
per CPU, and clicking a step (or an arrow key) shows that step's state.

Needs /usr/bin/chromium and /usr/bin/chromedriver (``apt-get install -y chromium
chromium-driver``) and the ``selenium`` package (in the ``test`` extra). Without them
these tests fail and say so: a skipped browser test would pass CI without ever having
opened the page.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_report import make_counterexample, make_simulation, page_data, run_cli

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = ("install the browser with 'apt-get install -y chromium chromium-driver' (as "
           "root) and Selenium with \"pip install -e '.[test]'\"")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: {INSTALL}")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(f"the selenium package is missing: {INSTALL}")
    profile = tmp_path_factory.mktemp("chromium-profile")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver: Any, page: Path) -> list[dict[str, Any]]:
    """Load ``page`` and wait for the script to have drawn it; the console so far."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get_log("browser")  # forget what an earlier page logged
    driver.get(page.resolve().as_uri())
    try:
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script("return document.readyState === 'complete' && "
                                       "window.pagesimReport !== undefined"))
    except TimeoutException:
        pytest.fail(f"{page}: the script never finished; console: {driver.get_log('browser')}")
    logs: list[dict[str, Any]] = driver.get_log("browser")
    return logs


def assert_clean(driver: Any, logs: list[dict[str, Any]]) -> None:
    """No console errors (a script error, a refused fetch) and no fetch at all."""
    errors = [e for e in logs if e.get("level") in ("SEVERE", "ERROR")]
    assert errors == []
    assert driver.execute_script(
        "return performance.getEntriesByType('resource').length") == 0


def click_item(driver: Any, i: int) -> Any:
    """Scroll box ``i`` into the lanes' view and click it as a user would."""
    from selenium.webdriver.common.by import By
    driver.execute_script("window.pagesimReport.reveal(arguments[0])", i)
    box = driver.find_element(By.CSS_SELECTOR, f'#canvas .step[data-i="{i}"]')
    box.click()
    return driver.find_element(By.ID, "detail")


def lanes(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By
    return [e.get_attribute("data-cpu")
            for e in driver.find_elements(By.CSS_SELECTOR, "#canvas .lane")]


# =======================================================================================


def test_counterexample_page_in_chromium(browser: Any, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    cex = make_counterexample(tmp_path, "v5.8")
    page = tmp_path / "ce.html"
    code, _, _ = run_cli(["report", str(cex), "-o", str(page)], capsys)
    assert code == 0
    doc = page_data(page.read_text())
    logs = open_page(browser, page)
    assert_clean(browser, logs)

    assert lanes(browser) == [str(c) for c in doc["cpus"]] == ["0", "1"]
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#labels div")][1:]
    assert labels == ["CPU0", "CPU1"]
    # the page opens on the violation, marked
    v = doc["violation"]["item"]
    assert browser.execute_script("return window.pagesimReport.selected()") == v
    detail = browser.find_element(By.ID, "detail")
    assert "Violation: " in detail.text and doc["violation"]["message"] in detail.text

    # a step that put a pfn on a pcplist: click it, its detail shows that move
    moves = [(i, name, sorted(set(after) - set(before or [])))
             for i, it in enumerate(doc["items"]) for name, before, after in it["changes"]
             if " pcp list[" in name and after and set(after) - set(before or [])]
    assert moves
    i, fact, added = moves[0]
    detail = click_item(browser, i)
    assert detail.get_attribute("data-item") == str(i)
    item = doc["items"][i]
    assert f"Step {i} · {item['thread']} on CPU{item['cpu']}" in detail.text
    row = detail.find_element(By.CSS_SELECTOR, f'.changes tr[data-fact="{fact}"]')
    assert row.find_element(By.CSS_SELECTOR, ".add").text.startswith(f"+{added[0]}")
    group = row.find_element(By.XPATH, "ancestor::div[@data-category]")
    assert group.get_attribute("data-category") == "pcplists"
    # and the machine after it has the pfn on that list, highlighted as changed
    changed = detail.find_elements(By.CSS_SELECTOR, ".machine tr.changed")
    assert any(r.text.startswith(fact) and str(added[0]) in r.text for r in changed)
    assert "sel" in browser.find_element(
        By.CSS_SELECTOR, f'#canvas .step[data-i="{i}"]').get_attribute("class")

    # the right arrow steps to the next step of the schedule
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
    detail = browser.find_element(By.ID, "detail")
    assert detail.get_attribute("data-item") == str(i + 1)
    assert detail.find_element(By.TAG_NAME, "h2").text.startswith(f"Step {i + 1} ")
    assert_clean(browser, browser.get_log("browser"))


def test_simulation_page_in_chromium(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    run = make_simulation(tmp_path, trace=True)
    page = run / "report.html"
    doc = page_data(page.read_text())
    results = json.loads((run / "results.json").read_text())
    logs = open_page(browser, page)
    assert_clean(browser, logs)
    assert lanes(browser) == [str(c) for c in range(results["nr_cpus"])]
    # a refill of a pcplist: its detail says which pfn moved onto which CPU's pcplist,
    # and shows the counters sampled before it
    refills = [i for i, it in enumerate(doc["items"]) if it["kind"] == "refill"
               and dict(it["fields"]).get("percpu_refill") == 1]
    assert refills
    i = refills[len(refills) // 2]
    item = doc["items"][i]
    pfn = dict(item["fields"])["pfn"]
    detail = click_item(browser, i)
    assert detail.get_attribute("data-item") == str(i)
    assert f"pfn {pfn} " in detail.text
    assert f"onto cpu{item['cpu']}'s pcplist" in detail.text
    assert "Counters sampled at step".upper() in detail.text.upper()
    text = detail.text.upper()
    assert "PAGES ON PCPLISTS" in text and "CPU0" in text
    assert "FREE BLOCKS" in text and "ORDER 10" in text
    # the offline is a span on CPU0's lane, and clicking it shows how it ended
    span = next(k for k, it in enumerate(doc["items"]) if it["kind"] == "span")
    box = browser.find_element(By.CSS_SELECTOR, f'#canvas .lane[data-cpu="0"] '
                               f'.step[data-i="{span}"]')
    box.click()
    detail = browser.find_element(By.ID, "detail")
    assert detail.text.startswith("offline") and "retries" in detail.text
    assert_clean(browser, browser.get_log("browser"))
