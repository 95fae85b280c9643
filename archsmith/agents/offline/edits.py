"""The rulebook's 15 instructions as bounded edits of the offline architect's description.

Each edit changes the description in place and says what it did, or returns None at a bound (a
stage count, a width, a rate), so the search can tell an instruction that cannot apply any more.
``apply_edit`` adds the parameter cap: no edit takes a candidate past the spec's limit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from archsmith.agents.offline.description import (
    MAX_CHANNELS,
    MAX_DENSE_LAYERS,
    MAX_DROPOUT,
    MAX_LAYERS_PER_STAGE,
    MAX_NEURONS,
    MAX_STAGE_DROPOUT,
    MAX_STAGES,
    MIN_CHANNELS,
    MIN_NEURONS,
    Arch,
    Stage,
    can_pool_again,
    estimate_params,
)

__all__ = ["DROPOUT_STEP", "EDITS", "STAGE_DROPOUT_STEP", "WIDEN", "apply_edit"]

logger = logging.getLogger(__name__)

DROPOUT_STEP = 0.1
STAGE_DROPOUT_STEP = 0.05
WIDEN = 1.5


def _round_to(x: float, step: int) -> int:
    return max(step, round(x / step) * step)


def _acl(a: Arch) -> str | None:
    last = a.stages[-1]
    if last.layers < 2:
        last.layers += 1
        return f"added {last.kernel}x{last.kernel} conv {last.channels} to stage {len(a.stages)}"
    if len(a.stages) < MAX_STAGES and can_pool_again(a):
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
