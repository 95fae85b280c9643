"""One entry point for every dataset: find its files, then read them into arrays.

Each dataset has a ``locate`` (find and fingerprint the files, read nothing), a ``load`` and the
options it accepts. Nothing here downloads: a dataset whose files are missing raises
``DatasetUnavailableError`` with every path tried and how to get the files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archsmith.data import images, pickles, text
from archsmith.data.common import LoadedDataset, Source, check_seed, resolve_options
from archsmith.data.registry import DatasetInfo, find_data_dir, resolve_dataset

__all__ = ["LOADERS", "DatasetLoader", "LoadedDataset", "Source", "load_dataset", "locate_dataset"]

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
    """Load a dataset into memory, split into training and validation parts."""
    check_seed(seed)
    info, source, full = locate_dataset(name, data_dir, **options)
    return _load(info, source, seed, full)


def _load(info: DatasetInfo, source: Source, seed: int, options: dict[str, int]) -> LoadedDataset:
    started = time.perf_counter()
    loaded = LOADERS[info.name].load(source, seed, options)
    logger.info(
        "loaded %s from %s in %.1f s: %d train, %d validation",
        info.name,
        source.describe(),
        time.perf_counter() - started,
        len(loaded.y_train),
        len(loaded.y_val),
    )
    return loaded
