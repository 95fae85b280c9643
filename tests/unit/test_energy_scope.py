"""Every energy figure keeps its scope beside it: "GPU only", "CPU package and DRAM only", estimate.

An NVML figure without "GPU only" reads as the whole machine's energy; the model card and the HTML
report must not drop what each counter covers.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from test_export_card import _best, _card
from test_report_html import FIXTURE, render

from archsmith.energy import SOURCES, energy_scope
from archsmith.model_card import render_card

SCOPES = {"nvml": "GPU only", "rapl": "CPU package and DRAM only", "estimate": "estimate"}


def test_the_scope_words_are_the_ones_a_reader_needs() -> None:
    assert {k: v.scope for k, v in SOURCES.items()} == SCOPES
    assert energy_scope(None) == "source not recorded"
    assert "unknown" in energy_scope("wattmeter")


@pytest.mark.parametrize(
    ("train", "val"), [("nvml", "rapl"), ("rapl", "nvml"), ("nvml", "estimate")]
)
def test_the_model_card_keeps_each_energy_figures_scope(train: str, val: str) -> None:
    card = _card(_best(energy_sources={"train": train, "val": val}))
    for name, source in (("train_energy_kwh_pue", train), ("val_energy_kwh_pue", val)):
        entry = card["metrics"][name]
        assert entry["scope"] == SCOPES[source]
        assert SCOPES[source] in entry["note"]
        # The card's table row of the figure says it, not only the JSON.
        (row,) = [line for line in render_card(card).splitlines() if line.startswith(f"| {name} ")]
        assert SCOPES[source] in row


@pytest.fixture
def report_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return copy.deepcopy(data)


@pytest.mark.parametrize("source", ["nvml", "rapl"])
def test_the_report_keeps_the_scope_beside_every_energy_figure(
    report_data: dict[str, Any], source: str
) -> None:
    for entry in report_data["iterations"]:
        entry["energy_sources"] = {"train": source, "val": source}
    doc = render(report_data)
    scope = SCOPES[source]
    head = doc.one(id="best")
    cards = {c.attrs["data-metric"]: c.text() for c in head.find_all("div", cls="card")}
    assert scope in cards["energy"]
    assert scope in head.one("p", cls="energy-note").text()
    text = doc.text()
    evaluated = [e for e in report_data["iterations"] if e.get("metrics")]
    # Each iteration's metric table (training and validation energy) and the overview's column.
    assert text.count(scope) >= 3 * len(evaluated)


def test_an_estimate_is_called_one_beside_its_figure(report_data: dict[str, Any]) -> None:
    for entry in report_data["iterations"]:
        entry["energy_sources"] = {"train": "estimate", "val": "estimate"}
    doc = render(report_data)
    cards = {
        c.attrs["data-metric"]: c.text() for c in doc.one(id="best").find_all("div", cls="card")
    }
    assert "(estimate)" in cards["energy"]
    assert "GPU only" not in doc.text()
