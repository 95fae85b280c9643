"""Rows of the LEMONADE paper's Tables 4 and 5, typed in from ``seeds/000_eb8b088ef68cd509.txt``.

Each row: method, search cost in GPU hours (Table 4), search energy in kWh-PUE (Table 5), test
accuracy in % per dataset (Table 4), and GM per (X_A, X_E) setting and dataset (Table 5).
"""

from __future__ import annotations

from typing import NamedTuple

SETTINGS = ((0.8, 0.2), (0.5, 0.5), (0.2, 0.8))
DATASETS = ("cifar10", "cifar100", "imagenet16")

# E_min and E_max of Eq. 3: the smallest and largest search energy anywhere in Table 5.
E_MIN = 0.16
E_MAX = 352.66


class Row(NamedTuple):
    method: str
    gpu_hours: float
    energy_kwh_pue: float
    accuracy_pct: dict[str, float]
    gm: dict[tuple[float, float], dict[str, float]]


def _gm(*vals: float | None) -> dict[tuple[float, float], dict[str, float]]:
    """Table 5 lists GM as 3 settings x 3 datasets, row-major; None is the paper's dash."""
    out: dict[tuple[float, float], dict[str, float]] = {}
    for s, setting in enumerate(SETTINGS):
        out[setting] = {
            d: v for d, v in zip(DATASETS, vals[3 * s : 3 * s + 3], strict=True) if v is not None
        }
    return out


# fmt: off
ROWS: tuple[Row, ...] = (
    Row("DeepMaker", 75, 35.55, {"cifar10": 93.1, "cifar100": 75.13},
        _gm(0.925, 0.781, None, 0.915, 0.825, None, 0.906, 0.870, None)),
    Row("CGP-CNN", 744, 352.66, {"cifar10": 94.05, "cifar100": 73.3},
        _gm(0.752, 0.586, None, 0.470, 0.367, None, 0.188, 0.147, None)),
    Row("EIGEN (CIFAR-10)", 24, 9.48, {"cifar10": 94.6},
        _gm(0.952, None, None, 0.960, None, None, 0.968, None, None)),
    Row("EIGEN (CIFAR-100)", 120, 47.40, {"cifar100": 78.1},
        _gm(None, 0.798, None, None, 0.823, None, None, 0.849, None)),
    Row("GeNet", 408, 161.16, {"cifar10": 92.9, "cifar100": 70.95},
        _gm(0.852, 0.676, None, 0.736, 0.626, None, 0.620, 0.577, None)),
    Row("NSGANet", 648, 307.15, {"cifar10": 95.33, "cifar100": 74.83},
        _gm(0.788, 0.624, None, 0.541, 0.439, None, 0.294, 0.253, None)),
    Row("NASHBOT", 40.8, 19.34, {"cifar10": 91.31},
        _gm(0.920, None, None, 0.929, None, None, 0.939, None, None)),
    Row("NASH-Net", 24, 11.38, {"cifar10": 94.8},
        _gm(0.952, None, None, 0.958, None, None, 0.964, None, None)),
    Row("GDAS", 8.7, 4.12, {"cifar10": 93.61, "cifar100": 70.3, "imagenet16": 41.71},
        _gm(0.947, 0.760, 0.531, 0.962, 0.846, 0.703, 0.978, 0.932, 0.874)),
    Row("DARTS-", 3.2, 1.52, {"cifar10": 93.8, "cifar100": 71.53, "imagenet16": 45.12},
        _gm(0.950, 0.771, 0.560, 0.967, 0.856, 0.724, 0.985, 0.940, 0.887)),
    Row("DrNAS", 1.2, 0.57, {"cifar10": 94.36, "cifar100": 73.51, "imagenet16": 46.34},
        _gm(0.955, 0.788, 0.570, 0.971, 0.867, 0.731, 0.988, 0.946, 0.892)),
    Row("SE-NAS", 2.93, 1.39, {"cifar10": 93.47, "imagenet16": 45.66},
        _gm(0.947, None, 0.565, 0.966, None, 0.727, 0.984, None, 0.889)),
    Row("FairNAS", 2.73, 1.29, {"cifar10": 93.23, "imagenet16": 42.19},
        _gm(0.945, None, 0.537, 0.965, None, 0.709, 0.984, None, 0.882)),
    Row("Shapley-NAS", 7.2, 3.41, {"cifar10": 94.37, "imagenet16": 46.85},
        _gm(0.953, None, 0.573, 0.967, None, 0.730, 0.981, None, 0.886)),
    Row("Distribution Constrained", 3.9, 1.85, {"cifar10": 94.29, "imagenet16": 46.41},
        _gm(0.953, None, 0.570, 0.969, None, 0.730, 0.985, None, 0.889)),
    Row("RMI", 0.34, 0.16, {"cifar10": 94.28, "cifar100": 73.36, "imagenet16": 46.34},
        _gm(0.954, 0.787, 0.571, 0.971, 0.867, 0.732, 0.989, 0.947, 0.893)),
    Row("LEMONADE (CIFAR-10)", 5.8, 1.20, {"cifar10": 95.54},
        _gm(0.964, None, None, 0.976, None, None, 0.989, None, None)),
    Row("LEMONADE (CIFAR-100)", 7.12, 2.34, {"cifar100": 79.43},
        _gm(None, 0.834, None, None, 0.894, None, None, 0.954, None)),
    Row("LEMONADE (ImageNet16-120)", 12.83, 5.45, {"imagenet16": 42.95},
        _gm(None, None, 0.541, None, None, 0.707, None, None, 0.874)),
)
# fmt: on
