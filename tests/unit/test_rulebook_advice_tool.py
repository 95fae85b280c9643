"""The rulebook_advice LangChain tool: schema, invocation as a tool call, and its output model."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from pydantic import ValidationError

from archsmith.spec import TaskSpec
from archsmith.tools import rulebook_advice_tool
from archsmith.tools.rulebook_advice import advise
from archsmith.tools.schemas import EvaluationMetrics, RulebookAdviceOutput

SPEC = {"dataset": "malaria", "input_shape": [3, 32, 32], "num_classes": 2}
METRICS = {
    "train_accuracy": 0.995,
    "val_accuracy": 0.861,
    "train_energy_kwh_pue": 0.0045,
    "val_energy_kwh_pue": 2e-5,
    "fps": 640.0,
    "params": 812_000,
}


def test_tool_schema_is_the_pydantic_input() -> None:
    assert rulebook_advice_tool.name == "rulebook_advice"
    schema = rulebook_advice_tool.tool_call_schema.model_json_schema()
    assert set(schema["properties"]) == {"metrics", "spec"}
    assert "instructions" in rulebook_advice_tool.description


def test_tool_invoke_returns_the_output_model_as_json_data() -> None:
    out = rulebook_advice_tool.invoke({"metrics": METRICS, "spec": SPEC})
    result = RulebookAdviceOutput.model_validate(out)
    assert [r.rule_id for r in result.fired_rules][:2] == ["val_accuracy_low", "overfitting"]
    # Eight instructions at weight 1 (PV_Acc), in Table 3 order; RCL, RK came with PF = PT_E = 0.
    codes = [i.code for i in result.instructions]
    assert codes == ["ACL", "ASC", "RDL", "AD", "AMK", "AWI", "AR", "RN"]
    assert {i.weight for i in result.instructions} == {1.0}
    assert {d.code for d in result.dropped} == {"RCL", "RK"}
    assert result.combined_metric == pytest.approx(0.995 + 0.861)
    assert result.targets_met is False


def test_tool_call_yields_a_tool_message_with_json() -> None:
    call = {
        "type": "tool_call",
        "id": "call-1",
        "name": "rulebook_advice",
        "args": {"metrics": METRICS, "spec": SPEC},
    }
    msg = rulebook_advice_tool.invoke(call)
    assert isinstance(msg, ToolMessage)
    assert msg.tool_call_id == "call-1"
    data = json.loads(str(msg.content))
    assert RulebookAdviceOutput.model_validate(data).fired_rules


def test_tool_rejects_invalid_arguments() -> None:
    with pytest.raises(ValidationError, match="train_accuracy"):
        rulebook_advice_tool.invoke({"metrics": {**METRICS, "train_accuracy": 2}, "spec": SPEC})


def test_advice_is_deterministic() -> None:
    m = EvaluationMetrics.model_validate(METRICS)
    s = TaskSpec.model_validate(SPEC)
    assert advise(m, s) == advise(m, s)


def test_targets_met_when_no_weighted_rule_fires() -> None:
    metrics: dict[str, Any] = {**METRICS, "val_accuracy": 0.99, "train_accuracy": 0.995}
    spec = {**SPEC, "val_accuracy_threshold": 0.98, "train_accuracy_threshold": 0.9}
    # fps_low and train_energy_high still fire, but their priorities PF and PT_E are 0.
    result = advise(EvaluationMetrics.model_validate(metrics), TaskSpec.model_validate(spec))
    assert {r.rule_id for r in result.fired_rules} == {"fps_low", "train_energy_high"}
    assert result.instructions == []
    assert result.targets_met is True
