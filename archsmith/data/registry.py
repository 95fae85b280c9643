"""The datasets archsmith knows, the words people use for them, and where their files live.

A request in plain words ("a malaria classifier", "something for CIFAR 10") names a dataset loosely,
so names are matched case-insensitively with hyphens, spaces and underscores ignored, and each
dataset carries the aliases people actually type. The registry is pure data: finding and reading
files is the loaders' job (``archsmith.data.loaders``), and nothing here ever touches the network.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from archsmith.errors import InputError
from archsmith.spec import TaskKind

__all__ = [
    "DATA_DIR_ENV",
    "REGISTRY",
    "DatasetInfo",
    "DatasetNotFoundError",
    "DatasetUnavailableError",
    "find_data_dir",
    "normalize_name",
    "resolve_dataset",
]

#: Environment variable naming the folder that holds the user's dataset files.
DATA_DIR_ENV = "ARCHSMITH_DATA_DIR"


class DatasetNotFoundError(InputError):
    """The name matches no dataset in the registry."""


class DatasetUnavailableError(InputError):
    """The dataset is known but its files are not where the loaders looked."""


@dataclass(frozen=True)
class DatasetInfo:
    """What the planner needs to know about a dataset before any file is read."""

    name: str
    aliases: tuple[str, ...]
    task: TaskKind
    input_shape: tuple[int, ...]
    num_classes: int
    description: str
    how_to_get: str
    embedded: bool = False
    #: Where its train, validation and test splits come from, in words (the loaders decide).
    splits: str = ""


def _info(
    name: str,
    aliases: tuple[str, ...],
    task: TaskKind,
    input_shape: tuple[int, ...],
    num_classes: int,
    description: str,
    how_to_get: str,
    *,
    splits: str,
    embedded: bool = False,
) -> tuple[str, DatasetInfo]:
    return name, DatasetInfo(
        name, aliases, task, input_shape, num_classes, description, how_to_get, embedded, splits
    )


_CARVED = "a seeded stratified 20 % test carve-out, then 8:2 train/validation of the rest"


_IMAGE = TaskKind.IMAGE_CLASSIFICATION
_TEXT = TaskKind.TEXT_CLASSIFICATION

REGISTRY: dict[str, DatasetInfo] = dict(
    [
        _info(
            "digits",
            ("digits", "mnist-like digits", "handwritten digits", "sklearn digits"),
            _IMAGE,
            (1, 8, 8),
            10,
            "scikit-learn's bundled 8x8 handwritten digits (1,797 images); the default that needs "
            "no download.",
            "Bundled with scikit-learn; nothing to download.",
            splits=_CARVED,
            embedded=True,
        ),
        _info(
            "synthetic",
            ("synthetic", "generated", "toy", "random patterns"),
            _IMAGE,
            (3, 16, 16),
            4,
            "Generated class-dependent patterns plus noise, deterministic from the seed; for tests "
            "and smoke runs (options: num_samples, num_classes).",
            "Generated on the fly; nothing to download.",
            splits=_CARVED,
            embedded=True,
        ),
        _info(
            "malaria",
            ("malaria", "cell images", "malaria cells", "parasite", "nih malaria"),
            _IMAGE,
            (3, 32, 32),
            2,
            "NIH malaria thin blood smear cells (27,558 images, parasitized or uninfected), "
            "resized to 32x32 RGB as in the LEMONADE paper.",
            "Download the NIH malaria cell images (cell_images.zip, linked from "
            "lhncbc.nlm.nih.gov and mirrored on Kaggle as 'cell-images-for-detecting-malaria') and "
            "unpack it so that <data-dir>/cell_images/Parasitized/ and "
            "<data-dir>/cell_images/Uninfected/ hold the images (<data-dir>/malaria/ works too), "
            "or put a malaria_rgb32_saugatapaul.npz (images uint8 N x 32 x 32 x 3, labels, "
            "label_names, and optionally split with split_names) in <data-dir>.",
            splits="the npz's own split array (train / validation / test), or train/, "
            "validation/ and test/ folders, as the source split them; without them (the NIH zip) "
            f"{_CARVED}",
        ),
        _info(
            "cifar10",
            ("cifar-10", "cifar 10", "cifar10"),
            _IMAGE,
            (3, 32, 32),
            10,
            "CIFAR-10: 60,000 32x32 colour images in 10 classes.",
            "Download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and "
            "unpack it in <data-dir> so that <data-dir>/cifar-10-batches-py/data_batch_1..5 and "
            "test_batch exist (or put an npz with x_train, y_train, x_test, y_test there as "
            "cifar10.npz).",
            splits="test = the test batch (x_test in an npz); train/validation = the five "
            "training batches split 8:2 (seeded, stratified)",
        ),
        _info(
            "cifar100",
            ("cifar-100", "cifar 100", "cifar100"),
            _IMAGE,
            (3, 32, 32),
            100,
            "CIFAR-100: 60,000 32x32 colour images in 100 fine classes.",
            "Download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and "
            "unpack it in <data-dir> so that <data-dir>/cifar-100-python/train and test exist.",
            splits="test = the test file; train/validation = the train file split 8:2 (seeded, "
            "stratified)",
        ),
        _info(
            "eurosat",
            ("eurosat", "euro sat", "satellite", "land use", "land cover", "sentinel-2"),
            _IMAGE,
            (3, 32, 32),
            10,
            "EuroSAT RGB: 27,000 Sentinel-2 satellite patches in 10 land-use classes, resized to "
            "32x32.",
            "Download EuroSAT (RGB) from https://github.com/phelber/EuroSAT and unpack it in "
            "<data-dir> so that <data-dir>/EuroSAT/2750/<Class>/*.jpg (or "
            "<data-dir>/eurosat/<Class>/*) exists.",
            splits=f"train/, validation/ and test/ folders if the copy has them; the official zip "
            f"has none: {_CARVED}",
        ),
        _info(
            "imagenet16-120",
            ("imagenet16", "imagenet 16", "imagenet16-120", "imagenet 16 120"),
            _IMAGE,
            (3, 16, 16),
            120,
            "ImageNet downsampled to 16x16, first 120 classes (the NAS-Bench-201 benchmark).",
            "Download the downsampled ImageNet 16x16 (Imagenet16_train.zip and Imagenet16_val.zip "
            "from https://image-net.org/download-images, as used by NAS-Bench-201) and unpack both "
            "into <data-dir>/ImageNet16/ (train_data_batch_1..10 and val_data).",
            splits="test = val_data (ImageNet's labelled held-out set); train/validation = the "
            "training batches split 8:2 (seeded, stratified)",
        ),
        _info(
            "imdb",
            ("imdb", "movie reviews", "imdb reviews", "sentiment", "aclimdb"),
            _TEXT,
            (256,),
            2,
            "IMDB movie reviews (Maas et al., 50,000 labelled) for binary sentiment; cleaned and "
            "tokenised on whitespace (options: vocab_size, sequence_length).",
            "Download aclImdb_v1.tar.gz from https://ai.stanford.edu/~amaas/data/sentiment/ and "
            "unpack it in <data-dir> (giving <data-dir>/aclImdb/train/pos/*.txt), or put "
            "imdb_aclImdb_50k.jsonl.gz (lines with label, text and split) in <data-dir>.",
            splits="test = the 25,000-review test half; train/validation = the training half "
            "split 8:2 (seeded, stratified); the vocabulary comes from the training split only",
        ),
    ]
)


def normalize_name(text: str) -> str:
    """Fold case and drop hyphens, spaces and underscores: 'CIFAR 10' and 'cifar-10' match."""
    return re.sub(r"[\s_\-]+", "", text.strip().lower())


def _build_lookup() -> dict[str, str]:
    lookup: dict[str, str] = {}
    for info in REGISTRY.values():
        for word in (info.name, *info.aliases):
            key = normalize_name(word)
            other = lookup.setdefault(key, info.name)
            if other != info.name:
                raise RuntimeError(f"alias {word!r} names both {other!r} and {info.name!r}")
    return lookup


_LOOKUP = _build_lookup()


def _known_datasets() -> str:
    return "\n".join(
        f"  {info.name}: {', '.join(repr(a) for a in info.aliases)}" for info in REGISTRY.values()
    )


def resolve_dataset(name: str) -> DatasetInfo:
    """The registry entry for ``name`` or one of its aliases; unknown names list what is known."""
    key = normalize_name(name)
    found = _LOOKUP.get(key)
    if found is not None:
        return REGISTRY[found]
    close = difflib.get_close_matches(key, list(_LOOKUP), n=1, cutoff=0.75)
    hint = f" Did you mean {_LOOKUP[close[0]]!r}?" if close else ""
    raise DatasetNotFoundError(
        f"unknown dataset {name!r}.{hint} Known datasets and their aliases:\n{_known_datasets()}"
    )


def find_data_dir(data_dir: Path | None) -> Path | None:
    """The folder holding the user's dataset files: the explicit argument, else $ARCHSMITH_DATA_DIR.

    Returns None when neither is set; only embedded datasets can be loaded then.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(env).expanduser() if env else None
