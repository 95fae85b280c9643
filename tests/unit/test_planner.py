"""The planner: plain-word requests become the TaskSpec they describe, or a clear refusal."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import Field

from archsmith.agents.interfaces import PlanRefusedError
from archsmith.agents.planning.build import plan_warnings
from archsmith.agents.planning.front import plan, plan_offline, plan_with_llm
from archsmith.agents.planning.intent import (
    REAL_TIME_FPS,
    WEIGHTS_ACCURACY_ENERGY,
    WEIGHTS_ACCURACY_ENERGY_FPS,
    WEIGHTS_ACCURACY_FPS,
    WEIGHTS_ACCURACY_ONLY,
    PlanIntent,
)
from archsmith.spec import PAPER_DEFAULTS, TaskKind

_W = ("weight_accuracy", "weight_energy", "weight_fps")
A_ONLY = dict(zip(_W, WEIGHTS_ACCURACY_ONLY, strict=True))
A_E = dict(zip(_W, WEIGHTS_ACCURACY_ENERGY, strict=True))
A_E_F = dict(zip(_W, WEIGHTS_ACCURACY_ENERGY_FPS, strict=True))
A_F = dict(zip(_W, WEIGHTS_ACCURACY_FPS, strict=True))

# request -> the spec fields it must produce (others are checked by dedicated tests).
CASES: list[tuple[str, dict[str, Any]]] = [
    (
        "build a 1000-FPS malaria classifier",
        {"dataset": "malaria", "fps_threshold": 1000, "fps_priority": 1.0, **A_F},
    ),
    (
        "an energy-efficient digits model with at least 95% accuracy under 100k parameters",
        {"dataset": "digits", "val_accuracy_threshold": 0.95, "max_params": 100_000, **A_E},
    ),
    (
        "real-time cifar-10 classifier under 2 MB",
        {"dataset": "cifar10", "fps_threshold": REAL_TIME_FPS, "max_model_size_mb": 2.0, **A_F},
    ),
    (
        "movie reviews sentiment under 3 ms",
        {"dataset": "imdb", "task": TaskKind.TEXT_CLASSIFICATION, "max_latency_ms": 3.0, **A_ONLY},
    ),
    ("a classifier for cell images", {"dataset": "malaria", "num_classes": 2, **A_ONLY}),
    ("imdb reviews at 1000 fps", {"dataset": "imdb", "input_shape": (256,), "fps_threshold": 1000}),
    ("satellite imagery, at least 500 fps", {"dataset": "eurosat", "fps_threshold": 500, **A_F}),
    ("digits at 500 frames per second", {"dataset": "digits", "fps_threshold": 500}),
    ("CIFAR10 model with 95 % accuracy", {"dataset": "cifar10", "val_accuracy_threshold": 0.95}),
    ("malaria, 0.9 accuracy", {"dataset": "malaria", "val_accuracy_threshold": 0.9}),
    (
        "malaria with an accuracy of at least 0.9",
        {"dataset": "malaria", "val_accuracy_threshold": 0.9, "val_accuracy_priority": 1.0},
    ),
    ("cifar 100 with < 1M params", {"dataset": "cifar100", "max_params": 1_000_000}),
    ("eurosat at most 50,000 parameters", {"dataset": "eurosat", "max_params": 50_000}),
    ("digits under 500 KB", {"dataset": "digits", "max_model_size_mb": 0.5}),
    ("malaria smaller than 1.5MB", {"dataset": "malaria", "max_model_size_mb": 1.5}),
    ("imdb with latency below 10 milliseconds", {"dataset": "imdb", "max_latency_ms": 10.0}),
    (
        "low power malaria detector for a battery device",
        {"dataset": "malaria", "val_energy_priority": 1.0, "train_energy_priority": 0.5, **A_E},
    ),
    ("a green cifar-10 model", {"dataset": "cifar10", **A_E}),
    ("fast and efficient digits classifier", {"dataset": "digits", "fps_priority": 1.0, **A_E_F}),
    ("malaria classifier for an edge device", {"dataset": "malaria", **A_E_F}),
    (
        "real-time and low power imdb model",
        {"dataset": "imdb", "fps_threshold": REAL_TIME_FPS, **A_E_F},
    ),
    (
        "energy-efficient malaria model at 200 fps",
        {"dataset": "malaria", "fps_threshold": 200, "val_energy_priority": 1.0, **A_E_F},
    ),
    (
        "imagenet16-120, 90% accuracy, under 5% of the energy of a ResNet",
        {"dataset": "imagenet16-120", "num_classes": 120, "val_accuracy_threshold": 0.9},
    ),
    ("digits with at least 97%", {"dataset": "digits", "val_accuracy_threshold": 0.97}),
    ("use 20% for validation on digits", {"dataset": "digits", "val_accuracy_threshold": 0.99}),
    ("malaria with an error rate below 3%", {"dataset": "malaria", "val_accuracy_threshold": 0.97}),
    ("a cifar-10 model, 1,000 fps", {"dataset": "cifar10", "fps_threshold": 1000}),
    ("EuroSAT fps >= 2k", {"dataset": "eurosat", "fps_threshold": 2000}),
    ("handwritten digit recognizer", {"dataset": "digits", **A_ONLY}),
    ("a toy cifar-10 model", {"dataset": "cifar10"}),
    (
        "synthetic data, 99.5% accuracy",
        {
            "dataset": "synthetic",
            "val_accuracy_threshold": 0.995,
            "train_accuracy_threshold": 0.995,
        },
    ),
    ("digits with 120 fps, real-time", {"dataset": "digits", "fps_threshold": 120}),
    ("imdb, under 2 ms, under 1 ms", {"dataset": "imdb", "max_latency_ms": 1.0}),
    ("digits model within 500 us", {"dataset": "digits", "max_latency_ms": 0.5}),
]


@pytest.mark.parametrize(("request_text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_offline_reads_the_request(request_text: str, expected: dict[str, Any]) -> None:
    result = plan_offline(request_text)
    assert result.source == "offline"
    spec = result.spec
    for field, value in expected.items():
        got = getattr(spec, field)
        if isinstance(value, float):
            assert got == pytest.approx(value), field
        else:
            assert got == value, field
    assert result.assumptions, "every plan states its assumptions"
    assert all(a.strip() for a in result.assumptions)


@pytest.mark.parametrize(("request_text", "expected"), CASES[:8], ids=[c[0] for c in CASES[:8]])
def test_shapes_come_from_the_registry(request_text: str, expected: dict[str, Any]) -> None:
    from archsmith.data.registry import REGISTRY

    spec = plan_offline(request_text).spec
    info = REGISTRY[spec.dataset]
    assert (spec.task, spec.input_shape, spec.num_classes) == (
        info.task,
        info.input_shape,
        info.num_classes,
    )


REFUSALS: list[tuple[str, list[str]]] = [
    ("a dog-breed classifier", ["no known dataset", "malaria", "'cell images'", "cifar10"]),
    ("malria detector", ["Did you mean 'malaria'", "Known datasets"]),
    ("", ["empty", "malaria"]),
    ("malaria and cifar-10 together", ["2 datasets", "'malaria'", "'cifar10'", "exactly one"]),
    ("digits with at least 1000 fps and at most 500 fps", ["fps_threshold", "contradictory"]),
    ("digits at most 500 fps", ["fps_threshold", "minimum FPS"]),
    ("malaria with 120% accuracy", ["val_accuracy_threshold", "100 %"]),
    ("malaria with accuracy 0%", ["val_accuracy_threshold", "(0, 1]"]),
    ("cifar-10 with accuracy of 150", ["val_accuracy_threshold", "more than 100 %"]),
    ("digits with accuracy at most 0.5", ["val_accuracy_threshold", "caps the accuracy"]),
    ("malaria with 0 parameters", ["max_params", "> 0"]),
    ("malaria with at least 1M params", ["max_params", "minimum parameter count"]),
    ("malaria under 0 MB", ["max_model_size_mb", "> 0"]),
    ("imdb under 0 ms", ["max_latency_ms", "> 0"]),
    ("digits at 0 fps", ["fps_threshold", "> 0"]),
    ("digits with 95% and 90%", ["val_accuracy_threshold", "several percentages"]),
]


@pytest.mark.parametrize(
    ("request_text", "needles"), REFUSALS, ids=[r[0] or "empty" for r in REFUSALS]
)
def test_offline_refuses_what_it_cannot_honour(request_text: str, needles: list[str]) -> None:
    with pytest.raises(PlanRefusedError) as info:
        plan_offline(request_text)
    for needle in needles:
        assert needle in str(info.value), needle


def test_unknown_dataset_message_lists_every_dataset_and_says_how() -> None:
    from archsmith.data.registry import REGISTRY

    with pytest.raises(PlanRefusedError) as info:
        plan_offline("classify birds at 100 fps")
    message = str(info.value)
    for name, entry in REGISTRY.items():
        assert name in message
        assert all(repr(a) in message for a in entry.aliases)
    assert "e.g. 'a 1000-FPS malaria classifier'" in message


def test_defaults_are_stated_as_assumptions() -> None:
    result = plan_offline("a malaria classifier")
    text = "\n".join(result.assumptions)
    assert "No accuracy target given: using the paper's TV_Acc = 0.99." in text
    assert "accuracy-only" in text
    assert "FPS is not pursued" in text
    spec = result.spec
    assert spec.val_accuracy_threshold == PAPER_DEFAULTS["val_accuracy_threshold"]
    assert spec.fps_threshold == PAPER_DEFAULTS["fps_threshold"]
    assert spec.fps_priority == 0.0
    assert spec.val_energy_priority == 0.0


def test_readings_are_stated() -> None:
    text = "\n".join(plan_offline("real-time, fast and efficient cell images model").assumptions)
    assert "'real-time' read as at least 30 FPS." in text
    assert "'cell images' names the malaria dataset." in text
    assert "accuracy 0.7, energy 0.1, FPS 0.2 (the paper's accuracy-energy-FPS setting" in text


def test_other_percentages_are_not_accuracy_and_say_so() -> None:
    result = plan_offline("a cifar-10 model under 5% of the parameters of ResNet-18")
    assert result.spec.val_accuracy_threshold == PAPER_DEFAULTS["val_accuracy_threshold"]
    assert any("'5%'" in a and "not read as an accuracy target" in a for a in result.assumptions)


def test_accuracy_drop_is_a_tolerance_not_a_target() -> None:
    result = plan_offline("cifar-100 with at most a 2% accuracy drop, 80% accuracy")
    assert result.spec.val_accuracy_threshold == pytest.approx(0.8)


def test_same_request_same_spec() -> None:
    request = "an energy-efficient digits model with at least 95% accuracy under 100k parameters"
    first, second = plan_offline(request), plan_offline(request)
    assert first == second
    assert first.spec.model_dump() == second.spec.model_dump()


def test_plan_without_llm_is_offline() -> None:
    assert plan("digits", None).source == "offline"


# --------------------------------------------------------------------------------------------
# The LLM path, with a scripted chat model.
# --------------------------------------------------------------------------------------------


class ScriptedChat(BaseChatModel):
    """A chat model whose structured output is a script: one answer per call, in order."""

    answers: list[Any]
    received: list[list[BaseMessage]] = Field(default_factory=list)
    model_name: str = "scripted-planner"

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        raise NotImplementedError("only structured output is scripted")

    def with_structured_output(self, schema: Any, **kwargs: Any) -> Runnable[Any, Any]:
        assert schema is PlanIntent

        def answer(messages: list[BaseMessage]) -> Any:
            self.received.append(list(messages))
            item = self.answers[len(self.received) - 1]
            if isinstance(item, Exception):
                raise item
            return item

        return RunnableLambda(answer)


def _text(messages: list[BaseMessage]) -> str:
    return "\n".join(str(m.content) for m in messages)


VALID = PlanIntent(
    dataset="cell images",
    val_accuracy_threshold=0.95,
    fps_threshold=1000,
    emphasizes_speed=True,
    assumptions=["'1000-FPS' read as at least 1000 FPS."],
)


def test_llm_first_answer_valid() -> None:
    llm = ScriptedChat(answers=[VALID])
    result = plan_with_llm("a 1000-FPS malaria classifier with 95% accuracy", llm)
    assert result.source == "llm:scripted-planner"
    spec = result.spec
    assert (spec.dataset, spec.input_shape, spec.num_classes) == ("malaria", (3, 32, 32), 2)
    assert spec.fps_threshold == 1000
    assert spec.fps_priority > 0
    assert spec.weight_fps > 0
    assert spec.val_accuracy_threshold == pytest.approx(0.95)
    assert "'1000-FPS' read as at least 1000 FPS." in result.assumptions
    assert len(llm.received) == 1
    prompt = _text(llm.received[0])
    assert "a 1000-FPS malaria classifier" in prompt
    assert "'cell images'" in prompt  # the known datasets and aliases are offered
    assert "cifar10" in prompt


def test_llm_invalid_then_valid_after_reask() -> None:
    bad = {"dataset": "dogs", "val_accuracy_threshold": 0.9}
    llm = ScriptedChat(answers=[bad, VALID.model_dump()])
    result = plan("a 1000-FPS malaria classifier", llm)
    assert result.spec.dataset == "malaria"
    assert len(llm.received) == 2
    second = _text(llm.received[1])
    assert "rejected" in second
    assert "unknown dataset 'dogs'" in second
    assert '"dogs"' in second  # the rejected answer is shown back
    assert len(llm.received[1]) == len(llm.received[0]) + 2


def test_llm_out_of_range_value_is_reasked_with_the_field() -> None:
    llm = ScriptedChat(answers=[VALID.model_copy(update={"val_accuracy_threshold": 95.0}), VALID])
    assert plan_with_llm("malaria, 95%", llm).spec.val_accuracy_threshold == pytest.approx(0.95)
    assert "val_accuracy_threshold" in _text(llm.received[1])


def test_llm_parse_failure_is_reasked() -> None:
    llm = ScriptedChat(answers=[OutputParserException("not JSON"), VALID])
    assert plan_with_llm("malaria", llm).spec.dataset == "malaria"
    assert "not JSON" in _text(llm.received[1])


def test_llm_twice_invalid_is_refused() -> None:
    weights_zero = VALID.model_copy(
        update={"weight_accuracy": 0.0, "weight_energy": 0.0, "weight_fps": 0.0}
    )
    llm = ScriptedChat(answers=[{"dataset": "dogs"}, weights_zero])
    with pytest.raises(PlanRefusedError) as info:
        plan_with_llm("a dog classifier", llm)
    message = str(info.value)
    assert "llm:scripted-planner" in message
    assert "weight_accuracy" in message  # the TaskSpec's own error, naming the fields
    assert len(llm.received) == 2


def test_llm_spec_validation_error_names_the_field() -> None:
    too_heavy = VALID.model_copy(update={"weight_energy": 1.5})
    llm = ScriptedChat(answers=[too_heavy, too_heavy])
    with pytest.raises(PlanRefusedError, match="weight_energy"):
        plan_with_llm("malaria", llm)


def test_llm_schema_error_names_the_field() -> None:
    llm = ScriptedChat(answers=[{"dataset": "malaria", "max_params": "lots"}] * 2)
    with pytest.raises(PlanRefusedError, match="max_params"):
        plan_with_llm("malaria", llm)


def test_llm_dataset_alias_inside_a_phrase_resolves() -> None:
    llm = ScriptedChat(answers=[{"dataset": "the CIFAR-10 dataset", "emphasizes_energy": True}])
    spec = plan_with_llm("cifar-10, green", llm).spec
    assert spec.dataset == "cifar10"
    assert (spec.weight_accuracy, spec.weight_energy, spec.weight_fps) == WEIGHTS_ACCURACY_ENERGY
    assert spec.val_energy_priority > 0


def test_a_provider_failure_while_planning_is_unavailable_not_a_traceback() -> None:
    """Planning comes before any work: a failed call stops there, with the LLM's name."""
    from archsmith.llm.failures import LLMUnavailableError

    llm = ScriptedChat(answers=[RuntimeError("upstream connect error")])
    with pytest.raises(LLMUnavailableError, match="upstream connect error"):
        plan_with_llm("malaria", llm)


# -- targets that cannot be met together, and numbers as the user wrote them --------------------


def test_unreachable_targets_are_warned_about_with_the_reason() -> None:
    spec = plan_offline("a digits classifier with 99.9% accuracy and at most 10 parameters").spec
    (warning,) = plan_warnings(spec)
    assert "max_params = 10 and TV_Acc = 0.999 cannot both be met" in warning
    assert "at least 20 parameters" in warning  # a weight and a bias for each of 10 classes


def test_a_model_size_too_small_for_any_classifier_is_warned_about() -> None:
    spec = plan_offline("a digits classifier under 0.00005 MB").spec
    (warning,) = plan_warnings(spec)
    assert "12 float32 parameters" in warning


@pytest.mark.parametrize(
    "request_text",
    [
        "a digits classifier with 99.9% accuracy and at most 20 parameters",
        "a digits classifier with 95% accuracy under 3000 parameters",
        "a malaria classifier under 0.1 MB",
        "a digits classifier with 10% accuracy under 5 parameters",  # chance level asks nothing
    ],
)
def test_reachable_targets_get_no_warning(request_text: str) -> None:
    assert plan_warnings(plan_offline(request_text).spec) == []


@pytest.mark.parametrize(
    ("request_text", "field", "value"),
    [
        ("digits with 99.9% accuracy", "val_accuracy_threshold", 0.999),
        ("digits with 97.3 % accuracy", "val_accuracy_threshold", 0.973),
        ("digits with an error rate under 0.1%", "val_accuracy_threshold", 0.999),
        ("malaria classifier under 300 KB", "max_model_size_mb", 0.3),
        ("malaria classifier under 1.1k parameters", "max_params", 1100),
        ("malaria classifier under 0.7 ms", "max_latency_ms", 0.7),
        ("malaria classifier under 700 us", "max_latency_ms", 0.7),
    ],
)
def test_numbers_are_kept_as_the_user_wrote_them(
    request_text: str, field: str, value: float
) -> None:
    """0.999, not 0.9990000000000001: the plan, the spec file and every report print these."""
    spec = plan_offline(request_text).spec
    assert getattr(spec, field) == value
    assert repr(float(getattr(spec, field))) == repr(float(value))


def test_archsmith_plan_shows_the_warning_and_the_numbers_as_written() -> None:
    from typer.testing import CliRunner

    from archsmith.cli import app

    result = CliRunner().invoke(
        app,
        [
            "plan",
            "a digits classifier with 99.9% accuracy and at most 10 parameters",
            "--llm",
            "offline",
        ],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 0, result.output
    assert "warning: max_params = 10 and TV_Acc = 0.999 cannot both be met" in result.output
    assert "0.999 " in result.output  # the spec table's value
    assert "0.9990000000000001" not in result.output
