"""The Prefect UI in a real headless Chromium: a tiny ``deepclust reproduce`` against a real server, then
the ``dpcl-summary`` artifact page must show the summary table (model beside IBM, per condition).

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install -y chromium chromium-driver``) and
the ``selenium`` package; the test is skipped, saying which, where they are missing.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PAGE_TIMEOUT = 60

pytestmark = [pytest.mark.xdist_group("prefect-server"), pytest.mark.timeout(600)]


def chromium_driver(user_data_dir: Path, extra_flags=()):
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip(f"{CHROMIUM} / {CHROMEDRIVER} not installed (apt-get install -y chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1400,1800",
        f"--user-data-dir={user_data_dir}",
        *extra_flags,
    ):
        options.add_argument(flag)
    # Debian's driver, never Selenium Manager (it would try to download one).
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


def expected_headline(record: dict):
    """The report's first table as the run wrote it: (speakers, condition, model SDRi, IBM SDRi) as shown."""
    import pandas as pd

    from deepclust.reports.summary import headline

    table = headline(pd.read_parquet(record["summary"]))
    return [
        (str(row["speakers"]), row["condition"], f"{row['model SDRi']:.2f}", f"{row['IBM SDRi']:.2f}")
        for _, row in table.iterrows()
    ]


def test_summary_artifact_shows_its_table_in_the_ui(prefect_server, served_tiny_run, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    rows = expected_headline(served_tiny_run["record"])
    assert rows, "the run's summary has no rows"
    driver = chromium_driver(tmp_path / "chromium-profile")
    screenshot = tmp_path / "dpcl-summary.png"
    try:
        began = time.perf_counter()
        driver.get(f"{prefect_server.url}/artifacts")
        WebDriverWait(driver, PAGE_TIMEOUT).until(
            expected_conditions.presence_of_element_located((By.XPATH, "//*[contains(text(), 'dpcl-summary')]"))
        )
        # The key's page lists its versions, newest first; the newest one renders the Markdown report.
        driver.get(f"{prefect_server.url}/artifacts/key/dpcl-summary")
        newest = WebDriverWait(driver, PAGE_TIMEOUT).until(
            expected_conditions.element_to_be_clickable((By.XPATH, "//a[contains(@href, '/artifacts/artifact/')]"))
        )
        newest.click()
        # The headline table: one row per (speakers, condition), the model beside IBM and the paper.
        WebDriverWait(driver, PAGE_TIMEOUT).until(
            expected_conditions.presence_of_element_located((By.XPATH, "//table//th[contains(., 'IBM SDRi')]"))
        )
        table = driver.find_element(By.XPATH, "//table[.//th[contains(., 'IBM SDRi')]]")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", table)
        header = [cell.text.strip() for cell in table.find_elements(By.XPATH, ".//th")]
        shown = [
            [cell.text.strip() for cell in row.find_elements(By.XPATH, "./td")]
            for row in table.find_elements(By.XPATH, ".//tbody/tr")
        ]
        assert table.is_displayed()
        driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    print(f"screenshot of the dpcl-summary artifact: {screenshot} ({time.perf_counter() - began:.1f} s in the UI)")
    assert header[:4] == ["speakers", "condition", "mixtures", "model SDRi"] and "paper SDRi" in header, header
    column = {name: index for index, name in enumerate(header)}
    got = [
        (r[column["speakers"]], r[column["condition"]], r[column["model SDRi"]], r[column["IBM SDRi"]]) for r in shown
    ]
    assert got == rows
    assert screenshot.stat().st_size > 10_000
    shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def test_history_artifact_shows_every_run_in_the_ui(prefect_server, served_tiny_run, tmp_path):
    """A second run of the same recipe (all stages reused) appends to the history; the newest
    ``dpcl-history`` artifact lists both runs, and ``dpcl-history-trend`` carries the SDRi figure."""
    import json
    import subprocess
    import sys

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait
    from server_fixtures import REPO

    from deepclust.reports.history import read_history

    run_root = served_tiny_run["run_root"]
    again = subprocess.run(
        [sys.executable, "-m", "deepclust.flows.cli", "reproduce", "--quick", "--out", str(run_root)],
        cwd=REPO,
        env=prefect_server.env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    record = json.loads((run_root / "run.json").read_text())
    run_ids = list(read_history(record["history"]["url"])["run_id"])
    assert len(run_ids) >= 2
    driver = chromium_driver(tmp_path / "chromium-profile")
    try:
        driver.get(f"{prefect_server.url}/artifacts/key/dpcl-history")
        newest = WebDriverWait(driver, PAGE_TIMEOUT).until(
            expected_conditions.element_to_be_clickable((By.XPATH, "//a[contains(@href, '/artifacts/artifact/')]"))
        )
        newest.click()
        for run_id in run_ids[-2:]:
            WebDriverWait(driver, PAGE_TIMEOUT).until(
                expected_conditions.presence_of_element_located((By.XPATH, f"//*[contains(text(), '{run_id}')]"))
            )
        driver.get(f"{prefect_server.url}/artifacts/key/dpcl-history-trend")
        WebDriverWait(driver, PAGE_TIMEOUT).until(
            expected_conditions.element_to_be_clickable((By.XPATH, "//a[contains(@href, '/artifacts/artifact/')]"))
        ).click()
        figure = WebDriverWait(driver, PAGE_TIMEOUT).until(
            expected_conditions.presence_of_element_located((By.XPATH, "//img[starts-with(@src, 'data:image/png')]"))
        )
        assert figure.size["width"] > 100
        driver.save_screenshot(str(tmp_path / "dpcl-history-trend.png"))
    finally:
        driver.quit()
    shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)
