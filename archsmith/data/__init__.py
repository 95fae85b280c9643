"""Dataset registry, loaders and the prepared format the sandbox trains from.

Names are imported lazily: the sandbox imports ``archsmith.data.prepared_format`` with only numpy
available, and importing this package must not drag in pydantic, scikit-learn or Pillow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from archsmith.data.loaders import LoadedDataset, load_dataset, locate_dataset
    from archsmith.data.prepared import prepare_dataset
    from archsmith.data.prepared_format import (
        PreparedDataset,
        PreparedDatasetError,
        load_prepared,
    )
    from archsmith.data.registry import (
        DATA_DIR_ENV,
        REGISTRY,
        DatasetInfo,
        DatasetNotFoundError,
        DatasetUnavailableError,
        find_data_dir,
        resolve_dataset,
    )

__all__ = [
    "DATA_DIR_ENV",
    "REGISTRY",
    "DatasetInfo",
    "DatasetNotFoundError",
    "DatasetUnavailableError",
    "LoadedDataset",
    "PreparedDataset",
    "PreparedDatasetError",
    "find_data_dir",
    "load_dataset",
    "load_prepared",
    "locate_dataset",
    "prepare_dataset",
    "resolve_dataset",
]

_HOME = {
    "DATA_DIR_ENV": "registry",
    "REGISTRY": "registry",
    "DatasetInfo": "registry",
    "DatasetNotFoundError": "registry",
    "DatasetUnavailableError": "registry",
    "find_data_dir": "registry",
    "resolve_dataset": "registry",
    "LoadedDataset": "loaders",
    "load_dataset": "loaders",
    "locate_dataset": "loaders",
    "prepare_dataset": "prepared",
    "PreparedDataset": "prepared_format",
    "PreparedDatasetError": "prepared_format",
    "load_prepared": "prepared_format",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
