"""The offline architect: applies the rulebook's instructions to an architecture description.

Without an LLM the search still has to be real, so this architect keeps a small, explicit
description of the model (``Arch``), turns each of the rulebook's 15 instructions into a concrete,
bounded edit of it, and renders readable PyTorch code that follows the candidate-code contract.
Everything is seeded, so a run is reproducible: the same seed and the same feedback give the same
sequence of candidates.

The description (stored as JSON in ``ArchitectProposal.arch``)::

    {"kind": "image" | "text", "input_shape": [1, 8, 8], "num_classes": 10,
     "stages": [{"channels": 16, "layers": 1, "kernel": 3, "residual": false, "pool": true}],
     "stem_stride": 1, "head": [32], "dropout": 0.0, "stage_dropout": 0.0,
     "init": "default" | "kaiming", "embed_dim": null | 32, "vocab_size": 20000}

A stage is ``layers`` conv-BN-ReLU layers of ``channels`` filters (2-D for images, 1-D over the
token embeddings for text), optionally wrapped in a residual (skip) connection, then a 2x max-pool
when ``pool``. Global pooling (average for images, max for text) feeds the dense ``head``.
``dropout`` is applied before every dense layer. Regularization (AR / RR) is ``stage_dropout``:
channel (spatial) dropout after every stage. It is architectural on purpose: a weight-decay label
would not be part of the model the framework trains, so the edit would change nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from archsmith.agents.early_stop import STOPPED_EARLY
from archsmith.agents.interfaces import ArchitectProposal
from archsmith.search.policy import (
    Advice,
    Candidate,
    Knobs,
    Move,
    Observation,
    Target,
    accuracy_target,
    choose,
)
from archsmith.search.surrogate import Matrix
from archsmith.spec import TaskKind, TaskSpec
from archsmith.tools.rulebook_advice import advise
from archsmith.tools.schemas import EvaluationMetrics

__all__ = [
    "DEFAULT_PARAM_CAP",
    "EDITS",
    "Arch",
    "OfflineArchitect",
    "Stage",
    "apply_edit",
    "arch_signature",
    "estimate_params",
    "initial_arch",
    "render_code",
    "summarize",
]

logger = logging.getLogger(__name__)

#: Parameter cap when the spec sets no ``max_params``: keeps candidates trainable on a CPU.
DEFAULT_PARAM_CAP = 2_000_000
#: Token ids the text models embed; the imdb loader's default vocabulary (ids >= it map to OOV).
TEXT_VOCAB_SIZE = 20_000

MIN_CHANNELS = 8
MAX_CHANNELS = 256
MAX_LAYERS_PER_STAGE = 4
MAX_STAGES = 5
MIN_NEURONS = 16
MAX_NEURONS = 512
MAX_DENSE_LAYERS = 3
MAX_DROPOUT = 0.5
MAX_STAGE_DROPOUT = 0.3
DROPOUT_STEP = 0.1
STAGE_DROPOUT_STEP = 0.05
WIDEN = 1.5
#: Text sequences are pooled at most this often (a 256-token review keeps 4 positions).
MAX_TEXT_POOLS = 6


class Stage(BaseModel):
    """``layers`` conv layers of ``channels`` filters, optionally residual, optionally pooled."""

    model_config = ConfigDict(extra="forbid")

    channels: int = Field(ge=1)
    layers: int = Field(ge=1)
    kernel: Literal[3, 5] = 3
    residual: bool = False
    pool: bool = True


class Arch(BaseModel):
    """The architecture description the offline architect edits and renders."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["image", "text"]
    input_shape: list[int]
    num_classes: int = Field(ge=2)
    stages: list[Stage] = Field(min_length=1)
    stem_stride: Literal[1, 2] = 1
    head: list[int] = Field(default_factory=list)
    dropout: float = Field(default=0.0, ge=0.0, le=MAX_DROPOUT)
    stage_dropout: float = Field(default=0.0, ge=0.0, le=MAX_STAGE_DROPOUT)
    init: Literal["default", "kaiming"] = "default"
    embed_dim: int | None = None
    vocab_size: int = TEXT_VOCAB_SIZE


# -- the description's measures -------------------------------------------------------------------


def arch_signature(arch: Arch | dict[str, Any]) -> str:
    """A canonical hash of a description, so the search can tell it never proposes one twice."""
    model = arch if isinstance(arch, Arch) else Arch.model_validate(arch)
    data = model.model_dump(mode="json")
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def estimate_params(arch: Arch) -> int:
    """The rendered model's exact parameter count, computed from the description alone."""
    total = 0
    if arch.kind == "text":
        c_in = arch.embed_dim or 1
        total += arch.vocab_size * c_in
    else:
        c_in = arch.input_shape[0]
    for stage in arch.stages:
        k = stage.kernel if arch.kind == "text" else stage.kernel * stage.kernel
        c = stage.channels
        total += c_in * c * k + 2 * c  # first conv (no bias) + batch norm
        total += (stage.layers - 1) * (c * c * k + 2 * c)
        if stage.residual and c_in != c:
            total += c_in * c + 2 * c  # 1x1 projection + batch norm
        c_in = c
    for n in arch.head:
        total += c_in * n + n
        c_in = n
    total += c_in * arch.num_classes + arch.num_classes
    return total


def final_size(arch: Arch) -> int:
    """The smallest spatial side (images) or sequence length (text) before global pooling."""
    side = min(arch.input_shape[1:]) if arch.kind == "image" else arch.input_shape[0]
    side = math.ceil(side / arch.stem_stride)
    for stage in arch.stages:
        if stage.pool:
            side //= 2
    return side


def _pools(arch: Arch) -> int:
    return sum(stage.pool for stage in arch.stages)


def _can_pool_again(arch: Arch) -> bool:
    """Whether one more 2x pooling keeps the spatial size (sequence length) at least 1 (2)."""
    if arch.kind == "text":
        return _pools(arch) < MAX_TEXT_POOLS and final_size(arch) >= 4
    return final_size(arch) >= 2


def summarize(arch: Arch, applied: Iterable[str] = ()) -> str:
    """One line for the live view, e.g. ``CNN [16,32]x[2,1] k3 skip:1 head[64] do0.1 ...``."""
    name = "CNN" if arch.kind == "image" else f"TextCNN emb{arch.embed_dim}"
    chans = ",".join(str(s.channels) for s in arch.stages)
    layers = ",".join(str(s.layers) for s in arch.stages)
    kernels = "".join(str(s.kernel) for s in arch.stages)
    skips = sum(s.residual for s in arch.stages)
    head = ",".join(str(n) for n in arch.head)
    codes = [a.split(":", 1)[0] for a in applied]
    tail = f" ({','.join('+' + c for c in codes)})" if codes else ""
    init = " kaiming" if arch.init == "kaiming" else ""
    return (
        f"{name} [{chans}]x[{layers}] k{kernels} skip:{skips} head[{head}]"
        f" do{arch.dropout:.1f} sd{arch.stage_dropout:.2f}{init}"
        f" {_human(estimate_params(arch))}p{tail}"
    )


def _human(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    if n >= 1_000:
        return f"{n / 1e3:.0f}k"
    return str(n)


# -- the initial model -----------------------------------------------------------------------------


def param_cap(spec: TaskSpec) -> int:
    """The largest parameter count the architect proposes: ``spec.max_params`` or the CPU cap."""
    return spec.max_params if spec.max_params is not None else DEFAULT_PARAM_CAP


def initial_arch(spec: TaskSpec) -> Arch:
    """A sensible small first model for the task, shrunk until it fits the parameter cap."""
    shape = list(spec.input_shape)
    if spec.task is TaskKind.TEXT_CLASSIFICATION:
        arch = Arch(
            kind="text",
            input_shape=shape,
            num_classes=spec.num_classes,
            stages=[Stage(channels=64, layers=1, kernel=5, pool=True)],
            head=[64],
            dropout=0.2,
            embed_dim=32,
        )
    else:
        side = min(shape[1:])
        if side <= 16:  # digits-sized: small, with room to grow either way
            stages = [Stage(channels=32, layers=1), Stage(channels=64, layers=1)]
            head, dropout, stride = [64], 0.0, 1
        elif side <= 48:
            stages = [Stage(channels=32, layers=1), Stage(channels=64, layers=1)]
            head, dropout, stride = [128], 0.2, 1
        else:  # large images: a strided stem keeps activations small on a CPU
            stages = [Stage(channels=c, layers=1) for c in (32, 64, 128)]
            head, dropout, stride = [128], 0.2, 2
        arch = Arch(
            kind="image",
            input_shape=shape,
            num_classes=spec.num_classes,
            stages=stages,
            stem_stride=stride,
            head=head,
            dropout=dropout,
        )
        while final_size(arch) < 1 and len(arch.stages) > 1:
            arch.stages.pop()
        for stage in arch.stages:
            if final_size(arch) < 1:
                stage.pool = False
    return _fit_cap(arch, param_cap(spec))


def _fit_cap(arch: Arch, cap: int) -> Arch:
    """Halve widths (and the embedding) until the description fits ``cap``, as far as it can."""
    arch = arch.model_copy(deep=True)
    for _ in range(12):
        if estimate_params(arch) <= cap:
            break
        for stage in arch.stages:
            stage.channels = max(1, stage.channels // 2)
        arch.head = [max(1, n // 2) for n in arch.head]
        if arch.embed_dim is not None:
            arch.embed_dim = max(1, arch.embed_dim // 2)
    return arch


# -- the 15 instructions as edits ------------------------------------------------------------------


def _round_to(x: float, step: int) -> int:
    return max(step, round(x / step) * step)


def _acl(a: Arch) -> str | None:
    last = a.stages[-1]
    if last.layers < 2:
        last.layers += 1
        return f"added {last.kernel}x{last.kernel} conv {last.channels} to stage {len(a.stages)}"
    if len(a.stages) < MAX_STAGES and _can_pool_again(a):
        ch = min(MAX_CHANNELS, last.channels * 2)
        a.stages.append(Stage(channels=ch, layers=1, kernel=last.kernel, pool=True))
        k = last.kernel
        return f"added stage {len(a.stages)}: {k}x{k} conv {ch} + pool"
    for i in range(len(a.stages) - 1, -1, -1):
        stage = a.stages[i]
        if stage.layers < MAX_LAYERS_PER_STAGE:
            stage.layers += 1
            k = stage.kernel
            return f"added {k}x{k} conv {stage.channels} to stage {i + 1}"
    return None


def _rcl(a: Arch) -> str | None:
    last = a.stages[-1]
    if last.layers > 1:
        last.layers -= 1
        return f"removed a conv from stage {len(a.stages)}"
    if len(a.stages) > 1:
        a.stages.pop()
        return f"removed stage {len(a.stages) + 1} (its only conv)"
    return None


def _scale_channels(a: Arch, factor: float) -> str | None:
    old = [s.channels for s in a.stages]
    for s in a.stages:
        s.channels = min(MAX_CHANNELS, max(MIN_CHANNELS, _round_to(s.channels * factor, 8)))
    new = [s.channels for s in a.stages]
    if new == old:
        return None
    return f"channels {old} -> {new}"


def _amk(a: Arch) -> str | None:
    return _scale_channels(a, WIDEN)


def _rk(a: Arch) -> str | None:
    return _scale_channels(a, 1 / WIDEN)


def _asc(a: Arch) -> str | None:
    for i, s in enumerate(a.stages):
        if not s.residual:
            s.residual = True
            return f"stage {i + 1} made residual"
    return None


def _rsc(a: Arch) -> str | None:
    for i in range(len(a.stages) - 1, -1, -1):
        if a.stages[i].residual:
            a.stages[i].residual = False
            return f"removed the skip connection of stage {i + 1}"
    return None


def _adl(a: Arch) -> str | None:
    if len(a.head) >= MAX_DENSE_LAYERS:
        return None
    n = a.head[-1] if a.head else 64
    a.head.append(n)
    return f"added dense layer of {n} neurons"


def _rdl(a: Arch) -> str | None:
    if not a.head:
        return None
    n = a.head.pop()
    return f"removed dense layer of {n} neurons"


def _scale_neurons(a: Arch, factor: float) -> str | None:
    old = list(a.head)
    a.head = [min(MAX_NEURONS, max(MIN_NEURONS, _round_to(n * factor, 16))) for n in a.head]
    if a.head == old:
        return None
    return f"neurons {old} -> {a.head}"


def _amn(a: Arch) -> str | None:
    return _scale_neurons(a, WIDEN)


def _rn(a: Arch) -> str | None:
    return _scale_neurons(a, 1 / WIDEN)


def _step(value: float, delta: float, top: float) -> float:
    return round(min(top, max(0.0, value + delta)), 2)


def _dropout(a: Arch, delta: float) -> str | None:
    new = _step(a.dropout, delta, MAX_DROPOUT)
    if new == a.dropout:
        return None
    old, a.dropout = a.dropout, new
    return f"dropout {old:.1f} -> {new:.1f}"


def _stage_dropout(a: Arch, delta: float) -> str | None:
    new = _step(a.stage_dropout, delta, MAX_STAGE_DROPOUT)
    if new == a.stage_dropout:
        return None
    old, a.stage_dropout = a.stage_dropout, new
    return f"stage (channel) dropout {old:.2f} -> {new:.2f}"


def _ad(a: Arch) -> str | None:
    return _dropout(a, DROPOUT_STEP)


def _rd(a: Arch) -> str | None:
    return _dropout(a, -DROPOUT_STEP)


def _ar(a: Arch) -> str | None:
    return _stage_dropout(a, STAGE_DROPOUT_STEP)


def _rr(a: Arch) -> str | None:
    return _stage_dropout(a, -STAGE_DROPOUT_STEP)


def _awi(a: Arch) -> str | None:
    if a.init == "kaiming":
        return None
    a.init = "kaiming"
    return "kaiming (He) initialisation of convs and dense layers"


#: Each rulebook instruction as an in-place edit; it returns what it did, or None at a bound.
EDITS: dict[str, Callable[[Arch], str | None]] = {
    "ACL": _acl,
    "ASC": _asc,
    "ADL": _adl,
    "RCL": _rcl,
    "RSC": _rsc,
    "RDL": _rdl,
    "AD": _ad,
    "AMK": _amk,
    "AWI": _awi,
    "AR": _ar,
    "RK": _rk,
    "RD": _rd,
    "AMN": _amn,
    "RN": _rn,
    "RR": _rr,
}


def apply_edit(arch: Arch, code: str, cap: int) -> tuple[Arch, str] | None:
    """``arch`` with instruction ``code`` applied, and a line saying how; None when out of bounds.

    An edit that would push the estimated parameter count over ``cap`` is out of bounds too, so
    no candidate the architect proposes breaks the spec's limit.
    """
    edit = EDITS.get(code)
    if edit is None:
        logger.warning("unknown instruction %r ignored", code)
        return None
    new = arch.model_copy(deep=True)
    what = edit(new)
    if what is None:
        return None
    params = estimate_params(new)
    if params > cap and params > estimate_params(arch):
        logger.debug("%s rejected: %d params > cap %d", code, params, cap)
        return None
    return new, f"{code}: {what}"


# -- rendering -------------------------------------------------------------------------------------

_IMAGE_TEMPLATE = '''"""{summary}

Generated by archsmith's offline architect from its architecture description.
"""

import torch
from torch import nn

# (out channels, conv layers, kernel size, residual, 2x max-pool after)
STAGES = [
{stages}
]
STEM_STRIDE = {stem_stride}  # stride of the very first conv
HEAD = {head}  # hidden dense layers (neurons)
DROPOUT = {dropout}  # before every dense layer
STAGE_DROPOUT = {stage_dropout}  # channel dropout after every stage: the regularization
KAIMING_INIT = {kaiming}


class Stage(nn.Module):
    """Conv-BN-ReLU layers, optionally wrapped in a residual (skip) connection, then pooling."""

    def __init__(self, c_in, c_out, layers, kernel, residual, pool, stride):
        super().__init__()
        body = []
        for i in range(layers):
            body += [
                nn.Conv2d(
                    c_in if i == 0 else c_out,
                    c_out,
                    kernel,
                    stride=stride if i == 0 else 1,
                    padding=kernel // 2,
                    bias=False,
                ),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        self.body = nn.Sequential(*body)
        self.shortcut = None
        if residual:
            if c_in == c_out and stride == 1:
                self.shortcut = nn.Identity()
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
                )
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.drop = nn.Dropout2d(STAGE_DROPOUT) if STAGE_DROPOUT > 0 else nn.Identity()

    def forward(self, x):
        y = self.body(x)
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return self.drop(self.pool(y))


class Net(nn.Module):
    def __init__(self, in_channels, num_classes):
        super().__init__()
        stages = []
        c_in = in_channels
        for i, (c_out, layers, kernel, residual, pool) in enumerate(STAGES):
            stride = STEM_STRIDE if i == 0 else 1
            stages.append(Stage(c_in, c_out, layers, kernel, residual, pool, stride))
            c_in = c_out
        self.features = nn.Sequential(*stages)
        head = []
        for n in HEAD:
            head += [nn.Dropout(DROPOUT), nn.Linear(c_in, n), nn.ReLU(inplace=True)]
            c_in = n
        head += [nn.Dropout(DROPOUT), nn.Linear(c_in, num_classes)]
        self.head = nn.Sequential(*head)
        if KAIMING_INIT:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.features(x)
        x = x.mean(dim=(2, 3))  # global average pooling
        return self.head(x)


def build_model(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The candidate for inputs of shape (channels, height, width)."""
    return Net(input_shape[0], num_classes)
'''

_TEXT_TEMPLATE = '''"""{summary}

Generated by archsmith's offline architect from its architecture description.
"""

import torch
from torch import nn

VOCAB_SIZE = {vocab_size}  # token ids at or above it are read as out-of-vocabulary (id 1)
EMBED_DIM = {embed_dim}
# (out channels, conv1d layers, kernel size, residual, 2x max-pool after)
STAGES = [
{stages}
]
HEAD = {head}  # hidden dense layers (neurons)
DROPOUT = {dropout}  # before every dense layer
STAGE_DROPOUT = {stage_dropout}  # channel dropout after every stage: the regularization
KAIMING_INIT = {kaiming}


class Stage(nn.Module):
    """Conv1d-BN-ReLU layers over the sequence, optionally residual, then pooling."""

    def __init__(self, c_in, c_out, layers, kernel, residual, pool):
        super().__init__()
        body = []
        for i in range(layers):
            body += [
                nn.Conv1d(
                    c_in if i == 0 else c_out, c_out, kernel, padding=kernel // 2, bias=False
                ),
                nn.BatchNorm1d(c_out),
                nn.ReLU(inplace=True),
            ]
        self.body = nn.Sequential(*body)
        self.shortcut = None
        if residual:
            if c_in == c_out:
                self.shortcut = nn.Identity()
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv1d(c_in, c_out, 1, bias=False), nn.BatchNorm1d(c_out)
                )
        self.pool = nn.MaxPool1d(2) if pool else nn.Identity()
        self.drop = nn.Dropout1d(STAGE_DROPOUT) if STAGE_DROPOUT > 0 else nn.Identity()

    def forward(self, x):
        y = self.body(x)
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return self.drop(self.pool(y))


class Net(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.embed = nn.Embedding(VOCAB_SIZE, EMBED_DIM)
        stages = []
        c_in = EMBED_DIM
        for c_out, layers, kernel, residual, pool in STAGES:
            stages.append(Stage(c_in, c_out, layers, kernel, residual, pool))
            c_in = c_out
        self.features = nn.Sequential(*stages)
        head = []
        for n in HEAD:
            head += [nn.Dropout(DROPOUT), nn.Linear(c_in, n), nn.ReLU(inplace=True)]
            c_in = n
        head += [nn.Dropout(DROPOUT), nn.Linear(c_in, num_classes)]
        self.head = nn.Sequential(*head)
        if KAIMING_INIT:
            for m in self.modules():
                if isinstance(m, (nn.Conv1d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    def forward(self, x):
        x = x.long()
        x = torch.where((x >= 0) & (x < VOCAB_SIZE), x, torch.ones_like(x))
        x = self.embed(x).transpose(1, 2)  # (batch, embed, length)
        x = self.features(x)
        x = x.amax(dim=2)  # global max pooling over the sequence
        return self.head(x)


def build_model(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The candidate for token-id sequences of shape (sequence_length,)."""
    return Net(num_classes)
'''


def render_code(arch: Arch) -> str:
    """Readable, self-contained candidate code (torch only) for the description."""
    rows = "\n".join(
        f"    ({s.channels}, {s.layers}, {s.kernel}, {s.residual}, {s.pool})," for s in arch.stages
    )
    values: dict[str, Any] = {
        "summary": summarize(arch),
        "stages": rows,
        "head": repr(list(arch.head)),
        "dropout": repr(float(arch.dropout)),
        "stage_dropout": repr(float(arch.stage_dropout)),
        "kaiming": repr(arch.init == "kaiming"),
    }
    if arch.kind == "text":
        values.update(vocab_size=arch.vocab_size, embed_dim=arch.embed_dim)
        return _TEXT_TEMPLATE.format(**values)
    values["stem_stride"] = arch.stem_stride
    return _IMAGE_TEMPLATE.format(**values)


# -- the architect ---------------------------------------------------------------------------------

#: Advised instructions combined in one candidate at most: the paper's architect reads the top few.
TOP_INSTRUCTIONS = 3
#: Exploration attempts before a duplicate is accepted.
EXPLORE_ATTEMPTS = 60
_SHRINK_ERRORS = ("OutOfMemory", "MemoryError", "Timeout", "Killed")
#: Bytes per parameter of a float32 checkpoint, for the model-size limit before measuring.
_BYTES_PER_PARAM = 4
#: Prior sd of each description feature's weight (features are scaled to about 0-1); untuned:
#: no benchmark of trained candidates is large enough to tune it on.
_FEATURE_PRIOR_SD = 0.5


def estimate_flops(arch: Arch) -> int:
    """Multiply-accumulates of one forward pass, from the description: what FPS follows."""
    total = 0
    if arch.kind == "text":
        side = arch.input_shape[0]
        c_in = arch.embed_dim or 1
    else:
        side = math.ceil(min(arch.input_shape[1:]) / arch.stem_stride)
        c_in = arch.input_shape[0]
    area = side if arch.kind == "text" else side * side
    for stage in arch.stages:
        k = stage.kernel if arch.kind == "text" else stage.kernel * stage.kernel
        c = stage.channels
        total += area * (c_in * c * k + (stage.layers - 1) * c * c * k)
        if stage.residual and c_in != c:
            total += area * c_in * c
        if stage.pool:
            side = max(1, side // 2)
            area = side if arch.kind == "text" else side * side
        c_in = c
    for n in arch.head:
        total += c_in * n
        c_in = n
    return total + c_in * arch.num_classes


def description_features(arch: Arch) -> Matrix:
    """What the surrogate sees of a description, each scaled to about 0-1."""
    convs = sum(s.layers for s in arch.stages)
    return np.asarray(
        [
            math.log10(max(estimate_params(arch), 1)) / 7.0,
            math.log10(max(estimate_flops(arch), 1)) / 10.0,
            convs / (MAX_STAGES * MAX_LAYERS_PER_STAGE),
            len(arch.stages) / MAX_STAGES,
            sum(s.residual for s in arch.stages) / MAX_STAGES,
            sum(s.kernel for s in arch.stages) / (5 * len(arch.stages)),
            len(arch.head) / MAX_DENSE_LAYERS,
            arch.dropout / MAX_DROPOUT,
            arch.stage_dropout / MAX_STAGE_DROPOUT,
            1.0 if arch.init == "kaiming" else 0.0,
        ],
        dtype=float,
    )


def _observed(metrics: EvaluationMetrics) -> dict[str, float]:
    """What the surrogate models of a trained candidate; FPS on a log scale, as FLOPs act.

    A figure that was not measured is left out, not modelled as 0.
    """
    out = {
        name: float(value)
        for name, value in (
            ("train_accuracy", metrics.train_accuracy),
            ("val_accuracy", metrics.val_accuracy),
            ("train_energy_kwh_pue", metrics.train_energy_kwh_pue),
            ("val_energy_kwh_pue", metrics.val_energy_kwh_pue),
            ("latency_ms", metrics.latency_ms),
        )
        if value is not None
    }
    if metrics.fps is not None:
        out["log_fps"] = math.log(max(metrics.fps, 1e-6))
    return out


def _targets(observed: Sequence[Mapping[str, float]]) -> list[Target]:
    """Accuracies as qualities; FPS, energies and latency at their expected values."""
    targets = [accuracy_target(name) for name in ("train_accuracy", "val_accuracy")]
    targets.append(Target("log_fps", 1.0))
    for name in ("train_energy_kwh_pue", "val_energy_kwh_pue", "latency_ms"):
        values = [m[name] for m in observed if name in m]
        if values:
            targets.append(Target(name, max(float(np.mean(values)), 1e-12), floor=0.0))
    return targets


def spec_score(spec: TaskSpec, metrics: Mapping[str, float]) -> float:
    """CM (Eq. 1) of predicted metrics, ``-inf`` past a hard limit of the spec, 0 when nothing
    is known yet (every candidate is then alike and the rules' weights decide)."""
    params = metrics.get("params")
    size_mb = None if params is None else params * _BYTES_PER_PARAM / 1e6
    latency = metrics.get("latency_ms")
    if spec.limit_violations(params, latency, size_mb):
        return -math.inf
    if "val_accuracy" not in metrics:
        return 0.0
    predicted = EvaluationMetrics(
        train_accuracy=metrics.get("train_accuracy", metrics["val_accuracy"]),
        val_accuracy=metrics["val_accuracy"],
        train_energy_kwh_pue=metrics.get("train_energy_kwh_pue"),
        val_energy_kwh_pue=metrics.get("val_energy_kwh_pue"),
        fps=math.exp(metrics["log_fps"]) if "log_fps" in metrics else None,
        params=round(params or 0),
        latency_ms=latency,
    )
    # The critic's own CM, so the search and the critic cannot disagree on what "better" is;
    # a CM that needs a figure nothing predicts yet is unknown, like the rest at the start.
    cm = advise(predicted, spec).combined_metric
    return 0.0 if cm is None else cm


@dataclass(frozen=True)
class _Evaluated:
    """A trained offline candidate from the history: its description, metrics and CM."""

    arch: Arch
    metrics: EvaluationMetrics
    score: float
    iteration: int


class OfflineArchitect:
    """Deterministic, seeded architect: rulebook instructions as edits of a description.

    Each proposal runs the search the bench measures (`archsmith.search.policy`): the parent is
    the best trained candidate that meets the spec's limits (by CM), the rulebook's advice is
    computed on the parent's own metrics, every instruction (and every combination of up to
    ``TOP_INSTRUCTIONS`` advised ones) is a candidate edit, and the candidate kept is the one
    whose predicted CM, optimistic on accuracy, is highest, plus a small bonus per unit of rule
    weight. The surrogate is fitted on the history's descriptions and metrics; the parameter
    count is exact. Without metrics (a parent from elsewhere, a test), the instructions given
    are the advice.

    It remembers every description it proposed (and those it sees in ``best`` and ``history``)
    by signature and never proposes one twice while an unseen neighbour can be found.
    """

    name = "offline"

    def __init__(self, seed: int = 0, knobs: Knobs | None = None) -> None:
        self.seed = seed
        #: Every candidate is scored (there are few); the seed only breaks ties.
        self.knobs = knobs or Knobs(sample=1.0)
        self._seen: set[str] = set()

    # The Architect protocol.

    def propose(
        self,
        spec: TaskSpec,
        instructions: list[dict[str, Any]],
        best: dict[str, Any] | None,
        history: list[dict[str, Any]],
        iteration: int,
    ) -> ArchitectProposal:
        """The first model at iteration 1, else the chosen edit of the parent (class docstring)."""
        tried = self._tried(best, history)
        rng = random.Random(self.seed * 1_000_003 + iteration)
        cap = param_cap(spec)
        evaluated = _evaluated(spec, history)
        parent = _parent(spec, evaluated)
        base = parent.arch if parent is not None else _arch_of(best)
        if iteration <= 1 or base is None:
            start = initial_arch(spec)
            if arch_signature(start) not in tried:
                return self._emit(start, [])
            base = start
        if parent is not None:
            advice = Advice.from_output(advise(parent.metrics, spec))
        else:
            metrics = _metrics_of(best)
            advice = (
                Advice.from_output(advise(metrics, spec))
                if metrics is not None
                else Advice.from_instructions(instructions)
            )
        candidates = self._candidates(base, advice, cap, tried)
        if not candidates:
            logger.info("iteration %d: every edit of the parent was tried; exploring", iteration)
            arch, applied = self._explore(base, advice.ranked(), cap, rng, tried)
            return self._emit(arch, applied)
        observations = [
            Observation(description_features(e.arch), _observed(e.metrics)) for e in evaluated
        ]
        chosen = choose(
            candidates,
            observations,
            _targets([o.metrics for o in observations]),
            lambda m: spec_score(spec, m),
            incumbent=parent.score if parent is not None else -math.inf,
            advice=advice,
            prior_sd=np.full(len(description_features(base)), _FEATURE_PRIOR_SD),
            knobs=self.knobs,
            rng=rng,
        )
        arch, applied = chosen.candidate.arch, []
        for move in chosen.candidate.moves:
            why = advice.explain(move)
            if why["weight"] > 0.0:
                rules = f" [{', '.join(why['rules'])}]" if why["rules"] else ""
                applied.append(f"{move.edit}{rules}")
            else:
                applied.append(f"explore {move.edit}")
        logger.info(
            "iteration %d: %s (predicted CM %.4g, rule weight %g, %d candidates)",
            iteration,
            "; ".join(applied),
            chosen.predicted,
            chosen.weight,
            chosen.considered,
        )
        return self._emit(arch, applied)

    def repair(
        self,
        spec: TaskSpec,
        proposal: ArchitectProposal,
        error: dict[str, Any],
        best: dict[str, Any] | None,
        attempt: int,
    ) -> ArchitectProposal:
        """Back to the last valid description with a smaller change (one edit, then none).

        Out of memory or out of time: the description is also shrunk (narrower, and one conv
        fewer per extra attempt), since the same size would fail the same way.
        """
        cap = param_cap(spec)
        base = _arch_of(best) or initial_arch(spec)
        applied: list[str] = []
        kind = str(error.get("type", ""))
        message = str(error.get("message", ""))
        shrink = any(k in kind for k in _SHRINK_ERRORS) or "out of memory" in message.lower()
        if shrink:
            failed = _arch_of({"arch": proposal.arch}) or base
            arch = failed
            for code in ["RK", "RN"] + ["RCL"] * attempt:
                step = apply_edit(arch, code, cap)
                if step is not None:
                    arch = step[0]
                    applied.append(step[1])
            return self._emit(arch, applied, note=f"repair {attempt} after {kind}")
        arch = base
        if attempt == 1:
            first = [a.split(":", 1)[0] for a in proposal.applied if ":" in a]
            for code in first[:1]:
                step = apply_edit(base, code.removeprefix("explore "), cap)
                if step is not None:
                    arch, applied = step[0], [step[1]]
        return self._emit(arch, applied, note=f"repair {attempt} after {kind or 'error'}")

    # Internals.

    def _tried(self, best: dict[str, Any] | None, history: list[dict[str, Any]]) -> set[str]:
        tried = set(self._seen)
        for item in [*(history or []), *([best] if best else [])]:
            arch = item.get("arch") if isinstance(item, dict) else None
            if isinstance(arch, dict):
                try:
                    tried.add(arch_signature(arch))
                except ValueError:
                    logger.debug("ignoring an arch that is not an offline description")
        return tried

    def _candidates(
        self, base: Arch, advice: Advice, cap: int, tried: set[str]
    ) -> list[Candidate[Arch]]:
        """Every instruction applied alone, and the advised ones (heaviest first) together in
        every combination of two up to ``TOP_INSTRUCTIONS``; unseen ones only, labelled."""
        advised = advice.ranked()[:TOP_INSTRUCTIONS]
        groups: list[tuple[str, ...]] = [(code,) for code in EDITS]
        for size in range(2, len(advised) + 1):
            groups += list(itertools.combinations(advised, size))
        found: dict[str, Candidate[Arch]] = {}
        for group in groups:
            arch, moves = base, []
            for code in group:
                step = apply_edit(arch, code, cap)
                if step is None:
                    break
                arch = step[0]
                moves.append(Move(code, step[1]))
            else:
                signature = arch_signature(arch)
                if signature not in tried and signature not in found:
                    found[signature] = Candidate(
                        arch,
                        tuple(moves),
                        description_features(arch),
                        {"params": float(estimate_params(arch))},
                    )
        return list(found.values())

    def _explore(
        self,
        base: Arch,
        codes: list[str],
        cap: int,
        rng: random.Random,
        tried: set[str],
    ) -> tuple[Arch, list[str]]:
        """An unseen neighbour: the instructions in a random subset, plus random edits."""
        everything = list(EDITS)
        fallback: tuple[Arch, list[str]] | None = None
        for attempt in range(EXPLORE_ATTEMPTS):
            arch, applied = base, []
            chosen = [c for c in codes if rng.random() < 0.6]
            extra = 1 + attempt // 15
            chosen += [
                rng.choice(codes or everything) if rng.random() < 0.5 else rng.choice(everything)
                for _ in range(extra)
            ]
            for code in chosen:
                step = apply_edit(arch, code, cap)
                if step is not None:
                    arch = step[0]
                    explored = code not in codes
                    applied.append(("explore " if explored else "") + step[1])
            if applied and arch_signature(arch) not in tried:
                return arch, applied
            if applied and fallback is None:
                fallback = (arch, applied)
        logger.warning("no unseen neighbour after %d attempts; repeating one", EXPLORE_ATTEMPTS)
        return fallback or (base, [])

    def _emit(self, arch: Arch, applied: list[str], note: str = "") -> ArchitectProposal:
        self._seen.add(arch_signature(arch))
        summary = summarize(arch, applied)
        if note:
            summary = f"{summary} [{note}]"
        return ArchitectProposal(
            code=render_code(arch),
            summary=summary,
            arch=arch.model_dump(mode="json"),
            applied=applied,
        )


def _arch_of(item: dict[str, Any] | None) -> Arch | None:
    """The offline description inside ``best`` (or a history entry), when it has a valid one."""
    if not item or not isinstance(item.get("arch"), dict):
        return None
    try:
        return Arch.model_validate(item["arch"])
    except ValueError:
        logger.info("best has no offline description; starting from the initial model")
        return None


def _metrics_of(item: dict[str, Any] | None) -> EvaluationMetrics | None:
    """The trained metrics inside ``best`` or a history entry, when it has complete ones."""
    if not item or not isinstance(item.get("metrics"), dict) or not item["metrics"]:
        return None
    try:
        return EvaluationMetrics.model_validate(item["metrics"])
    except ValueError:
        logger.debug("metrics of iteration %s are incomplete; not used", item.get("iteration"))
        return None


def _evaluated(spec: TaskSpec, history: list[dict[str, Any]]) -> list[_Evaluated]:
    """The history's trained, non-diverged offline candidates, each with its CM."""
    out: list[_Evaluated] = []
    for item in history or []:
        arch, metrics = _arch_of(item), _metrics_of(item)
        if arch is None or metrics is None or metrics.is_diverged:
            continue
        if item.get("status") == STOPPED_EARLY:
            continue  # no accuracy of a finished training: nothing to fit or to edit
        score = spec_score(spec, {"params": float(metrics.params), **_observed(metrics)})
        size = metrics.model_size_mb
        if (
            size is not None
            and spec.max_model_size_mb is not None
            and size > spec.max_model_size_mb
        ):
            score = -math.inf
        out.append(_Evaluated(arch, metrics, score, int(item.get("iteration", 0))))
    return out


def _parent(spec: TaskSpec, evaluated: list[_Evaluated]) -> _Evaluated | None:
    """The best candidate that meets the spec's limits (the earliest among equals), else the
    latest: the bench's rule, so what the bench measures is what a run gets."""
    feasible = [e for e in evaluated if math.isfinite(e.score)]
    if feasible:
        return max(feasible, key=lambda e: (e.score, -e.iteration))
    return evaluated[-1] if evaluated else None
