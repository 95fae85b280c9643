"""The install gives a torch and torchvision that work together, and the README's commands hold."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_torch_and_torchvision_are_one_build() -> None:
    import torch
    import torchvision
    from torchvision.ops import nms
    from torchvision.transforms import v2

    # A compiled operator: this is what fails when torchvision sits next to a foreign torch build.
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0]])
    keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    # Batched augmentation on tensors, as the trainer will use it.
    batch = torch.rand(4, 3, 32, 32)
    out = v2.Compose([v2.RandomHorizontalFlip(), v2.RandomRotation(10)])(batch)
    assert out.shape == batch.shape
    assert torchvision.__version__.split("+")[0]


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README must start with a bash block holding the two commands"
    assert text.index(block.group(0)) < text.index("\n## "), "the commands come first"
    return [ln for ln in block.group(1).splitlines() if ln.strip()]


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_command() -> None:
    install_and_run, test = _readme_commands()
    assert "pip install" in install_and_run
    assert '.venv/bin/archsmith run "' in install_and_run
    for path in re.findall(r"examples/\S+\.(?:json|py)", install_and_run):
        assert (REPO / path).is_file(), path
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert test in ci, f".ci/run must run the README's test command {test!r}"
