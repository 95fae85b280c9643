"""Channels-last training: faster where the model takes the layout, invisible where it does not."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from archsmith.training import DeviceData, TrainConfig, train


class ViewAfterConv(nn.Module):
    """What LLM-written models often do: ``view`` a conv output, which channels-last refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        return self.fc(h.view(h.size(0), -1))


def data() -> DeviceData:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(64, 1, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 3, size=64)
    return DeviceData(x, y, x[:0], y[:0], torch.device("cpu"), is_text=False)


def test_a_model_that_views_a_conv_output_trains_in_the_default_layout() -> None:
    with torch.no_grad():
        h = torch.relu(ViewAfterConv().conv(torch.zeros(2, 1, 8, 8)))
    try:
        h.contiguous(memory_format=torch.channels_last).view(2, -1)
        raised = False
    except RuntimeError:
        raised = True
    assert raised, "this torch accepts the view; the fallback below would not be exercised"
    model = ViewAfterConv()
    report = train(model, data(), TrainConfig(epochs=2, batch_size=16, train_eval_samples=0))
    assert report.epochs_completed == 2
    assert not report.diverged
    assert model.conv.weight.is_contiguous()


def test_a_conv_model_is_handed_back_in_the_default_layout_with_the_same_result() -> None:
    def make() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
        )  # fmt: skip

    cfg = TrainConfig(epochs=2, batch_size=16, train_eval_samples=0, augment=False)
    model = make()
    report = train(model, data(), cfg)
    conv = model[0]
    assert isinstance(conv, nn.Conv2d)
    assert conv.weight.is_contiguous()
    # The same training in the default layout: the losses agree up to the float noise of
    # another summation order.
    default = dataclasses.replace(cfg, channels_last=False)
    ref = train(make(), data(), default)
    assert abs(report.history[-1].train_loss - ref.history[-1].train_loss) < 1e-3


def test_a_lazy_model_trains() -> None:
    # A LazyLinear has no shape until its first forward; it cannot change layout before that.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    report = train(model, data(), TrainConfig(epochs=1, batch_size=16, train_eval_samples=0))
    assert report.epochs_completed == 1
    assert not report.diverged
    assert model[3].weight.shape == (3, 256)


def test_a_model_that_fails_on_its_own_still_reports_its_own_error() -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(64, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("the model's own bug")

    with pytest.raises(RuntimeError, match="the model's own bug"):
        train(Broken(), data(), TrainConfig(epochs=1, batch_size=16, train_eval_samples=0))
