"""The offline architect: each instruction is a bounded edit, code builds, the search improves."""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch import nn

from archsmith.agents.interfaces import Architect, ArchitectProposal
from archsmith.agents.offline.architect import OfflineArchitect
from archsmith.agents.offline.description import (
    MAX_CHANNELS,
    Arch,
    Stage,
    arch_signature,
    estimate_flops,
    estimate_params,
    final_size,
    initial_arch,
)
from archsmith.agents.offline.edits import EDITS, apply_edit
from archsmith.agents.offline.render import render_code
from archsmith.agents.offline.scoring import description_features
from archsmith.spec import TaskKind, TaskSpec
from archsmith.tools.rulebook import load_rulebook

logger = logging.getLogger(__name__)

DIGITS = TaskSpec(dataset="digits", input_shape=(1, 8, 8), num_classes=10)
CIFAR = TaskSpec(dataset="cifar10", input_shape=(3, 32, 32), num_classes=10)
IMDB = TaskSpec(
    dataset="imdb", task=TaskKind.TEXT_CLASSIFICATION, input_shape=(256,), num_classes=2
)
SPECS = {"digits": DIGITS, "cifar": CIFAR, "imdb": IMDB}
BIG = 10**9

GROW = [{"code": "ACL", "meaning": "Add convolutional layer", "weight": 2.0}]


def load_module(code: str, tmp_path: Path, name: str = "candidate") -> ModuleType:
    """Import rendered code from a file, the way the sandbox runner does."""
    path = tmp_path / f"{name}.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(arch: Arch, tmp_path: Path, name: str = "candidate") -> nn.Module:
    model = load_module(render_code(arch), tmp_path, name).build_model(
        tuple(arch.input_shape), arch.num_classes
    )
    assert isinstance(model, nn.Module)
    return model


def forward(model: nn.Module, arch: Arch, batch: int = 3) -> torch.Tensor:
    model.eval()
    if arch.kind == "text":
        x = torch.randint(0, 30_000, (batch, *arch.input_shape))  # includes ids past the vocab
    else:
        x = torch.randn(batch, *arch.input_shape)
    with torch.no_grad():
        out: torch.Tensor = model(x)
    return out


def rich(spec: TaskSpec) -> Arch:
    """A description where every edit has room both ways."""
    arch = initial_arch(spec)
    for code in ("ACL", "ACL", "ASC", "ADL", "AD", "AR"):
        step = apply_edit(arch, code, BIG)
        assert step is not None
        arch = step[0]
    return arch


# -- the description and its code ------------------------------------------------------------------


def test_offline_architect_satisfies_the_protocol() -> None:
    architect: Architect = OfflineArchitect(seed=3)
    assert architect.name == "offline"


@pytest.mark.parametrize("which", list(SPECS))
def test_initial_model_builds_and_has_the_estimated_size(which: str, tmp_path: Path) -> None:
    arch = initial_arch(SPECS[which])
    model = build(arch, tmp_path)
    assert forward(model, arch).shape == (3, SPECS[which].num_classes)
    assert sum(p.numel() for p in model.parameters()) == estimate_params(arch)


def test_initial_models_fit_the_task() -> None:
    assert initial_arch(DIGITS).kind == "image"
    assert estimate_params(initial_arch(DIGITS)) < 50_000  # small for 8x8
    assert len(initial_arch(CIFAR).stages) == 2
    text = initial_arch(IMDB)
    assert text.kind == "text"
    assert text.embed_dim is not None
    big = initial_arch(TaskSpec(dataset="x", input_shape=(3, 128, 128), num_classes=2))
    assert big.stem_stride == 2
    assert final_size(big) >= 1


def test_initial_model_respects_max_params() -> None:
    spec = TaskSpec(
        dataset="imdb",
        task=TaskKind.TEXT_CLASSIFICATION,
        input_shape=(256,),
        num_classes=2,
        max_params=100_000,
    )
    assert estimate_params(initial_arch(spec)) <= 100_000


@pytest.mark.parametrize("which", list(SPECS))
@pytest.mark.parametrize("code", list(EDITS))
def test_every_instruction_edits_and_still_builds(which: str, code: str, tmp_path: Path) -> None:
    before = rich(SPECS[which])
    step = apply_edit(before, code, BIG)
    assert step is not None, f"{code} found no room on {before}"
    after, what = step
    assert what.startswith(f"{code}: ")
    assert after != before
    assert before == rich(SPECS[which]), "the edit must not change its input"
    check_direction(code, before, after)
    model = build(after, tmp_path, f"m_{which}_{code}")
    assert forward(model, after).shape == (3, SPECS[which].num_classes)
    assert sum(p.numel() for p in model.parameters()) == estimate_params(after)


def check_direction(code: str, a: Arch, b: Arch) -> None:
    """Each instruction changes the description the way its meaning says."""
    convs_a = sum(s.layers for s in a.stages)
    convs_b = sum(s.layers for s in b.stages)
    chans_a = [s.channels for s in a.stages]
    chans_b = [s.channels for s in b.stages]
    skips_a = sum(s.residual for s in a.stages)
    skips_b = sum(s.residual for s in b.stages)
    pairs = list(zip(chans_a, chans_b, strict=False)) if len(chans_a) == len(chans_b) else []
    expect = {
        "ACL": convs_b == convs_a + 1,
        "RCL": convs_b == convs_a - 1,
        "AMK": bool(pairs) and all(y >= x for x, y in pairs) and sum(chans_b) > sum(chans_a),
        "RK": bool(pairs) and all(y <= x for x, y in pairs) and sum(chans_b) < sum(chans_a),
        "ASC": skips_b == skips_a + 1,
        "RSC": skips_b == skips_a - 1,
        "ADL": len(b.head) == len(a.head) + 1,
        "RDL": len(b.head) == len(a.head) - 1,
        "AMN": sum(b.head) > sum(a.head),
        "RN": sum(b.head) < sum(a.head),
        "AD": b.dropout > a.dropout,
        "RD": b.dropout < a.dropout,
        "AR": b.stage_dropout > a.stage_dropout,
        "RR": b.stage_dropout < a.stage_dropout,
        "AWI": a.init == "default" and b.init == "kaiming",
    }
    assert expect[code], f"{code}: {a} -> {b}"


def test_instruction_codes_match_the_rulebook() -> None:
    assert set(EDITS) == {inst.code for inst in load_rulebook().instructions}


def test_rendered_code_imports_only_torch() -> None:
    for spec in SPECS.values():
        code = render_code(rich(spec))
        imports = [ln for ln in code.splitlines() if ln.startswith(("import ", "from "))]
        assert imports == ["import torch", "from torch import nn"]
        assert "def build_model(input_shape: tuple[int, ...], num_classes: int)" in code


def test_kaiming_and_regularisation_reach_the_model(tmp_path: Path) -> None:
    arch = rich(DIGITS)
    reg = apply_edit(apply_edit(arch, "AWI", BIG)[0], "AR", BIG)  # type: ignore[index]
    assert reg is not None
    code = render_code(reg[0])
    assert "KAIMING_INIT = True" in code
    assert f"STAGE_DROPOUT = {reg[0].stage_dropout!r}" in code
    model = build(reg[0], tmp_path)
    assert any(isinstance(m, nn.Dropout2d) for m in model.modules())


# -- bounds ----------------------------------------------------------------------------------------


def test_conv_layers_never_drop_below_one() -> None:
    arch = initial_arch(DIGITS)
    for _ in range(10):
        step = apply_edit(arch, "RCL", BIG)
        if step is None:
            break
        arch = step[0]
    assert sum(s.layers for s in arch.stages) == 1
    assert apply_edit(arch, "RCL", BIG) is None


def test_digits_are_pooled_at_most_three_times(tmp_path: Path) -> None:
    arch = initial_arch(DIGITS)
    for _ in range(30):
        step = apply_edit(arch, "ACL", BIG)
        if step is None:
            break
        arch = step[0]
        assert final_size(arch) >= 1
    assert sum(s.pool for s in arch.stages) == 3
    assert final_size(arch) == 1
    assert apply_edit(arch, "ACL", BIG) is None  # every stage at its depth limit
    assert forward(build(arch, tmp_path), arch).shape == (3, 10)


def test_widths_and_rates_stop_at_their_bounds() -> None:
    arch = initial_arch(CIFAR)
    for code in ("AMK", "AMN", "AD", "AR", "ADL"):
        for _ in range(40):
            step = apply_edit(arch, code, BIG)
            if step is None:
                break
            arch = step[0]
        assert apply_edit(arch, code, BIG) is None, code
    assert max(s.channels for s in arch.stages) == MAX_CHANNELS
    assert arch.dropout == 0.5
    assert arch.stage_dropout == 0.3
    assert len(arch.head) == 3
    for code in ("RK", "RN", "RD", "RR", "RDL", "RSC"):
        for _ in range(40):
            step = apply_edit(arch, code, BIG)
            if step is None:
                break
            arch = step[0]
    assert min(s.channels for s in arch.stages) == 8
    assert arch.dropout == 0.0
    assert arch.stage_dropout == 0.0
    assert arch.head == []


def test_edits_never_break_the_parameter_cap() -> None:
    cap = 60_000
    arch = initial_arch(CIFAR)
    assert estimate_params(arch) <= cap
    for _ in range(30):
        for code in ("AMK", "ACL", "ADL", "AMN"):
            step = apply_edit(arch, code, cap)
            if step is not None:
                arch = step[0]
                assert estimate_params(arch) <= cap


def test_proposals_respect_spec_max_params() -> None:
    spec = DIGITS.model_copy(update={"max_params": 20_000})
    architect = OfflineArchitect(seed=1)
    best = None
    for it in range(1, 15):
        prop = architect.propose(spec, GROW + grow_all(), best, [], it)
        assert prop.arch is not None
        assert estimate_params(Arch.model_validate(prop.arch)) <= 20_000
        best = as_best(prop, it)


def test_unknown_instruction_is_ignored() -> None:
    assert apply_edit(initial_arch(DIGITS), "XYZ", BIG) is None


# -- the architect ---------------------------------------------------------------------------------


def grow_all() -> list[dict[str, Any]]:
    codes = ["AMK", "ACL", "ASC", "AWI", "AMN", "RR", "RD"]
    return [{"code": c, "meaning": c, "weight": 1.0} for c in codes]


def as_best(prop: ArchitectProposal, iteration: int) -> dict[str, Any]:
    return {
        "iteration": iteration,
        "code": prop.code,
        "arch": prop.arch,
        "metrics": {},
        "combined_metric": 0.1 * iteration,
        "summary": prop.summary,
    }


def run_sequence(seed: int, spec: TaskSpec = DIGITS, n: int = 10) -> list[ArchitectProposal]:
    architect = OfflineArchitect(seed=seed)
    best: dict[str, Any] | None = None
    out = []
    for it in range(1, n + 1):
        prop = architect.propose(spec, grow_all(), best, [], it)
        out.append(prop)
        best = as_best(prop, it)  # each candidate "wins": the search walks on
    return out


def test_first_proposal_is_the_initial_model() -> None:
    prop = OfflineArchitect().propose(DIGITS, [], None, [], 1)
    assert prop.arch == initial_arch(DIGITS).model_dump(mode="json")
    assert prop.applied == []
    assert prop.summary.startswith("CNN [32,64]x[1,1]")


def test_instructions_are_applied_to_best() -> None:
    architect = OfflineArchitect(seed=0)
    first = architect.propose(DIGITS, [], None, [], 1)
    second = architect.propose(DIGITS, GROW, as_best(first, 1), [], 2)
    assert second.applied
    assert second.applied[0].startswith("ACL: added 3x3 conv 64")
    assert "+ACL" in second.summary
    assert second.arch is not None
    assert sum(s["layers"] for s in second.arch["stages"]) == 3


def test_same_seed_gives_the_same_sequence() -> None:
    a = [p.arch for p in run_sequence(7)]
    b = [p.arch for p in run_sequence(7)]
    assert a == b
    c = [p.arch for p in run_sequence(8)]
    assert a != c


@pytest.mark.parametrize("which", list(SPECS))
def test_no_description_is_proposed_twice(which: str) -> None:
    props = run_sequence(0, SPECS[which], n=12)
    sigs = [arch_signature(p.arch) for p in props if p.arch is not None]
    assert len(set(sigs)) == len(sigs)


def test_empty_instructions_explore() -> None:
    architect = OfflineArchitect(seed=0)
    first = architect.propose(DIGITS, [], None, [], 1)
    best = as_best(first, 1)
    seen = {arch_signature(first.arch or {})}
    for it in range(2, 8):
        prop = architect.propose(DIGITS, [], best, [], it)
        assert prop.applied
        assert all(a.startswith("explore ") for a in prop.applied)
        sig = arch_signature(prop.arch or {})
        assert sig not in seen
        seen.add(sig)


def test_history_archs_count_as_tried() -> None:
    """A fresh architect (a resumed run) still avoids what the history says was tried."""
    first = OfflineArchitect(seed=0).propose(DIGITS, [], None, [], 1)
    again = OfflineArchitect(seed=0).propose(DIGITS, GROW, as_best(first, 1), [], 2)
    fresh = OfflineArchitect(seed=0)
    history = [{"iteration": 2, "arch": again.arch, "summary": again.summary}]
    third = fresh.propose(DIGITS, GROW, as_best(first, 1), history, 2)
    assert third.arch != again.arch
    assert third.arch != first.arch


def test_best_from_another_architect_restarts_from_the_initial_model() -> None:
    best = {"iteration": 1, "code": "...", "arch": None, "metrics": {}, "summary": "llm"}
    prop = OfflineArchitect().propose(DIGITS, GROW, best, [], 2)
    assert prop.arch == initial_arch(DIGITS).model_dump(mode="json")


def test_proposal_is_json_serialisable() -> None:
    prop = run_sequence(0, n=3)[-1]
    assert json.loads(prop.model_dump_json())["arch"]["kind"] == "image"


# -- repair ----------------------------------------------------------------------------------------


def test_repair_goes_back_to_best_with_one_edit() -> None:
    architect = OfflineArchitect(seed=0)
    first = architect.propose(DIGITS, [], None, [], 1)
    best = as_best(first, 1)
    many = [{"code": c, "meaning": c, "weight": 1.0} for c in ("ACL", "AMK", "ADL")]
    prop = architect.propose(DIGITS, many, best, [], 2)
    error = {"type": "RuntimeError", "message": "shape mismatch", "line": 40}
    fixed = architect.repair(DIGITS, prop, error, best, 1)
    assert len(fixed.applied) == 1
    assert fixed.applied[0].split(":")[0] == prop.applied[0].split(":")[0]
    again = architect.repair(DIGITS, prop, error, best, 2)
    assert again.applied == []
    assert again.arch == first.arch
    assert "repair 2" in again.summary


def test_repair_shrinks_after_out_of_memory(tmp_path: Path) -> None:
    architect = OfflineArchitect(seed=0)
    big = rich(CIFAR)
    prop = ArchitectProposal(code=render_code(big), summary="big", arch=big.model_dump())
    fixed = architect.repair(
        CIFAR, prop, {"type": "OutOfMemory", "message": "", "line": None}, None, 1
    )
    assert fixed.arch is not None
    small = Arch.model_validate(fixed.arch)
    assert estimate_params(small) < estimate_params(big)
    assert forward(build(small, tmp_path), small).shape == (3, 10)


def test_repair_without_best_uses_the_initial_model() -> None:
    prop = ArchitectProposal(code="x", summary="x")
    fixed = OfflineArchitect().repair(DIGITS, prop, {"type": "SyntaxError"}, None, 1)
    assert fixed.arch == initial_arch(DIGITS).model_dump(mode="json")


def test_stage_model_validates() -> None:
    with pytest.raises(ValueError, match="kernel"):
        Stage.model_validate({"channels": 8, "layers": 1, "kernel": 4})


# -- the search, end to end ------------------------------------------------------------------------


@pytest.mark.slow
def test_search_on_digits_beats_its_first_model(tmp_path: Path) -> None:
    """Train, advise, feed the instructions back: within six iterations, the best beats the
    first model. The search stops at the first iteration whose best does (the second here), so
    the larger models of later rounds, most of the time, are trained only if it needs them.

    Slow: up to six real trainings of four epochs on digits in this process: the only test that
    the offline architect's edits, driven by the critic, improve a real model."""
    from archsmith.data.loaders import load_dataset
    from archsmith.tools.rulebook_advice import advise
    from archsmith.tools.schemas import EvaluationMetrics
    from archsmith.training import DeviceData, TrainConfig, train

    started = time.monotonic()
    torch.set_num_threads(2)
    ds = load_dataset("digits")
    data = DeviceData(
        ds.x_train, ds.y_train, ds.x_val, ds.y_val, torch.device("cpu"), is_text=False
    )
    architect = OfflineArchitect(seed=0)
    best: dict[str, Any] | None = None
    history: list[dict[str, Any]] = []
    instructions: list[dict[str, Any]] = []
    for it in range(1, 7):
        prop = architect.propose(DIGITS, instructions, best, history, it)
        torch.manual_seed(0)
        model = load_module(prop.code, tmp_path, f"it{it}").build_model((1, 8, 8), 10)
        report = train(model, data, TrainConfig(epochs=4, batch_size=64, seed=0))
        metrics = EvaluationMetrics(
            train_accuracy=report.train_accuracy,
            val_accuracy=report.val_accuracy,
            train_energy_kwh_pue=0.0,
            val_energy_kwh_pue=0.0,
            fps=1000.0,
            params=sum(p.numel() for p in model.parameters()),
            diverged=report.diverged,
        )
        advice = advise(metrics, DIGITS)
        instructions = [i.model_dump() for i in advice.instructions]
        entry = {
            "iteration": it,
            "summary": prop.summary,
            "status": "ok",
            "metrics": metrics.model_dump(),
            "combined_metric": advice.combined_metric,
            "instructions": instructions,
            "arch": prop.arch,
            "code": prop.code,
        }
        history.append(entry)
        if best is None or advice.combined_metric > best["combined_metric"]:
            best = entry
        logger.info("it %d val %.3f %s", it, report.val_accuracy, prop.summary)
        first = history[0]["metrics"]["val_accuracy"]
        if best["iteration"] > 1 and best["metrics"]["val_accuracy"] > first + 0.05:
            break
    assert best is not None
    first_val = history[0]["metrics"]["val_accuracy"]
    best_val = best["metrics"]["val_accuracy"]
    logger.info("first %.3f best %.3f in %.1f s", first_val, best_val, time.monotonic() - started)
    assert best["iteration"] > 1
    assert best_val > first_val + 0.05


# -- the shared search: parent, advice, objective --------------------------------------------------


def trained(
    arch: Arch, iteration: int, val: float, fps: float, spec: TaskSpec = DIGITS
) -> dict[str, Any]:
    """A history entry as the critic writes it, for a candidate trained to ``val``."""
    from archsmith.tools.rulebook_advice import advise
    from archsmith.tools.schemas import EvaluationMetrics

    metrics = {
        "train_accuracy": val,
        "val_accuracy": val,
        "train_energy_kwh_pue": 0.0,
        "val_energy_kwh_pue": 0.0,
        "fps": fps,
        "params": estimate_params(arch),
    }
    advice = advise(EvaluationMetrics.model_validate(metrics), spec)
    return {
        "iteration": iteration,
        "status": "evaluated",
        "arch": arch.model_dump(mode="json"),
        "metrics": metrics,
        "combined_metric": advice.combined_metric,
        "feasible": not advice.limit_violations,
        "instructions": [i.model_dump(mode="json") for i in advice.instructions],
        "fired_rules": [r.model_dump(mode="json") for r in advice.fired_rules],
        "dropped": [d.model_dump(mode="json") for d in advice.dropped],
        "summary": f"it {iteration}",
    }


def critics_best(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The best the critic would hold after ``history``: the judge's rank, earliest among equals."""
    from archsmith import judge

    best: dict[str, Any] | None = None
    for entry in history:
        held = None if best is None else judge.rank(best["feasible"], best["combined_metric"])
        if judge.outranks(judge.rank(entry["feasible"], entry["combined_metric"]), held):
            best = entry
    assert best is not None
    return best


def edited_from(prop: ArchitectProposal, parents: list[Arch]) -> Arch:
    """The parent among ``parents`` the proposal is one round of edits away from."""
    assert prop.arch is not None
    child = Arch.model_validate(prop.arch)
    found = [p for p in parents if any(_reachable(p, child, code) for code in EDITS)]
    assert found, prop.applied
    return found[0]


def _reachable(parent: Arch, child: Arch, first: str) -> bool:
    step = apply_edit(parent, first, BIG)
    if step is None:
        return False
    if step[0] == child:
        return True
    return any((s := apply_edit(step[0], c, BIG)) is not None and s[0] == child for c in EDITS)


def test_the_critics_best_and_instructions_are_the_parent_and_the_advice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The architect judges nothing again: it edits the critic's best as the critic advised, and
    never calls the rulebook itself."""
    import archsmith.tools.rulebook_advice as rulebook_advice

    def no_advice(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the architect advised again instead of taking the critic's advice")

    small = initial_arch(DIGITS)
    bigger = apply_edit(small, "ACL", BIG)
    assert bigger is not None
    # The latest (bigger) candidate is worse: the critic's best is the first, advised on itself.
    history = [trained(small, 1, 0.90, 500.0), trained(bigger[0], 2, 0.60, 400.0)]
    best = critics_best(history)
    assert best is history[0]
    monkeypatch.setattr(rulebook_advice, "advise", no_advice)
    prop = OfflineArchitect(seed=0).propose(DIGITS, best["instructions"], best, history, 3)
    assert edited_from(prop, [small, bigger[0]]) == small
    for line in prop.applied:  # each says which rules raised it, or that it explores
        assert line.startswith("explore ") or "[val_accuracy_low" in line, line


def test_the_rules_behind_an_instruction_are_named_heaviest_first() -> None:
    """ACL is raised by train_accuracy_low (PT_Acc 0.5 here) before val_accuracy_low (PV_Acc 1)
    in the rulebook; the label names the heavier first, from the critic's record of the best."""
    spec = DIGITS.model_copy(update={"train_accuracy_priority": 0.5})
    small = initial_arch(spec).model_copy(update={"init": "kaiming"})  # AWI cannot apply
    history = [trained(small, 1, 0.50, 500.0, spec)]
    best = history[0]
    acl = next(i for i in best["instructions"] if i["code"] == "ACL")
    assert acl["raised_by"] == ["train_accuracy_low", "val_accuracy_low"]
    prop = OfflineArchitect(seed=0).propose(spec, best["instructions"], best, history, 2)
    labels = [a for a in prop.applied if a.startswith("ACL")]
    assert labels, prop.applied
    assert all(a.endswith("[val_accuracy_low, train_accuracy_low]") for a in labels), labels


def test_the_parent_is_the_best_candidate_within_the_limits() -> None:
    small = initial_arch(DIGITS)
    big = apply_edit(apply_edit(small, "AMK", BIG)[0], "AMK", BIG)  # type: ignore[index]
    assert big is not None
    limit = (estimate_params(small) + estimate_params(big[0])) // 2
    spec = DIGITS.model_copy(update={"max_params": limit})
    # The big one has the higher CM but breaks max_params: the small one is the critic's best.
    history = [trained(small, 1, 0.80, 500.0, spec), trained(big[0], 2, 0.95, 400.0, spec)]
    best = critics_best(history)
    assert best is history[0]
    prop = OfflineArchitect(seed=0).propose(spec, best["instructions"], best, history, 3)
    assert edited_from(prop, [small, big[0]]) == small
    assert prop.arch is not None
    assert estimate_params(Arch.model_validate(prop.arch)) <= limit


def test_without_a_feasible_candidate_the_parent_is_the_latest() -> None:
    """The judge's parent when nothing meets the limits (the bench's rule): the latest trained
    candidate, with the critic's advice on it, not the critic's (infeasible) best."""
    small = initial_arch(DIGITS)
    wider = small
    for _ in range(3):  # three edits away: no proposal is two edits from both
        step = apply_edit(wider, "AMK", BIG)
        assert step is not None
        wider = step[0]
    spec = DIGITS.model_copy(update={"max_params": 100})  # nothing fits
    history = [trained(small, 1, 0.95, 500.0, spec), trained(wider, 2, 0.80, 400.0, spec)]
    best = critics_best(history)
    assert best is history[0]
    assert best["feasible"] is False
    prop = OfflineArchitect(seed=0).propose(spec, best["instructions"], best, history, 3)
    assert edited_from(prop, [small, wider]) == wider


def test_a_heavy_fps_weight_makes_the_search_cut_work_per_frame() -> None:
    """CM weighs FPS far above accuracy and the history shows FPS falling as FLOPs grow: the
    chosen edit is one that cuts FLOPs, whatever the accuracy rule asks for."""
    spec = DIGITS.model_copy(
        update={"weight_accuracy": 0.1, "weight_fps": 1.0, "fps_threshold": 1e6}
    )
    base = rich(DIGITS)
    wider = apply_edit(base, "AMK", BIG)
    assert wider is not None
    fps = {a.model_dump_json(): 1e12 / estimate_flops(a) for a in (base, wider[0])}
    history = [
        trained(base, 1, 0.90, fps[base.model_dump_json()], spec),
        trained(wider[0], 2, 0.91, fps[wider[0].model_dump_json()], spec),
    ]
    best = critics_best(history)
    assert best is history[0]
    for seed in range(3):
        prop = OfflineArchitect(seed=seed).propose(spec, best["instructions"], best, history, 3)
        assert prop.arch is not None
        assert estimate_flops(Arch.model_validate(prop.arch)) < estimate_flops(base), prop.applied


def test_description_features_and_flops_grow_with_the_network() -> None:
    small = initial_arch(CIFAR)
    step = apply_edit(small, "ACL", BIG)
    assert step is not None
    assert estimate_flops(step[0]) > estimate_flops(small) > 0
    assert description_features(small).shape == description_features(step[0]).shape
    assert estimate_flops(initial_arch(IMDB)) > 0
