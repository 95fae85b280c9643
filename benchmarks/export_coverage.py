"""Which models export as a program, and what a model that does not is told.

Runs the candidate's build step (``archsmith.scoring.candidate.op_build``: build, dummy batch,
``torch.export``, the program checked against the model) on the offline architect's starting models
and on patterns LLM-written models use, and prints for each: exported or not, the export's seconds,
and the first line of the error a code fixer would get. Runs in this process, without a sandbox:
the models are this file's own.

    .venv/bin/python benchmarks/export_coverage.py
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger("benchmark")

HEAD = "import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
CASES: dict[str, str] = {
    "MLP": "def build_model(s, n):\n    return nn.Sequential(nn.Flatten(), nn.LazyLinear(64),"
    " nn.ReLU(), nn.Linear(64, n))\n",
    "CNN, BN, in-place ReLU, view(size(0))": """
class Net(nn.Module):
    def __init__(self, c, n):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(c, 16, 3, padding=1), nn.BatchNorm2d(16),
                               nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.fc = nn.Linear(16, n)
    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.f(x), 1)
        return self.fc(x.view(x.size(0), -1))
def build_model(s, n):
    return Net(s[0], n)
""",
    "residual, SE, hardswish, dropout": """
class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c // 2, 1), nn.ReLU(),
                                nn.Conv2d(c // 2, c, 1), nn.Sigmoid())
    def forward(self, x):
        y = F.hardswish(self.conv(x))
        return x + y * self.se(y)
def build_model(s, n):
    return nn.Sequential(nn.Conv2d(s[0], 16, 3, padding=1), Block(16), Block(16),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(16, n))
""",
    "torchvision resnet18": """
import torchvision
def build_model(s, n):
    m = torchvision.models.resnet18(num_classes=n)
    m.conv1 = nn.Conv2d(s[0], 64, 3, padding=1, bias=False)
    return m
""",
    "torchvision mobilenet_v3_small": """
import torchvision
def build_model(s, n):
    return torchvision.models.mobilenet_v3_small(num_classes=n)
""",
    "transformer encoder": """
class Net(nn.Module):
    def __init__(self, s, n):
        super().__init__()
        self.proj = nn.Linear(s[2], 32)
        layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2)
        self.fc = nn.Linear(32, n)
    def forward(self, x):
        return self.fc(self.enc(self.proj(x.mean(1))).mean(1))
def build_model(s, n):
    return Net(s, n)
""",
    "F.dropout without training=self.training": """
class Net(nn.Module):
    def __init__(self, s, n):
        super().__init__()
        self.fc = nn.Linear(math.prod(s), n)
    def forward(self, x):
        return self.fc(F.dropout(x.flatten(1), 0.5))
def build_model(s, n):
    return Net(s, n)
""",
    "if on a tensor's value": """
class Net(nn.Module):
    def __init__(self, s, n):
        super().__init__()
        self.fc = nn.Linear(math.prod(s), n)
    def forward(self, x):
        if x.mean() > 0:
            return self.fc(x.flatten(1))
        return -self.fc(x.flatten(1))
def build_model(s, n):
    return Net(s, n)
""",
    ".item() in forward": """
class Net(nn.Module):
    def __init__(self, s, n):
        super().__init__()
        self.fc = nn.Linear(math.prod(s), n)
    def forward(self, x):
        scale = float(x.abs().max().item())
        return self.fc(x.flatten(1)) / max(scale, 1.0)
def build_model(s, n):
    return Net(s, n)
""",
    "numpy in forward": """
import numpy as np
class Net(nn.Module):
    def __init__(self, s, n):
        super().__init__()
        self.fc = nn.Linear(math.prod(s), n)
    def forward(self, x):
        return self.fc(torch.from_numpy(np.tanh(x.flatten(1).numpy())))
def build_model(s, n):
    return Net(s, n)
""",
    "a buffer updated in forward": """
class Net(nn.Module):
    def __init__(self, s, n):
        super().__init__()
        self.fc = nn.Linear(math.prod(s), n)
        self.register_buffer("calls", torch.zeros(()))
    def forward(self, x):
        self.calls += 1
        return self.fc(x.flatten(1))
def build_model(s, n):
    return Net(s, n)
""",
}


def main() -> int:
    from archsmith.scoring.candidate import op_build

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    for noisy in ("torch", "torch.export", "torch._dynamo"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    args = {"input_shape": [3, 32, 32], "num_classes": 10}
    for name, body in CASES.items():
        with tempfile.TemporaryDirectory() as work:
            path = Path(work) / "candidate.py"
            path.write_text(HEAD + body)
            started = time.perf_counter()
            try:
                result = op_build(args, {}, str(path), Path(work))
                outcome = "exports"
                export = result.get("export") or {}
                detail = f"{export.get('nodes')} operators, {export.get('seconds', 0):.2f} s"
            except Exception as e:  # noqa: BLE001 - each failure is what this script reports
                outcome = f"refused: {type(e).__name__}"
                detail = (str(e).splitlines() or [""])[0][:220]
            log.info("%-42s %-24s %5.1f s  %s", name, outcome, time.perf_counter() - started,
                     detail)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
