"""Datasets shipped as Python pickles: CIFAR-10, CIFAR-100 and ImageNet16-120.

The files are read with an unpickler that only rebuilds numpy arrays and plain containers: a
pickle can run arbitrary code, and a data folder is not a place to trust code from. The original
CIFAR files were pickled by Python 2, hence ``encoding="latin1"`` (numpy's advice for them).

Splits: each source's own held-out file is the test split (CIFAR's test batch, ImageNet16's
``val_data``), never read for a decision; validation is the paper's 8:2 seeded, stratified carve
out of the training files.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from archsmith.data.common import LoadedDataset, Search, Source, read_npz, split_rows
from archsmith.data.registry import DatasetInfo
from archsmith.data.splits import TEST, TRAIN
from archsmith.errors import InputError

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "IMAGENET16_CLASSES",
    "held_out",
    "load_cifar10",
    "load_cifar100",
    "load_imagenet16",
    "locate_cifar10",
    "locate_cifar100",
    "locate_imagenet16",
    "read_pickle",
]

logger = logging.getLogger(__name__)

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR100_CLASSES = tuple(
    [
        "apple",
        "aquarium_fish",
        "baby",
        "bear",
        "beaver",
        "bed",
        "bee",
        "beetle",
        "bicycle",
        "bottle",
        "bowl",
        "boy",
        "bridge",
        "bus",
        "butterfly",
        "camel",
        "can",
        "castle",
        "caterpillar",
        "cattle",
        "chair",
        "chimpanzee",
        "clock",
        "cloud",
        "cockroach",
        "couch",
        "crab",
        "crocodile",
        "cup",
        "dinosaur",
        "dolphin",
        "elephant",
        "flatfish",
        "forest",
        "fox",
        "girl",
        "hamster",
        "house",
        "kangaroo",
        "keyboard",
        "lamp",
        "lawn_mower",
        "leopard",
        "lion",
        "lizard",
        "lobster",
        "man",
        "maple_tree",
        "motorcycle",
        "mountain",
        "mouse",
        "mushroom",
        "oak_tree",
        "orange",
        "orchid",
        "otter",
        "palm_tree",
        "pear",
        "pickup_truck",
        "pine_tree",
        "plain",
        "plate",
        "poppy",
        "porcupine",
        "possum",
        "rabbit",
        "raccoon",
        "ray",
        "road",
        "rocket",
        "rose",
        "sea",
        "seal",
        "shark",
        "shrew",
        "skunk",
        "skyscraper",
        "snail",
        "snake",
        "spider",
        "squirrel",
        "streetcar",
        "sunflower",
        "sweet_pepper",
        "table",
        "tank",
        "telephone",
        "television",
        "tiger",
        "tractor",
        "train",
        "trout",
        "tulip",
        "turtle",
        "wardrobe",
        "whale",
        "willow_tree",
        "wolf",
        "woman",
        "worm",
    ]
)
#: ImageNet16-120 keeps the original labels 1..120; the names say which original label each was.
IMAGENET16_CLASSES = tuple(f"imagenet_{i:03d}" for i in range(1, 121))

CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
CIFAR100_FILES = ("train", "test")
IMAGENET16_FILES = (*(f"train_data_batch_{i}" for i in range(1, 11)), "val_data")

_SAFE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays, scalars and builtin containers, and refuses anything else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not a numpy array part")


def read_pickle(path: Path) -> dict[str, Any]:
    """A pickled dict of arrays, with bytes keys (Python 2 pickles) turned into str."""
    try:
        with path.open("rb") as f:
            data = _ArrayUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as e:
        raise InputError(f"cannot read {path} as a pickled batch: {e}") from e
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a pickled dict, not {type(data).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in data.items()}


def _batch(
    path: Path, label_key: str, shape: tuple[int, int, int]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """One batch's images, reshaped from row-major RGB planes to (N, C, H, W), and its labels."""
    batch = read_pickle(path)
    missing = [k for k in ("data", label_key) if k not in batch]
    if missing:
        raise InputError(f"{path} has no {' or '.join(missing)} (keys: {sorted(batch)})")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key]).astype(np.int64).ravel()
    size = shape[0] * shape[1] * shape[2]
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != size:
        raise InputError(f"{path}: data must be uint8 (N, {size}), got {data.dtype} {data.shape}")
    if len(labels) != len(data):
        raise InputError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, *shape), labels


def _check_labels(labels: npt.NDArray[np.int64], num_classes: int, where: Path) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise InputError(f"{where}: labels must lie in 0..{num_classes - 1}")


def _complete_folder(search: Search, relative: str, names: tuple[str, ...]) -> Path | None:
    folder = search.folder(relative)
    if folder is None:
        return None
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        search.note(folder, f"incomplete: missing {', '.join(missing)}")
        return None
    return folder


def _class_names(
    folder: Path, meta_file: str, key: str, default: tuple[str, ...]
) -> tuple[str, ...]:
    """Names from the archive's own meta file when present, else the published ones."""
    path = folder / meta_file
    if not path.is_file():
        return default
    names = read_pickle(path).get(key)
    if not isinstance(names, list) or len(names) != len(default):
        raise InputError(f"{path}: {key} must list {len(default)} class names")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


# --- CIFAR -----------------------------------------------------------------------------------


def locate_cifar10(info: DatasetInfo, data_dir: Path | None) -> Source:
    """The python batches first; a salvaged npz (x_train, y_train, x_test, y_test) otherwise."""
    search = Search(info, data_dir)
    for relative in ("cifar-10-batches-py", "cifar10/cifar-10-batches-py"):
        folder = _complete_folder(search, relative, CIFAR10_FILES)
        if folder is not None:
            return Source("cifar-pickle", folder, tuple(folder / n for n in CIFAR10_FILES))
    for relative in ("cifar10_salvaged_prefix.npz", "cifar10.npz"):
        path = search.file(relative)
        if path is not None:
            return Source("cifar-npz", path)
    raise search.unavailable()


def locate_cifar100(info: DatasetInfo, data_dir: Path | None) -> Source:
    search = Search(info, data_dir)
    for relative in ("cifar-100-python", "cifar100/cifar-100-python"):
        folder = _complete_folder(search, relative, CIFAR100_FILES)
        if folder is not None:
            return Source("cifar-pickle", folder, tuple(folder / n for n in CIFAR100_FILES))
    raise search.unavailable()


def _stack(
    files: tuple[Path, ...], label_key: str, shape: tuple[int, int, int]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    parts = [_batch(f, label_key, shape) for f in files]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def held_out(
    train: tuple[npt.NDArray[Any], npt.NDArray[np.int64]],
    test: tuple[npt.NDArray[Any], npt.NDArray[np.int64]],
    class_names: tuple[str, ...],
    source: str,
    seed: int,
    names: dict[int, str],
) -> LoadedDataset:
    """The source's training and test parts; validation is carved 8:2 out of the training part."""
    given = np.repeat(np.array([TRAIN, TEST], dtype=np.int64), [len(train[1]), len(test[1])])
    x = np.concatenate([train[0], test[0]])
    y = np.concatenate([train[1], test[1]])
    return split_rows(x, y, class_names, source, seed=seed, given=given, names=names)


def load_cifar10(source: Source, seed: int, options: dict[str, int]) -> LoadedDataset:
    """Test = the test batch; train and validation = the five training batches, split 8:2."""
    if source.path is None:
        raise ValueError("a CIFAR source needs a path")
    if source.layout == "cifar-npz":
        return _load_cifar10_npz(source.path, seed)
    train = _stack(source.files[:-1], "labels", (3, 32, 32))
    test = _stack(source.files[-1:], "labels", (3, 32, 32))
    names = _class_names(source.path, "batches.meta", "label_names", CIFAR10_CLASSES)
    for (_, y), f in ((train, source.files[0]), (test, source.files[-1])):
        _check_labels(y, len(names), f)
    words = {
        TRAIN: "the source's own training split (data_batch_1..5)",
        TEST: "the source's own test split (test_batch)",
    }
    return held_out(train, test, names, str(source.path), seed, words)


def _load_cifar10_npz(path: Path, seed: int) -> LoadedDataset:
    arrays = read_npz(path, ("x_train", "y_train", "x_test", "y_test"))
    parts: list[tuple[npt.NDArray[Any], npt.NDArray[np.int64]]] = []
    for x_key, y_key in (("x_train", "y_train"), ("x_test", "y_test")):
        x, y = arrays[x_key], arrays[y_key].astype(np.int64).ravel()
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3):
            raise InputError(
                f"{path}: {x_key} must be uint8 (N, 32, 32, 3), got {x.dtype} {x.shape}"
            )
        if len(x) != len(y):
            raise InputError(f"{path}: {len(x)} rows in {x_key} but {len(y)} in {y_key}")
        _check_labels(y, len(CIFAR10_CLASSES), path)
        parts.append((np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y))
    words = {
        TRAIN: "the source's own training split (x_train)",
        TEST: "the source's own test split (x_test)",
    }
    return held_out(parts[0], parts[1], CIFAR10_CLASSES, str(path), seed, words)


def load_cifar100(source: Source, seed: int, options: dict[str, int]) -> LoadedDataset:
    """Test = ``test``; train and validation = ``train`` split 8:2; the 100 fine labels."""
    if source.path is None:
        raise ValueError("a CIFAR source needs a path")
    train = _stack(source.files[:1], "fine_labels", (3, 32, 32))
    test = _stack(source.files[1:], "fine_labels", (3, 32, 32))
    names = _class_names(source.path, "meta", "fine_label_names", CIFAR100_CLASSES)
    for (_, y), f in ((train, source.files[0]), (test, source.files[1])):
        _check_labels(y, len(names), f)
    words = {
        TRAIN: "the source's own training split (train)",
        TEST: "the source's own test split (test)",
    }
    return held_out(train, test, names, str(source.path), seed, words)


# --- ImageNet16-120 --------------------------------------------------------------------------


def locate_imagenet16(info: DatasetInfo, data_dir: Path | None) -> Source:
    search = Search(info, data_dir)
    for relative in ("ImageNet16", "imagenet16", "ImageNet16-120", "imagenet16-120"):
        folder = _complete_folder(search, relative, IMAGENET16_FILES)
        if folder is not None:
            return Source("imagenet16-pickle", folder, tuple(folder / n for n in IMAGENET16_FILES))
    raise search.unavailable()


def _imagenet16_part(
    files: tuple[Path, ...],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Images of the first 120 classes; the 1-based labels 1..120 become 0..119."""
    xs: list[npt.NDArray[np.uint8]] = []
    ys: list[npt.NDArray[np.int64]] = []
    for f in files:
        x, y = _batch(f, "labels", (3, 16, 16))
        if len(y) and (y.min() < 1 or y.max() > 1000):
            raise InputError(f"{f}: ImageNet16 labels must be 1-based, in 1..1000")
        keep = y <= len(IMAGENET16_CLASSES)
        xs.append(x[keep])
        ys.append(y[keep] - 1)
        logger.debug("%s: kept %d of %d images", f.name, int(keep.sum()), len(y))
    return np.concatenate(xs), np.concatenate(ys)


def load_imagenet16(source: Source, seed: int, options: dict[str, int]) -> LoadedDataset:
    """Test = ``val_data``; train and validation = the ten training batches split 8:2.

    ``val_data`` is ImageNet's validation set, the only labelled held-out part (ImageNet's own
    test labels are not public), so it plays the test split's role here; both cut to 120 classes.
    """
    train = _imagenet16_part(source.files[:-1])
    test = _imagenet16_part(source.files[-1:])
    words = {
        TRAIN: "the source's own training split (train_data_batch_1..10)",
        TEST: "the source's own held-out split (val_data, ImageNet's validation set)",
    }
    return held_out(train, test, IMAGENET16_CLASSES, str(source.path), seed, words)
