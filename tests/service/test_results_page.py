"""The results page in a real headless Chromium (Debian's chromium + chromedriver, Selenium,
WebGL through SwiftShader): it loads with no outside requests, MapLibre draws the damage tiles
the service renders and the districts, a click on a district shows its figures, the table
sorts; and the tile and building routes read over plain HTTP."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import geopandas as gpd
import httpx
import morecantile
import numpy as np
import pytest
from PIL import Image

from ruinmap.cluster.outputs.palette import damage_colors
from ruinmap.cluster.service.config import load_config
from ruinmap.cluster.service.page import STATIC
from ruinmap.errors import SpecError
from tests.support.service import AUTH, Service, wait_for

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
LEAD_SHOT = Path("/work/notes/page_shot.png")


@pytest.fixture
def browser(tmp_path: Path) -> Any:
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip(f"no Chromium here ({CHROMIUM}, {CHROMEDRIVER}); install Debian's "
                    "chromium and chromium-driver to run the results-page test")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # WebGL without a GPU: ANGLE on SwiftShader, the software renderer Chromium ships
    for flag in ("--headless", "--no-sandbox", "--use-angle=swiftshader",
                 "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
                 "--window-size=1280,1400"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _centre_tile(output_dir: Path, zoom: int) -> morecantile.Tile:
    import rasterio
    from rasterio.warp import transform_bounds

    with rasterio.open(output_dir / "damage.tif") as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    return morecantile.tms.get("WebMercatorQuad").tile((west + east) / 2, (south + north) / 2,
                                                       zoom)


def test_page_assets_are_served_by_the_service_only(service: Service) -> None:
    html = httpx.get(f"{service.url}/ui/").text
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all("//" not in s for s in sources), sources  # nothing from a CDN
    assert "vendor/maplibre-gl/maplibre-gl.js" in sources
    for source in sources:
        response = httpx.get(f"{service.url}/ui/{source}")
        assert response.status_code == 200, source
    assert httpx.get(f"{service.url}/ui/app.js").headers["content-type"].startswith(
        "text/javascript")
    assert httpx.get(f"{service.url}/ui/vendor/maplibre-gl/nothing.js").status_code == 404


def test_vendored_maplibre_matches_its_provenance() -> None:
    vendor = STATIC / "vendor" / "maplibre-gl"
    provenance = (vendor / "PROVENANCE").read_text()
    assert re.search(r"integrity: sha512-\S+", provenance) and "BSD-3-Clause" in provenance
    sums = dict(reversed(line.split()) for line in provenance.splitlines()
                if re.match(r"^[0-9a-f]{64}  ", line))
    assert set(sums) == {"maplibre-gl.js", "maplibre-gl.css", "LICENSE.txt"}
    for name, digest in sums.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.parametrize("layer", ["damage", "score"])
def test_tiles_are_png_over_the_city_and_404_outside(
    service: Service, finished_job: dict[str, Any], layer: str,
) -> None:
    job_id = finished_job["jobID"]
    tile = _centre_tile(service.output_root / "undisturbed", 16)
    response = httpx.get(f"{service.url}/jobs/{job_id}/tiles/{layer}/{tile.z}/{tile.x}/"
                         f"{tile.y}.png")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    rgba = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGBA"))
    assert rgba.shape == (256, 256, 4)
    painted = rgba[rgba[..., 3] > 0][:, :3]
    assert len(painted) > 0
    if layer == "damage":  # every painted pixel is a damage-class colour
        palette = {c[:3] for c in damage_colors(4)}
        assert {tuple(int(v) for v in p) for p in np.unique(painted, axis=0)} <= palette
    far = httpx.get(f"{service.url}/jobs/{job_id}/tiles/{layer}/{tile.z}/0/0.png")
    assert far.status_code == 404 and "outside" in far.json()["detail"]


@pytest.mark.parametrize("path", ["tiles/rubble/10/1/1.png", "tiles/damage/3/9/0.png"])
def test_unknown_layers_and_tiles_are_404(service: Service, finished_job: dict[str, Any],
                                          path: str) -> None:
    response = httpx.get(f"{service.url}/jobs/{finished_job['jobID']}/{path}")
    assert response.status_code == 404 and response.json()["detail"]


def test_buildings_route_caps_and_filters_by_bbox(service: Service,
                                                  finished_job: dict[str, Any]) -> None:
    base = f"{service.url}/jobs/{finished_job['jobID']}/buildings.geojson"
    footprints = gpd.read_parquet(service.output_root / "undisturbed" / "buildings.parquet")
    west, south, east, north = footprints.to_crs("EPSG:4326").total_bounds
    everything = httpx.get(base, params={"bbox": f"{west},{south},{east},{north}"}).json()
    assert len(everything["features"]) == min(len(footprints), 5000)
    assert everything["truncated"] == (len(footprints) > 5000)
    half = httpx.get(base, params={"bbox": f"{west},{south},{(west + east) / 2},{north}"})
    assert 0 < len(half.json()["features"]) < len(everything["features"])
    assert httpx.get(base, params={"bbox": "1,2,3"}).status_code == 400


@pytest.mark.parametrize("path", ["tiles/damage/1/1/1.png", "buildings.geojson?bbox=0,0,1,1",
                                  "map-data"])
def test_map_routes_need_a_token_when_reads_do(private_service: Service, path: str) -> None:
    url = f"{private_service.url}/jobs/abc/{path}"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers=AUTH).status_code == 404  # past the check: no such job


@pytest.mark.parametrize("url, ok", [("", True), ("https://tiles.example.org/{z}/{x}/{y}.png",
                                                  True), ("https://tiles.example.org/x.png",
                                                          False), ("file:///{z}/{x}/{y}", False)])
def test_basemap_url_setting(tmp_path: Path, url: str, ok: bool) -> None:
    config = tmp_path / "service.toml"
    config.write_text(f'[page]\nbasemap_url = "{url}"\n')
    if ok:
        assert load_config(config).basemap_url == url
    else:
        with pytest.raises(SpecError, match=r"page\.basemap_url"):
            load_config(config)


def test_results_page_maps_a_finished_job_click_and_sort(
    service: Service, finished_job: dict[str, Any], browser: Any, tmp_path: Path,
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    job_id = finished_job["jobID"]
    browser.get(f"{service.url}/ui/")
    row = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, f'tr[data-job="{job_id}"]'),
                   30, "the job in the list")[0]
    assert row.get_attribute("data-status") == "successful"
    assert "100 %" in row.text
    row.click()
    wait_for(lambda: browser.find_element(By.ID, "map").get_attribute("data-ready") == "true",
             60, "the map to load and go idle")
    assert browser.execute_script("return window.ruinmapMap.loaded()") is True
    assert browser.execute_script(
        "return window.ruinmapMap.getCanvas().getContext('webgl2') !== null || "
        "window.ruinmapMap.getCanvas().getContext('webgl') !== null")
    # the damage tiles the page asked for were answered with PNGs
    events = [entry["message"] for entry in browser.get_log("performance")]
    answers = [json.loads(e)["message"]["params"]["response"] for e in events
               if '"Network.responseReceived"' in e]
    tiles = [(a["status"], a["mimeType"]) for a in answers
             if f"/jobs/{job_id}/tiles/damage/" in a["url"]]
    assert tiles and all(t == (200, "image/png") for t in tiles), tiles

    districts = gpd.read_parquet(service.output_root / "undisturbed" / "districts.parquet")
    assert browser.execute_script(
        "return window.ruinmapMap.querySourceFeatures('districts').length") >= len(districts)
    maximum = float(browser.find_element(By.CSS_SELECTOR, "#legend .ends").get_attribute(
        "data-max"))
    top = float(districts["buildings_damaged"].max())
    assert top <= maximum <= max(5 * top, 1)  # the ramp fits the data, not a fixed scale

    # a real click at a district's inside point shows its figures
    district = districts.to_crs("EPSG:4326").iloc[int(districts["buildings_damaged"].idxmax())]
    point = district.geometry.representative_point()
    canvas = browser.find_element(By.CSS_SELECTOR, "#map canvas")
    x, y = browser.execute_script("const p = window.ruinmapMap.project(arguments[0]);"
                                  "return [p.x, p.y];", [point.x, point.y])
    ActionChains(browser).move_to_element_with_offset(
        canvas, int(x - canvas.size["width"] / 2), int(y - canvas.size["height"] / 2),
    ).click().perform()
    popup = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".district-popup"),
                     10, "the district popup")[0]
    assert popup.get_attribute("data-district") == district["district_id"]
    assert str(int(district["buildings_damaged"])) in popup.text

    # the table: all districts, sorted by what the map colours, re-sorted by a heading click
    rows = browser.find_elements(By.CSS_SELECTOR, "#districts tbody tr")
    assert len(rows) == len(districts)
    assert rows[0].get_attribute("data-district") == district["district_id"]
    def column(name: str) -> list[float]:
        heads = [th.get_attribute("data-column")
                 for th in browser.find_elements(By.CSS_SELECTOR, "#districts th")]
        return [float(r.find_elements(By.TAG_NAME, "td")[heads.index(name)].text)
                for r in browser.find_elements(By.CSS_SELECTOR, "#districts tbody tr")]

    browser.find_element(By.CSS_SELECTOR, '#districts th[data-column="area_km2"]').click()
    areas = column("area_km2")
    assert areas == sorted(areas, reverse=True) and areas[0] > areas[-1]
    browser.find_element(By.CSS_SELECTOR, '#districts th[data-column="area_km2"]').click()
    assert column("area_km2") == sorted(areas)

    shot = tmp_path / "results_page.png"
    assert browser.save_screenshot(str(shot))
    if LEAD_SHOT.parent.is_dir():  # a copy for people reviewing the page
        shutil.copyfile(shot, LEAD_SHOT)

    # zoomed in, the building outlines of the view are fetched and drawn
    browser.execute_script("window.ruinmapMap.jumpTo({center: arguments[0], zoom: 16.5})",
                           [point.x, point.y])
    note = wait_for(lambda: re.search(r"(\d+) building outlines", browser.find_element(
        By.ID, "buildings-note").text), 30, "the building outlines")
    # MapLibre tiles a GeoJSON source on a worker after setData: drawn a moment later
    drawn = wait_for(lambda: browser.execute_script(
        "return window.ruinmapMap.querySourceFeatures('buildings').length"), 30,
        "the building outlines drawn")
    assert int(note.group(1)) > 0 and drawn > 0
    zoomed = tmp_path / "results_page_zoomed.png"
    assert browser.save_screenshot(str(zoomed))
    if LEAD_SHOT.parent.is_dir():
        shutil.copyfile(zoomed, LEAD_SHOT.with_name("page_shot_zoomed.png"))
    # the page made no request outside the service
    events += [entry["message"] for entry in browser.get_log("performance")]
    urls = set(re.findall(r'"url":"(https?://[^"]+)"', "".join(events)))
    assert urls and all(u.startswith(service.url) for u in urls), urls - {
        u for u in urls if u.startswith(service.url)}
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
