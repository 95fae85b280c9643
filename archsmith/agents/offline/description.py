"""The offline architect's architecture description (``Arch``), its measures and the first model.

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
import json
import math
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from archsmith.spec import TaskKind, TaskSpec

__all__ = [
    "DEFAULT_PARAM_CAP",
    "MAX_CHANNELS",
    "Arch",
    "Stage",
    "arch_signature",
    "can_pool_again",
    "estimate_flops",
    "estimate_params",
    "final_size",
    "initial_arch",
    "param_cap",
    "summarize",
]

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


def can_pool_again(arch: Arch) -> bool:
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
