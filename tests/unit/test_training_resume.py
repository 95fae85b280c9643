"""Paused and resumed (early stopping's check), training computes what an uninterrupted one does."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
from torch import nn

from archsmith.training import DeviceData, TrainConfig, train


def data() -> DeviceData:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(96, 1, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 3, size=96)
    return DeviceData(x, y, x[:0], y[:0], torch.device("cpu"), is_text=False)


def make(dropout: bool = True) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Dropout(0.3 if dropout else 0.0),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LazyLinear(3),
    )  # fmt: skip


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_pause_then_resume_gives_the_uninterrupted_weights_bit_for_bit(optimizer: str) -> None:
    # Augmentation, dropout, momentum/Adam state, the cosine schedule, BatchNorm statistics and a
    # lazy module: every piece of state a resumed training must carry over.
    cfg = TrainConfig(epochs=4, batch_size=16, train_eval_samples=0, optimizer=optimizer)
    straight = make()
    full = train(straight, data(), cfg)

    first = make()
    paused = train(first, data(), dataclasses.replace(cfg, stop_after=2))
    assert paused.paused_at == 2
    assert paused.epochs_completed == 2
    assert paused.checkpoint is not None
    # Through bytes, as the sandbox hands it over, and loaded the way the candidate job loads it.
    buffer = io.BytesIO()
    torch.save(paused.checkpoint, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    second = make()
    torch.manual_seed(1234)  # a fresh process's generator is wherever it is; resume must not care
    resumed = train(second, data(), cfg, resume=state)
    assert [h.epoch for h in resumed.history] == [3, 4]
    assert resumed.paused_at is None
    assert resumed.checkpoint is None
    a, b = weights(straight), weights(second)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    losses = [h.train_loss for h in full.history]
    assert losses == [h.train_loss for h in paused.history + resumed.history]


def test_stop_after_the_last_epoch_or_beyond_does_not_pause() -> None:
    cfg = TrainConfig(epochs=2, batch_size=16, train_eval_samples=0, stop_after=2)
    report = train(make(dropout=False), data(), cfg)
    assert report.paused_at is None
    assert report.checkpoint is None
    assert report.epochs_completed == 2
    assert report.as_dict()["paused_at"] is None
