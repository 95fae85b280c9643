"""One entry point for every dataset: find its files, then read them into arrays.

Each dataset has a ``locate`` (find and fingerprint the files, read nothing), a ``load`` and the
options it accepts. Nothing here downloads: a dataset whose files are missing raises
``DatasetUnavailableError`` with every path tried and how to get the files. A dataset string that
is a path names the user's own data (``archsmith.data.user``), read by the loader of its kind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archsmith.data import images, pickles, text, user_images, user_text
from archsmith.data.common import LoadedDataset, Source, check_seed, resolve_options
from archsmith.data.registry import DatasetInfo, find_data_dir, resolve_dataset
from archsmith.data.user import USER_FORMAT, DatasetRef, Layout, looks_like_path, parse_reference
from archsmith.errors import InputError
from archsmith.spec import TaskKind

__all__ = [
    "LOADERS",
    "USER_LOADERS",
    "DatasetLoader",
    "LoadedDataset",
    "Located",
    "Source",
    "UserLoader",
    "load_dataset",
    "locate",
    "locate_dataset",
]

logger = logging.getLogger(__name__)

Locate = Callable[[DatasetInfo, Path | None], Source]
Load = Callable[[Source, int, dict[str, int]], LoadedDataset]


@dataclass(frozen=True)
class DatasetLoader:
    """How to find and read one dataset, and the options (with defaults) it accepts."""

    locate: Locate
    load: Load
    defaults: Mapping[str, int] = field(default_factory=dict)


LOADERS: dict[str, DatasetLoader] = {
    "digits": DatasetLoader(images.locate_digits, images.load_digits_dataset),
    "synthetic": DatasetLoader(
        images.locate_synthetic, images.load_synthetic, images.SYNTHETIC_DEFAULTS
    ),
    "malaria": DatasetLoader(images.locate_malaria, images.load_malaria),
    "eurosat": DatasetLoader(images.locate_eurosat, images.load_eurosat),
    "cifar10": DatasetLoader(pickles.locate_cifar10, pickles.load_cifar10),
    "cifar100": DatasetLoader(pickles.locate_cifar100, pickles.load_cifar100),
    "imagenet16-120": DatasetLoader(pickles.locate_imagenet16, pickles.load_imagenet16),
    "imdb": DatasetLoader(text.locate_imdb, text.load_imdb, text.IMDB_DEFAULTS),
}


@dataclass(frozen=True)
class UserLoader:
    """How to find and read one kind of a user's own data."""

    locate: Callable[[DatasetRef], Source]
    load: Load


USER_LOADERS: dict[Layout, UserLoader] = {
    "image-folder": UserLoader(user_images.locate_folder, user_images.load_folder),
    "image-npz": UserLoader(user_images.locate_npz, user_images.load_npz),
    "text-csv": UserLoader(user_text.locate_table, user_text.load_table),
    "text-jsonl": UserLoader(user_text.locate_table, user_text.load_table),
}


@dataclass(frozen=True)
class Located:
    """A dataset found and fingerprinted, nothing read: what preparing it needs.

    ``name`` is what the prepared file's meta records (the registry name, or the user's dataset
    string); ``label`` starts the prepared file's name; ``key`` holds what the cache key adds for
    this kind of dataset (nothing for the registry's, so their keys stay as they were).
    """

    name: str
    label: str
    task: TaskKind
    source: Source
    options: dict[str, int]
    load: Load
    key: dict[str, Any] = field(default_factory=dict)


def locate(name: str, data_dir: Path | None, **options: Any) -> Located:
    """A registry dataset or (a path) the user's own data, located; reads no data."""
    if not looks_like_path(name):
        info, source, full = locate_dataset(name, data_dir, **options)
        return Located(info.name, info.name, info.task, source, full, LOADERS[info.name].load)
    if options:
        raise InputError(
            f"dataset {name!r} is your own data: it takes no options ({', '.join(options)});"
            " the image size goes in the dataset string as ?image_size=N"
        )
    ref = parse_reference(name)
    loader = USER_LOADERS[ref.layout]
    source = loader.locate(ref)
    logger.debug("your dataset %s: %s at %s", ref, ref.layout, source.describe())
    return Located(
        str(ref), ref.label, ref.task, source, ref.options(), loader.load, {"user": USER_FORMAT}
    )


def locate_dataset(
    name: str, data_dir: Path | None, **options: Any
) -> tuple[DatasetInfo, Source, dict[str, int]]:
    """The registry entry, the located source and the complete options; reads no data."""
    info = resolve_dataset(name)
    loader = LOADERS[info.name]
    full = resolve_options(info, loader.defaults, options)
    source = loader.locate(info, None if info.embedded else find_data_dir(data_dir))
    logger.debug("dataset %s: %s source at %s", info.name, source.layout, source.describe())
    return info, source, full


def load_dataset(
    name: str, data_dir: Path | None = None, *, seed: int = 0, **options: Any
) -> LoadedDataset:
    """Load a dataset (a registry name, or a path to your own data) into memory, split into
    training, validation and test parts."""
    check_seed(seed)
    found = locate(name, data_dir, **options)
    return _load(found, seed)


def _load(found: Located, seed: int) -> LoadedDataset:
    started = time.perf_counter()
    source = found.source
    loaded = found.load(source, seed, found.options)
    logger.info(
        "loaded %s from %s in %.1f s: %d train, %d validation, %d test",
        found.name,
        source.describe(),
        time.perf_counter() - started,
        len(loaded.y_train),
        len(loaded.y_val),
        len(loaded.y_test),
    )
    return loaded
