"""Every loader on small files in the real on-disk format, written here; no network is touched.

Each loader gives three disjoint splits: the source's own test (and validation) split where it
has one, seeded stratified carve-outs where it has not.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import socket
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from archsmith.data.common import LoadedDataset
from archsmith.data.images import EUROSAT_CLASSES, make_synthetic
from archsmith.data.loaders import load_dataset, locate_dataset
from archsmith.data.pickles import CIFAR10_CLASSES, IMAGENET16_CLASSES
from archsmith.data.registry import DATA_DIR_ENV, REGISTRY, DatasetUnavailableError
from archsmith.data.splits import class_quotas
from archsmith.errors import InputError

OWN_TEST = "the source's own test split"
CARVED_TEST = "a seeded stratified 20 % carve-out of the pooled data"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loaders must never reach for the network: any socket fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a data loader tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)


# --- writers of the real formats ---------------------------------------------------------------


def write_image(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (40, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path)


def write_pickle(path: Path, data: dict[Any, Any], protocol: int = 4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data, protocol=protocol))


def planes(n: int, side: int, first_label: int) -> npt.NDArray[np.uint8]:
    """Rows of R, G, B planes whose R value encodes the row's label (to check reshaping)."""
    rows = np.empty((n, 3, side, side), dtype=np.uint8)
    for i in range(n):
        rows[i, 0], rows[i, 1], rows[i, 2] = first_label + i, 200, 100
    return rows.reshape(n, 3 * side * side)


def parts(data: LoadedDataset) -> dict[str, tuple[npt.NDArray[Any], npt.NDArray[np.int64]]]:
    return {
        "train": (data.x_train, data.y_train),
        "val": (data.x_val, data.y_val),
        "test": (data.x_test, data.y_test),
    }


def assert_disjoint(data: LoadedDataset, row_id: Any) -> dict[str, list[int]]:
    """The ids (``row_id(x)`` of every sample) of each split; no sample is in two splits."""
    ids = {name: [int(i) for i in row_id(x)] for name, (x, _) in parts(data).items()}
    every = [i for part in ids.values() for i in part]
    assert len(every) == len(set(every)), "a sample is in two splits"
    for x, y in parts(data).values():
        assert x.dtype == data.x_train.dtype
        assert x.shape[1:] == data.x_train.shape[1:]
        assert y.dtype == np.int64
        assert len(x) == len(y)
    return ids


def assert_stratified(taken: npt.NDArray[np.int64], pool: npt.NDArray[np.int64], k: int) -> None:
    """``taken`` has exactly the class quotas of a stratified draw of ``k`` from ``pool``."""
    counts = np.bincount(pool)
    assert len(taken) == k
    assert np.bincount(taken, minlength=len(counts)).tolist() == class_quotas(counts, k).tolist()


# --- embedded -------------------------------------------------------------------------------------


def test_digits_needs_no_files() -> None:
    data = load_dataset("digits", None, seed=0)
    assert data.x_train.shape[1:] == (1, 8, 8)
    assert data.x_train.dtype == np.uint8
    # No test split of its own: 20 % of the 1,797 carved out first, then 8:2 of the rest.
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (1150, 288, 359)
    labels = np.concatenate([data.y_train, data.y_val, data.y_test])
    assert_stratified(data.y_test, labels, 359)
    assert_stratified(data.y_val, np.concatenate([data.y_train, data.y_val]), 288)
    assert data.splits["test"] == CARVED_TEST
    assert data.class_names == tuple(str(i) for i in range(10))
    assert data.x_train.max() == 255
    assert data.x_train.min() == 0
    again, other = load_dataset("digits", None, seed=0), load_dataset("digits", None, seed=1)
    assert np.array_equal(again.x_test, data.x_test)
    assert not np.array_equal(other.x_test, data.x_test)


def test_synthetic_is_deterministic_configurable_and_learnable() -> None:
    a = load_dataset("synthetic", seed=3, num_samples=300, num_classes=3)
    b = load_dataset("synthetic", seed=3, num_samples=300, num_classes=3)
    c = load_dataset("synthetic", seed=4, num_samples=300, num_classes=3)
    assert np.array_equal(a.x_train, b.x_train)
    assert np.array_equal(a.y_val, b.y_val)
    assert np.array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.x_train.shape == (192, 3, 16, 16)
    assert a.x_val.shape == (48, 3, 16, 16)
    assert a.x_test.shape == (60, 3, 16, 16)
    assert np.bincount(a.y_test).tolist() == [20, 20, 20]
    # Noise makes every image unique: the splits share none.
    assert_disjoint(a, lambda x: [hash(row.tobytes()) for row in x])
    assert a.num_classes == 3
    # A nearest-centroid classifier separates the classes: the data is learnable.
    xt, xv = a.x_train.reshape(192, -1) / 255.0, a.x_test.reshape(60, -1) / 255.0
    centroids = np.stack([xt[a.y_train == k].mean(axis=0) for k in range(3)])
    predicted = np.argmin(((xv[:, None] - centroids[None]) ** 2).sum(axis=-1), axis=1)
    assert (predicted == a.y_test).mean() > 0.9
    x, y = make_synthetic(8, 2, 0)
    assert x.shape == (8, 3, 16, 16)
    assert np.bincount(y).tolist() == [4, 4]


def test_unknown_or_bad_options_are_rejected() -> None:
    with pytest.raises(InputError, match="accepts: num_classes, num_samples"):
        load_dataset("synthetic", samples=10)
    with pytest.raises(InputError, match="positive integer"):
        load_dataset("synthetic", num_samples=0)
    with pytest.raises(InputError, match="accepts: none"):
        load_dataset("digits", vocab_size=10)
    with pytest.raises(InputError, match="at least 2"):
        load_dataset("synthetic", num_classes=1)


# --- missing data -----------------------------------------------------------------------------


def test_missing_dataset_lists_every_path_it_looked_in(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailableError) as info:
        locate_dataset("malaria", tmp_path)
    message = str(info.value)
    for looked in (
        "malaria_rgb32_saugatapaul.npz",
        "malaria.npz",
        "malaria (absent)",
        "cell_images (absent)",
    ):
        assert f"{tmp_path}/{looked}" in message
    assert "--data-dir" in message
    assert DATA_DIR_ENV in message
    assert REGISTRY["malaria"].how_to_get in message


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "eurosat", "imagenet16-120", "imdb"])
def test_every_file_dataset_explains_how_to_get_it(name: str, tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset(name, tmp_path)
    message = str(info.value)
    assert "Looked in:" in message
    assert str(tmp_path) in message
    assert REGISTRY[name].how_to_get in message


def test_no_data_folder_says_how_to_give_one() -> None:
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("cifar10", None)
    assert "no data folder was given" in str(info.value)
    assert DATA_DIR_ENV in str(info.value)
    assert "--data-dir" in str(info.value)


def test_nonexistent_data_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailableError, match="does not exist"):
        load_dataset("imdb", tmp_path / "nowhere")


def test_data_folder_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_malaria_npz(tmp_path / "malaria.npz", per_class=5)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert len(load_dataset("malaria").y_train) == 6  # 10 images: 2 test, then 8:2


# --- malaria ---------------------------------------------------------------------------------


#: The shared file's codes: 0 train, 1 validation, 2 test; here every fifth row is test.
SPLIT_PATTERN = (0, 0, 0, 1, 2)


def write_malaria_npz(
    path: Path,
    per_class: int,
    *,
    split: bool = True,
    split_names: tuple[str, ...] = ("train", "validation", "test"),
) -> None:
    """The shared file's layout: label 0 = Uninfected, 1 = Parasitized, images NHWC, ``split``
    codes named by ``split_names``; the blue channel of pixel (0, 0) is the row's number."""
    n = 2 * per_class
    labels = np.repeat(np.array([0, 1], dtype=np.uint8), per_class)
    images = np.zeros((n, 32, 32, 3), dtype=np.uint8)
    images[labels == 1, :, :, 0] = 255  # parasitized images are red
    images[:, 0, 0, 2] = np.arange(n)
    arrays: dict[str, Any] = {
        "images": images,
        "labels": labels,
        "label_names": np.array(["Uninfected", "Parasitized"]),
        "filenames": np.array([f"cell_{i}.png" for i in range(n)]),
    }
    if split:
        names = ("train", "validation", "test")
        folded = [name.lower() for name in split_names]
        codes = [folded.index(names[SPLIT_PATTERN[i % 5]]) for i in range(n)]
        arrays |= {"split": np.array(codes, np.uint8), "split_names": np.array(split_names)}
    np.savez(path, **arrays)


def malaria_row(x: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return x[:, 2, 0, 0]


@pytest.mark.parametrize("where", ["malaria_rgb32_saugatapaul.npz", "malaria.npz", "malaria/x.npz"])
def test_malaria_npz_layouts(tmp_path: Path, where: str) -> None:
    (tmp_path / "malaria").mkdir()
    write_malaria_npz(tmp_path / where, per_class=10)
    data = load_dataset("malaria", tmp_path, seed=1)
    assert data.class_names == ("Parasitized", "Uninfected")
    assert data.x_train.shape == (12, 3, 32, 32)
    assert data.x_val.shape == (4, 3, 32, 32)
    assert data.x_test.shape == (4, 3, 32, 32)
    assert np.bincount(data.y_test).tolist() == [2, 2]
    # Relabelled by name: Parasitized (red in the file) is class 0 now, channels first.
    for x, y in parts(data).values():
        assert (x[y == 0, 0] == 255).all()
        assert (x[y == 1, 0] == 0).all()


@pytest.mark.parametrize(
    "names", [("train", "validation", "test"), ("Test", "Train", "Validation")], ids=str
)
def test_malaria_npz_splits_are_the_files_own(tmp_path: Path, names: tuple[str, ...]) -> None:
    """Rows go to the split the file names, whatever the order of its split_names."""
    write_malaria_npz(tmp_path / "malaria.npz", per_class=10, split_names=names)
    data = load_dataset("malaria", tmp_path, seed=0)
    ids = assert_disjoint(data, malaria_row)
    for part, code in (("train", 0), ("val", 1), ("test", 2)):
        assert ids[part] == [i for i in range(20) if SPLIT_PATTERN[i % 5] == code], part
    assert data.splits == {
        "train": "the source's own training split",
        "val": "the source's own validation split",
        "test": OWN_TEST,
    }
    # The seed draws nothing when the file has all three.
    other = parts(load_dataset("malaria", tmp_path, seed=7))
    for name, (x, _) in parts(data).items():
        assert np.array_equal(x, other[name][0])


def test_malaria_npz_without_splits_is_carved(tmp_path: Path) -> None:
    write_malaria_npz(tmp_path / "malaria.npz", per_class=10, split=False)
    data = load_dataset("malaria", tmp_path, seed=0)
    ids = assert_disjoint(data, malaria_row)
    assert sorted(i for part in ids.values() for i in part) == list(range(20))
    assert np.bincount(data.y_test).tolist() == [2, 2]
    assert len(data.y_val) == 3  # 8:2 of the 16 left
    assert data.splits["test"] == CARVED_TEST


def test_malaria_npz_with_only_training_rows_carves_test_and_validation(tmp_path: Path) -> None:
    write_malaria_npz(tmp_path / "malaria.npz", per_class=5, split=False)
    with np.load(tmp_path / "malaria.npz") as f:
        arrays = dict(f)
    np.savez(
        tmp_path / "malaria.npz",
        **arrays,
        split=np.zeros(10, np.uint8),
        split_names=np.array(["train", "validation", "test"]),
    )
    data = load_dataset("malaria", tmp_path, seed=0)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (6, 2, 2)
    assert (
        data.splits["test"]
        == "a seeded stratified 20 % carve-out of the source's own training split"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"split_names": None}, "no split_names"),
        ({"split_names": np.array(["train", "dev", "test"])}, "must each be train, validation"),
        ({"split": np.full(20, 3, np.uint8)}, r"codes must lie in 0\.\.2"),
        ({"split": np.zeros(5, np.uint8)}, "one integer code per image"),
    ],
)
def test_malaria_npz_with_a_bad_split_is_refused(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    write_malaria_npz(tmp_path / "m.npz", per_class=10)
    with np.load(tmp_path / "m.npz") as f:
        arrays = {**dict(f), **change}
    np.savez(tmp_path / "malaria.npz", **{k: v for k, v in arrays.items() if v is not None})
    with pytest.raises(InputError, match=message):
        load_dataset("malaria", tmp_path)


def test_malaria_npz_with_wrong_shape_is_refused(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "malaria.npz",
        images=np.zeros((2, 64, 64, 3), np.uint8),
        labels=np.array([0, 1]),
        label_names=np.array(["Uninfected", "Parasitized"]),
    )
    with pytest.raises(InputError, match=r"uint8 \(N, 32, 32, 3\)"):
        load_dataset("malaria", tmp_path)


def test_malaria_npz_with_foreign_classes_is_refused(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "malaria.npz",
        images=np.zeros((2, 32, 32, 3), np.uint8),
        labels=np.array([0, 1]),
        label_names=np.array(["cat", "dog"]),
    )
    with pytest.raises(InputError, match="not the malaria classes"):
        load_dataset("malaria", tmp_path)


def test_corrupt_malaria_npz_is_refused(tmp_path: Path) -> None:
    (tmp_path / "malaria.npz").write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(InputError, match=r"cannot read .*malaria\.npz"):
        load_dataset("malaria", tmp_path)


def test_several_npz_in_the_malaria_folder_are_ambiguous(tmp_path: Path) -> None:
    (tmp_path / "malaria").mkdir()
    write_malaria_npz(tmp_path / "malaria" / "a.npz", per_class=2)
    write_malaria_npz(tmp_path / "malaria" / "b.npz", per_class=2)
    with pytest.raises(InputError, match=r"several \.npz"):
        load_dataset("malaria", tmp_path)


@pytest.mark.parametrize("root", ["cell_images", "malaria"])
def test_malaria_class_folders(tmp_path: Path, root: str) -> None:
    for i in range(5):
        # Mixed sizes, like the real cells; BOX resizing keeps a flat colour exact.
        write_image(tmp_path / root / "Parasitized" / f"p{i}.png", (200, 10, 10), (40 + i, 37))
        write_image(tmp_path / root / "Uninfected" / f"u{i}.png", (10, 200, 10), (64, 64))
    (tmp_path / root / "Parasitized" / "Thumbs.db").write_bytes(b"not an image")
    # Some archives repeat the tree one level down; the copy must not be counted twice.
    write_image(tmp_path / root / "cell_images" / "Parasitized" / "dup.png", (0, 0, 0))
    data = load_dataset("malaria", tmp_path, seed=0)
    assert data.source == str(tmp_path / root)
    # No splits of its own (the NIH zip): 20 % test, then 8:2.
    assert data.x_train.shape == (6, 3, 32, 32)
    assert data.x_val.shape == (2, 3, 32, 32)
    assert data.x_test.shape == (2, 3, 32, 32)
    assert np.bincount(data.y_test).tolist() == [1, 1]
    assert np.bincount(data.y_val).tolist() == [1, 1]
    assert data.splits["test"] == CARVED_TEST
    x = np.concatenate([data.x_train, data.x_val, data.x_test])
    y = np.concatenate([data.y_train, data.y_val, data.y_test])
    assert (x[y == 0, 0] == 200).all()
    assert (x[y == 0, 1] == 10).all()
    assert (x[y == 1, 1] == 200).all()


def test_malaria_split_folders_are_the_sources_splits(tmp_path: Path) -> None:
    """The saugatapaul repository's layout: train/, validation/, test/ each with both classes."""
    for k, part in enumerate(("train", "validation", "test")):
        for i in range(3):
            # Red tells the split (lossless PNG), so each row's folder can be checked.
            write_image(tmp_path / "malaria" / part / "Parasitized" / f"{i}.png", (10 * k, 2, 3))
            write_image(tmp_path / "malaria" / part / "Uninfected" / f"{i}.png", (10 * k, 5, 6))
    data = load_dataset("malaria", tmp_path)
    for k, (x, y) in enumerate(parts(data).values()):
        assert len(y) == 6
        assert np.bincount(y).tolist() == [3, 3]
        assert (x[:, 0] == 10 * k).all()
    assert data.splits["test"] == OWN_TEST


def test_class_folders_beside_split_folders_are_pooled(tmp_path: Path) -> None:
    """Only a layout where every class folder is in a split folder has splits of its own."""
    for name in ("Parasitized", "Uninfected"):
        for i in range(5):
            write_image(tmp_path / "cell_images" / name / f"{i}.png", (i, 0, 0))
    assert load_dataset("malaria", tmp_path).splits["test"] == CARVED_TEST


def test_malaria_folder_without_both_classes_is_not_a_source(tmp_path: Path) -> None:
    write_image(tmp_path / "cell_images" / "Parasitized" / "p.png", (1, 2, 3))
    with pytest.raises(DatasetUnavailableError, match="no class folders Uninfected"):
        load_dataset("malaria", tmp_path)


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    write_image(tmp_path / "cell_images" / "Parasitized" / "p.png", (1, 2, 3))
    write_image(tmp_path / "cell_images" / "Uninfected" / "u.png", (1, 2, 3))
    (tmp_path / "cell_images" / "Uninfected" / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(InputError, match=r"cannot read image .*bad\.png"):
        load_dataset("malaria", tmp_path)


# --- eurosat ---------------------------------------------------------------------------------


@pytest.mark.parametrize("root", ["EuroSAT/2750", "eurosat"])
def test_eurosat_class_folders(tmp_path: Path, root: str) -> None:
    for k, name in enumerate(EUROSAT_CLASSES):
        for i in range(5):
            write_image(tmp_path / root / name / f"{name}_{i}.jpg", (20 * k, 100, 50), (64, 64))
    data = load_dataset("eurosat", tmp_path, seed=2)
    assert data.class_names == EUROSAT_CLASSES
    # The official zip has no splits: a stratified 20 % test carve-out, then 8:2 of the rest.
    assert data.x_train.shape == (32, 3, 32, 32)
    assert data.x_val.shape == (8, 3, 32, 32)
    assert data.x_test.shape == (10, 3, 32, 32)
    assert np.bincount(data.y_test).tolist() == [1] * 10
    assert_stratified(data.y_val, np.concatenate([data.y_train, data.y_val]), 8)
    assert data.splits["test"] == CARVED_TEST
    # JPEG is lossy: the red channel still tells the classes apart.
    for x, y in parts(data).values():
        assert np.allclose(x[:, 0].mean(axis=(1, 2)), 20 * y, atol=4)


# --- CIFAR -----------------------------------------------------------------------------------


def write_cifar10(root: Path, per_batch: int = 4, *, python2_keys: bool = False) -> None:
    """Batches as the python version of CIFAR-10 has them (bytes keys like Python 2 pickles)."""
    folder = root / "cifar-10-batches-py"
    for i, name in enumerate([*(f"data_batch_{b}" for b in range(1, 6)), "test_batch"]):
        labels = [(i + j) % 10 for j in range(per_batch)]
        data = planes(per_batch, 32, first_label=10 * i)
        batch: dict[Any, Any] = {"batch_label": name, "labels": labels, "data": data}
        if python2_keys:
            batch = {k.encode(): v for k, v in batch.items()}
        write_pickle(folder / name, batch, protocol=2 if python2_keys else 4)


def cifar_row(x: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return x[:, 0, 0, 0]


@pytest.mark.parametrize("python2_keys", [False, True])
def test_cifar10_batches(tmp_path: Path, python2_keys: bool) -> None:
    write_cifar10(tmp_path, python2_keys=python2_keys)
    data = load_dataset("cifar10", tmp_path)
    # Test = the test batch, whole and in order; validation = 8:2 of the five training batches.
    assert data.x_train.shape == (16, 3, 32, 32)
    assert data.x_val.shape == (4, 3, 32, 32)
    assert data.x_test.shape == (4, 3, 32, 32)
    assert data.class_names == CIFAR10_CLASSES
    assert data.y_test.tolist() == [5, 6, 7, 8]
    ids = assert_disjoint(data, cifar_row)
    assert ids["test"] == [50, 51, 52, 53]
    assert sorted(ids["train"] + ids["val"]) == [10 * i + j for i in range(5) for j in range(4)]
    assert_stratified(data.y_val, np.concatenate([data.y_train, data.y_val]), 4)
    assert data.splits["test"] == "the source's own test split (test_batch)"
    assert data.splits["val"].startswith("a seeded stratified 20 % of the source's own training")
    # Row-major RGB planes: R of row j of batch i is 10 * i + j everywhere, G 200, B 100.
    x, y = np.concatenate([data.x_train, data.x_val]), np.concatenate([data.y_train, data.y_val])
    row = int(np.flatnonzero(cifar_row(x) == 11)[0])
    assert (x[row, 0] == 11).all()
    assert (x[row, 1] == 200).all()
    assert y[row] == 2  # batch 1, row 1: (1 + 1) % 10
    assert (data.x_test[2, 0] == 52).all()
    assert (data.x_test[2, 2] == 100).all()
    other = load_dataset("cifar10", tmp_path, seed=1)
    assert np.array_equal(other.x_test, data.x_test)  # the seed never moves the test split


def test_cifar10_meta_names_the_classes(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    names = [f"c{i}" for i in range(10)]
    write_pickle(tmp_path / "cifar-10-batches-py" / "batches.meta", {"label_names": names})
    assert load_dataset("cifar10", tmp_path).class_names == tuple(names)


def test_incomplete_cifar10_folder_names_the_missing_batches(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetUnavailableError, match="incomplete: missing data_batch_3"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_salvaged_npz_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "cifar10_salvaged_prefix.npz",
        x_train=rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8),
        y_train=np.arange(12, dtype=np.uint8) % 10,
        x_test=rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8),
        y_test=np.array([1, 2, 3], dtype=np.uint8),
        label_names=np.array(CIFAR10_CLASSES),
    )
    data = load_dataset("cifar10", tmp_path)
    assert (len(data.y_train), len(data.y_val)) == (10, 2)  # x_train split 8:2
    assert data.y_test.tolist() == [1, 2, 3]
    assert data.y_train.dtype == np.int64
    with np.load(tmp_path / "cifar10_salvaged_prefix.npz") as f:
        assert np.array_equal(data.x_test, f["x_test"].transpose(0, 3, 1, 2))
        train_rows = {r.tobytes() for r in f["x_train"].transpose(0, 3, 1, 2)}
    assert {r.tobytes() for r in np.concatenate([data.x_train, data.x_val])} == train_rows
    assert data.splits["test"] == "the source's own test split (x_test)"


def test_cifar100_files(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    for name, n in (("train", 6), ("test", 2)):
        fine = [99 - j for j in range(n)]
        write_pickle(
            folder / name,
            {"data": planes(n, 32, 0), "fine_labels": fine, "coarse_labels": [0] * n},
        )
    data = load_dataset("cifar-100", tmp_path)
    assert data.num_classes == 100
    assert data.class_names[99] == "worm"
    assert sorted([*data.y_train.tolist(), *data.y_val.tolist()]) == [94, 95, 96, 97, 98, 99]
    assert len(data.y_val) == 1
    assert data.y_test.tolist() == [99, 98]
    assert data.x_test.shape == (2, 3, 32, 32)
    assert data.splits["test"] == "the source's own test split (test)"


def test_cifar_batch_with_wrong_keys_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    write_pickle(folder / "train", {"data": planes(2, 32, 0), "labels": [0, 1]})
    write_pickle(folder / "test", {"data": planes(2, 32, 0), "labels": [0, 1]})
    with pytest.raises(InputError, match="has no fine_labels"):
        load_dataset("cifar100", tmp_path)


def test_a_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.mkdir, (str(marker),))

    write_cifar10(tmp_path)
    write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", {"data": Evil(), "labels": []})
    with pytest.raises(InputError, match=r"refusing to load \w+\.mkdir"):
        load_dataset("cifar10", tmp_path)
    assert not marker.exists()


# --- ImageNet16-120 --------------------------------------------------------------------------


def test_imagenet16_keeps_the_first_120_classes(tmp_path: Path) -> None:
    folder = tmp_path / "ImageNet16"
    for b in range(1, 11):
        labels = [1, 120, 121, 1000, b]  # 1-based over 1000 classes
        rows = planes(5, 16, first_label=10 * b)
        write_pickle(folder / f"train_data_batch_{b}", {"data": rows, "labels": labels, "mean": 0})
    write_pickle(folder / "val_data", {"data": planes(3, 16, 0), "labels": [2, 500, 120]})
    data = load_dataset("imagenet16", tmp_path)
    assert data.class_names == IMAGENET16_CLASSES
    assert data.num_classes == 120
    # val_data is the held-out (test) split; validation is 8:2 of the 30 training images kept.
    assert data.x_train.shape == (24, 3, 16, 16)
    assert data.x_val.shape == (6, 3, 16, 16)
    assert data.y_test.tolist() == [1, 119]
    assert (data.x_test[1, 0] == 2).all()  # the third row; the 500 one was dropped
    assert "val_data" in data.splits["test"]
    ids = assert_disjoint(data, cifar_row)
    kept = [10 * b + j for b in range(1, 11) for j in (0, 1, 4)]  # labels 1, 120 and b
    assert sorted(ids["train"] + ids["val"]) == sorted(kept)
    x, y = np.concatenate([data.x_train, data.x_val]), np.concatenate([data.y_train, data.y_val])
    row = int(np.flatnonzero(cifar_row(x) == 11)[0])
    assert y[row] == 119  # batch 1, second row: label 120
    assert (x[row, 1] == 200).all()


def test_imagenet16_zero_based_labels_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "imagenet16"
    for b in range(1, 11):
        write_pickle(folder / f"train_data_batch_{b}", {"data": planes(1, 16, 0), "labels": [0]})
    write_pickle(folder / "val_data", {"data": planes(1, 16, 0), "labels": [1]})
    with pytest.raises(InputError, match=r"1-based"):
        load_dataset("imagenet16-120", tmp_path)


# --- IMDB --------------------------------------------------------------------------------------

REVIEWS = [
    (1, "A wonderful film!<br /><br />Loved it. http://example.com/x #mustsee"),
    (1, "Great acting, great story @critic"),
    (1, "Wonderful and moving"),
    (1, "I loved this movie"),
    (1, "Brilliant!!!"),
    (0, "Terrible film. Awful plot."),
    (0, "Boring, boring, boring"),
    (0, "I hated it<br />"),
    (0, "Awful acting"),
    (0, "A waste of time www.spam.org"),
]


def write_aclimdb(root: Path, reviews: list[tuple[int, str]]) -> None:
    for i, (label, text) in enumerate(reviews):
        split = "train" if i % 2 == 0 else "test"
        path = (
            root / "aclImdb" / split / ("pos" if label else "neg") / f"{i}_{7 if label else 2}.txt"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for split in ("train", "test"):
        for polarity in ("pos", "neg"):
            (root / "aclImdb" / split / polarity).mkdir(parents=True, exist_ok=True)
    (root / "aclImdb" / "imdb.vocab").write_text("the\n", encoding="utf-8")


def write_jsonl(path: Path, reviews: list[tuple[int, str]]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for i, (label, text) in enumerate(reviews):
            split = "train" if i % 2 == 0 else "test"
            record = {"split": split, "label": label, "id": i, "rating": 8, "text": text}
            f.write(json.dumps(record) + "\n")


@pytest.mark.parametrize("layout", ["aclImdb", "jsonl"])
def test_imdb_layouts(tmp_path: Path, layout: str) -> None:
    if layout == "aclImdb":
        write_aclimdb(tmp_path, REVIEWS)
    else:
        write_jsonl(tmp_path / "imdb_aclImdb_50k.jsonl.gz", REVIEWS)
    data = load_dataset("movie reviews", tmp_path, seed=0, sequence_length=12, vocab_size=50)
    assert data.class_names == ("negative", "positive")
    # Test = the test half (reviews 1, 3, 5, 7, 9); validation = 8:2 of the training half.
    assert data.x_train.shape == (4, 12)
    assert data.x_val.shape == (1, 12)
    assert data.x_test.shape == (5, 12)
    assert data.x_train.dtype == np.int64
    assert data.x_test.dtype == np.int64
    assert np.bincount(data.y_test).tolist() == [3, 2]
    assert data.splits["test"] == OWN_TEST
    assert data.vocabulary is not None
    assert data.vocab_size == len(data.vocabulary) + 2
    for junk in ("br", "http", "example", "mustsee", "critic", "www", "spam"):
        assert junk not in data.vocabulary
    assert int(data.x_train.max()) < data.vocab_size


def test_imdb_vocabulary_comes_from_the_training_part_only(tmp_path: Path) -> None:
    # write_jsonl puts even reviews in the training half and odd ones in the test half.
    reviews = [(i // 2 % 2, f"only{i} shared {'odd' if i % 2 else 'even'} here") for i in range(40)]
    write_jsonl(tmp_path / "imdb.jsonl.gz", reviews)
    data = load_dataset("imdb", tmp_path, seed=5, sequence_length=4)
    assert data.vocabulary is not None
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (16, 4, 20)
    # Each review's first word occurs in no other review: known in training, unknown elsewhere.
    assert (data.x_train[:, 0] >= 2).all()
    assert (data.x_val[:, 0] == 1).all()
    assert (data.x_test[:, 0] == 1).all()
    assert len(data.vocabulary) == 16 + 3
    assert data.x_train[0, 1:].tolist() == [
        data.vocabulary.index(w) + 2 for w in ("shared", "even", "here")
    ]
    # Every test review is an odd one (its third word never seen in training), every other even.
    assert "odd" not in data.vocabulary
    assert (data.x_test[:, 2] == 1).all()
    assert (data.x_val[:, 2] == data.vocabulary.index("even") + 2).all()


def test_imdb_without_splits_is_carved(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "imdb.jsonl.gz", "wt", encoding="utf-8") as f:
        for label, text in REVIEWS:
            f.write(json.dumps({"label": label, "text": text}) + "\n")
    data = load_dataset("imdb", tmp_path, seed=0, sequence_length=4)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (6, 2, 2)
    assert np.bincount(data.y_test).tolist() == [1, 1]
    assert data.splits["test"] == CARVED_TEST


def test_imdb_with_a_split_on_some_lines_only_is_refused(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "imdb.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"label": 1, "text": "fine", "split": "train"}) + "\n")
        f.write(json.dumps({"label": 0, "text": "bad"}) + "\n")
    with pytest.raises(InputError, match="some lines have a split"):
        load_dataset("imdb", tmp_path)
    with gzip.open(tmp_path / "imdb.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"label": 1, "text": "fine", "split": "unsup"}) + "\n")
    with pytest.raises(InputError, match="line 1: split must be"):
        load_dataset("imdb", tmp_path)


def test_imdb_bad_jsonl_line_is_named(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "imdb.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"label": 1, "text": "fine"}) + "\n")
        f.write('{"label": 1, "review": "no text key"}\n')
    with pytest.raises(InputError, match="line 2"):
        load_dataset("imdb", tmp_path)


def test_incomplete_aclimdb_falls_back_to_jsonl(tmp_path: Path) -> None:
    (tmp_path / "aclImdb" / "train" / "pos").mkdir(parents=True)
    write_jsonl(tmp_path / "imdb_aclImdb_50k.jsonl.gz", REVIEWS)
    _, source, _ = locate_dataset("imdb", tmp_path)
    assert source.layout == "imdb-jsonl"
