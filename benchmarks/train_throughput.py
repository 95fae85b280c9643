"""Training throughput of archsmith's recipe against a plain PyTorch loop, in one process.

The baseline is written the way a typical user writes it: a ``Dataset`` of uint8 images, per-sample
torchvision transforms (rotation, flip, pad-and-crop, normalise) and a ``DataLoader``. archsmith's
loop keeps the data on the device and augments whole batches there. Same model, data, epochs,
optimiser and batch size; the ratio of training samples per second is printed, then the spread of
``measure_energy``-style inference FPS over five repeats.

    .venv/bin/python benchmarks/train_throughput.py [--dataset malaria] [--epochs 2] [--device cpu]

The malaria data comes from ``../shared/data`` (or ``--data-dir``); without it, digits is used.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from archsmith.data import load_prepared, prepare_dataset
from archsmith.training import DeviceData, TrainConfig, evaluate, train

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


def fps_once(model: nn.Module, data: DeviceData, batch: int, min_seconds: float = 1.0) -> float:
    """Inference images per second over the validation split, as measure_energy times it."""
    model.eval()
    n = data.x_val.shape[0]
    images, seconds = 0, 0.0
    with torch.inference_mode():
        model(data.prepare(data.x_val[:batch]))
        while seconds < min_seconds:
            if data.device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for i in range(0, n, batch):
                model(data.prepare(data.x_val[i : i + batch]))
            if data.device.type == "cuda":
                torch.cuda.synchronize()
            seconds += time.perf_counter() - t
            images += n
    return images / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="malaria")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-train", type=int, default=8000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (baseline)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    device = torch.device(args.device)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    name = args.dataset
    data_dir = args.data_dir if args.data_dir.is_dir() else None
    if name == "malaria" and data_dir is None:
        log.info("no %s: using digits instead", args.data_dir)
        name = "digits"
    with tempfile.TemporaryDirectory() as cache:
        path = prepare_dataset(name, data_dir, Path(cache), max_train=args.max_train)
        ds = load_prepared(path)
    c = ds.input_shape[0]
    log.info(
        "dataset %s: %d train / %d val, shape %s; %d epochs on %s",
        ds.name, len(ds.y_train), len(ds.y_val), ds.input_shape, args.epochs, device,
    )  # fmt: skip

    torch.manual_seed(0)
    base_model = small_cnn(c, ds.num_classes)
    torch.manual_seed(0)
    ours_model = small_cnn(c, ds.num_classes)
    base_sps = baseline(base_model, ds.x_train, ds.y_train, args.epochs, device, args.workers)
    data = DeviceData(ds.x_train, ds.y_train, ds.x_val, ds.y_val, device, is_text=False)
    cfg = TrainConfig(epochs=args.epochs, hflip=ds.name != "digits")
    report = train(ours_model, data, cfg)
    # train() includes a validation pass per epoch and a final training-set evaluation; count
    # only the time of its training steps by subtracting those passes, timed here separately.
    t = time.perf_counter()
    evaluate(ours_model, data, data.x_val, data.y_val, batch_size=512, amp_dtype=None)
    eval_val = time.perf_counter() - t
    t = time.perf_counter()
    evaluate(ours_model, data, data.x_train, data.y_train, batch_size=512, amp_dtype=None,
             limit=cfg.train_eval_samples)  # fmt: skip
    eval_train = time.perf_counter() - t
    train_only = report.wall_time_s - eval_val * report.epochs_completed
    ours_sps = len(ds.y_train) * report.epochs_completed / train_only
    log.info("baseline (DataLoader, per-sample transforms, %d workers): %.0f samples/s",
             args.workers, base_sps)  # fmt: skip
    log.info(
        "archsmith train_model loop:                             %.0f samples/s"
        " (val acc %.3f; %.1f s incl. %.1f s of per-epoch validation, final train eval %.1f s)",
        ours_sps, report.val_accuracy, report.wall_time_s, eval_val * report.epochs_completed,
        eval_train,
    )  # fmt: skip
    log.info("ratio archsmith / baseline: %.2fx", ours_sps / base_sps)

    fps = [fps_once(ours_model, data, 256) for _ in range(5)]
    log.info(
        "inference FPS at batch 256 over 5 repeats: median %.0f, min %.0f, max %.0f,"
        " spread (max-min)/median %.1f%%",
        statistics.median(fps), min(fps), max(fps),
        100 * (max(fps) - min(fps)) / statistics.median(fps),
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
