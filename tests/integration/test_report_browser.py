"""The HTML run report as a person sees it: opened from disk in headless Chromium, offline.

What is checked is what the page shows (visible text, rendered sizes, opened details), that it
logs no console error and that it loads nothing from anywhere. A full-page screenshot is kept in
the test's directory and, when ``ARCHSMITH_REPORT_SCREENSHOT`` names a path, copied there for a
person to look at.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import (
    chromium,
    console_errors,
    external_resources,
    full_page_screenshot,
    load,
    png_size,
    require_browser,
)

from archsmith.report.html import ReportData, write_report
from archsmith.report.views import best_index

require_browser(module_level=True)  # before importing selenium, which may be what is missing

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402

pytestmark = pytest.mark.slow

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "report_run.json"
XSS = "</script><script>alert(1)</script>"


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    """One browser for the module: starting Chromium costs about a second."""
    with chromium(width=1400, height=1000) as d:
        yield d


@pytest.fixture
def raw() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


def painted(driver: WebDriver, element: Any) -> dict[str, Any]:
    """How the browser draws an element: its box on screen and the computed style that matters."""
    script = """
        const el = arguments[0], r = el.getBoundingClientRect(), cs = getComputedStyle(el);
        return {width: r.width, height: r.height, display: cs.display, visibility: cs.visibility,
                stroke: cs.stroke, dash: cs.strokeDasharray};
    """
    drawn: dict[str, Any] = driver.execute_script(script, element)
    assert drawn["display"] != "none"
    assert drawn["visibility"] == "visible"
    return drawn


def open_report(driver: WebDriver, raw: dict[str, Any], path: Path) -> ReportData:
    data = ReportData.model_validate(raw)
    write_report(data, path)
    console_errors(driver)  # drain what an earlier page logged
    load(driver, path)
    return data


def test_report_shows_the_run(driver: WebDriver, raw: dict[str, Any], tmp_path: Path) -> None:
    open_report(driver, raw, tmp_path / "report.html")
    run = raw["run"]

    assert run["run_id"] in driver.title
    assert run["request"] in driver.title
    header = driver.find_element(By.CSS_SELECTOR, "header#summary")
    assert header.is_displayed()
    assert run["run_id"] in header.text
    assert run["request"] in header.text
    assert "Best candidate" in header.text or "BEST CANDIDATE" in header.text

    cards = driver.find_elements(By.CSS_SELECTOR, "section.iteration")
    assert len(cards) == len(raw["iterations"])
    assert all(c.is_displayed() and c.size["height"] > 100 for c in cards)

    best_n = raw["iterations"][best_index(raw["iterations"]) or 0]["iteration"]
    best_card = driver.find_element(By.ID, f"iteration-{best_n}")
    assert "best" in best_card.get_attribute("class").split()
    assert "best candidate" in best_card.text
    other = next(c for c in cards if c.get_attribute("id") != f"iteration-{best_n}")
    border = "border-left-color"
    assert best_card.value_of_css_property(border) != other.value_of_css_property(border)

    plots = driver.find_elements(By.CSS_SELECTOR, "svg.plot")
    assert len(plots) == 7
    for plot in plots:
        assert plot.is_displayed()
        assert plot.size["width"] > 300
        assert plot.size["height"] > 150

    for plot_id in ("pareto-fps", "pareto-energy", "pareto-params"):
        plot = driver.find_element(By.CSS_SELECTOR, f"svg[data-plot='{plot_id}']")
        best = plot.find_elements(By.CSS_SELECTOR, ".point.best")
        assert len(best) == 1
        assert best[0].get_attribute("data-iteration") == str(best_n)
        assert best[0].is_displayed()
        assert best[0].size["width"] > 5
        points = plot.find_elements(By.CSS_SELECTOR, ".point")
        assert len(points) == len(raw["iterations"])
        lines = plot.find_elements(By.CSS_SELECTOR, "line.threshold")
        assert "TV_Acc" in {ln.get_attribute("data-threshold") for ln in lines}
        for line in lines:
            # selenium's is_displayed() wants a positive area, which a straight line never has
            drawn = painted(driver, line)
            assert max(drawn["width"], drawn["height"]) > 100
            assert drawn["stroke"] not in ("", "none")
            assert drawn["dash"] not in ("", "none")

    fps_plot = driver.find_element(By.CSS_SELECTOR, "svg[data-plot='pareto-fps']")
    assert fps_plot.find_element(By.CSS_SELECTOR, "line.threshold[data-threshold='TF']")

    code = driver.find_element(By.CSS_SELECTOR, "#iteration-1 details.code")
    code_text = code.find_element(By.CSS_SELECTOR, "pre code")
    assert not code_text.is_displayed()
    summary = code.find_element(By.TAG_NAME, "summary")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", summary)
    summary.click()
    assert code_text.is_displayed()
    assert "def build_model" in code_text.text
    assert code_text.size["height"] > 200

    assert console_errors(driver) == []
    assert external_resources(driver) == []

    shot = full_page_screenshot(driver, tmp_path / "report.png")
    width, height = png_size(shot)
    assert width >= 1000
    assert height > 3000  # the whole page, not the window
    assert shot.stat().st_size > 50_000  # plots and text, not a blank page
    target = os.environ.get("ARCHSMITH_REPORT_SCREENSHOT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)


def test_candidate_markup_is_shown_as_text(
    driver: WebDriver, raw: dict[str, Any], tmp_path: Path
) -> None:
    evil = f'"""{XSS}"""\n\ndef build_model(input_shape, num_classes):\n    return None\n'
    raw["iterations"][0]["code"] = evil
    raw["llm_calls"] = [
        {"iteration": 1, "role": "architect", "model": "stub", "prompt": f"prompt {XSS}",
         "response": f"reply <img src=x onerror=alert(2)> {XSS}", "latency_s": 0.5},
    ]  # fmt: skip
    open_report(driver, raw, tmp_path / "evil.html")

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - reading it is what raises
    assert driver.execute_script("return document.scripts.length") == 0
    assert driver.execute_script("return document.images.length") == 0

    card = driver.find_element(By.ID, "iteration-1")
    card.find_element(By.CSS_SELECTOR, "details.code summary").click()
    shown = card.find_element(By.CSS_SELECTOR, "details.code pre code")
    assert XSS in shown.text
    call = card.find_element(By.CSS_SELECTOR, "details.llm-call")
    driver.execute_script("arguments[0].open = true", call)
    assert f"prompt {XSS}" in call.find_element(By.CSS_SELECTOR, "pre.prompt").text
    assert "<img src=x onerror=alert(2)>" in call.find_element(By.CSS_SELECTOR, "pre.response").text
    assert console_errors(driver) == []
    assert external_resources(driver) == []


def test_failed_only_run_says_so(driver: WebDriver, raw: dict[str, Any], tmp_path: Path) -> None:
    entry = copy.deepcopy(raw["iterations"][0])
    for key in ("metrics", "combined_metric", "instructions", "fired_rules", "dropped"):
        entry.pop(key)
    entry.update(
        status="failed",
        is_best=False,
        error={
            "type": "RuntimeError",
            "message": "shape mismatch",
            "line": 3,
            "stage": "check_shapes",
        },
    )
    raw["iterations"] = [entry]
    open_report(driver, raw, tmp_path / "failed.html")

    assert driver.find_elements(By.CSS_SELECTOR, "svg") == []
    messages = [
        p.text for p in driver.find_elements(By.CSS_SELECTOR, "p.no-data") if p.is_displayed()
    ]
    assert any("No evaluated candidate" in m for m in messages)
    card = driver.find_element(By.ID, "iteration-1")
    assert card.is_displayed()
    assert "shape mismatch" in card.find_element(By.CSS_SELECTOR, ".error").text
    assert console_errors(driver) == []
