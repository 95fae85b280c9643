"""The HTML run report: structure, escaping, edge cases, plots and the Pareto front.

The page is parsed with the standard library's HTMLParser into a small tree, so the assertions are
about elements and their text, not about substrings that a harmless template change would break.
The data is a real recorded run (tests/fixtures/report_run.json, the first iterations of a
30-iteration offline digits run), changed per test where an edge case needs it.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from archsmith.errors import InputError
from archsmith.report.html import ReportData, render_report, write_report
from archsmith.report.svg import AxisSpec, build_axis, pareto_front
from archsmith.report.views import best_index

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "report_run.json"
XSS = "</script><script>alert(1)</script>"
VOID = {"meta", "br", "hr", "img", "input", "link", "col", "wbr", "source", "area", "base"}


# -- a tiny DOM ------------------------------------------------------------------------------------


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self) -> list[Node]:
        out = [self]
        for c in self.children:
            if isinstance(c, Node):
                out.extend(c.iter())
        return out

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        return [
            n
            for n in self.iter()
            if (tag is None or n.tag == tag)
            and (cls is None or set(cls.split()) <= n.classes)
            and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def one(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, cls, **attrs)
        assert len(found) == 1, f"expected one {tag}.{cls} {attrs}, found {len(found)}"
        return found[0]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    assert len(builder.stack) == 1, f"unclosed elements: {[n.tag for n in builder.stack[1:]]}"
    return builder.root


# -- data ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


@pytest.fixture
def raw(recorded: dict[str, Any]) -> dict[str, Any]:
    """A deep copy each test may change."""
    return copy.deepcopy(recorded)


def render(raw: dict[str, Any]) -> Node:
    return parse(render_report(ReportData.model_validate(raw)))


def failed_entry(
    n: int, message: str = "mat1 and mat2 shapes cannot be multiplied"
) -> dict[str, Any]:
    """A history entry as ``record_failure`` writes it."""
    error = {"type": "RuntimeError", "message": message, "line": 12}
    return {
        "iteration": n,
        "status": "failed",
        "summary": "CNN that does not fit",
        "applied": ["ACL: added conv"],
        "arch": None,
        "code": "def build_model(input_shape, num_classes):\n    raise RuntimeError\n",
        "fixes": [{"attempt": 1, "stage": "check_shapes", "error": error}],
        "validation": None,
        "seconds": 3.2,
        "finished_at": 1795424100.0,
        "error": {**error, "stage": "check_shapes"},
    }


def llm_call(iteration: int, role: str = "architect", **extra: Any) -> dict[str, Any]:
    """An LLM exchange as the architect nodes record it."""
    call = {"iteration": iteration, "role": role, "model": "stub-model", "prompt": "p"}
    return {**call, "response": "r", "latency_s": 1.0, **extra}


def tool_call(iteration: int, tool: str, **extra: Any) -> dict[str, Any]:
    """A tool call as the run store records it."""
    call = {"iteration": iteration, "tool": tool, "args": {}, "ok": True, "error": None}
    return {**call, "duration_s": 0.5, "backend": "local", **extra}


def best_number(raw: dict[str, Any]) -> int:
    i = best_index(raw["iterations"])
    assert i is not None
    n: int = raw["iterations"][i]["iteration"]
    return n


# -- the recorded run ------------------------------------------------------------------------------


def test_fixture_is_a_real_recorded_run(raw: dict[str, Any]) -> None:
    its = raw["iterations"]
    assert len(its) >= 5
    assert [e["iteration"] for e in its] == list(range(1, len(its) + 1))
    assert all("def build_model" in e["code"] for e in its)
    assert all(e["fired_rules"] and "conditions" in e["fired_rules"][0] for e in its)


def test_header_names_the_run_and_its_request(raw: dict[str, Any]) -> None:
    doc = render(raw)
    title = doc.one("head").one("title").text()
    assert raw["run"]["run_id"] in title
    assert raw["run"]["request"] in title
    assert doc.one(id="run-id").text() == raw["run"]["run_id"]
    assert doc.one(id="request").text() == raw["run"]["request"]
    meta = {dt.text(): dd.text() for dt, dd in _pairs(doc.one("dl", cls="meta"))}
    assert meta["Architect (LLM)"] == raw["run"]["llm"]
    assert meta["Sandbox"] == raw["run"]["sandbox"]
    assert meta["Device"] == raw["run"]["device"]
    assert meta["Status"].startswith(raw["run"]["status"])
    assert meta["Started"].endswith("UTC")
    assert f"{len(raw['iterations'])} of {raw['run']['max_iterations']}" in meta["Iterations"]


def test_headline_leads_with_the_held_out_test_accuracy(raw: dict[str, Any]) -> None:
    index = best_index(raw["iterations"]) or 0
    before = render(raw).one(id="best")
    cards = {c.attrs["data-metric"]: c.text() for c in before.find_all("div", cls="card")}
    assert "not measured" in cards["test-accuracy"]  # a run that has not ended
    raw["iterations"][index]["test"] = {"ok": True, "test_accuracy": 0.9512, "test_samples": 359}
    head = render(raw).one(id="best")
    cards = {c.attrs["data-metric"]: c.text() for c in head.find_all("div", cls="card")}
    assert "95.12%" in cards["test-accuracy"]
    first = head.find_all("div", cls="card")[0]
    assert first.attrs["data-metric"] == "test-accuracy"


def _pairs(dl: Node) -> list[tuple[Node, Node]]:
    return [(d.one("dt"), d.one("dd")) for d in dl.children if isinstance(d, Node)]


def test_headline_shows_the_best_candidate_and_the_energy_source(raw: dict[str, Any]) -> None:
    doc = render(raw)
    best = raw["iterations"][best_index(raw["iterations"]) or 0]
    head = doc.one(id="best")
    assert head.one("a").attrs["href"] == f"#iteration-{best['iteration']}"
    cards = {c.attrs["data-metric"]: c.text() for c in head.find_all("div", cls="card")}
    assert f"{best['metrics']['val_accuracy'] * 100:.2f}%" in cards["val-accuracy"]
    assert f"{best['metrics']['fps']:,.0f} FPS" in cards["fps"]
    assert f"{best['metrics']['params']:,}" in cards["params"]
    assert f"{best['combined_metric']:.4f}" in cards["cm"]
    assert "kWh-PUE" in cards["energy"]
    assert best["energy_sources"]["val"] == "estimate"
    assert "estimated" in head.one("p", cls="energy-note").text()


def test_energy_note_says_measured_for_nvml(raw: dict[str, Any]) -> None:
    for e in raw["iterations"]:
        e["energy_sources"] = {"train": "nvml", "val": "nvml"}
    note = render(raw).one("p", cls="energy-note").text()
    assert "measured" in note
    assert "NVML" in note
    assert "estimated" not in note


def test_one_card_per_iteration_in_order(raw: dict[str, Any]) -> None:
    doc = render(raw)
    cards = doc.find_all("section", cls="iteration")
    assert [c.attrs["id"] for c in cards] == [
        f"iteration-{e['iteration']}" for e in raw["iterations"]
    ]
    assert all(c.attrs["data-status"] == "evaluated" for c in cards)
    overview = doc.one("table", cls="overview").one("tbody").find_all("tr")
    assert len(overview) == len(raw["iterations"])


def test_only_the_best_card_is_marked(raw: dict[str, Any]) -> None:
    doc = render(raw)
    best = doc.find_all("section", cls="iteration best")
    assert [c.attrs["id"] for c in best] == [f"iteration-{best_number(raw)}"]
    assert "best candidate" in best[0].one("span", cls="badge best").text()
    assert len(doc.find_all("tr", cls="best")) == 1


def test_best_is_the_last_flagged_candidate() -> None:
    its = [
        {
            "iteration": 1,
            "status": "evaluated",
            "metrics": {"a": 1},
            "combined_metric": 0.5,
            "is_best": True,
        },
        {
            "iteration": 2,
            "status": "evaluated",
            "metrics": {"a": 1},
            "combined_metric": 0.4,
            "is_best": False,
        },
        {
            "iteration": 3,
            "status": "evaluated",
            "metrics": {"a": 1},
            "combined_metric": 0.7,
            "is_best": True,
        },
    ]
    assert best_index(its) == 2
    for e in its:
        del e["is_best"]
    assert best_index(its) == 2  # highest CM when the flags are missing
    assert best_index([failed_entry(1)]) is None


def test_card_shows_rules_instructions_dropped_and_code(raw: dict[str, Any]) -> None:
    doc = render(raw)
    entry = raw["iterations"][0]
    card = doc.one("section", id="iteration-1")
    rules = card.one("table", cls="fired").find_all("tr", cls="rule")
    assert [r.attrs["data-rule"] for r in rules] == [r["rule_id"] for r in entry["fired_rules"]]
    val_rule = next(r for r in rules if r.attrs["data-rule"] == "val_accuracy_low")
    text = " ".join(val_rule.text().split())
    cond = entry["fired_rules"][1]["conditions"][0]
    assert f"val_accuracy {cond['value']:.6g} < TV_Acc {cond['threshold']:.6g}" in text
    assert f"({cond['margin']:.4g} below)" in text
    codes = [
        r.find_all("td")[0].text() for r in card.one("table", cls="instructions").find_all("tr")[1:]
    ]
    assert codes == [i["code"] for i in entry["instructions"]]
    dropped = card.one("table", cls="dropped").text()
    for d in entry["dropped"]:
        assert d["code"] in dropped
        assert d["reason"] in dropped
    code = card.one("details", cls="code")
    assert code.one("summary").text().startswith("Candidate code")
    assert code.one("code").text() == entry["code"]
    metrics = card.one("table", cls="metrics").text()
    assert f"{entry['metrics']['val_accuracy'] * 100:.2f}%" in metrics
    assert "≥ 99.90% (TV_Acc)" in metrics


def test_spec_table_lists_thresholds_and_assumptions(raw: dict[str, Any]) -> None:
    doc = render(raw)
    rows = {r.attrs["data-field"]: r for r in doc.one("table", cls="spec").find_all("tr")[1:]}
    tv = rows["val_accuracy_threshold"].find_all("td")
    assert tv[0].text() == "TV_Acc"
    assert tv[2].text() == f"{raw['spec']['val_accuracy_threshold'] * 100:.2f}%"
    assert "PV_Acc" in tv[3].text()
    assert (
        rows["fps_threshold"].find_all("td")[2].text() == f"{raw['spec']['fps_threshold']:,.0f} FPS"
    )
    assert "TV_E" in rows["val_energy_threshold_kwh_pue"].text()
    assert rows["max_params"].find_all("td")[2].text() == "not set"
    assert "inactive" in rows["max_params"].classes
    items = [li.text() for li in doc.one("ul", cls="assumptions").find_all("li")]
    assert items == raw["assumptions"]


# -- plots -----------------------------------------------------------------------------------------


def test_progress_plots_have_titles_axes_ticks_and_legends(raw: dict[str, Any]) -> None:
    doc = render(raw)
    plots = {p.attrs["data-plot"]: p for p in doc.find_all("svg", cls="plot line")}
    assert set(plots) == {"accuracy", "cm", "fps", "energy"}
    for plot in plots.values():
        assert plot.one("text", cls="plot-title").text()
        assert "Iteration" in plot.one("text", cls="x-label").text()
        assert plot.one("text", cls="y-label").text()
        assert len(plot.find_all("text", cls="x-tick")) >= 2
        assert len(plot.find_all("text", cls="y-tick")) >= 2
        assert plot.find_all("g", cls="legend-item")
    acc = plots["accuracy"]
    val = acc.one("g", data_series="val").find_all("circle", cls="marker")
    assert [m.attrs["data-iteration"] for m in val] == [
        str(e["iteration"]) for e in raw["iterations"]
    ]
    assert acc.one("line", cls="threshold").attrs["data-threshold"] == "TV_Acc"
    assert plots["fps"].one("line", cls="threshold").attrs["data-threshold"] == "TF"
    # the spec's TT_E and TV_E are equal: one line carrying both names, not two labels on top
    energy = plots["energy"].one("line", cls="threshold")
    assert energy.attrs["data-threshold"] == "TT_E,TV_E"
    assert {g.attrs["data-series"] for g in plots["energy"].find_all("g", cls="series-group")} == {
        "train-energy",
        "val-energy",
    }
    assert "%" in acc.one("text", cls="y-label").text()


def test_pareto_plots_mark_best_front_and_thresholds(raw: dict[str, Any]) -> None:
    doc = render(raw)
    plots = {p.attrs["data-plot"]: p for p in doc.find_all("svg", cls="plot pareto")}
    assert set(plots) == {"pareto-fps", "pareto-energy", "pareto-params"}
    best = str(best_number(raw))
    for plot in plots.values():
        assert plot.one(cls="point best").attrs["data-iteration"] == best
        points = plot.find_all(cls="point")
        assert len(points) == len(raw["iterations"])
        assert all(
            p.one("title").text().startswith(f"Iteration {p.attrs['data-iteration']}:")
            for p in points
        )
        assert plot.one("polyline", cls="front-line").attrs["points"]
        names = {t.attrs["data-threshold"] for t in plot.find_all("line", cls="threshold")}
        assert "TV_Acc" in names
    assert {
        t.attrs["data-threshold"] for t in plots["pareto-fps"].find_all("line", cls="threshold")
    } == {"TV_Acc", "TF"}
    assert "TV_E" in {
        t.attrs["data-threshold"] for t in plots["pareto-energy"].find_all("line", cls="threshold")
    }
    assert "log" in plots["pareto-energy"].one("text", cls="x-label").text()
    # max_params is not set in this run: no line for it
    assert {
        t.attrs["data-threshold"] for t in plots["pareto-params"].find_all("line", cls="threshold")
    } == {"TV_Acc"}


@pytest.mark.parametrize(
    ("plot", "key", "more_is_better"),
    [
        ("pareto-fps", "fps", True),
        ("pareto-energy", "val_energy_kwh_pue", False),
        ("pareto-params", "params", False),
    ],
)
def test_front_points_are_the_pareto_front(
    raw: dict[str, Any], plot: str, key: str, more_is_better: bool
) -> None:
    svg = render(raw).one("svg", data_plot=plot)
    its = raw["iterations"]
    pts = [(float(e["metrics"][key]), e["metrics"]["val_accuracy"] * 100) for e in its]
    expected = {its[i]["iteration"] for i in pareto_front(pts, maximize=(more_is_better, True))}
    marked = {int(p.attrs["data-iteration"]) for p in svg.find_all(cls="point front")}
    assert marked == expected
    assert 1 <= len(marked) < len(its)


def test_max_params_threshold_is_drawn_when_set(raw: dict[str, Any]) -> None:
    raw["spec"]["max_params"] = 100_000
    plot = render(raw).one("svg", data_plot="pareto-params")
    line = plot.one("line", cls="threshold", data_threshold="max_params")
    assert line.attrs["data-value"] == "100000"
    assert line.attrs["x1"] == line.attrs["x2"]  # vertical


def test_no_fps_target_draws_no_fps_line(raw: dict[str, Any]) -> None:
    del raw["spec"]["fps_threshold"]
    doc = render(raw)
    for plot_id in ("pareto-fps", "fps"):
        names = {
            t.attrs["data-threshold"]
            for t in doc.one("svg", data_plot=plot_id).find_all("line", cls="threshold")
        }
        assert "TF" not in names
    assert "fps_threshold" not in {r.attrs.get("data-field") for r in doc.find_all("tr")}


# -- escaping and self-containment -----------------------------------------------------------------


def test_untrusted_text_is_escaped_everywhere(raw: dict[str, Any]) -> None:
    evil_code = (
        f'"""{XSS}"""\n# <img src=x onerror=alert(2)>\ndef build_model(s, n):\n    return None\n'
    )
    raw["iterations"][0]["code"] = evil_code
    raw["iterations"][0]["summary"] = f"<b>bold</b> {XSS}"
    raw["iterations"][1]["applied"] = [XSS]
    raw["run"]["request"] = f"digits please {XSS}"
    raw["assumptions"].append(f"<i>{XSS}</i>")
    raw["llm_calls"] = [
        llm_call(2, prompt=f"Write {XSS}", response=f"```python\n{XSS}\n```", input_tokens=10)
    ]
    error = {"type": "SyntaxError", "message": XSS, "line": 1}
    args = {"code": evil_code, "note": XSS}
    raw["tool_calls"] = [tool_call(3, "check_shapes", args=args, ok=False, error=error)]
    html = render_report(ReportData.model_validate(raw))
    doc = parse(html)
    assert doc.find_all("script") == []
    assert doc.find_all("img") == []
    assert doc.find_all("b") == []
    assert doc.find_all("i") == []
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert (
        doc.one("section", id="iteration-1").one("details", cls="code").one("code").text()
        == evil_code
    )
    assert XSS in doc.one("section", id="iteration-1").one("div", cls="summary").text()
    assert XSS in doc.one(id="request").text()
    call = doc.one("section", id="iteration-2").one("details", cls="llm-call")
    assert call.one("pre", cls="prompt").text() == f"Write {XSS}"
    assert XSS in call.one("pre", cls="response").text()
    tools = doc.one("section", id="iteration-3").one("table", cls="tool-calls")
    assert f"SyntaxError: {XSS}" in tools.text()
    assert "characters of candidate code" in tools.text()  # the code is not repeated in the args


def test_page_is_self_contained(raw: dict[str, Any]) -> None:
    html = render_report(ReportData.model_validate(raw))
    doc = parse(html)
    for tag in ("script", "link", "img", "iframe", "object", "embed"):
        assert doc.find_all(tag) == [], tag
    assert all(a.attrs["href"].startswith("#") for a in doc.find_all("a"))
    assert all("src" not in n.attrs for n in doc.iter())
    assert "url(" not in doc.one("style").text()
    csp = next(
        m for m in doc.find_all("meta") if m.attrs.get("http-equiv") == "Content-Security-Policy"
    )
    assert "default-src 'none'" in csp.attrs["content"]


# -- edge cases ------------------------------------------------------------------------------------


def test_one_iteration(raw: dict[str, Any]) -> None:
    raw["iterations"] = raw["iterations"][:1]
    raw["iterations"][0]["is_best"] = True
    doc = render(raw)
    assert len(doc.find_all("section", cls="iteration")) == 1
    assert len(doc.find_all("svg", cls="plot")) == 7
    for plot in doc.find_all("svg", cls="pareto"):
        assert plot.one(cls="point best front").attrs["data-iteration"] == "1"
    ticks = [t.text() for t in doc.one("svg", data_plot="accuracy").find_all("text", cls="x-tick")]
    assert ticks == ["1"]


def test_all_failed_shows_messages_instead_of_plots(raw: dict[str, Any]) -> None:
    raw["iterations"] = [failed_entry(1), failed_entry(2, message=f"bad {XSS}")]
    doc = render(raw)
    assert doc.find_all("svg") == []
    messages = " ".join(p.text() for p in doc.find_all("p", cls="no-data"))
    assert "No evaluated candidate" in messages
    assert doc.one("p", cls="no-best").text().startswith("No evaluated candidate")
    card = doc.one("section", id="iteration-2")
    assert "failed" in card.classes
    error = card.one("div", cls="error")
    assert "check_shapes" in error.text()
    assert "RuntimeError" in error.text()
    assert XSS in error.text()
    fixes = card.one("table", cls="fixes").find_all("tr")
    assert len(fixes) == 2  # header and one attempt
    assert doc.find_all("section", cls="best") == []


def test_failed_and_diverged_iterations_are_marked_on_the_progress_plots(
    raw: dict[str, Any],
) -> None:
    raw["iterations"].insert(2, failed_entry(3))
    diverged = copy.deepcopy(raw["iterations"][3])
    diverged.update(iteration=4, status="diverged", is_best=False)
    diverged["metrics"]["diverged"] = True
    raw["iterations"].insert(3, diverged)
    for n, e in enumerate(raw["iterations"], 1):
        e["iteration"] = n
    doc = render(raw)
    for plot_id in ("accuracy", "cm", "fps", "energy"):
        plot = doc.one("svg", data_plot=plot_id)
        assert plot.one("g", cls="mark failed").attrs["data-iteration"] == "3"
        assert plot.one("g", cls="mark diverged").attrs["data-iteration"] == "4"
        assert "failed" in plot.one("g", cls="mark failed").one("title").text()
    pareto = doc.one("svg", data_plot="pareto-fps")
    assert {p.attrs["data-iteration"] for p in pareto.find_all(cls="point")}.isdisjoint({"3", "4"})
    assert "2 failed or diverged iterations not shown" in _caption(doc, "pareto-fps")


def _caption(doc: Node, plot_id: str) -> str:
    fig = next(f for f in doc.find_all("figure") if f.find_all(data_plot=plot_id))
    return fig.one("figcaption").text()


def test_none_and_zero_metrics_are_left_out_not_crashing(raw: dict[str, Any]) -> None:
    its = raw["iterations"]
    its[1]["metrics"]["fps"] = None
    its[2]["metrics"]["val_energy_kwh_pue"] = 0.0
    its[3]["metrics"]["latency_ms"] = None
    its[3]["combined_metric"] = None
    doc = render(raw)
    fps = doc.one("svg", data_plot="pareto-fps")
    assert "2" not in {p.attrs["data-iteration"] for p in fps.find_all(cls="point")}
    energy = doc.one("svg", data_plot="pareto-energy")
    assert "3" not in {p.attrs["data-iteration"] for p in energy.find_all(cls="point")}
    assert "1 without a usable value left out" in _caption(doc, "pareto-energy")
    row = doc.one("section", id="iteration-4").one("table", cls="metrics")
    assert "—" in row.text()


def test_all_equal_values_still_plot(raw: dict[str, Any]) -> None:
    for e in raw["iterations"]:
        e["metrics"].update(fps=1000.0, val_accuracy=0.5, params=10, val_energy_kwh_pue=1e-6)
        e["combined_metric"] = 1.0
    doc = render(raw)
    for plot in doc.find_all("svg", cls="plot"):
        ys = [float(t.attrs["y"]) for t in plot.find_all("text", cls="y-tick")]
        assert len(ys) >= 2
        assert len(set(ys)) == len(ys)
        for p in plot.find_all("circle", cls="point"):
            assert all(math.isfinite(float(p.attrs[k])) for k in ("cx", "cy"))


def test_no_iterations_yet(raw: dict[str, Any]) -> None:
    raw["iterations"] = []
    raw["run"]["status"] = "running"
    doc = render(raw)
    assert doc.find_all("section", cls="iteration") == []
    assert "No iteration has finished yet." in doc.text()


def test_sparse_entries_and_run_render(raw: dict[str, Any]) -> None:
    raw["run"] = {"run_id": "r1"}
    raw["iterations"] = [{"iteration": 1, "status": "evaluated"}, {"status": "failed"}]
    raw["spec"] = {"dataset": "digits"}
    doc = render(raw)
    assert [s.attrs["id"] for s in doc.find_all("section", cls="iteration")] == [
        "iteration-1",
        "iteration-2",
    ]
    assert doc.find_all("svg") == []


def test_llm_and_tool_calls_go_to_their_iteration(raw: dict[str, Any]) -> None:
    raw["llm_calls"] = [
        llm_call(0, "planner", prompt="plan it", response="{}"),
        llm_call(2, latency_s=61.0, input_tokens=1200, output_tokens=800),
        llm_call(2, "code_fixer"),
    ]
    raw["tool_calls"] = [
        tool_call(2, "train_model", args={"epochs": 8}, duration_s=12.5, backend="bubblewrap")
    ]
    doc = render(raw)
    card = doc.one("section", id="iteration-2")
    roles = [d.attrs["data-role"] for d in card.find_all("details", cls="llm-call")]
    assert roles == ["architect", "code_fixer"]
    summary = card.find_all("details", cls="llm-call")[0].one("summary").text()
    assert "1 min 01 s" in summary
    assert "in 1,200 / out 800" in summary
    row = card.one("table", cls="tool-calls").one("tr", data_tool="train_model")
    assert "ok" in row.text()
    assert "12.5 s" in row.text()
    assert "bubblewrap" in row.text()
    task = doc.one("h2", id="task")
    assert task is not None
    planner = [
        d for d in doc.find_all("details", cls="llm-call") if d.attrs["data-role"] == "planner"
    ]
    assert len(planner) == 1
    assert doc.one("section", id="iteration-1").find_all("details", cls="llm-call") == []


# -- writing ---------------------------------------------------------------------------------------


def test_write_report_writes_the_rendered_page(raw: dict[str, Any], tmp_path: Path) -> None:
    data = ReportData.model_validate(raw)
    out = write_report(data, tmp_path / "sub" / "report.html")
    assert out == tmp_path / "sub" / "report.html"
    assert out.read_text(encoding="utf-8") == render_report(data)
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temporary file left


def test_write_report_failure_is_an_input_error(raw: dict[str, Any], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot write"):
        write_report(ReportData.model_validate(raw), blocker / "report.html")


def test_report_data_rejects_unknown_fields(raw: dict[str, Any]) -> None:
    raw["unexpected"] = 1
    with pytest.raises(ValueError, match="unexpected"):
        ReportData.model_validate(raw)


# -- Pareto front and axes -------------------------------------------------------------------------


def _dominates(a: tuple[float, float], b: tuple[float, float], maximize: tuple[bool, bool]) -> bool:
    sign = [1 if m else -1 for m in maximize]
    ge = all(s * x >= s * y for s, x, y in zip(sign, a, b, strict=True))
    return ge and a != b


@pytest.mark.parametrize(
    ("points", "maximize", "front"),
    [
        ([], (True, True), []),
        ([(1.0, 1.0)], (True, True), [0]),
        ([(1.0, 1.0), (2.0, 2.0)], (True, True), [1]),
        ([(1.0, 1.0), (2.0, 2.0)], (False, True), [0, 1]),
        ([(1.0, 1.0), (2.0, 2.0)], (False, False), [0]),
        ([(1.0, 3.0), (2.0, 2.0), (3.0, 1.0), (1.0, 1.0)], (True, True), [0, 1, 2]),
        ([(1.0, 1.0), (1.0, 1.0)], (True, True), [0, 1]),  # equal points do not dominate each other
        ([(1.0, 2.0), (1.0, 1.0)], (True, True), [0]),  # same x, better y dominates
    ],
)
def test_pareto_front_cases(
    points: list[tuple[float, float]], maximize: tuple[bool, bool], front: list[int]
) -> None:
    assert pareto_front(points, maximize=maximize) == front


_coord = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False) | st.sampled_from(
    [0.0, 1.0, 2.0]
)


@given(
    points=st.lists(st.tuples(_coord, _coord), max_size=40),
    maximize=st.tuples(st.booleans(), st.booleans()),
)
def test_pareto_front_properties(
    points: list[tuple[float, float]], maximize: tuple[bool, bool]
) -> None:
    front = pareto_front(points, maximize=maximize)
    assert len(set(front)) == len(front)
    assert (len(front) > 0) == (len(points) > 0)
    for i in front:
        assert not any(_dominates(q, points[i], maximize) for q in points)
    for j in set(range(len(points))) - set(front):
        assert any(_dominates(points[i], points[j], maximize) for i in front)
    xs = [points[i][0] for i in front]
    assert xs == sorted(xs)


# Metrics (accuracy, FPS, kWh-PUE, parameters) live well inside 1e-12..1e12 in magnitude.
_real = st.floats(min_value=1e-12, max_value=1e12) | st.floats(min_value=-1e12, max_value=-1e-12)
_value = st.none() | _real | st.sampled_from([0.0, -1.0, 1e-9, math.nan, math.inf, -math.inf])


@given(values=st.lists(_value, max_size=20), log=st.booleans())
def test_axes_are_always_usable(values: list[float | None], log: bool) -> None:
    axis = build_axis(values, AxisSpec("v", "plain", log))
    assert math.isfinite(axis.lo)
    assert math.isfinite(axis.hi)
    assert axis.lo < axis.hi
    assert len(axis.ticks) >= 2
    assert all(
        axis.lo - 1e-9 * abs(axis.lo) <= t <= axis.hi + 1e-9 * abs(axis.hi) for t in axis.ticks
    )
    finite = [v for v in values if v is not None and math.isfinite(v) and (v > 0 or not log)]
    for v in finite:
        assert -1e-9 <= axis.frac(v) <= 1 + 1e-9
    assert len({axis.tick_label(t) for t in axis.ticks}) == len(axis.ticks)


@pytest.mark.parametrize(
    ("values", "log", "lo", "hi"),
    [
        ([0.5], False, 0.44, 0.56),  # +-10 %, widened to the 0.02 ticks
        ([0.0, 0.0], False, 0.0, 1.0),
        ([90.2, 98.6, 99.9], False, 90.0, 100.0),
        ([2.5e-7, 8e-7, 1e-3], True, 1e-7, 1e-3),
        ([23722, 1_140_810], True, 1e4, 1e7),
        ([1000.0], True, 1e3, 1e4),
        ([0.0, -5.0], True, 1.0, 10.0),
    ],
)
def test_axis_ranges(values: list[float], log: bool, lo: float, hi: float) -> None:
    axis = build_axis(values, AxisSpec("v", "plain", log))
    assert axis.lo == pytest.approx(lo)
    assert axis.hi == pytest.approx(hi)


def test_a_candidate_stopped_early_says_when_why_and_is_counted(raw: dict[str, Any]) -> None:
    stopped = copy.deepcopy(raw["iterations"][0])
    n = len(raw["iterations"]) + 1
    stopped.update(iteration=n, status="stopped early", is_best=False, combined_metric=None)
    stopped["metrics"] = {"params": 1234, "val_accuracy": None}
    stopped["early_stop"] = {
        "epoch": 2,
        "epochs": 6,
        "train_accuracy": 0.41,
        "val_accuracy": 0.4,
        "stopped": True,
        "rule": "learning-curve bound, checked after epoch 2 of 6, margin 0.02",
        "reason": f"below the best's CM {XSS}",
    }
    raw["iterations"].append(stopped)
    doc = render(raw)
    card = doc.one("section", id=f"iteration-{n}")
    assert card.attrs["data-status"] == "stopped early"
    text = " ".join(card.one("div", cls="early-stop").text().split())
    assert text.startswith("Stopped early after the check at epoch 2 of 6")
    assert "validation 40.00%" in text
    assert XSS in text  # escaped: it reads as text, not markup
    assert "1 stopped early" in " ".join(doc.text().split())
