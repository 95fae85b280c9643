"""The operator allowlist: every allowed operator is probed functional and deterministic, every
attack that trusted schema flags is refused with what to change, every model family still loads,
and a program's parameter count holds every number it carries.

Probes run under inference mode, as the measuring process runs a program: ``native_batch_norm``
with training=True wrote its running mean there, with no ``(a!)`` in its schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from model_families import FAMILIES
from torch import nn

from archsmith.scoring.allowed_ops import ALLOWED_OPERATORS, RANDOM_ONLY_IN_TRAINING, check_call
from archsmith.scoring.candidate import op_build
from archsmith.scoring.format import PROGRAM_FILE, ProgramError
from archsmith.scoring.handover import take_program
from archsmith.scoring.program import export_program, load_program, resolve_operator

Probe = Callable[[], tuple[tuple[Any, ...], dict[str, Any]]]


def _x(*shape: int) -> torch.Tensor:
    """Positive floats (log, sqrt and pow stay finite), different on every call."""
    return torch.rand(*shape) + 0.5


#: Probes for operators whose arguments the schema alone does not say how to fill.
HAND_PROBES: dict[str, Probe] = {
    "aten.sym_size.int": lambda: ((_x(2, 3), 1), {}),
    "aten.view.default": lambda: ((_x(2, 6), [3, 4]), {}),
    "aten._unsafe_view.default": lambda: ((_x(2, 6), [3, 4]), {}),
    "aten.reshape.default": lambda: ((_x(2, 6), [4, 3]), {}),
    "aten.unsqueeze.default": lambda: ((_x(2, 3), 1), {}),
    "aten.squeeze.dim": lambda: ((_x(2, 1, 3), 1), {}),
    "aten.squeeze.dims": lambda: ((_x(2, 1, 3, 1), [1, 3]), {}),
    "aten.flip.default": lambda: ((_x(2, 3, 4), [1]), {}),
    "aten.permute.default": lambda: ((_x(2, 3, 4), [2, 0, 1]), {}),
    "aten.transpose.int": lambda: ((_x(2, 3, 4), 1, 2), {}),
    "aten.expand.default": lambda: ((_x(2, 1), [2, 5]), {}),
    "aten.flatten.using_ints": lambda: ((_x(2, 3, 4), 1), {}),
    "aten.slice.Tensor": lambda: ((_x(4, 6), 1, 1, 5, 2), {}),
    "aten.select.int": lambda: ((_x(4, 6), 1, 2), {}),
    "aten.index.Tensor": lambda: ((_x(4, 6), [torch.tensor([0, 2, 3])]), {}),
    "aten.split.Tensor": lambda: ((_x(4, 6), 2, 1), {}),
    "aten.split_with_sizes.default": lambda: ((_x(4, 6), [2, 4], 1), {}),
    "aten.unbind.int": lambda: ((_x(3, 4), 0), {}),
    "aten.chunk.default": lambda: ((_x(4, 6), 3, 1), {}),
    "aten.cat.default": lambda: (([_x(2, 3), _x(2, 4)], 1), {}),
    "aten.stack.default": lambda: (([_x(2, 3), _x(2, 3)], 0), {}),
    "aten._to_copy.default": lambda: ((_x(2, 3),), {"dtype": torch.float64}),
    "aten.to.dtype": lambda: ((_x(2, 3), torch.float64), {}),
    "aten.full.default": lambda: (([2, 3], 1.5), {"dtype": torch.float32}),
    "aten.zeros.default": lambda: (([2, 3],), {"dtype": torch.float32}),
    "aten.ones.default": lambda: (([2, 3],), {"dtype": torch.float32}),
    "aten.full_like.default": lambda: ((_x(2, 3), 2.5), {}),
    "aten.scalar_tensor.default": lambda: ((1.5,), {"dtype": torch.float32}),
    "aten.arange.default": lambda: ((5,), {"dtype": torch.int64}),
    "aten.arange.start": lambda: ((1, 5), {"dtype": torch.int64}),
    "aten.arange.start_step": lambda: ((1, 9, 2), {"dtype": torch.int64}),
    "aten.conv1d.default": lambda: ((_x(2, 3, 9), _x(4, 3, 3), _x(4), [1], [1]), {}),
    "aten.conv2d.default": lambda: ((_x(2, 3, 6, 6), _x(4, 3, 3, 3), _x(4), [1, 1], [1, 1]), {}),
    "aten.convolution.default": lambda: (
        (_x(2, 3, 6, 6), _x(4, 3, 3, 3), _x(4), [1, 1], [1, 1], [1, 1], False, [0, 0], 1),
        {},
    ),
    "aten.linear.default": lambda: ((_x(2, 3), _x(4, 3), _x(4)), {}),
    "aten.addmm.default": lambda: ((_x(4), _x(2, 3), _x(3, 4)), {}),
    "aten.mm.default": lambda: ((_x(2, 3), _x(3, 4)), {}),
    "aten.bmm.default": lambda: ((_x(2, 2, 3), _x(2, 3, 4)), {}),
    "aten.matmul.default": lambda: ((_x(2, 2, 3), _x(3, 4)), {}),
    "aten.baddbmm.default": lambda: ((_x(2, 2, 4), _x(2, 2, 3), _x(2, 3, 4)), {}),
    "aten.embedding.default": lambda: ((_x(10, 4), torch.tensor([[1, 2], [3, 9]])), {}),
    "aten._native_batch_norm_legit_no_training.default": lambda: (
        (_x(2, 3, 4), _x(3), _x(3), _x(3), _x(3), 0.1, 1e-5),
        {},
    ),
    "aten.native_layer_norm.default": lambda: ((_x(2, 3, 4), [4], _x(4), _x(4), 1e-5), {}),
    "aten.layer_norm.default": lambda: ((_x(2, 3, 4), [4], _x(4), _x(4)), {}),
    "aten.native_group_norm.default": lambda: (
        (_x(2, 4, 3), _x(4), _x(4), 2, 4, 3, 2, 1e-5),
        {},
    ),
    "aten.group_norm.default": lambda: ((_x(2, 4, 3), 2, _x(4), _x(4)), {}),
    "aten.max_pool1d.default": lambda: ((_x(2, 3, 8), [2]), {}),
    "aten.max_pool2d.default": lambda: ((_x(2, 3, 8, 8), [2, 2]), {}),
    "aten.max_pool2d_with_indices.default": lambda: ((_x(2, 3, 8, 8), [3, 3], [2, 2], [1, 1]), {}),
    "aten.avg_pool1d.default": lambda: ((_x(2, 3, 8), [2]), {}),
    "aten.avg_pool2d.default": lambda: ((_x(2, 3, 8, 8), [2, 2]), {}),
    "aten.adaptive_avg_pool1d.default": lambda: ((_x(2, 3, 8), [1]), {}),
    "aten.adaptive_avg_pool2d.default": lambda: ((_x(2, 3, 8, 8), [1, 1]), {}),
    "aten._adaptive_avg_pool2d.default": lambda: ((_x(2, 3, 8, 8), [2, 2]), {}),
    "aten.adaptive_max_pool2d.default": lambda: ((_x(2, 3, 8, 8), [1, 1]), {}),
    "aten._softmax.default": lambda: ((_x(2, 3), 1, False), {}),
    "aten._log_softmax.default": lambda: ((_x(2, 3), 1, False), {}),
    "aten.softmax.int": lambda: ((_x(2, 3), 1), {}),
    "aten.log_softmax.int": lambda: ((_x(2, 3), 1), {}),
    "aten.scaled_dot_product_attention.default": lambda: (
        (_x(2, 2, 5, 4), _x(2, 2, 5, 4), _x(2, 2, 5, 4)),
        {},
    ),
    "aten._scaled_dot_product_flash_attention_for_cpu.default": lambda: (
        (_x(2, 2, 5, 4), _x(2, 2, 5, 4), _x(2, 2, 5, 4)),
        {},
    ),
    "aten.mean.dim": lambda: ((_x(2, 3, 4), [1, 2]), {}),
    "aten.sum.dim_IntList": lambda: ((_x(2, 3, 4), [1]), {}),
    "aten.amax.default": lambda: ((_x(2, 3, 4), [2]), {}),
    "aten.amin.default": lambda: ((_x(2, 3, 4), [2]), {}),
    "aten.max.dim": lambda: ((_x(2, 3, 4), 2), {}),
    "aten.var.correction": lambda: ((_x(2, 3, 4), [2]), {"correction": 0}),
    "aten.bitwise_and.Tensor": lambda: (
        (torch.tensor([1, 0, 1]) > 0, torch.tensor([1, 1, 0]) > 0),
        {},
    ),
    "aten.bitwise_or.Tensor": lambda: (
        (torch.tensor([1, 0, 1]) > 0, torch.tensor([1, 1, 0]) > 0),
        {},
    ),
    "aten.bitwise_not.default": lambda: ((torch.tensor([1, 0, 1]) > 0,), {}),
    "aten.where.self": lambda: ((_x(2, 3) > 1.0, _x(2, 3), _x(2, 3)), {}),
    "aten.clamp.default": lambda: ((_x(2, 3), 0.7, 1.2), {}),
    "aten.clamp.Tensor": lambda: ((_x(2, 3), _x(2, 3), _x(2, 3) + 1), {}),
    "aten.div.Tensor_mode": lambda: ((_x(2, 3), _x(2, 3)), {"rounding_mode": "floor"}),
    "aten.pow.Scalar": lambda: ((2.0, _x(2, 3)), {}),
}


def _auto_probe(op: torch._ops.OpOverload) -> Probe | None:
    """Arguments from the schema, for operators that take only tensors and scalars (the rest
    keep their defaults); None where the schema asks for anything else."""
    kinds: list[str] = []
    for arg in op._schema.arguments:
        if arg.has_default_value():
            break
        kind = str(arg.type)
        if arg.kwarg_only or kind not in ("Tensor", "Scalar", "number"):
            return None
        kinds.append(kind)
    return lambda: (tuple(_x(2, 3) if k == "Tensor" else 0.5 for k in kinds), {})


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, list | tuple):
        return type(value)(_clone(v) for v in value)
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return (
            isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(torch.equal(a, b) or torch.allclose(a, b, rtol=0, atol=0, equal_nan=True))
        )
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(_same, a, b))
    return bool(a == b)


def _probe(op: Any, probe: Probe) -> tuple[bool, bool]:
    """(inputs unchanged, same output twice) for one call of ``op`` on fresh probe inputs."""
    args, kwargs = probe()
    before = _clone((args, kwargs))
    with torch.inference_mode():
        first = op(*args, **kwargs)
        second = op(*args, **kwargs)
    return _same((args, kwargs), before), _same(first, second)


@pytest.mark.parametrize("name", sorted(ALLOWED_OPERATORS))
def test_every_allowed_operator_leaves_its_inputs_alone_and_repeats_itself(name: str) -> None:
    op = resolve_operator(name)
    assert isinstance(op, torch._ops.OpOverload)
    probe = HAND_PROBES.get(name) or _auto_probe(op)
    assert probe is not None, f"{name} has no probe: add one to HAND_PROBES"
    unchanged, repeated = _probe(op, probe)
    assert unchanged, f"{name} changed an input"
    assert repeated, f"{name} gave two outputs for one input"


@pytest.mark.parametrize("name", sorted(RANDOM_ONLY_IN_TRAINING))
def test_an_operator_random_in_training_is_allowed_only_with_training_off(name: str) -> None:
    """Tagged random (dropout in training), allowed because check_call holds its training
    argument off: with it on, the call is refused."""
    op = resolve_operator(name)
    assert isinstance(op, torch._ops.OpOverload)
    assert torch.Tag.nondeterministic_seeded in op.tags
    names = [a.name for a in op._schema.arguments]
    switch = next(n for n in ("train", "dropout_p") if n in names)
    with pytest.raises(ProgramError, match=f"called with {switch}="):
        check_call(name, op, [], {switch: True if switch == "train" else 0.5})


def test_every_hand_probe_is_for_an_allowed_operator() -> None:
    assert set(HAND_PROBES) <= ALLOWED_OPERATORS


def test_the_probe_sees_the_write_the_schema_does_not_mark() -> None:
    """Why flags are not trusted: ``native_batch_norm`` has no (a!), and writes its running mean
    under inference mode; the probe that clears every allowed operator catches it."""
    op = torch.ops.aten.native_batch_norm.default
    assert not op._schema.is_mutable

    def probe() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (_x(2, 3, 4), _x(3), _x(3), _x(3), _x(3), True, 0.1, 1e-5), {}

    unchanged, _ = _probe(op, probe)
    assert not unchanged


# -- attacks ---------------------------------------------------------------------------------------


class ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.bn(self.conv(x))).mean((2, 3)))


@pytest.fixture
def conv_bn(tmp_path: Path) -> Path:
    export_program(ConvBN().eval(), torch.randn(2, 1, 6, 6), tmp_path)
    return tmp_path


def _nodes(directory: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    data = json.loads((directory / PROGRAM_FILE).read_text())
    return data, data["nodes"]


def _save(directory: Path, data: dict[str, Any]) -> None:
    (directory / PROGRAM_FILE).write_text(json.dumps(data))


def _node(nodes: list[dict[str, Any]], op: str) -> dict[str, Any]:
    return next(n for n in nodes if n["op"] == op)


@pytest.mark.parametrize(
    ("op", "training"),
    [
        ("aten.native_batch_norm.default", True),
        ("aten._native_batch_norm_legit.default", True),
        ("aten.batch_norm.default", True),
        ("aten._batch_norm_with_update.default", None),
        ("aten._native_batch_norm_legit_functional.default", True),
        ("aten.native_batch_norm.default", False),  # allowed by no name but the inference one
    ],
)
def test_batch_norm_that_counts_calls_in_its_running_mean_is_refused(
    conv_bn: Path, op: str, training: bool | None
) -> None:
    """The attack: batch norm with training=True as a call counter in its running mean, honest on
    the scored passes, the network skipped on the timed ones. Refused by name before it runs."""
    data, nodes = _nodes(conv_bn)
    node = _node(nodes, "aten._native_batch_norm_legit_no_training.default")
    node["op"] = op
    if training is not None:  # (input, weight, bias, mean, var, training, momentum, eps)
        node["args"].insert(5, training)
    _save(conv_bn, data)
    with pytest.raises(ProgramError, match=rf"operator {op} normalises with training state") as e:
        load_program(conv_bn)
    assert "call model.eval() before export" in str(e.value)


@pytest.mark.parametrize(
    ("op", "why"),
    [
        ("aten.rand_like.default", "draws random numbers"),
        ("aten.randn_like.default", "draws random numbers"),
        ("aten.bernoulli.p", "draws random numbers"),
        ("aten.bernoulli.default", "draws random numbers"),
        ("aten.native_dropout.default", "draws random numbers"),
        ("aten.normal.Tensor_float", "draws random numbers"),
        ("aten.multinomial.default", "draws random numbers"),
        ("aten.randint_like.default", "draws random numbers"),
        ("aten.empty.memory_format", "returns uninitialised memory"),
        ("aten.empty_like.default", "returns uninitialised memory"),
        ("aten.empty_strided.default", "returns uninitialised memory"),
        ("aten.new_empty.default", "returns uninitialised memory"),
        ("aten.new_empty_strided.default", "returns uninitialised memory"),
        ("aten.add_.Tensor", "changes its inputs in place"),
        ("aten.cumsum.default", "is not one a measured program may call"),
    ],
)
def test_random_uninitialised_and_unlisted_operators_are_refused(
    conv_bn: Path, op: str, why: str
) -> None:
    """The same program scored 0.1042 in one job and 0.1319 in the next with a random operator."""
    data, nodes = _nodes(conv_bn)
    nodes[0]["op"] = op
    _save(conv_bn, data)
    with pytest.raises(ProgramError, match=rf"operator {op} {why}"):
        load_program(conv_bn)


class Attention(nn.Module):
    """Self-attention with dropout in training, as a transformer layer has it."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(4, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).unsqueeze(1).chunk(3, -1)
        p = 0.3 if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p).flatten(1)


ATTENTION = "aten._scaled_dot_product_flash_attention_for_cpu.default"


def test_attention_forged_into_training_mode_is_refused(tmp_path: Path) -> None:
    """Attention is allowed, and its ``dropout_p`` turns on dropout (random on every call)."""
    export_program(Attention().eval(), torch.rand(2, 5, 4), tmp_path)
    data, nodes = _nodes(tmp_path)
    attention = _node(nodes, ATTENTION)
    load_program(tmp_path)
    attention["kwargs"]["dropout_p"] = 0.3
    _save(tmp_path, data)
    with pytest.raises(ProgramError, match=rf"{re.escape(ATTENTION)} is called with dropout_p=0.3"):
        load_program(tmp_path)


@pytest.mark.parametrize("name", ["aten.gru.input", "aten.lstm.input"])
def test_recurrent_operators_with_a_train_switch_are_refused(name: str) -> None:
    """torch.export unrolls GRU and LSTM into matrix products, so their fused operators (whose
    ``train`` argument drops out between layers) are not on the list at all."""
    with pytest.raises(ProgramError, match="draws random numbers"):
        resolve_operator(name)


def test_training_arguments_must_be_literally_off() -> None:
    gru = torch.ops.aten.gru.input
    args = [None, None, [], True, 1, 0.0]
    check_call("aten.gru.input", gru, [*args, False, False, True], {})
    for value in (True, 1, "False", None):
        with pytest.raises(ProgramError, match="train="):
            check_call("aten.gru.input", gru, [*args, value, False, True], {})
    sdpa = torch.ops.aten.scaled_dot_product_attention.default
    name = "aten.scaled_dot_product_attention.default"
    check_call(name, sdpa, [None, None, None], {})
    check_call(name, sdpa, [None, None, None, None, 0.0], {})
    with pytest.raises(ProgramError, match=r"dropout_p=0\.5"):
        check_call(name, sdpa, [None, None, None, None, 0.5], {})
    with pytest.raises(ProgramError, match=r"dropout_p=0\.1"):
        check_call(name, sdpa, [None, None, None], {"dropout_p": 0.1})


class Noisy(nn.Module):
    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 3)
        self.f = forward
        self.register_buffer("mean", torch.zeros(16))
        self.register_buffer("var", torch.ones(16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.f(x.flatten(1)))


@pytest.mark.parametrize(
    ("forward", "said"),
    [
        (lambda x: x + torch.rand_like(x), r"rand_like\.default draws random numbers"),
        (lambda x: torch.bernoulli(torch.sigmoid(x)), r"bernoulli\.\w+ draws random numbers"),
        (lambda x: F.dropout(x, 0.5), r"native_dropout\.default draws random numbers"),
        (lambda x: torch.empty_like(x).fill_(1.0) * x, r"empty\w*\.\w+ returns uninitialised"),
        (lambda x: F.instance_norm(x.unsqueeze(1)).squeeze(1), "normalises with training state"),
    ],
    ids=["rand_like", "bernoulli", "dropout-in-eval", "empty_like", "batch-statistics"],
)
def test_the_candidate_hears_which_operator_and_what_to_change(
    tmp_path: Path, forward: Callable[[torch.Tensor], torch.Tensor], said: str
) -> None:
    """Refused at export, in the candidate's own process, with the reason the loader gives."""
    with pytest.raises(ProgramError, match=said):
        export_program(Noisy(forward).eval(), torch.randn(2, 1, 4, 4), tmp_path)


def test_batch_norm_forced_into_training_in_forward_cannot_be_exported(tmp_path: Path) -> None:
    def forced(x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, torch.zeros(16), torch.ones(16), training=True)

    with pytest.raises(ProgramError, match=r"training state|must have no state"):
        export_program(Noisy(forced).eval(), torch.randn(2, 1, 4, 4), tmp_path)


# -- what must still load --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_model_family_exports_checked_and_loads(family: str, tmp_path: Path) -> None:
    """The candidate's build step (export, the program proven against the model), then the
    measuring process's loader: every operator the family needs is on the list.

    Slow: it exports real families (a MobileNetV3 takes about 25 s here, an unrolled GRU and
    LSTM about 20 s), which is the point: the list is what export emits for them."""
    code, args = FAMILIES[family]
    candidate = tmp_path / "candidate.py"
    candidate.write_text(code)
    work = tmp_path / "work"
    work.mkdir()
    built = op_build(args, {}, str(candidate), work)
    assert built["matches"], built
    assert built["export"]["check"]["passed"]
    _, info = load_program(work)
    ops = {n["op"] for n in info["nodes"]}
    assert {o for o in ops if o.startswith("aten.")} <= ALLOWED_OPERATORS


# -- what a program carries ------------------------------------------------------------------------


class HiddenWeights(nn.Module):
    """Trains with parameters; in eval mode turns them into plain tensor attributes (which export
    lifts as constants) and a float16 buffer, so a count of parameters alone would read 0."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(64, 800)
        self.b = nn.Linear(800, 6)

    def train(self, mode: bool = True) -> HiddenWeights:
        super().train(mode)
        if not mode and isinstance(self.a.weight, nn.Parameter):
            for layer in (self.a, self.b):
                weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
                del layer.weight, layer.bias
                layer.weight = weight  # a plain attribute now: export lifts it as a constant
                layer.register_buffer("bias", bias.half())
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.linear(x.flatten(1), self.a.weight, self.a.bias.float()).relu()
        return F.linear(h, self.b.weight, self.b.bias.float())


def test_weights_hidden_as_constants_and_buffers_are_counted(tmp_path: Path) -> None:
    model = HiddenWeights()
    real = sum(p.numel() for p in model.parameters())
    assert real == 64 * 800 + 800 + 800 * 6 + 6
    work = tmp_path / "work"
    export_program(model.eval(), torch.randn(2, 1, 8, 8), work)
    data, _ = _nodes(work)
    assert sorted(data["tensors"].values()) == ["buffer", "buffer", "constant", "constant"]
    _, info = load_program(work)
    taken = take_program(work, tmp_path / "models", max_tensor_bytes=1 << 24)
    assert info["params"] == taken.params == real
    assert info["size_bytes"] == taken.size_bytes == (64 * 800 + 800 * 6) * 4 + (800 + 6) * 2


def test_a_measured_zero_stays_a_measured_zero() -> None:
    """Training's figures come first, even when they are 0; validation's only when training has
    none (``or`` would take validation's 5,000 for the trained program's 0)."""
    from archsmith.agents.nodes import measured_metrics

    trained: Any = {
        "evaluation": {"train": {"params": 0, "size_mb": 0.0}},
        "validation": {"params": 5000, "size_mb": 0.02},
    }
    metrics = measured_metrics(trained)
    assert (metrics.params, metrics.model_size_mb) == (0, 0.0)
    validated: Any = {"evaluation": {}, "validation": {"params": 5000, "size_mb": 0.02}}
    metrics = measured_metrics(validated)
    assert (metrics.params, metrics.model_size_mb) == (5000, 0.02)
