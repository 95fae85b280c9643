"""The loaders on the real datasets in ../shared/data (skipped, with the reason, where absent)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from archsmith.data import load_prepared, prepare_dataset

SHARED = Path(__file__).parents[2] / ".." / "shared" / "data"

pytestmark = pytest.mark.skipif(
    not SHARED.is_dir(),
    reason=f"the real datasets are not here: {SHARED.resolve()} is absent (see ../shared/data)",
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prepared")


def test_real_malaria_is_the_papers_split(cache: Path) -> None:
    path = prepare_dataset("malaria", SHARED, cache, seed=0)
    data = load_prepared(path)
    assert data.meta["source_layout"] == "malaria-npz"
    assert data.class_names == ("Parasitized", "Uninfected")
    assert len(data.y_train) + len(data.y_val) == 27558
    assert len(data.y_val) == 5512  # 8:2 over all images
    assert np.bincount(data.y_val).tolist() == [2756, 2756]
    assert np.bincount(data.y_train).tolist() == [11023, 11023]
    assert data.x_train.shape[1:] == (3, 32, 32)
    assert data.x_train.dtype == np.uint8
    # Prepared once: the second call is a cache hit, the same file untouched.
    mtime = path.stat().st_mtime_ns
    started = time.perf_counter()
    assert prepare_dataset("malaria", SHARED, cache, seed=0) == path
    assert time.perf_counter() - started < 1.0
    assert path.stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_real_imdb_gives_50000_reviews(cache: Path) -> None:
    data = load_prepared(prepare_dataset("imdb", SHARED, cache, seed=0))
    assert data.meta["source_layout"] == "imdb-jsonl"
    assert len(data.y_train) == 40000
    assert len(data.y_val) == 10000
    assert np.bincount(data.y_val).tolist() == [5000, 5000]
    assert data.x_train.shape == (40000, 256)
    assert data.vocab_size == 20000
    assert data.vocabulary is not None
    assert set(data.vocabulary[:3]) == {"the", "a", "and"}
    for junk in ("br", "http", "www"):
        assert junk not in data.vocabulary
    assert int(data.x_val.max()) < 20000
    # A 20,000-word vocabulary from the training part still covers most validation tokens.
    tokens = data.x_val[data.x_val != 0]
    assert (tokens == 1).mean() < 0.05


def test_real_salvaged_cifar10_loads(cache: Path) -> None:
    data = load_prepared(prepare_dataset("cifar10", SHARED, cache))
    assert data.meta["source_layout"] == "cifar-npz"
    assert data.x_train.shape == (5170, 3, 32, 32)
    assert data.x_val.shape == (1017, 3, 32, 32)
    assert data.class_names[0] == "airplane"
    assert set(np.unique(data.y_train).tolist()) == set(range(10))
