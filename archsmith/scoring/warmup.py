"""A first export and inspection of a tiny model, for a warm sandbox's server to run once.

The first ``torch.export`` in a process costs seconds more than the next (dynamo's first trace,
sympy, lazily imported passes), and so does the program loader's first use. A warm sandbox's
server runs this before it forks any job, so every job's export and inspection is a later one.
Imports only torch and archsmith's sandbox-side modules.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from archsmith.scoring.candidate import export_checked
from archsmith.scoring.format import VALIDATED_FILES
from archsmith.scoring.measure import op_inspect

__all__ = ["warm_up"]


def warm_up(work_dir: Path) -> None:
    """Export a tiny CNN into ``work_dir``, inspect and refill the program, as jobs do."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    ).eval()
    export_checked(model, torch.randn(2, 1, 8, 8), work_dir)
    # A training job refills the validated program (``refill_program``) instead of exporting.
    for name, host_name in VALIDATED_FILES.items():
        shutil.copyfile(work_dir / host_name, work_dir / name)
    export_checked(model, torch.randn(4, 1, 8, 8), work_dir, work_dir)
    op_inspect({"input_shape": [1, 8, 8], "num_classes": 2}, {"device": "cpu"}, work_dir)
