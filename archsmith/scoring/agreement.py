"""How far two runs of one program on the same batches may disagree in their answers.

A measured program has no state, so it gives the same answers however often it runs. The
measuring process holds every timed pass to the first one's answers (``op_speed``), and the host
holds the timed passes' accuracy to the ``score`` job's (``tools.measure_energy``); both read
their tolerance here, so the rule has one home.

Standard library only: the host imports this without torch, and the sandbox imports it too.
"""

from __future__ import annotations

import math

__all__ = ["GPU_FLIP_SHARE", "job_flips_allowed", "pass_flips_allowed"]

#: On an accelerator, the share of samples whose predicted class may differ between two runs.
GPU_FLIP_SHARE = 1e-3


def pass_flips_allowed(samples: int, device: str) -> int:
    """Samples whose answer may differ between two timed passes in one process on ``device``.

    None on a CPU: the same kernels on the same batches, with the same threads, sum in the same
    order, so the answers are bit for bit the same. On a GPU, cuDNN and cuBLAS may pick another
    algorithm (autotuning, split-K, atomic reductions) from one call to the next, and two logits
    within rounding of each other may then swap places: 0.1 % of the samples (at least one). Ties
    that close are rarer than that in a trained classifier, and a program that answered otherwise
    on later passes would gain at most that much.
    """
    if device.split(":")[0] == "cpu":
        return 0
    return math.ceil(GPU_FLIP_SHARE * samples)


def job_flips_allowed(samples: int, device: str) -> int:
    """Samples whose answer may differ between two jobs (two processes) on ``device``.

    As many as two passes may, and at least one: the ``score`` and ``speed`` jobs are two
    processes, which may run on two workers whose CPUs pick other kernels (another vector width,
    another summation order), so one tie may fall the other way.
    """
    return max(1, pass_flips_allowed(samples, device))
