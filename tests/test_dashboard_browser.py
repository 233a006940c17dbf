"""The dashboard in a real browser: Debian's Chromium driven by Playwright.

Starts ``streamlit run dashboard/app.py`` headless on a free port against a store
the test writes, visits every page, submits the lookup form and checks what a
user sees. Screenshots of each page go to tests/artifacts/; with
RECO_SCREENSHOTS=1 the Live, Model, Recommend and Online ones are also copied to
dashboard/screenshots/ for the README (RECO_SCREENSHOTS_DB=path takes them from a
copy of another store, e.g. the demo's data/reco.db).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.support.dashboard import running_dashboard
from tests.support.paths import REPO
from tests.support.stores import append_checkpoint, write_deployment, write_store

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "tests" / "artifacts"
README_SHOTS = REPO / "dashboard" / "screenshots"
WIDTH = 1400
TIMEOUT_MS = 20_000


def browser_or_skip():
    """Playwright's sync API, or skip (fail in CI) when Chromium or Playwright is missing."""
    in_ci = os.environ.get("CI", "").lower() == "true"
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} not found; install it with: apt-get install chromium"
    else:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            problem = "playwright is not installed; pip install -r tests/requirements.txt"
    if problem:
        if in_ci:
            pytest.fail(problem)
        pytest.skip(problem)
    return sync_playwright


def copy_store(source: Path, target: Path) -> None:
    # The backup API copies a consistent snapshot even while the engine writes.
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def test_every_page_in_a_real_browser(tmp_path):
    sync_playwright = browser_or_skip()
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    db = tmp_path / "reco.db"
    demo = os.environ.get("RECO_SCREENSHOTS_DB")

    with running_dashboard(db, tmp_path / "streamlit.log") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": WIDTH, "height": 1000}, accept_downloads=True)
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)

        def no_traceback() -> None:
            assert page.locator('[data-testid="stException"]').count() == 0

        def open_page(name: str) -> None:
            page.get_by_role("link", name=name, exact=True).click()
            expect(page.get_by_role("heading", level=1)).to_have_text(
                "Model quality" if name == "Model" else name
            )

        def charts_drawn(count: int) -> None:
            # Sparklines in the metrics are Vega charts too; count the page's own charts.
            drawn = page.locator('[data-testid="stVegaLiteChart"]').locator("canvas, svg.marks")
            expect(drawn).to_have_count(count)

        def screenshot(name: str) -> Path:
            # Streamlit scrolls inside its main block, so grow the window to show it all.
            height = page.evaluate(
                "document.querySelector('[data-testid=\"stMain\"]').scrollHeight"
            )
            page.set_viewport_size({"width": WIDTH, "height": max(900, height)})
            page.wait_for_timeout(600)  # let charts re-lay out to the new size
            path = ARTIFACTS / f"{name}.png"
            page.screenshot(path=path)
            page.set_viewport_size({"width": WIDTH, "height": 1000})
            return path

        # Before the engine has written anything: one friendly line, then the page
        # fills in by itself once a checkpoint lands.
        page.goto(url)
        expect(page.get_by_text("start the engine with ./run.sh")).to_be_visible()
        no_traceback()
        if demo:
            copy_store(Path(demo), db)
        else:
            write_store(db)
        expect(page.get_by_text("Events received")).to_be_visible()

        # Live: status, numbers, chart; the window choice survives refreshes.
        if not demo:  # a copied store may come from an engine that has since stopped
            expect(page.get_by_text("Engine alive")).to_be_visible()
        expect(page.locator('[data-testid="stMetric"]')).to_have_count(8)
        charts_drawn(1)
        five_minutes = page.get_by_role("radio", name="5 min", exact=True)
        five_minutes.click()
        received = page.locator('[data-testid="stMetricValue"]').first
        before = received.inner_text()
        if not demo:
            append_checkpoint(db, received=2500)
            expect(received).not_to_have_text(before)  # run_every refreshed the fragment
        expect(five_minutes).to_have_attribute("aria-checked", "true")
        no_traceback()
        shots = {"live": screenshot("live")}

        open_page("Model")
        expect(page.get_by_text("Lift over baseline")).to_be_visible()
        charts_drawn(4)
        no_traceback()
        shots["model"] = screenshot("model")

        open_page("Recommend")
        pills = page.get_by_role("radiogroup", name="Known users").get_by_role("radio")
        expect(pills.first).to_be_visible()
        user = pills.first.inner_text().strip()
        page.get_by_label("User id").fill(user)
        page.get_by_role("button", name="Recommend", exact=True).click()
        expect(page.get_by_role("heading", name=f"Top 10 for user {user}")).to_be_visible()
        expect(page.get_by_role("heading", name="Recent history")).to_be_visible()
        with page.expect_download() as download:
            page.get_by_role("button", name="Download CSV").click()
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        assert [int(row["Rank"]) for row in rows] == list(range(1, 11))
        assert all(row["Name"] and row["Name"] != "—" for row in rows)
        # The grid paints on a canvas; its cells also sit in an accessible table.
        cells = page.locator('[data-testid="stDataFrame"] [role="gridcell"]')
        expect(cells.filter(has_text=rows[0]["Name"]).first).to_be_attached()
        no_traceback()
        shots["recommend"] = screenshot("recommend")

        page.get_by_label("User id").fill("'; DROP TABLE users; -- ☃")
        page.get_by_role("button", name="Recommend", exact=True).click()
        expect(page.get_by_text("popularity fallback")).to_be_visible()
        page.get_by_label("User id").fill("x" * 10_000)
        page.get_by_role("button", name="Recommend", exact=True).click()
        expect(page.get_by_text("That user id cannot be looked up")).to_be_visible()
        no_traceback()

        open_page("Data quality")
        expect(page.get_by_text("Latest rejected messages")).to_be_visible()
        if not demo:  # the demo's producer may send no bad messages at all
            charts_drawn(1)
        no_traceback()
        screenshot("data-quality")

        open_page("Online")
        expect(page.get_by_text("CTR, popularity baseline")).to_be_visible()
        expect(page.locator('[data-testid="stMetric"]')).to_have_count(4)
        if not demo:  # the demo store may hold no impressions yet
            charts_drawn(2)
        no_traceback()
        shots["online"] = screenshot("online")
        browser.close()

    if os.environ.get("RECO_SCREENSHOTS") == "1":
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        for name, path in shots.items():
            shutil.copyfile(path, README_SHOTS / f"{name}.png")


def test_without_chromium_the_browser_test_skips_locally_but_fails_in_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        browser_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install chromium"):
        browser_or_skip()


def test_the_deployment_view_in_a_real_browser(tmp_path):
    """Several stores: the Live page draws the deployment's tiles, tables and charts."""
    sync_playwright = browser_or_skip()
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    facts = write_deployment(tmp_path / "stores")
    stores = ",".join(map(str, facts.stores))
    with running_dashboard(stores, tmp_path / "streamlit.log") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": WIDTH, "height": 1400})
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        page.goto(url)
        expect(page.get_by_text("Events/s, all workers")).to_be_visible()
        expect(page.get_by_text("2 workers")).to_be_visible()
        expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(2)
        page.get_by_role("radio", name="All", exact=True).click()
        drawn = page.locator('[data-testid="stVegaLiteChart"]').locator("canvas, svg.marks")
        expect(drawn).to_have_count(2)
        assert page.locator('[data-testid="stException"]').count() == 0
        page.screenshot(path=ARTIFACTS / "deployment.png", full_page=True)
        browser.close()
