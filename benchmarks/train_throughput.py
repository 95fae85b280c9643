"""Training throughput of archsmith's recipe against a plain PyTorch loop, and the compute bound.

The baseline is written the way a typical user writes it: a ``Dataset`` of uint8 images, per-sample
torchvision transforms (rotation, flip, pad-and-crop, normalise) and a ``DataLoader``. archsmith's
loop keeps the data on the device and augments whole batches there. Same model, data, epochs,
optimiser and batch size; for each model (the README's example CNN and a 3-conv 32/64/128 one) and
dataset (digits, and malaria from ``../shared/data`` when it is there) the ratio of training
samples per second is printed.

Two compute bounds, both from the model's training FLOPs per sample (forward and backward, counted
by ``torch.utils.flop_counter`` on one batch): at the machine's measured convolution rate (a 3x3
conv, fwd+bwd, the faster memory layout), and at the rate of the model's own forward and backward
on a fixed batch (no data pipeline, no optimiser, the faster layout), so ``archsmith / bound``
says how much of the time goes to anything but the model's arithmetic.

    .venv/bin/python benchmarks/train_throughput.py [--datasets digits,malaria] [--epochs 2]
        [--max-train 8000] [--device cpu] [--profile]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision.transforms import v2

from archsmith.data.prepared import prepare_dataset
from archsmith.data.prepared_format import PreparedDataset, load_prepared
from archsmith.training import BatchAugment, DeviceData, TrainConfig, train

log = logging.getLogger("benchmark")
REPO = Path(__file__).resolve().parents[1]


def small_cnn(channels: int, num_classes: int) -> nn.Module:
    """The README's example CNN (examples/models/small_cnn.py), the same for both loops."""
    spec = importlib.util.spec_from_file_location(
        "small_cnn", REPO / "examples/models/small_cnn.py"
    )
    if spec is None or spec.loader is None:
        raise FileNotFoundError("examples/models/small_cnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model: nn.Module = module.build_model((channels, 32, 32), num_classes)
    return model


class UserDataset(Dataset[tuple[torch.Tensor, int]]):
    """What a user writes: one uint8 image at a time through per-sample transforms."""

    def __init__(self, x: np.ndarray, y: np.ndarray, transform: v2.Transform) -> None:
        self.x = torch.from_numpy(x)
        self.y = y
        self.transform = transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.x[i]), int(self.y[i])


def baseline(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, device: torch.device,
             workers: int) -> float:  # fmt: skip
    """Train like a typical user; returns training samples per second."""
    mean = x[:10_000].reshape(len(x[:10_000]), x.shape[1], -1).mean(axis=(0, 2)) / 255
    std = x[:10_000].reshape(len(x[:10_000]), x.shape[1], -1).std(axis=(0, 2)) / 255
    size = x.shape[-1]
    transform = v2.Compose(
        [
            v2.RandomRotation(10),
            v2.RandomHorizontalFlip(),
            v2.RandomCrop(size, padding=size // 8),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean.tolist(), std.tolist()),
        ]
    )
    loader = DataLoader(
        UserDataset(x, y, transform), batch_size=128, shuffle=True, num_workers=workers
    )
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(loader))
    start = time.perf_counter()
    seen = 0
    for _ in range(epochs):
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            seen += len(yb)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def three_conv(channels: int, num_classes: int) -> nn.Module:
    """A 3-conv CNN (32/64/128 channels), the size the issue's measurements used."""
    layers: list[nn.Module] = []
    c = channels
    for width in (32, 64, 128):
        layers += [nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                   nn.MaxPool2d(2)]  # fmt: skip
        c = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))


MODELS = {"example CNN": small_cnn, "3-conv 32/64/128": three_conv}


def train_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Forward and backward FLOPs of one training step on ``x`` (counted, not estimated)."""
    model.train()
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def rate(step: Callable[[], object], flops: float, device: torch.device, seconds: float = 3.0
         ) -> float:  # fmt: skip
    """FLOP/s of ``step`` (which does ``flops`` of work), timed for at least ``seconds``."""
    for _ in range(2):
        step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return flops * n / (time.perf_counter() - t0)


LAYOUTS = (torch.contiguous_format, torch.channels_last)


def conv_rate(device: torch.device) -> float:
    """The machine's convolution throughput: a 3x3 conv 32->64 at 16x16, batch 256, fwd+bwd,
    in the faster of the two memory layouts."""
    best = 0.0
    for layout in LAYOUTS:
        conv = nn.Conv2d(32, 64, 3, padding=1).to(device, memory_format=layout)
        x = torch.randn(256, 32, 16, 16, device=device).contiguous(memory_format=layout)
        x.requires_grad_(True)

        def step(conv: nn.Module = conv, x: torch.Tensor = x) -> None:
            conv(x).sum().backward()

        with FlopCounterMode(display=False) as counter:
            step()
        best = max(best, rate(step, float(counter.get_total_flops()), device))
    return best


def compare(
    name: str,
    make: Callable[[int, int], nn.Module],
    ds: PreparedDataset,
    args: argparse.Namespace,
    device: torch.device,
    conv_flops_s: float,
) -> None:
    """Baseline, archsmith's loop and the two bounds for one model on one dataset."""
    c = ds.input_shape[0]
    torch.manual_seed(0)
    base_sps = baseline(make(c, ds.num_classes), ds.x_train, ds.y_train, args.epochs, device,
                        args.workers)  # fmt: skip
    # As in the candidate's process: no validation split, no final evaluation pass.
    data = DeviceData(ds.x_train, ds.y_train, ds.x_val[:0], ds.y_val[:0], device, is_text=False)
    cfg = TrainConfig(epochs=args.epochs, hflip=ds.name != "digits", train_eval_samples=0)
    torch.manual_seed(0)
    nchw = train(make(c, ds.num_classes), data, dataclasses.replace(cfg, channels_last=False))
    nchw_sps = len(ds.y_train) * nchw.epochs_completed / nchw.wall_time_s
    torch.manual_seed(0)
    model = make(c, ds.num_classes)
    report = train(model, data, cfg)
    ours_sps = len(ds.y_train) * report.epochs_completed / report.wall_time_s
    batch = cfg.batch_size
    xb = data.prepare(data.x_train[:batch])
    yb = data.y_train[:batch]
    model.to(device)
    flops = train_flops(model, xb, yb)

    model_flops_s = 0.0
    for layout in LAYOUTS:
        model.to(memory_format=layout)
        x = xb.contiguous(memory_format=layout)

        def step(x: torch.Tensor = x) -> None:
            nn.functional.cross_entropy(model(x), yb).backward()

        model_flops_s = max(model_flops_s, rate(step, flops, device))
    per_sample = flops / batch
    log.info(
        "%-8s %-17s baseline %6.0f/s  archsmith %6.0f/s  ratio %.2fx (default layout %6.0f/s,"
        " %.2fx) | %.1f MFLOP/sample; conv bound %6.0f/s (%3.0f %%), model fwd+bwd bound"
        " %6.0f/s (%3.0f %%)",
        ds.name, name, base_sps, ours_sps, ours_sps / base_sps, nchw_sps, nchw_sps / base_sps,
        per_sample / 1e6,
        conv_flops_s / per_sample, 100 * ours_sps * per_sample / conv_flops_s,
        model_flops_s / per_sample, 100 * ours_sps * per_sample / model_flops_s,
    )  # fmt: skip


def profile(make: Callable[[int, int], nn.Module], ds: PreparedDataset, device: torch.device,
            layout: torch.memory_format) -> str:  # fmt: skip
    """Where one epoch of the recipe's steps goes: batch preparation, augmentation, forward,
    backward, optimiser step (CPU timings; on a GPU the parts overlap and this says little)."""
    torch.manual_seed(0)
    model = make(ds.input_shape[0], ds.num_classes).to(device, memory_format=layout)
    data = DeviceData(ds.x_train, ds.y_train, ds.x_val[:0], ds.y_val[:0], device, is_text=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    gen = torch.Generator().manual_seed(0)
    augment = BatchAugment(hflip=True, rotation_deg=10, translate_frac=0.125, generator=gen)
    order = torch.randperm(data.x_train.shape[0], generator=gen)
    parts = dict.fromkeys(("prepare", "augment", "forward", "backward", "step"), 0.0)
    start = time.perf_counter()
    steps = data.x_train.shape[0] // 128
    for i in range(steps):
        t0 = time.perf_counter()
        idx = order[i * 128 : (i + 1) * 128].to(device)
        xb, yb = data.prepare(data.x_train[idx]), data.y_train[idx]
        t1 = time.perf_counter()
        xb = augment(xb).contiguous(memory_format=layout)
        t2 = time.perf_counter()
        loss = nn.functional.cross_entropy(model(xb), yb)
        t3 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t4 = time.perf_counter()
        opt.step()
        t5 = time.perf_counter()
        for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            parts[key] += dt
    total = time.perf_counter() - start
    shares = ", ".join(f"{k} {100 * v / total:.1f} %" for k, v in parts.items())
    return f"{steps * 128 / total:.0f}/s; {shares}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="digits,malaria")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-train", type=int, default=8000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (baseline)")
    parser.add_argument("--profile", action="store_true", help="where one epoch's steps go")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    device = torch.device(args.device)
    data_dir = args.data_dir if args.data_dir.is_dir() else None
    conv_flops_s = conv_rate(device)
    log.info("%s, %d threads: 3x3 conv fwd+bwd at %.1f GFLOP/s; %d epochs, at most %d samples",
             device, torch.get_num_threads(), conv_flops_s / 1e9, args.epochs,
             args.max_train)  # fmt: skip
    for name in args.datasets.split(","):
        if name == "malaria" and data_dir is None:
            log.info("malaria skipped: no %s", args.data_dir)
            continue
        with tempfile.TemporaryDirectory() as cache:
            ds = load_prepared(
                prepare_dataset(name, data_dir, Path(cache), max_train=args.max_train)
            )
        for label, make in MODELS.items():
            compare(label, make, ds, args, device, conv_flops_s)
            if args.profile:
                for layout in LAYOUTS:
                    log.info("  one epoch's steps, %s: %s", str(layout).removeprefix("torch."),
                             profile(make, ds, device, layout))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
