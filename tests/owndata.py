"""A user's own data, written by the tests in every format archsmith reads: small and learnable.

Each class has its own colour (or brightness, or words), so a candidate can tell them apart in
one epoch; sizes vary, so the size rule has something to choose from.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
from clitools import SCRIPT, env_for
from PIL import Image

#: A PNG signature and the start of a header chunk, cut off: Pillow cannot decode it.
CORRUPT_PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x20"
#: Class words of the text datasets.
WORDS = {"neg": "awful dull boring", "pos": "great lovely superb"}


def _pixels(rng: np.random.Generator, size: tuple[int, int], colour: int) -> np.ndarray:
    """An RGB image whose channel ``colour`` is bright, with a little noise."""
    w, h = size
    x = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
    x[..., colour] = 200
    return x


def image_folder(root: Path, per_class: int = 12, *, corrupt: bool = True) -> Path:
    """``root/red`` (RGB PNG), ``root/green`` (RGB JPEG), ``root/gray`` (grayscale PNG), sizes
    from 20x24 upwards, plus one corrupt PNG in ``red`` when ``corrupt``."""
    rng = np.random.default_rng(0)
    for name in ("red", "green", "gray"):
        (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(per_class):
        size = (20 + i, 24 + 2 * i)
        Image.fromarray(_pixels(rng, size, 0), "RGB").save(root / "red" / f"r{i:02}.png")
        Image.fromarray(_pixels(rng, size, 1), "RGB").save(
            root / "green" / f"g{i:02}.jpg", quality=90
        )
        gray = np.full(size[::-1], 60 + 10 * (i % 3), dtype=np.uint8)
        Image.fromarray(gray, "L").save(root / "gray" / f"k{i:02}.png")
    if corrupt:
        (root / "red" / "broken.png").write_bytes(CORRUPT_PNG)
    return root


def gray_folder(root: Path, per_class: int = 10, size: tuple[int, int] = (12, 12)) -> Path:
    """Two classes of grayscale PNGs, dark and light, all ``size``."""
    for name, level in (("dark", 40), ("light", 200)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.full(size[::-1], level + i, dtype=np.uint8)
            Image.fromarray(pixels, "L").save(root / name / f"{i:02}.png")
    return root


def npz_file(path: Path, n: int = 60, *, shape: tuple[int, ...] = (16, 16)) -> Path:
    """``images`` uint8 (n, *shape), ``labels`` 0..2 and ``label_names``; class k is bright at k."""
    rng = np.random.default_rng(1)
    labels = np.arange(n) % 3
    images = rng.integers(0, 60, (n, *shape), dtype=np.uint8)
    for i, k in enumerate(labels):
        images[i, k] = 250
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=images, labels=labels, label_names=np.array(["zero", "one", "two"]))
    return path


def _texts(n: int) -> list[tuple[str, str]]:
    labels = ["neg", "pos"]
    return [(f"review {i}: {WORDS[labels[i % 2]]} film", labels[i % 2]) for i in range(n)]


def csv_file(path: Path, n: int = 40) -> Path:
    """A header ``text,label`` and ``n`` rows, labels neg and pos."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(_texts(n))
    return path


def jsonl_file(path: Path, n: int = 40) -> Path:
    """``n`` lines of ``{"text": ..., "label": 0 or 1}``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for text, label in _texts(n):
            f.write(json.dumps({"text": text, "label": int(label == "pos")}) + "\n")
    return path


#: A candidate for images and token ids alike: a linear layer on the flattened input.
LINEAR = """
import math
import torch.nn as nn


def build_model(input_shape, num_classes):
    if len(input_shape) == 1:  # token ids
        return nn.Sequential(
            nn.Embedding(20000, 4), nn.Flatten(), nn.Linear(4 * input_shape[0], num_classes)
        )
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
"""

#: kind -> (the data's file or folder name, a request naming it, task, input shape, classes)
KINDS: dict[str, tuple[str, str, str, list[int], int]] = {
    "folder": ("cells", "a classifier for the cell images in ./cells", "image", [3, 25, 25], 3),
    "npz": ("digits.npz", "a 100-FPS classifier for ./digits.npz", "image", [1, 16, 16], 3),
    "csv": ("reviews.csv", "sentiment of reviews.csv", "text", [6], 2),
    "jsonl": ("reviews.jsonl", "a sentiment model for reviews.jsonl", "text", [6], 2),
}


def write_all(root: Path) -> Path:
    """One dataset of each kind under ``root``, named as in ``KINDS``, and ``model.py``."""
    image_folder(root / "cells")
    npz_file(root / "digits.npz")
    csv_file(root / "reviews.csv")
    jsonl_file(root / "reviews.jsonl")
    (root / "model.py").write_text(LINEAR)
    return root


def archsmith(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``archsmith`` command run in ``cwd`` with its home under ``home``, on the CPU."""
    env = {**env_for(home), "ARCHSMITH_DEVICE": "cpu"}
    return subprocess.run(
        [str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600
    )
