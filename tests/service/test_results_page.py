"""The results page in a real headless Chromium (Debian's chromium + chromedriver, Selenium):
it loads with no outside requests, lists a finished job, and maps and tabulates its districts."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import geopandas as gpd
import httpx
import pytest

from tests.support.service import Service, wait_for

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser(tmp_path: Path) -> Any:
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip(f"no Chromium here ({CHROMIUM}, {CHROMEDRIVER}); install Debian's "
                    "chromium and chromium-driver to run the results-page test")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
                 "--window-size=1280,1400"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_page_assets_are_served_by_the_service_only(service: Service) -> None:
    html = httpx.get(f"{service.url}/ui/").text
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all("//" not in s for s in sources), sources  # nothing from a CDN
    for source in sources:
        response = httpx.get(f"{service.url}/ui/{source}")
        assert response.status_code == 200, source
    assert httpx.get(f"{service.url}/ui/app.js").headers["content-type"].startswith(
        "text/javascript")


def test_results_page_lists_a_finished_job_and_maps_its_districts(
    service: Service, finished_job: dict[str, Any], browser: Any,
) -> None:
    from selenium.webdriver.common.by import By

    job_id = finished_job["jobID"]
    browser.get(f"{service.url}/ui/")
    row = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, f'tr[data-job="{job_id}"]'),
                   30, "the job in the list")[0]
    assert row.get_attribute("data-status") == "successful"
    assert "100 %" in row.text
    row.click()
    wait_for(lambda: browser.find_element(By.ID, "map").get_attribute("data-ready") == "true",
             30, "the map")

    districts = gpd.read_file(service.output_root / "undisturbed" / "districts.geojson")
    fills = browser.find_elements(By.CSS_SELECTOR, "#map path.district")
    assert len(fills) == len(districts) > 1
    assert all(p.get_attribute("d").startswith("M") for p in fills)
    colours = {p.get_attribute("fill") for p in fills}
    assert len(colours) > 1  # coloured by damaged fraction, not one flat colour
    overlay = browser.find_element(By.ID, "grid-overlay")
    assert overlay.get_attribute("href").startswith("blob:")
    loaded = browser.execute_script(
        "const img = new Image(); img.src = arguments[0]; await img.decode();"
        "return [img.naturalWidth, img.naturalHeight];", overlay.get_attribute("href"))
    assert loaded[0] > 1 and loaded[1] > 1  # the grid PNG decoded in the browser
    assert browser.find_elements(By.CSS_SELECTOR, "#legend stop")
    table_rows = browser.find_elements(By.CSS_SELECTOR, "#districts tbody tr")
    assert len(table_rows) == len(districts)
    names = set(districts["name"])
    assert any(name in table_rows[0].text for name in names)

    # the page made no request outside the service
    requested = [entry["message"] for entry in browser.get_log("performance")]
    urls = set(re.findall(r'"url":"(https?://[^"]+)"', "".join(requested)))
    assert urls and all(u.startswith(service.url) for u in urls), urls - {
        u for u in urls if u.startswith(service.url)}
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
