"""The loaders on the real datasets in ../shared/data (skipped, with the reason, where absent).

Each has the source's own test split where the source has one, exactly its rows; the splits are
disjoint and the prepared file holds them all.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import numpy as np
import pytest

from archsmith.data.loaders import load_dataset
from archsmith.data.prepared import prepare_dataset
from archsmith.data.prepared_format import load_prepared
from archsmith.data.text import clean_text, encode

SHARED = Path(__file__).parents[2] / ".." / "shared" / "data"

pytestmark = pytest.mark.skipif(
    not SHARED.is_dir(),
    reason=f"the real datasets are not here: {SHARED.resolve()} is absent (see ../shared/data)",
)


def needs(name: str) -> Path:
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"{path.resolve()} is absent (see ../shared/data/README.md)")
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prepared")


def test_real_malaria_uses_the_sources_three_splits(cache: Path) -> None:
    source = needs("malaria_rgb32_saugatapaul.npz")
    path = prepare_dataset("malaria", SHARED, cache, seed=0)
    data = load_prepared(path)
    assert data.meta["source_layout"] == "malaria-npz"
    assert data.class_names == ("Parasitized", "Uninfected")
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (16000, 6000, 5558)
    assert np.bincount(data.y_train).tolist() == [8000, 8000]
    assert np.bincount(data.y_val).tolist() == [3000, 3000]
    assert np.bincount(data.y_test).tolist() == [2779, 2779]
    assert data.meta["counts"]["test_per_class"] == [2779, 2779]
    assert data.meta["splits"]["test"] == "the source's own test split"
    assert data.x_test.shape == (5558, 3, 32, 32)
    assert data.x_test.dtype == np.uint8
    assert data.y_test.dtype == np.int64
    # Each split is exactly the file's rows of that split, in order, relabelled by name.
    with np.load(source) as f:
        images, labels, split = f["images"], f["labels"], f["split"]
        names = [str(n) for n in f["split_names"]]
        flip = 1 - labels.astype(np.int64)  # the file says 0 = Uninfected
    for part, word in (("train", "train"), ("val", "validation"), ("test", "test")):
        rows = split == names.index(word)
        assert np.array_equal(getattr(data, f"x_{part}"), images[rows].transpose(0, 3, 1, 2))
        assert np.array_equal(getattr(data, f"y_{part}"), flip[rows])
    # Prepared once: the second call is a cache hit, the same file untouched.
    mtime = path.stat().st_mtime_ns
    started = time.perf_counter()
    assert prepare_dataset("malaria", SHARED, cache, seed=0) == path
    assert time.perf_counter() - started < 1.0
    assert path.stat().st_mtime_ns == mtime
    # The seed draws nothing here: another seed gives the same three splits.
    other = load_dataset("malaria", SHARED, seed=3)
    assert np.array_equal(other.x_test, data.x_test)
    assert np.array_equal(other.x_val, data.x_val)


def test_real_salvaged_cifar10_tests_on_its_test_rows(cache: Path) -> None:
    source = needs("cifar10_salvaged_prefix.npz")
    data = load_prepared(prepare_dataset("cifar10", SHARED, cache))
    assert data.meta["source_layout"] == "cifar-npz"
    assert data.class_names[0] == "airplane"
    # The test split is the file's x_test; validation is 8:2 of x_train, stratified.
    assert data.x_train.shape == (4136, 3, 32, 32)
    assert data.x_val.shape == (1034, 3, 32, 32)
    assert data.x_test.shape == (1017, 3, 32, 32)
    with np.load(source) as f:
        x_train, y_train = f["x_train"].transpose(0, 3, 1, 2), f["y_train"].astype(np.int64)
        assert np.array_equal(data.x_test, f["x_test"].transpose(0, 3, 1, 2))
        assert np.array_equal(data.y_test, f["y_test"].astype(np.int64))
    assert data.meta["splits"]["test"] == "the source's own test split (x_test)"
    assert data.meta["counts"]["test"] == 1017
    # Train and validation partition x_train (no image in both, none from x_test).
    train_rows = {r.tobytes() for r in x_train}
    seen = [r.tobytes() for r in np.concatenate([data.x_train, data.x_val])]
    assert len(seen) == len(set(seen)) == len(train_rows)
    assert set(seen) == train_rows
    assert not set(seen) & {r.tobytes() for r in data.x_test}
    counts = np.bincount(y_train, minlength=10)
    assert np.abs(np.bincount(data.y_val, minlength=10) - counts * 0.2).max() < 1
    assert set(np.unique(data.y_train).tolist()) == set(range(10))


@pytest.mark.slow
def test_real_imdb_tests_on_the_test_half(cache: Path) -> None:
    """All 50,000 real IMDB reviews tokenised into the prepared format (about 15 s): the only
    test of the text loader at the size users give it."""
    source = needs("imdb_aclImdb_50k.jsonl.gz")
    data = load_prepared(prepare_dataset("imdb", SHARED, cache, seed=0))
    assert data.meta["source_layout"] == "imdb-jsonl"
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (20000, 5000, 25000)
    assert np.bincount(data.y_val).tolist() == [2500, 2500]
    assert np.bincount(data.y_test).tolist() == [12500, 12500]
    assert data.x_train.shape == (20000, 256)
    assert data.x_test.shape == (25000, 256)
    assert data.x_test.dtype == np.int64
    assert data.meta["splits"]["test"] == "the source's own test split"
    assert data.vocab_size == 20000
    assert data.vocabulary is not None
    assert set(data.vocabulary[:3]) == {"the", "a", "and"}
    for junk in ("br", "http", "www"):
        assert junk not in data.vocabulary
    assert int(data.x_test.max()) < 20000
    # The test split is exactly the source's test half, in order, encoded with the training
    # split's vocabulary.
    with gzip.open(source, "rt", encoding="utf-8") as f:
        test = [r for r in map(json.loads, f) if r["split"] == "test"]
    assert data.y_test.tolist() == [r["label"] for r in test]
    head = encode([clean_text(r["text"]) for r in test[:200]], data.vocabulary, 256)
    assert np.array_equal(data.x_test[:200], head)
    # A 20,000-word vocabulary from the training split still covers most test tokens.
    tokens = data.x_test[data.x_test != 0]
    assert (tokens == 1).mean() < 0.05
