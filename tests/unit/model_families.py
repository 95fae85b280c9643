"""The model families archsmith's candidates come from, as candidate code (``build_model``).

The offline architect's two templates (rendered from descriptions that switch on every option),
the README's example CNN, the patterns LLM-written candidates use (as in
``benchmarks/export_coverage.py``: torchvision's ResNet and MobileNet, a transformer encoder,
squeeze-excitation with hardswish) and the layers a text model is built from (embedding, GRU,
LSTM). The program loader's operator
allowlist (``archsmith.scoring.allowed_ops``) was derived by exporting these, and
``test_allowed_ops`` exports them again: a family that stops loading fails there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from archsmith.agents.offline.description import Arch, Stage
from archsmith.agents.offline.render import render_code

IMAGE: dict[str, Any] = {"input_shape": [3, 32, 32], "num_classes": 10}
TEXT: dict[str, Any] = {"input_shape": [64], "num_classes": 2, "task": "text_classification"}

_HEAD = "import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"


def _architect(kind: str) -> str:
    """The offline architect's code with residual stages (identity and projected), both kernels,
    pooling and not, a strided stem, a hidden head, dropout and channel dropout, kaiming init."""
    stages = [
        Stage(channels=16, layers=2, kernel=3, residual=True, pool=True),
        Stage(channels=16, layers=1, kernel=5, residual=True, pool=False),
        Stage(channels=24, layers=1, kernel=3, residual=True, pool=True),
    ]
    if kind == "text":
        arch = Arch(
            kind="text", input_shape=TEXT["input_shape"], num_classes=2, stages=stages,
            head=[32], dropout=0.2, stage_dropout=0.1, init="kaiming", embed_dim=16,
            vocab_size=500,
        )  # fmt: skip
    else:
        arch = Arch(
            kind="image", input_shape=IMAGE["input_shape"], num_classes=10, stages=stages,
            stem_stride=2, head=[32], dropout=0.2, stage_dropout=0.1, init="kaiming",
        )  # fmt: skip
    return render_code(arch)


_SMALL_CNN = Path(__file__).resolve().parents[2] / "examples" / "models" / "small_cnn.py"

#: name -> (candidate code, the build arguments: input shape, classes, task).
FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "architect-image": (_architect("image"), IMAGE),
    "architect-text": (_architect("text"), TEXT),
    "example-small-cnn": (_SMALL_CNN.read_text(encoding="utf-8"), IMAGE),
    "mlp": (
        _HEAD + "def build_model(s, n):\n    return nn.Sequential(nn.Flatten(),"
        " nn.Linear(math.prod(s), 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, n))\n",
        IMAGE,
    ),
    "se-hardswish-depthwise": (
        _HEAD
        + """
class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.bn = nn.BatchNorm2d(c)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c // 2, 1), nn.ReLU(),
                                nn.Conv2d(c // 2, c, 1), nn.Sigmoid())
    def forward(self, x):
        y = F.hardswish(self.bn(self.conv(x)))
        return x + y * self.se(y)
def build_model(s, n):
    return nn.Sequential(nn.Conv2d(s[0], 16, 3, padding=1), nn.LeakyReLU(0.1), Block(16),
                         nn.AvgPool2d(2), Block(16), nn.Dropout2d(0.1), nn.AdaptiveMaxPool2d(1),
                         nn.Flatten(), nn.Dropout(0.2), nn.Linear(16, n))
""",
        IMAGE,
    ),
    "activations-and-norms": (
        _HEAD
        + """
class Net(nn.Module):
    def __init__(self, s, n):
        super().__init__()
        self.c1 = nn.Conv2d(s[0], 16, 3, padding=2, dilation=2)
        self.gn = nn.GroupNorm(4, 16)
        self.c2 = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.ln = nn.LayerNorm(16)
        self.fc = nn.Linear(32, n)
    def forward(self, x):
        y = F.silu(self.gn(self.c1(x)))
        y = F.elu(self.c2(y)) + F.gelu(y[:, :, ::2, ::2]) + F.relu6(y[:, :, 1::2, 1::2])
        y = torch.tanh(y) * torch.sigmoid(y) + F.mish(y) + F.softplus(y) + F.hardsigmoid(y)
        y = F.max_pool2d(y, 3, stride=2, padding=1)
        z = torch.cat([y.mean(dim=(2, 3)), y.amax(dim=(2, 3))], dim=1).view(x.size(0), 2, 16)
        z = self.ln(z).flatten(1)
        return F.log_softmax(self.fc(torch.clamp(z, -5.0, 5.0)), dim=1) + F.softmax(z, 1).sum()
def build_model(s, n):
    return Net(s, n)
""",
        IMAGE,
    ),
    "torchvision-resnet18": (
        _HEAD
        + """
import torchvision
def build_model(s, n):
    m = torchvision.models.resnet18(num_classes=n)
    m.conv1 = nn.Conv2d(s[0], 64, 3, padding=1, bias=False)
    return m
""",
        IMAGE,
    ),
    "torchvision-mobilenet-v3-small": (
        _HEAD
        + """
import torchvision
def build_model(s, n):
    return torchvision.models.mobilenet_v3_small(num_classes=n)
""",
        IMAGE,
    ),
    "transformer-encoder": (
        _HEAD
        + """
class Net(nn.Module):
    def __init__(self, s, n):
        super().__init__()
        self.emb = nn.Embedding(500, 32)
        self.pos = nn.Parameter(torch.zeros(1, s[0], 32))
        layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2)
        self.fc = nn.Linear(32, n)
    def forward(self, x):
        x = x.long().clamp(0, 499)
        return self.fc(self.enc(self.emb(x) + self.pos).mean(1))
def build_model(s, n):
    return Net(s, n)
""",
        TEXT,
    ),
    "text-gru-lstm": (
        _HEAD
        + """
class Net(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.emb = nn.Embedding(500, 16, padding_idx=0)
        self.gru = nn.GRU(16, 16, batch_first=True)
        self.lstm = nn.LSTM(16, 16, num_layers=2, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(32 + 16, n)
    def forward(self, x):
        x = torch.where((x >= 0) & (x < 500), x, torch.ones_like(x))
        mask = (x != 0).unsqueeze(-1).float()
        e = self.emb(x)
        g, _ = self.gru(e)
        h, _ = self.lstm(e)
        pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.fc(torch.cat([pooled, g[:, -1]], dim=1))
def build_model(s, n):
    return Net(n)
""",
        {**TEXT, "input_shape": [12]},  # unrolled by export: a short sequence keeps it quick
    ),
}
