"""The training and inference recipe every candidate gets, so candidates are compared fairly.

Defaults are the LEMONADE paper's: SGD with learning rate 0.025, weight decay 3e-4 and cosine
annealing, batch 128, random rotation (10 degrees), horizontal flip and random crop for images;
Adam at 1e-3 for text. Two choices of ours: SGD uses momentum 0.9 (the paper does not say; every
DARTS-style recipe it cites does), and the random crop is a translation by up to 1/8 of the image
side (the usual pad-and-crop), applied per sample.

Speed: the whole dataset is kept as one tensor on the device (uint8 images are 4x smaller than
float) and every batch is augmented there in one shot: a per-sample affine grid (rotation,
translation) and a per-sample flip through ``grid_sample``. torchvision's v2 transforms accept a
batch but draw one set of random parameters for all of it, which would flip or rotate a whole batch
the same way; this keeps per-sample randomness without a per-sample Python loop or DataLoader.
On CUDA the forward pass runs under autocast (bfloat16 where supported, else float16 with a
gradient scaler). Image batches and the model's weights are kept channels-last while training
(`benchmarks/train_throughput.py`: 1.02-1.18x the samples per second of the default layout on a
2-core CPU, same arithmetic); a model whose forward cannot take that layout (a ``view`` of a conv
output) trains in the default one, and the trained model is handed back in the default layout.

Imports only torch and numpy: it runs inside the sandbox.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch import nn

log = logging.getLogger(__name__)

__all__ = [
    "BatchAugment",
    "DeviceData",
    "EpochStats",
    "TrainConfig",
    "TrainReport",
    "evaluate",
    "train",
]


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of the recipe; ``None`` means the paper's default for the task."""

    epochs: int = 5
    batch_size: int = 128
    optimizer: str | None = None  # "sgd" for images, "adam" for text
    lr: float | None = None  # 0.025 for SGD, 1e-3 for Adam
    weight_decay: float = 3e-4
    momentum: float = 0.9
    augment: bool = True
    hflip: bool = True
    rotation_deg: float = 10.0
    translate_frac: float = 0.125
    seed: int = 0
    time_budget_s: float | None = None
    amp: bool = True
    channels_last: bool = True  # images and conv weights channels-last while training (speed only)
    #: Pause after this many epochs of the ``epochs``-long schedule (``TrainReport.checkpoint``
    #: then holds what ``train(..., resume=)`` needs to go on as if it had never paused).
    stop_after: int | None = None
    eval_batch_size: int = 512
    train_eval_samples: int = 10_000


@dataclass
class EpochStats:
    """One epoch's numbers, as stored in a trace."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    seconds: float


@dataclass
class TrainReport:
    """What training produced; figures are measured, never estimated."""

    history: list[EpochStats] = field(default_factory=list)
    train_accuracy: float = 0.0
    val_accuracy: float = 0.0
    train_loss: float = math.nan
    val_loss: float = math.nan
    diverged: bool = False
    stopped_by_budget: bool = False
    epochs_completed: int = 0
    wall_time_s: float = 0.0
    train_samples_per_s: float = 0.0
    device: str = "cpu"
    amp_dtype: str | None = None
    optimizer: str = ""
    lr: float = 0.0
    #: The epoch training paused after (``TrainConfig.stop_after``); None when it did not pause.
    paused_at: int | None = None
    #: Model, optimiser, schedule, scaler and random states at the pause (not in ``as_dict``).
    checkpoint: dict[str, Any] | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready; non-finite losses become None so the result file stays valid JSON."""

        def clean(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "history": [
                {
                    "epoch": h.epoch,
                    "train_loss": clean(h.train_loss),
                    "train_accuracy": h.train_accuracy,
                    "val_loss": clean(h.val_loss) if h.val_loss is not None else None,
                    "val_accuracy": h.val_accuracy,
                    "seconds": h.seconds,
                }
                for h in self.history
            ],
            "train_accuracy": self.train_accuracy,
            "val_accuracy": self.val_accuracy,
            "train_loss": clean(self.train_loss),
            "val_loss": clean(self.val_loss),
            "diverged": self.diverged,
            "stopped_by_budget": self.stopped_by_budget,
            "epochs_completed": self.epochs_completed,
            "wall_time_s": self.wall_time_s,
            "train_samples_per_s": self.train_samples_per_s,
            "device": self.device,
            "amp_dtype": self.amp_dtype,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "paused_at": self.paused_at,
        }


class DeviceData:
    """A split held on the device as tensors, with the normalisation the model sees.

    Images stay uint8 until a batch is taken (then float, scaled by the training set's per-channel
    mean and std); text stays int64 token ids.
    """

    def __init__(
        self,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_val: np.ndarray,
        y_val: np.ndarray,
        device: torch.device,
        *,
        is_text: bool,
        keep_train: bool = True,
    ) -> None:
        self.is_text = is_text
        self.device = device
        train_x = x_train if keep_train else x_train[:0]
        train_y = y_train if keep_train else y_train[:0]
        self.x_train = torch.from_numpy(np.ascontiguousarray(train_x)).to(device)
        self.y_train = torch.from_numpy(np.asarray(train_y, dtype=np.int64)).to(device)
        self.x_val = torch.from_numpy(np.ascontiguousarray(x_val)).to(device)
        self.y_val = torch.from_numpy(np.asarray(y_val, dtype=np.int64)).to(device)
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        if not is_text:
            # Statistics of the training split (its first 10,000 samples), whatever is kept, so
            # that inference normalises exactly as training did.
            sample = torch.from_numpy(np.ascontiguousarray(x_train[:10_000])).double()
            dims = [0, *range(2, sample.dim())]
            self.mean = sample.mean(dim=dims, keepdim=True).float().to(device)
            self.std = sample.std(dim=dims, keepdim=True).clamp_min(1e-3).float().to(device)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images to normalised float; text unchanged."""
        if self.is_text or self.mean is None or self.std is None:
            return x.long()
        return (x.float() - self.mean) / self.std


class BatchAugment:
    """Per-sample flip, rotation and translation of a whole batch in one ``grid_sample`` call."""

    def __init__(
        self, *, hflip: bool, rotation_deg: float, translate_frac: float, generator: torch.Generator
    ) -> None:
        self.hflip = hflip
        self.rotation = math.radians(rotation_deg)
        self.translate = translate_frac
        self.gen = generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        dev = x.device
        u = torch.rand(n, 3, generator=self.gen, device=self.gen.device).to(dev)
        angle = (u[:, 0] * 2 - 1) * self.rotation
        cos, sin = torch.cos(angle), torch.sin(angle)
        flip = torch.ones(n, device=dev)
        if self.hflip:
            flip = torch.where(torch.rand(n, generator=self.gen, device=self.gen.device).to(dev)
                               < 0.5, -1.0, 1.0)  # fmt: skip
        # Translation in normalised coordinates, snapped to whole pixels like a pad-and-crop.
        h, w = x.shape[-2], x.shape[-1]
        shift = torch.round((u[:, 1:] * 2 - 1) * self.translate * torch.tensor([w, h], device=dev))
        shift = shift * 2 / torch.tensor([w, h], device=dev)
        # The affine grid by broadcasting: F.affine_grid's batched matmul with a 3-wide inner
        # dimension is ten times slower on a CPU than these few elementwise products.
        ys = (torch.arange(h, device=dev, dtype=x.dtype) * 2 + 1) / h - 1
        xs = (torch.arange(w, device=dev, dtype=x.dtype) * 2 + 1) / w - 1
        gx, gy = xs.view(1, 1, w), ys.view(1, h, 1)
        c = cos.to(x.dtype).view(n, 1, 1)
        s = sin.to(x.dtype).view(n, 1, 1)
        f = flip.to(x.dtype).view(n, 1, 1)
        sx = shift[:, 0].to(x.dtype).view(n, 1, 1)
        sy = shift[:, 1].to(x.dtype).view(n, 1, 1)
        grid = torch.stack((c * f * gx - s * gy + sx, s * f * gx + c * gy + sy), dim=-1)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class _Layout:
    """Channels-last training where the model takes it; the default layout where it does not."""

    def __init__(self, model: nn.Module, sample: torch.Tensor | None) -> None:
        self.model = model
        self.channels_last = False
        if sample is None:
            return
        was_training = model.training
        model.eval()  # no batch statistics or other state updated by the probes
        converted = False
        try:
            with torch.no_grad():
                # The default layout first: it materialises lazy modules (LazyLinear), which
                # cannot change layout before they have a shape.
                model(sample)
                model.to(memory_format=torch.channels_last)
                converted = True
                model(sample.contiguous(memory_format=torch.channels_last))
            self.channels_last = True
        except (RuntimeError, ValueError, TypeError) as e:
            # E.g. ``x.view(n, -1)`` on a channels-last activation: this model trains in the
            # default layout, and an error of the model's own is raised by its first step.
            log.debug("training in the default layout: %s", e)
            if converted:
                model.to(memory_format=torch.contiguous_format)
        finally:
            model.train(was_training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out: torch.Tensor = self.model(x)
        return out

    def restore(self) -> None:
        """Hand the model back in the default layout (exporting and saving expect it)."""
        if self.channels_last:
            self.model.to(memory_format=torch.contiguous_format)


def _amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    data: DeviceData,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    amp_dtype: torch.dtype | None,
    limit: int | None = None,
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``x, y`` in eval mode (at most ``limit`` samples)."""
    model.eval()
    n = x.shape[0] if limit is None else min(limit, x.shape[0])
    loss_sum = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for i in range(0, n, batch_size):
        xb = data.prepare(x[i : min(i + batch_size, n)])
        yb = y[i : min(i + batch_size, n)]
        with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = model(xb)
        loss_sum += F.cross_entropy(out.float(), yb, reduction="sum").double()
        correct += (out.argmax(dim=1) == yb).sum()
    if n == 0:
        return math.nan, 0.0
    return float(loss_sum.item()) / n, float(correct.item()) / n


def _restore(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    gen: torch.Generator,
    device: torch.device,
) -> int:
    """Put a paused training's state back; returns the epoch it paused after."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    return int(state["epoch"])


def train(
    model: nn.Module,
    data: DeviceData,
    cfg: TrainConfig,
    *,
    on_epoch: Callable[[EpochStats], None] | None = None,
    resume: dict[str, Any] | None = None,
) -> TrainReport:
    """Train ``model`` in place with the recipe; stop early on divergence or the time budget.

    ``resume`` is a ``TrainReport.checkpoint``: training goes on from the epoch it paused after,
    with the same weights, optimiser and schedule state and random streams, so a paused and
    resumed training computes what an uninterrupted one does (``tests/unit/test_training_resume``).
    """
    device = data.device
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    model.to(device)
    opt_name = cfg.optimizer or ("adam" if data.is_text else "sgd")
    lr = cfg.lr if cfg.lr is not None else (1e-3 if opt_name == "adam" else 0.025)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer: torch.optim.Optimizer
    if opt_name == "adam":
        optimizer = torch.optim.Adam(params, lr=lr)
    elif opt_name == "sgd":
        optimizer = torch.optim.SGD(
            params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    else:
        raise ValueError(f"unknown optimizer {opt_name!r}; use sgd or adam")
    n = data.x_train.shape[0]
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, cfg.epochs * steps_per_epoch)
    )
    amp_dtype = _amp_dtype(device, cfg.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype is torch.float16)
    augment = (
        BatchAugment(
            hflip=cfg.hflip,
            rotation_deg=cfg.rotation_deg,
            translate_frac=cfg.translate_frac,
            generator=gen,
        )
        if cfg.augment and not data.is_text
        else None
    )
    report = TrainReport(
        device=str(device),
        amp_dtype=str(amp_dtype).removeprefix("torch.") if amp_dtype else None,
        optimizer=opt_name,
        lr=lr,
    )
    images = not data.is_text and data.x_train.dim() == 4 and data.x_train.shape[0] > 0
    images = images and cfg.channels_last
    first_epoch = 0
    if resume is not None:
        first_epoch = _restore(resume, model, optimizer, scheduler, scaler, gen, device)
    layout = _Layout(model, data.prepare(data.x_train[:2]) if images else None)
    start = time.monotonic()
    seen = 0
    for epoch in range(first_epoch, cfg.epochs):
        model.train()
        t0 = time.monotonic()
        order = torch.randperm(n, generator=gen).to(device)
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        count = 0
        for step in range(steps_per_epoch):
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            xb = data.prepare(data.x_train[idx])
            yb = data.y_train[idx]
            if augment is not None:
                xb = augment(xb)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                out = layout.forward(xb)
                loss = F.cross_entropy(out.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += loss.detach().double() * yb.shape[0]
            correct += (out.detach().argmax(dim=1) == yb).sum()
            count += yb.shape[0]
            if step % 50 == 49 and not torch.isfinite(loss_sum):
                break
            if cfg.time_budget_s is not None and time.monotonic() - start > cfg.time_budget_s:
                report.stopped_by_budget = True
                break
        seen += count
        train_loss = float(loss_sum.item()) / max(count, 1)
        if not math.isfinite(train_loss):
            report.diverged = True
        # The candidate's process has no validation split: only the measuring process scores.
        val_loss: float | None = None
        val_acc: float | None = None
        if data.x_val.shape[0] > 0:
            val_loss, val_acc = evaluate(
                model,
                data,
                data.x_val,
                data.y_val,
                batch_size=cfg.eval_batch_size,
                amp_dtype=amp_dtype,
            )
            if not math.isfinite(val_loss):
                report.diverged = True
        stats = EpochStats(
            epoch=epoch + 1,
            train_loss=train_loss,
            train_accuracy=float(correct.item()) / max(count, 1),
            val_loss=val_loss,
            val_accuracy=val_acc,
            seconds=time.monotonic() - t0,
        )
        report.history.append(stats)
        report.epochs_completed = epoch + 1
        if on_epoch is not None:
            on_epoch(stats)
        if report.diverged or report.stopped_by_budget:
            break
        if cfg.stop_after is not None and epoch + 1 == cfg.stop_after < cfg.epochs:
            report.paused_at = epoch + 1
            break
    layout.restore()
    if report.paused_at is not None:
        report.checkpoint = {
            "epoch": report.paused_at,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
        }
    _sync(device)
    report.wall_time_s = time.monotonic() - start
    report.train_samples_per_s = seen / report.wall_time_s if report.wall_time_s > 0 else 0.0
    last = report.history[-1] if report.history else None
    report.val_loss = last.val_loss if last and last.val_loss is not None else math.nan
    report.val_accuracy = last.val_accuracy if last and last.val_accuracy is not None else 0.0
    if cfg.train_eval_samples > 0:
        # Line 11 of Algorithm 1: training accuracy is the trained model evaluated on the
        # training set (in the sealed scoreboard, the measuring process does this instead).
        report.train_loss, report.train_accuracy = evaluate(
            model,
            data,
            data.x_train,
            data.y_train,
            batch_size=cfg.eval_batch_size,
            amp_dtype=amp_dtype,
            limit=cfg.train_eval_samples,
        )
        if not math.isfinite(report.train_loss):
            report.diverged = True
    elif last is not None:
        report.train_loss, report.train_accuracy = last.train_loss, last.train_accuracy
    return report
