"""Image datasets: class folders of image files, the malaria npz, and the embedded ones.

Every image dataset comes out as uint8 channels-first (N, C, H, W). Folders of image files are
resized with Pillow's BOX filter (area averaging), the same mean pooling that produced the shared
32x32 malaria npz, so both malaria layouts give comparable pixels.

Splits: the malaria npz's ``split`` array and class folders under ``train/``, ``validation/`` and
``test/`` folders are the source's own splits and are used as they are; a source without them
(the NIH ``cell_images`` zip, the EuroSAT zip, the embedded datasets) gets a seeded, stratified
20 % test carve-out and then the paper's 8:2 train/validation split of the rest.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from archsmith.data.common import (
    LoadedDataset,
    Search,
    Source,
    npz_splits,
    read_npz,
    split_rows,
)
from archsmith.data.registry import DatasetInfo
from archsmith.data.splits import TRAIN, split_code
from archsmith.errors import InputError

__all__ = [
    "EUROSAT_CLASSES",
    "IMAGE_SUFFIXES",
    "MALARIA_CLASSES",
    "SYNTHETIC_DEFAULTS",
    "find_class_folders",
    "folder_splits",
    "load_digits_dataset",
    "load_eurosat",
    "load_malaria",
    "load_synthetic",
    "locate_digits",
    "locate_eurosat",
    "locate_malaria",
    "locate_synthetic",
    "make_synthetic",
    "read_images",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
MALARIA_CLASSES = ("Parasitized", "Uninfected")
EUROSAT_CLASSES = (
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
)
_MAX_DEPTH = 4
_IMAGE_SIZE = 32


def find_class_folders(root: Path, class_names: tuple[str, ...]) -> dict[str, list[Path]]:
    """Folders named after the classes (any case), at the shallowest depth where any appears.

    Several at that depth are pooled (``train/Parasitized`` and ``test/Parasitized``); deeper
    copies are ignored, because some archives repeat the whole tree one level down.
    """
    wanted = {c.lower(): c for c in class_names}
    level = [root]
    for _ in range(_MAX_DEPTH):
        found: dict[str, list[Path]] = {}
        deeper: list[Path] = []
        for folder in level:
            for child in sorted(folder.iterdir()):
                if not child.is_dir() or child.name.startswith((".", "__MACOSX")):
                    continue
                canonical = wanted.get(child.name.lower())
                if canonical is None:
                    deeper.append(child)
                else:
                    found.setdefault(canonical, []).append(child)
        if found:
            return found
        level = deeper
    return {}


def _class_files(search: Search, root: Path, class_names: tuple[str, ...]) -> list[Path] | None:
    """Image files under ``root``, class by class; None (and a note) unless every class is there."""
    folders = find_class_folders(root, class_names)
    absent = [c for c in class_names if c not in folders]
    if absent:
        search.note(root, f"no class folders {', '.join(absent)}")
        return None
    files: list[Path] = []
    for name in class_names:
        members = sorted(
            f
            for folder in folders[name]
            for f in folder.iterdir()
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
        )
        if not members:
            search.note(root, f"class folder {name} has no images")
            return None
        files += members
    return files


def _read_one(path: Path, size: int) -> npt.NDArray[np.uint8]:
    from PIL import Image

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BOX)
            return np.asarray(rgb, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"cannot read image {path}: {e}") from e


def read_images(files: list[Path], size: int = _IMAGE_SIZE) -> npt.NDArray[np.uint8]:
    """Decode, convert to RGB and resize ``files`` into one uint8 (N, 3, size, size) array.

    Decoding runs on a few threads, since Pillow releases the GIL while it decodes and resizes
    (about 10 s for 27,558 cell-sized PNGs on two cores).
    """
    out = np.empty((len(files), size, size, 3), dtype=np.uint8)
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, pixels in enumerate(pool.map(lambda f: _read_one(f, size), files)):
            out[i] = pixels
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _folder_source(
    search: Search, layout: str, roots: tuple[str, ...], classes: tuple[str, ...]
) -> Source | None:
    for relative in roots:
        root = search.folder(relative)
        found = None if root is None else _class_files(search, root, classes)
        if root is not None and found is not None:
            return Source(layout, root, tuple(found))
    return None


def folder_splits(root: Path, files: tuple[Path, ...]) -> npt.NDArray[np.int64] | None:
    """Each file's split from the folder above its class folder (``train/Parasitized/x.png``).

    Only when every class folder sits in a split-named folder below ``root`` and some are
    training ones; otherwise the layout has no splits of its own (None) and all are pooled.
    """
    codes: list[int] = []
    for f in files:
        holder = f.parent.parent
        code = split_code(holder.name) if holder != root else None
        if code is None:
            return None
        codes.append(code)
    found = np.array(codes, dtype=np.int64)
    return found if (found == TRAIN).any() else None


def _load_folder(source: Source, classes: tuple[str, ...], seed: int) -> LoadedDataset:
    """Images labelled by their class folder's name (matched in any case), in the folders' own
    splits when they are in split folders, else carved out (20 % test, then 8:2)."""
    if source.path is None:
        raise ValueError("a folder source needs a path")
    label_of = {c.lower(): k for k, c in enumerate(classes)}
    labels = np.array([label_of[f.parent.name.lower()] for f in source.files], dtype=np.int64)
    given = folder_splits(source.path, source.files)
    logger.info(
        "reading %d images from %s (%s)",
        len(source.files),
        source.path,
        "pooled" if given is None else "in the folders' own splits",
    )
    x = read_images(list(source.files))
    return split_rows(x, labels, classes, str(source.path), seed=seed, given=given)


# --- malaria ---------------------------------------------------------------------------------


def locate_malaria(info: DatasetInfo, data_dir: Path | None) -> Source:
    """The shared npz layout first (fast), then class folders of images."""
    search = Search(info, data_dir)
    for relative in ("malaria_rgb32_saugatapaul.npz", "malaria.npz"):
        path = search.file(relative)
        if path is not None:
            return Source("malaria-npz", path)
    folder = search.folder("malaria")
    if folder is not None:
        npzs = sorted(folder.glob("*.npz"))
        if len(npzs) > 1:
            raise InputError(
                f"{folder} holds several .npz files ({', '.join(p.name for p in npzs)}); "
                "keep only the malaria one there"
            )
        if npzs:
            return Source("malaria-npz", npzs[0])
        search.note(folder / "*.npz", "no .npz file")
    found = _folder_source(search, "malaria-folders", ("malaria", "cell_images"), MALARIA_CLASSES)
    if found is None:
        raise search.unavailable()
    return found


def load_malaria(source: Source, seed: int, options: dict[str, int]) -> LoadedDataset:
    """All malaria images, labelled Parasitized=0, Uninfected=1 whatever the file's own order,
    in the file's own train/validation/test split when it has one."""
    if source.layout == "malaria-folders":
        return _load_folder(source, MALARIA_CLASSES, seed)
    if source.path is None:
        raise ValueError("the malaria npz source needs a path")
    path = source.path
    arrays = read_npz(path, ("images", "labels", "label_names"))
    images, labels = arrays["images"], arrays["labels"].astype(np.int64).ravel()
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise InputError(
            f"{path}: images must be uint8 (N, 32, 32, 3), got {images.dtype} {images.shape}"
        )
    if len(labels) != len(images):
        raise InputError(f"{path}: {len(images)} images but {len(labels)} labels")
    names = [str(n) for n in arrays["label_names"].ravel()]
    canonical = {c.lower(): i for i, c in enumerate(MALARIA_CLASSES)}
    try:
        remap = np.array([canonical[n.lower()] for n in names], dtype=np.int64)
    except KeyError as e:
        raise InputError(
            f"{path}: label_names {names} are not the malaria classes {list(MALARIA_CLASSES)}"
        ) from e
    if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
        raise InputError(f"{path}: labels must lie in 0..{len(names) - 1}")
    given = npz_splits(path, arrays, len(images))
    x = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    return split_rows(x, remap[labels], MALARIA_CLASSES, str(path), seed=seed, given=given)


# --- eurosat ---------------------------------------------------------------------------------


def locate_eurosat(info: DatasetInfo, data_dir: Path | None) -> Source:
    """Class folders under EuroSAT/ (the official zip's EuroSAT/2750/), eurosat/ or EuroSAT_RGB/."""
    search = Search(info, data_dir)
    roots = ("EuroSAT", "eurosat", "EuroSAT_RGB", "2750")
    found = _folder_source(search, "eurosat-folders", roots, EUROSAT_CLASSES)
    if found is None:
        raise search.unavailable()
    return found


def load_eurosat(source: Source, seed: int, options: dict[str, int]) -> LoadedDataset:
    return _load_folder(source, EUROSAT_CLASSES, seed)


# --- embedded --------------------------------------------------------------------------------


def locate_digits(info: DatasetInfo, data_dir: Path | None) -> Source:
    return Source("embedded", None, embedded_identity=f"scikit-learn {version('scikit-learn')}")


def load_digits_dataset(source: Source, seed: int, options: dict[str, int]) -> LoadedDataset:
    """scikit-learn's 8x8 digits, 0..16 scaled to 0..255, as (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits

    digits: Any = load_digits()
    x = np.rint(np.asarray(digits.images, dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8)
    names = tuple(str(int(t)) for t in digits.target_names)
    return split_rows(
        x[:, None], np.asarray(digits.target), names, "sklearn.datasets.load_digits", seed=seed
    )


SYNTHETIC_DEFAULTS = {"num_samples": 512, "num_classes": 4}


def make_synthetic(
    num_samples: int, num_classes: int, seed: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Learnable images: a random blocky pattern per class, plus pixel noise; balanced labels."""
    rng = np.random.default_rng([seed, 16])
    prototypes = np.kron(rng.uniform(0.0, 1.0, (num_classes, 3, 4, 4)), np.ones((4, 4)))
    labels = rng.permutation(np.arange(num_samples) % num_classes).astype(np.int64)
    noisy = 0.15 + 0.7 * prototypes[labels] + rng.normal(0.0, 0.12, (num_samples, 3, 16, 16))
    return np.rint(np.clip(noisy, 0.0, 1.0) * 255.0).astype(np.uint8), labels


def locate_synthetic(info: DatasetInfo, data_dir: Path | None) -> Source:
    return Source("embedded", None, embedded_identity="synthetic v1")


def load_synthetic(source: Source, seed: int, options: dict[str, int]) -> LoadedDataset:
    num_classes = options["num_classes"]
    if num_classes < 2:
        raise InputError(f"synthetic: num_classes must be at least 2, got {num_classes}")
    x, y = make_synthetic(options["num_samples"], num_classes, seed)
    names = tuple(f"class_{i}" for i in range(num_classes))
    return split_rows(x, y, names, "synthetic", seed=seed)
