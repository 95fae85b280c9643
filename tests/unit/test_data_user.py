"""A user's own data, named by its path: image folders, an npz, CSV and JSON lines.

Each kind is written here in its real format, prepared into the cached file the sandbox trains
from, and read back: shapes, channels and classes come from the data, the three splits apply,
the cache is keyed by content, and data a search cannot use stops with a message that says what
to do.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from owndata import CORRUPT_PNG, csv_file, gray_folder, image_folder, jsonl_file, npz_file
from PIL import Image

from archsmith.data import loaders as loaders_module
from archsmith.data.prepared import prepare_dataset
from archsmith.data.prepared_format import PreparedDataset, load_prepared
from archsmith.data.registry import DatasetNotFoundError
from archsmith.data.splits import plan_splits
from archsmith.data.user import (
    MIN_PER_CLASS,
    dataset_argument,
    looks_like_path,
    parse_reference,
)
from archsmith.errors import InputError


def prepare(data: Path | str, tmp_path: Path, **kwargs: Any) -> PreparedDataset:
    return load_prepared(prepare_dataset(str(data), None, tmp_path / "cache", **kwargs))


def splits(data: PreparedDataset) -> list[np.ndarray]:
    return [data.y_train, data.y_val, data.y_test]


def every_class_in_every_split(data: PreparedDataset) -> bool:
    return all(set(y.tolist()) == set(range(data.num_classes)) for y in splits(data))


# --- image folders ---------------------------------------------------------------------------


def test_png_jpeg_gray_and_rgb_with_a_corrupt_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = image_folder(tmp_path / "cells")
    (root / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING):
        data = prepare(root, tmp_path)
    assert data.task == "image_classification"
    assert data.class_names == ("gray", "green", "red")
    # shorter sides 20..31 in each class: the median is 25 (under the 32 px cap)
    assert data.input_shape == (3, 25, 25)
    assert sum(len(y) for y in splits(data)) == 36  # 37 files, the corrupt one skipped
    assert every_class_in_every_split(data)
    assert data.meta["skipped"] == {
        "count": 1,
        "examples": [data.meta["skipped"]["examples"][0]],
    }
    assert data.meta["skipped"]["examples"][0].startswith("red/broken.png (")
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "skipped 1 image file that could not be read: red/broken.png" in warned
    assert "notes.txt" in warned
    # the grayscale class is repeated into three equal channels; red is red, green green
    x = np.concatenate([data.x_train, data.x_val, data.x_test])
    y = np.concatenate(splits(data))
    gray = x[y == 0].astype(int)
    assert (gray[:, 0] == gray[:, 1]).all()
    assert (gray[:, 1] == gray[:, 2]).all()
    assert x[y == 2][:, 0].mean() > 150 > x[y == 2][:, 1].mean()
    assert x[y == 1][:, 1].mean() > 150 > x[y == 1][:, 0].mean()
    assumptions = " ".join(data.meta["assumptions"])
    assert "median of the images' shorter sides (25 px)" in assumptions
    assert "the 12 grayscale ones were repeated into 3 channels" in assumptions


def test_grayscale_images_stay_one_channel_at_their_size(tmp_path: Path) -> None:
    data = prepare(gray_folder(tmp_path / "g", size=(12, 12)), tmp_path)
    assert data.input_shape == (1, 12, 12)
    assert data.class_names == ("dark", "light")
    assert "kept at 12x12 px" in " ".join(data.meta["assumptions"])


def test_large_images_are_capped_at_32_and_image_size_overrides(tmp_path: Path) -> None:
    root = gray_folder(tmp_path / "big", size=(80, 64))
    assert prepare(root, tmp_path).input_shape == (1, 32, 32)
    sized = dataset_argument(str(root), image_size=48)
    assert sized == f"{root.resolve()}?image_size=48"
    data = prepare(sized, tmp_path)
    assert data.input_shape == (1, 48, 48)
    assert "as --image-size asked" in " ".join(data.meta["assumptions"])


def _rgba_folder(root: Path, transparent: dict[str, bool], rgb_too: bool = False) -> Path:
    for name, level in (("a", 50), ("b", 200)):
        (root / name).mkdir(parents=True)
        for i in range(10):
            pixels = np.full((8, 8, 4), level, dtype=np.uint8)
            pixels[..., 3] = 255
            if transparent[name]:
                pixels[:4, :, 3] = 0  # the top half is transparent
            if rgb_too and i % 2:
                Image.fromarray(pixels[..., :3], "RGB").save(root / name / f"{i}.png")
            else:
                Image.fromarray(pixels, "RGBA").save(root / name / f"{i}.png")
    return root


def test_alpha_opaque_everywhere_is_dropped(tmp_path: Path) -> None:
    data = prepare(_rgba_folder(tmp_path / "d", {"a": False, "b": False}), tmp_path)
    assert data.input_shape == (3, 8, 8)
    assert "fully opaque in all" in " ".join(data.meta["assumptions"])


def test_alpha_that_means_something_in_every_image_is_kept(tmp_path: Path) -> None:
    data = prepare(_rgba_folder(tmp_path / "d", {"a": True, "b": False}), tmp_path)
    assert data.input_shape == (4, 8, 8)
    x = np.concatenate([data.x_train, data.x_val, data.x_test])
    y = np.concatenate(splits(data))
    assert (x[y == 0][:, 3, :4] == 0).all()
    assert (x[y == 1][:, 3] == 255).all()


def test_alpha_not_in_every_image_is_composited_onto_black(tmp_path: Path) -> None:
    data = prepare(_rgba_folder(tmp_path / "d", {"a": True, "b": True}, rgb_too=True), tmp_path)
    assert data.input_shape == (3, 8, 8)
    x = np.concatenate([data.x_train, data.x_val, data.x_test])
    # RGBA images have a black (transparent) top half; RGB ones are uniform
    top, bottom = x[:, :, :4], x[:, :, 4:]
    black_top = (top == 0).all(axis=(1, 2, 3))
    assert black_top.sum() == 10
    assert (bottom > 0).all()
    assert "composited onto black" in " ".join(data.meta["assumptions"])


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    for name, value in (("low", 1000), ("high", 65535)):
        (tmp_path / "w" / name).mkdir(parents=True)
        for i in range(10):
            pixels = np.full((6, 6), value, dtype=np.uint16)
            Image.fromarray(pixels).save(tmp_path / "w" / name / f"{i}.png")
    data = prepare(tmp_path / "w", tmp_path)
    assert data.input_shape == (1, 6, 6)
    x = np.concatenate([data.x_train, data.x_val, data.x_test])
    y = np.concatenate(splits(data))
    assert set(np.unique(x[y == data.class_names.index("high")]).tolist()) == {255}
    assert set(np.unique(x[y == data.class_names.index("low")]).tolist()) == {4}


def test_split_folders_are_the_datas_own_splits(tmp_path: Path) -> None:
    for split, n in (("train", 6), ("validation", 2), ("test", 3)):
        gray_folder(tmp_path / "s" / split, per_class=n)
    data = prepare(tmp_path / "s", tmp_path)
    assert [len(y) for y in splits(data)] == [12, 4, 6]
    assert data.meta["splits"] == {
        "train": "the source's own training split",
        "val": "the source's own validation split",
        "test": "the source's own test split",
    }


def test_with_its_own_three_splits_a_class_needs_one_training_example(tmp_path: Path) -> None:
    gray_folder(tmp_path / "s" / "train", per_class=3)
    gray_folder(tmp_path / "s" / "validation", per_class=1)
    gray_folder(tmp_path / "s" / "test", per_class=1)
    data = prepare(tmp_path / "s", tmp_path)  # 3 per class are enough: nothing is carved out
    assert [len(y) for y in splits(data)] == [6, 2, 2]
    for f in (tmp_path / "s" / "train" / "light").iterdir():
        f.unlink()
    (tmp_path / "s" / "train" / "light").rmdir()
    with pytest.raises(InputError, match=r"at least 1 training example .* 'light' has 0"):
        prepare(tmp_path / "s", tmp_path)


def test_a_class_missing_from_its_own_test_split_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    labels = np.array([0, 1, 2] * 4 + [0, 1, 2] + [0, 1])
    split = np.array([0] * 12 + [1] * 3 + [2] * 2)
    path = tmp_path / "x.npz"
    np.savez(
        path,
        images=np.zeros((len(labels), 4, 4), np.uint8),
        labels=labels,
        split=split,
        split_names=np.array(["train", "validation", "test"]),
    )
    with caplog.at_level(logging.WARNING):
        data = prepare(path, tmp_path)
    warning = "the data's own test split has no example of 2; accuracy there does not measure"
    assert any(warning in a for a in data.meta["assumptions"])
    assert warning in caplog.text


# --- npz -------------------------------------------------------------------------------------


def test_npz_grayscale_with_label_names(tmp_path: Path) -> None:
    data = prepare(npz_file(tmp_path / "x.npz"), tmp_path)
    assert (data.input_shape, data.class_names) == ((1, 16, 16), ("zero", "one", "two"))
    assert every_class_in_every_split(data)
    assert "a seeded stratified 20 % carve-out" in data.meta["splits"]["test"]


def test_npz_rgb_floats_string_labels_and_own_split(tmp_path: Path) -> None:
    n = 30
    images = np.random.default_rng(0).random((n, 10, 12, 3)).astype(np.float32)
    labels = np.array(["cat", "dog"] * (n // 2))
    split = np.array([0] * 20 + [1] * 4 + [2] * 6)
    names = np.array(["train", "valid", "test"])
    path = tmp_path / "pets.npz"
    np.savez(path, images=images, labels=labels, split=split, split_names=names)
    data = prepare(path, tmp_path)
    assert (data.input_shape, data.class_names) == ((3, 10, 10), ("cat", "dog"))
    assert [len(y) for y in splits(data)] == [20, 4, 6]
    assert "Float images in 0..1 read as 0..255." in data.meta["assumptions"]
    assert data.x_train.dtype == np.uint8
    assert data.x_train.max() > 200


# --- text ------------------------------------------------------------------------------------


def test_csv_text_classification(tmp_path: Path) -> None:
    data = prepare(csv_file(tmp_path / "reviews.csv"), tmp_path)
    assert data.task == "text_classification"
    assert data.class_names == ("neg", "pos")
    assert data.input_shape == (6,)  # "review N: <three words> film": every text is 6 words
    assert data.x_train.dtype == np.int64
    assert every_class_in_every_split(data)


def test_vocabulary_comes_from_the_training_split_only(tmp_path: Path) -> None:
    path = tmp_path / "own.csv"
    rows = ["text,label,split"]
    rows += [f"word{i % 2} common,{i % 2},train" for i in range(20)]
    rows += [f"word{i % 2} common,{i % 2},validation" for i in range(4)]
    rows += [f"zebra common,{i % 2},test" for i in range(4)]
    path.write_text("\n".join(rows) + "\n")
    data = prepare(path, tmp_path)
    assert data.vocabulary is not None
    assert "zebra" not in data.vocabulary
    assert "common" in data.vocabulary
    assert (data.x_test[:, 0] == 1).all()  # out of vocabulary
    assert data.meta["splits"]["test"] == "the source's own test split"


def test_jsonl_numeric_labels_sort_as_numbers_and_letters_of_any_script_are_kept(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.jsonl"
    lines = [{"text": f"été {i} δοκιμή", "label": [2, 10][i % 2]} for i in range(24)]
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\nnot json\n")
    data = prepare(path, tmp_path)
    assert data.class_names == ("2", "10")
    assert data.vocabulary is not None
    assert {"été", "δοκιμή"} <= set(data.vocabulary)
    assert data.meta["skipped"]["count"] == 1
    assert data.meta["skipped"]["examples"] == ["line 25 (not JSON: Expecting value)"]


def test_bad_rows_are_skipped_and_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = csv_file(tmp_path / "r.csv")
    with path.open("a", encoding="utf-8") as f:
        f.write("too,many,fields\n,pos\n!!!,neg\nno label here,\n")
    with caplog.at_level(logging.WARNING):
        data = prepare(path, tmp_path)
    assert sum(len(y) for y in splits(data)) == 40
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "skipped 4 rows that could not be read: line 42 (3 fields" in warned
    assert "line 43 (no words)" in warned
    assert "line 45 (no label)" in warned


# --- the cache: keyed by content -------------------------------------------------------------


def _bmp_folder(root: Path) -> Path:
    """BMPs: their byte size depends on the image size only, so an edit can keep it."""
    for name, level in (("a", 30), ("b", 220)):
        (root / name).mkdir(parents=True)
        for i in range(10):
            Image.new("L", (6, 6), level + i).save(root / name / f"{i}.bmp")
    return root


def _edit_keeping_size_and_mtime(path: Path, change: Any) -> None:
    st = path.stat()
    change()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)


def test_an_edit_keeping_size_and_mtime_is_prepared_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _bmp_folder(tmp_path / "bmp")
    calls: list[str] = []
    loader = loaders_module.USER_LOADERS["image-folder"]

    def counted(*args: Any) -> Any:
        calls.append("load")
        return loader.load(*args)

    monkeypatch.setitem(
        loaders_module.USER_LOADERS,
        "image-folder",
        loaders_module.UserLoader(loader.locate, counted),
    )
    cache = tmp_path / "cache"
    first = prepare_dataset(str(root), None, cache)
    assert prepare_dataset(str(root), None, cache) == first
    assert calls == ["load"]  # the second call read nothing

    target = root / "b" / "0.bmp"
    _edit_keeping_size_and_mtime(target, lambda: Image.new("L", (6, 6), 0).save(target))
    second = prepare_dataset(str(root), None, cache)
    assert second != first
    assert calls == ["load", "load"]

    def darkest(path: Path) -> int:
        data = load_prepared(path)
        return min(int(x.min()) for x in (data.x_train, data.x_val, data.x_test))

    assert darkest(second) == 0 < darkest(first)


def test_an_edited_csv_cell_is_prepared_again(tmp_path: Path) -> None:
    path = csv_file(tmp_path / "r.csv")
    first = prepare_dataset(str(path), None, tmp_path / "cache")
    raw = path.read_bytes()
    _edit_keeping_size_and_mtime(path, lambda: path.write_bytes(raw.replace(b"superb", b"stupid")))
    assert prepare_dataset(str(path), None, tmp_path / "cache") != first


def test_the_recorded_absolute_path_prepares_the_same_file_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    npz_file(tmp_path / "data" / "x.npz")
    monkeypatch.chdir(tmp_path / "data")
    recorded = dataset_argument("./x.npz")
    assert recorded == str((tmp_path / "data" / "x.npz").resolve())
    first = prepare_dataset(recorded, None, tmp_path / "cache")
    monkeypatch.chdir(tmp_path)
    assert prepare_dataset(recorded, None, tmp_path / "cache") == first
    assert load_prepared(first).name == recorded


# --- data a search cannot use ----------------------------------------------------------------


def _write(tmp_path: Path, case: str) -> Path:
    root = tmp_path / case
    if case == "empty":
        root.mkdir()
    elif case == "no_class_folders":
        root.mkdir()
        for i in range(3):
            Image.new("RGB", (4, 4)).save(root / f"{i}.png")
    elif case == "one_class":
        gray_folder(root)
        for f in (root / "light").iterdir():
            f.unlink()
        (root / "light").rmdir()
    elif case == "small_class":
        gray_folder(root)
        for f in sorted((root / "light").iterdir())[3:]:
            f.unlink()
    elif case == "small_after_corrupt":
        gray_folder(root)
        for f in sorted((root / "light").iterdir())[:2]:
            f.write_bytes(CORRUPT_PNG)
    elif case == "mixed_split_folders":
        gray_folder(root / "train")
        gray_folder(root / "cats")
    elif case == "npz_without_labels":
        root = tmp_path / "x.npz"
        np.savez(root, images=np.zeros((20, 4, 4), np.uint8), y=np.zeros(20))
    elif case == "npz_mixed_label_types":
        root = tmp_path / "x.npz"
        labels = np.array([1, "cat"] * 10, dtype=object)
        np.savez(root, images=np.zeros((20, 4, 4), np.uint8), labels=labels)
    elif case == "npz_channels_first":
        root = tmp_path / "x.npz"
        np.savez(root, images=np.zeros((20, 3, 8, 8), np.uint8), labels=np.arange(20) % 2)
    elif case == "npz_normalised":
        root = tmp_path / "x.npz"
        images = np.random.default_rng(0).normal(size=(20, 4, 4))
        np.savez(root, images=images, labels=np.arange(20) % 2)
    elif case == "csv_missing_column":
        root = tmp_path / "x.csv"
        root.write_text("text,sentiment\nhello,pos\n")
    elif case == "csv_mixed_label_types":
        root = csv_file(tmp_path / "x.csv")
        with root.open("a") as f:
            f.write("a fine film,1\n")
    elif case == "jsonl_mixed_label_types":
        root = jsonl_file(tmp_path / "x.jsonl")
        with root.open("a") as f:
            f.write(json.dumps({"text": "fine", "label": "pos"}) + "\n")
    elif case == "jsonl_missing_key":
        root = tmp_path / "x.jsonl"
        root.write_text("\n".join(json.dumps({"review": "x", "label": 1}) for _ in range(20)))
    elif case == "jsonl_fraction_labels":
        root = tmp_path / "x.jsonl"
        root.write_text("\n".join(json.dumps({"text": "x", "label": i / 3}) for i in range(20)))
    elif case == "csv_not_utf8":
        root = tmp_path / "x.csv"
        root.write_bytes("text,label\ncafé,1\n".encode("latin-1"))
    elif case == "unknown_kind":
        root = tmp_path / "x.txt"
        root.write_text("hello")
    return root


BAD_DATA: list[tuple[str, list[str]]] = [
    ("empty", ["is empty", "folder of at least 10 images named after the class"]),
    ("no_class_folders", ["holds 3 images (0.png, 1.png, 2.png) but no class folders"]),
    ("one_class", ["only one class ('dark'); a classifier needs at least two"]),
    ("small_class", ["at least 10 examples", "'light' has 3", "remove the folders"]),
    ("small_after_corrupt", ["'light' has 8 (2 more unreadable)"]),
    ("mixed_split_folders", ["mixes split folders (train) with other folders (cats)"]),
    ("npz_without_labels", ["has no 'labels' array (it has 'images', 'y')", "numpy.savez"]),
    ("npz_mixed_label_types", ["cannot read its array 'labels'", "labels all as integers"]),
    ("npz_channels_first", ["np.moveaxis(images, 1, -1)"]),
    ("npz_normalised", ["not normalised ones"]),
    ("csv_missing_column", ["has no 'label' column (it has 'text', 'sentiment')"]),
    ("csv_mixed_label_types", ["the labels mix types", "'1' on line 42", "'neg' on line 2"]),
    ("jsonl_mixed_label_types", ["the labels mix types", "'pos' on line 41"]),
    ("jsonl_missing_key", ["has no 'text' column (it has 'label', 'review')"]),
    ("jsonl_fraction_labels", ["is a fraction", "not values to regress"]),
    ("csv_not_utf8", ["is not UTF-8 text", "save it as UTF-8"]),
    ("unknown_kind", ["is not a kind of data archsmith reads"]),
]


@pytest.mark.parametrize(("case", "fragments"), BAD_DATA, ids=[c for c, _ in BAD_DATA])
def test_data_a_search_cannot_use_stops_with_what_to_do(
    tmp_path: Path, case: str, fragments: list[str]
) -> None:
    data = _write(tmp_path, case)
    with pytest.raises(InputError) as raised:
        prepare_dataset(str(data.resolve()), None, tmp_path / "cache")
    message = " ".join(str(raised.value).split())
    for fragment in fragments:
        assert fragment in message, message
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.npz"))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=MIN_PER_CLASS, max_value=400), min_size=2, max_size=12),
    st.integers(0, 2**16),
)
def test_the_minimum_gives_every_class_an_example_in_every_split(
    sizes: list[int], seed: int
) -> None:
    labels = np.repeat(np.arange(len(sizes)), sizes)
    plan = plan_splits(labels, seed=seed)
    for idx in (plan.train, plan.val, plan.test):
        assert set(labels[idx].tolist()) == set(range(len(sizes)))


def test_with_fewer_examples_a_class_can_miss_a_split() -> None:
    """Why a minimum: ten classes of 5 give each one test example, then 4 x 20 % = 0.8
    validation examples each, and the 8 validation places leave two classes out."""
    labels = np.repeat(np.arange(10), 5)
    plan = plan_splits(labels, seed=0)
    assert len(set(labels[plan.test].tolist())) == 10
    assert len(set(labels[plan.val].tolist())) == 8


# --- dataset strings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("digits", False),
        ("cifar-10", False),
        ("imagenet16-120", False),
        ("./cells", True),
        ("~/data", True),
        ("/data/cells", True),
        ("reviews.csv", True),
        ("x.jsonl.gz", True),
        ("data/x", True),
    ],
)
def test_a_dataset_string_is_a_path_or_a_registry_name(name: str, path: bool) -> None:
    assert looks_like_path(name) is path


def test_dataset_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    csv_file(tmp_path / "r.csv")
    gray_folder(tmp_path / "cells")
    assert dataset_argument("CIFAR 10") == "cifar10"
    assert dataset_argument("cells") == str(tmp_path.resolve() / "cells")  # exists, so a path
    assert parse_reference("cells?image_size=20").image_size == 20
    with pytest.raises(DatasetNotFoundError, match="Or give the path of your own data"):
        dataset_argument("cats")
    with pytest.raises(InputError, match="--image-size applies to your own image data"):
        dataset_argument("digits", image_size=8)
    with pytest.raises(InputError, match="--image-size applies to images"):
        dataset_argument("r.csv", image_size=8)
    with pytest.raises(InputError, match="asks for image_size=20 and --image-size for 8"):
        parse_reference("cells?image_size=20", image_size=8)
    with pytest.raises(InputError, match="is not an option of your own data"):
        parse_reference("cells?size=20")
    with pytest.raises(InputError, match="there is no file or folder"):
        dataset_argument("./nothing")
    with pytest.raises(InputError, match="takes no options"):
        prepare_dataset(str(tmp_path / "cells"), None, tmp_path / "cache", num_classes=3)
