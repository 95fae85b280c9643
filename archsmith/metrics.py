"""The papers' metrics as pure functions: CM (Eq. 1), GM (Eq. 2-3), kWh-PUE (Eq. 4), M-factor.

Equation numbers are those of the LEMONADE paper (``seeds/000``) for CM, GM and kWh-PUE, and of
the M-factor paper (``seeds/003``) for Eq. 6-8. Every function checks its inputs and raises
``ValueError`` naming the argument, because a silently wrong metric would rank the wrong candidate
as best.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "PARETO_AXES",
    "PUE",
    "combined_metric",
    "figure",
    "goodness_metric",
    "joules_to_kwh_pue",
    "kwh_pue",
    "m_factor",
    "normalized_energy",
    "normalized_fps",
    "pareto_front",
    "power_watts",
]

#: Power usage effectiveness factor of Eq. 4.
PUE = 1.58
_JOULES_PER_KWH = 3.6e6


def _finite(name: str, value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _fraction(name: str, value: float) -> float:
    _finite(name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}")
    return float(value)


def _non_negative(name: str, value: float) -> float:
    _finite(name, value)
    if value < 0.0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return float(value)


def _positive(name: str, value: float) -> float:
    _finite(name, value)
    if value <= 0.0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def normalized_fps(fps: float, fps_threshold: float) -> float:
    """NF of Eq. 1: FPS as a fraction of the target TF, clipped to [0, 1].

    Reaching the target earns full credit and going beyond earns nothing more, so CM never trades
    accuracy for speed the user did not ask for.
    """
    _non_negative("fps", fps)
    _positive("fps_threshold", fps_threshold)
    return min(fps / fps_threshold, 1.0)


def normalized_energy(energy_kwh_pue: float, threshold_kwh_pue: float) -> float:
    """T_NE / V_NE of Eq. 1: energy E against its budget T as r / (1 + r) with r = E / T.

    The map is 0 for no energy, 0.5 at the budget, 0.91 at ten times it and tends to 1. A plain clip
    at the budget would score every candidate over budget the same (training usually is, with the
    paper's TT_E of 1e-3 kWh-PUE), leaving CM blind to energy; this stays bounded and monotone.
    """
    _non_negative("energy_kwh_pue", energy_kwh_pue)
    _positive("threshold_kwh_pue", threshold_kwh_pue)
    ratio = energy_kwh_pue / threshold_kwh_pue
    return ratio / (1.0 + ratio)


def combined_metric(
    train_accuracy: float,
    val_accuracy: float,
    fps: float,
    train_energy_kwh_pue: float,
    val_energy_kwh_pue: float,
    *,
    weight_accuracy: float = 1.0,
    weight_fps: float = 0.0,
    weight_energy: float = 0.0,
    fps_threshold: float = 14000.0,
    train_energy_threshold_kwh_pue: float = 1e-3,
    val_energy_threshold_kwh_pue: float = 1e-3,
) -> float:
    """CM = W_A (T_Acc + V_Acc) + W_F NF - W_E (T_NE + V_NE)  (Eq. 1).

    Accuracies are fractions. The paper leaves NF, T_NE and V_NE undefined; here
    NF = min(F / TF, 1) (see ``normalized_fps``) and each energy is r / (1 + r) with r its ratio to
    its budget TT_E or TV_E (see ``normalized_energy``). CM therefore lies in
    [-2 W_E, 2 W_A + W_F]. Defaults are the paper's thresholds and its accuracy-only weights.
    """
    t_acc = _fraction("train_accuracy", train_accuracy)
    v_acc = _fraction("val_accuracy", val_accuracy)
    w_a = _non_negative("weight_accuracy", weight_accuracy)
    w_f = _non_negative("weight_fps", weight_fps)
    w_e = _non_negative("weight_energy", weight_energy)
    nf = normalized_fps(fps, fps_threshold)
    t_ne = normalized_energy(train_energy_kwh_pue, train_energy_threshold_kwh_pue)
    v_ne = normalized_energy(val_energy_kwh_pue, val_energy_threshold_kwh_pue)
    return w_a * (t_acc + v_acc) + w_f * nf - w_e * (t_ne + v_ne)


def goodness_metric(
    accuracy: float,
    energy: float,
    energy_min: float,
    energy_max: float,
    *,
    weight_accuracy: float,
    weight_energy: float,
) -> float:
    """GM = X_A * Accuracy + (1 - E_Norm) * X_E, E_Norm = (E - E_min) / (E_max - E_min)  (Eq. 2-3).

    ``accuracy`` is a fraction (95.54 % is 0.9554); energies share one unit (the paper uses search
    energy in kWh-PUE, with E_min and E_max taken over every framework in its Table 5). When
    E_max equals E_min there is nothing to normalise against and E_Norm is 0.
    """
    acc = _fraction("accuracy", accuracy)
    e = _non_negative("energy", energy)
    e_min = _non_negative("energy_min", energy_min)
    e_max = _non_negative("energy_max", energy_max)
    x_a = _non_negative("weight_accuracy", weight_accuracy)
    x_e = _non_negative("weight_energy", weight_energy)
    if e_max < e_min:
        raise ValueError(f"energy_max ({e_max}) must be >= energy_min ({e_min})")
    if not e_min <= e <= e_max:
        raise ValueError(f"energy ({e}) must lie in [energy_min, energy_max] = [{e_min}, {e_max}]")
    e_norm = 0.0 if e_max == e_min else (e - e_min) / (e_max - e_min)
    return x_a * acc + (1.0 - e_norm) * x_e


def power_watts(cpu_watts: float, ram_watts: float, gpu_watts: float, gpus: int) -> float:
    """p_c + p_r + g p_g: the power Eq. 4 sums, in watts.

    The one home of the sum: ``kwh_pue`` applies Eq. 4 to it, and the ``estimate`` energy source
    (``Settings.estimate_watts``) multiplies it by the elapsed time, leaving the PUE factor to
    ``joules_to_kwh_pue``, which applies it to every source alike.
    """
    p_c = _non_negative("cpu_watts", cpu_watts)
    p_r = _non_negative("ram_watts", ram_watts)
    p_g = _non_negative("gpu_watts", gpu_watts)
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise ValueError(f"gpus must be a whole number >= 0, got {gpus!r}")
    return p_c + p_r + gpus * p_g


def kwh_pue(
    hours: float,
    cpu_watts: float,
    ram_watts: float,
    gpu_watts: float,
    gpus: int = 1,
) -> float:
    """p_t = 1.58 t (p_c + p_r + g p_g) / 1000  (Eq. 4): energy in kWh-PUE from powers in watts."""
    t = _non_negative("hours", hours)
    return PUE * t * power_watts(cpu_watts, ram_watts, gpu_watts, gpus) / 1000.0


def joules_to_kwh_pue(joules: float) -> float:
    """Measured energy in joules to kWh-PUE: Eq. 4's PUE factor times the energy in kWh."""
    return PUE * _non_negative("joules", joules) / _JOULES_PER_KWH


def m_factor(accuracy: float, params: float, min_params: float, alpha: float = 1.0) -> float:
    """M_alpha = (1 + alpha) A S' / (alpha A + S'), S' = P_min / P  (M-factor paper, Eq. 6-8).

    ``alpha = 1`` is the balanced M-factor of Eq. 6 (the harmonic mean of A and S'); alpha > 1
    favours small models and 0 <= alpha < 1 favours accuracy (alpha = 0 gives A itself).
    ``params`` must be at least ``min_params``, the smallest model of the search space, so that
    S' is in (0, 1].
    """
    acc = _fraction("accuracy", accuracy)
    p = _positive("params", params)
    p_min = _positive("min_params", min_params)
    a = _non_negative("alpha", alpha)
    if p < p_min:
        raise ValueError(
            f"params ({p:g}) is below min_params ({p_min:g}); min_params must be the smallest"
            " model of the search space"
        )
    s = p_min / p
    return (1.0 + a) * acc * s / (a * acc + s)


#: The report's Pareto fronts: validation accuracy against each of these (more is better?).
PARETO_AXES: tuple[tuple[str, bool], ...] = (
    ("fps", True),
    ("val_energy_kwh_pue", False),
    ("params", False),
)


def _dominates(a: tuple[float, float], b: tuple[float, float], maximize: tuple[bool, bool]) -> bool:
    """True when ``a`` is at least as good as ``b`` in both objectives and better in one."""
    better = False
    for av, bv, up in zip(a, b, maximize, strict=True):
        if (av < bv) if up else (av > bv):
            return False
        if av != bv:
            better = True
    return better


def pareto_front(
    points: Sequence[tuple[float, float]], *, maximize: tuple[bool, bool] = (True, True)
) -> list[int]:
    """Indices of the non-dominated points, ordered by x then y.

    ``maximize`` says, per coordinate, whether more is better (accuracy, FPS) or less (energy,
    parameters). Equal points do not dominate each other, so duplicates on the front all stay.
    Quadratic, which is plenty for the few hundred candidates a run produces.
    """
    front = [
        i
        for i, p in enumerate(points)
        if not any(_dominates(q, p, maximize) for j, q in enumerate(points) if j != i)
    ]
    return sorted(front, key=lambda i: (points[i][0], points[i][1]))


def figure(value: object, spec: str = ".4f", missing: str = "not measured") -> str:
    """A measured figure as text; one that was not measured says so instead of showing 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return missing
    return format(value, spec)
