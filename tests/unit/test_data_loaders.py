"""Every loader on small files in the real on-disk format, written here; no network is touched."""

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

from archsmith.data import (
    DATA_DIR_ENV,
    REGISTRY,
    DatasetUnavailableError,
    load_dataset,
    locate_dataset,
)
from archsmith.data.images import EUROSAT_CLASSES, make_synthetic
from archsmith.data.pickles import CIFAR10_CLASSES, IMAGENET16_CLASSES
from archsmith.errors import InputError


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


# --- embedded -------------------------------------------------------------------------------------


def test_digits_needs_no_files() -> None:
    data = load_dataset("digits", None, seed=0)
    assert data.x_train.shape[1:] == (1, 8, 8)
    assert data.x_train.dtype == np.uint8
    assert len(data.y_train) + len(data.y_val) == 1797
    assert len(data.y_val) == round(1797 * 0.2)
    assert data.class_names == tuple(str(i) for i in range(10))
    assert data.x_train.max() == 255
    assert data.x_train.min() == 0


def test_synthetic_is_deterministic_configurable_and_learnable() -> None:
    a = load_dataset("synthetic", seed=3, num_samples=300, num_classes=3)
    b = load_dataset("synthetic", seed=3, num_samples=300, num_classes=3)
    c = load_dataset("synthetic", seed=4, num_samples=300, num_classes=3)
    assert np.array_equal(a.x_train, b.x_train)
    assert np.array_equal(a.y_val, b.y_val)
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.x_train.shape == (240, 3, 16, 16)
    assert a.num_classes == 3
    # A nearest-centroid classifier separates the classes: the data is learnable.
    xt, xv = a.x_train.reshape(240, -1) / 255.0, a.x_val.reshape(60, -1) / 255.0
    centroids = np.stack([xt[a.y_train == k].mean(axis=0) for k in range(3)])
    predicted = np.argmin(((xv[:, None] - centroids[None]) ** 2).sum(axis=-1), axis=1)
    assert (predicted == a.y_val).mean() > 0.9
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
    assert len(load_dataset("malaria").y_train) == 8


# --- malaria ---------------------------------------------------------------------------------


def write_malaria_npz(path: Path, per_class: int) -> None:
    """The shared file's layout: label 0 = Uninfected, 1 = Parasitized, images NHWC."""
    labels = np.repeat(np.array([0, 1], dtype=np.uint8), per_class)
    images = np.zeros((2 * per_class, 32, 32, 3), dtype=np.uint8)
    images[labels == 1, :, :, 0] = 255  # parasitized images are red
    np.savez(
        path,
        images=images,
        labels=labels,
        label_names=np.array(["Uninfected", "Parasitized"]),
        split=np.zeros(2 * per_class, dtype=np.uint8),
        split_names=np.array(["train", "validation", "test"]),
        filenames=np.array([f"cell_{i}.png" for i in range(2 * per_class)]),
    )


@pytest.mark.parametrize("where", ["malaria_rgb32_saugatapaul.npz", "malaria.npz", "malaria/x.npz"])
def test_malaria_npz_layouts(tmp_path: Path, where: str) -> None:
    (tmp_path / "malaria").mkdir()
    write_malaria_npz(tmp_path / where, per_class=10)
    data = load_dataset("malaria", tmp_path, seed=1)
    assert data.class_names == ("Parasitized", "Uninfected")
    assert data.x_train.shape == (16, 3, 32, 32)
    assert data.x_val.shape == (4, 3, 32, 32)
    assert np.bincount(data.y_val).tolist() == [2, 2]
    # Relabelled by name: Parasitized (red in the file) is class 0 now, channels first.
    for x, y in ((data.x_train, data.y_train), (data.x_val, data.y_val)):
        assert (x[y == 0, 0] == 255).all()
        assert (x[y == 1, 0] == 0).all()


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
    assert data.x_train.shape == (8, 3, 32, 32)
    assert data.x_val.shape == (2, 3, 32, 32)
    assert np.bincount(data.y_val).tolist() == [1, 1]
    x = np.concatenate([data.x_train, data.x_val])
    y = np.concatenate([data.y_train, data.y_val])
    assert (x[y == 0, 0] == 200).all()
    assert (x[y == 0, 1] == 10).all()
    assert (x[y == 1, 1] == 200).all()


def test_malaria_split_folders_are_pooled(tmp_path: Path) -> None:
    """The saugatapaul repository's layout: train/, validation/, test/ each with both classes."""
    for part in ("train", "validation", "test"):
        for i in range(2):
            write_image(tmp_path / "malaria" / part / "Parasitized" / f"{i}.png", (1, 2, 3))
            write_image(tmp_path / "malaria" / part / "Uninfected" / f"{i}.png", (4, 5, 6))
    data = load_dataset("malaria", tmp_path)
    assert len(data.y_train) + len(data.y_val) == 12


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
    assert data.x_train.shape == (40, 3, 32, 32)
    assert data.x_val.shape == (10, 3, 32, 32)
    assert np.bincount(data.y_val).tolist() == [1] * 10
    # JPEG is lossy: the red channel still tells the classes apart.
    for x, y in ((data.x_train, data.y_train), (data.x_val, data.y_val)):
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


@pytest.mark.parametrize("python2_keys", [False, True])
def test_cifar10_batches(tmp_path: Path, python2_keys: bool) -> None:
    write_cifar10(tmp_path, python2_keys=python2_keys)
    data = load_dataset("cifar10", tmp_path)
    assert data.x_train.shape == (20, 3, 32, 32)
    assert data.x_val.shape == (4, 3, 32, 32)
    assert data.class_names == CIFAR10_CLASSES
    assert data.y_train[:4].tolist() == [0, 1, 2, 3]
    assert data.y_val.tolist() == [5, 6, 7, 8]
    # Row-major RGB planes: R of row j of batch i is 10 * i + j everywhere, G 200, B 100.
    assert (data.x_train[5, 0] == 11).all()
    assert (data.x_train[5, 1] == 200).all()
    assert (data.x_val[2, 0] == 52).all()
    assert (data.x_val[2, 2] == 100).all()


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
    assert data.x_train.shape == (12, 3, 32, 32)
    assert data.y_val.tolist() == [1, 2, 3]
    assert data.y_train.dtype == np.int64


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
    assert data.y_train.tolist() == [99, 98, 97, 96, 95, 94]
    assert data.y_val.tolist() == [99, 98]
    assert data.x_val.shape == (2, 3, 32, 32)


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
        data = planes(5, 16, first_label=10 * b)
        write_pickle(folder / f"train_data_batch_{b}", {"data": data, "labels": labels, "mean": 0})
    write_pickle(folder / "val_data", {"data": planes(3, 16, 0), "labels": [2, 500, 120]})
    data = load_dataset("imagenet16", tmp_path)
    assert data.class_names == IMAGENET16_CLASSES
    assert data.num_classes == 120
    assert data.x_train.shape == (30, 3, 16, 16)
    assert data.y_train[:3].tolist() == [0, 119, 0]  # batch 1: labels 1, 120, b=1
    assert data.y_val.tolist() == [1, 119]
    assert (data.x_val[1, 0] == 2).all()  # the third row; the 500 one was dropped
    assert (data.x_train[1, 0] == 11).all()
    assert (data.x_train[1, 1] == 200).all()


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
    assert data.x_train.shape == (8, 12)
    assert data.x_val.shape == (2, 12)
    assert data.x_train.dtype == np.int64
    assert np.bincount(data.y_val).tolist() == [1, 1]
    assert data.vocabulary is not None
    assert data.vocab_size == len(data.vocabulary) + 2
    for junk in ("br", "http", "example", "mustsee", "critic", "www", "spam"):
        assert junk not in data.vocabulary
    assert int(data.x_train.max()) < data.vocab_size


def test_imdb_vocabulary_comes_from_the_training_part_only(tmp_path: Path) -> None:
    reviews = [(i % 2, f"only{i} shared words here") for i in range(40)]
    write_jsonl(tmp_path / "imdb.jsonl.gz", reviews)
    data = load_dataset("imdb", tmp_path, seed=5, sequence_length=4)
    assert data.vocabulary is not None
    # Each review's first word occurs in no other review: known in training, unknown in validation.
    assert (data.x_train[:, 0] >= 2).all()
    assert (data.x_val[:, 0] == 1).all()
    assert len(data.vocabulary) == 32 + 3
    assert data.x_train[0, 1:].tolist() == [
        data.vocabulary.index(w) + 2 for w in ("shared", "words", "here")
    ]


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
