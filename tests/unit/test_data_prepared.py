"""The prepared file: its three splits and meta, the cache (a format-1 file is prepared again),
the candidate's training view, atomic writes, and clear refusals of other files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from archsmith.data import prepared_format as fmt
from archsmith.data.common import LoadedDataset, Source
from archsmith.data.loaders import LOADERS, DatasetLoader, load_dataset
from archsmith.data.prepared import LOADERS_VERSION, cache_key, prepare_dataset, train_view
from archsmith.data.prepared_format import PreparedDatasetError, load_prepared
from archsmith.errors import InputError

REPO = Path(__file__).resolve().parents[2]


def write_malaria_npz(path: Path, per_class: int) -> None:
    labels = np.repeat(np.array([0, 1], dtype=np.uint8), per_class)
    np.savez(
        path,
        images=np.zeros((2 * per_class, 32, 32, 3), dtype=np.uint8),
        labels=labels,
        label_names=np.array(["Uninfected", "Parasitized"]),
    )


@pytest.fixture
def counted_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Wrap every loader so a test can see whether the source was read."""
    calls: list[str] = []
    for name, loader in list(LOADERS.items()):

        def load(
            source: Source, seed: int, options: dict[str, int], _n: str = name, _l: Any = loader
        ) -> LoadedDataset:
            calls.append(_n)
            result: LoadedDataset = _l.load(source, seed, options)
            return result

        monkeypatch.setitem(LOADERS, name, DatasetLoader(loader.locate, load, loader.defaults))
    return calls


def test_prepared_file_holds_the_arrays_and_meta(tmp_path: Path) -> None:
    path = prepare_dataset("synthetic", None, tmp_path, seed=1, num_samples=100, num_classes=4)
    assert path.parent == tmp_path
    assert path.name.startswith("synthetic-")
    assert path.suffix == ".npz"
    assert path.stat().st_mode & 0o444 == 0o444  # readable by the sandbox's own user too
    data = load_prepared(path)
    # 100 samples, no splits of their own: 20 test, then 8:2 of the other 80.
    assert data.x_train.shape == (64, 3, 16, 16)
    assert data.x_val.shape == (16, 3, 16, 16)
    assert data.x_test.shape == (20, 3, 16, 16)
    for x in (data.x_train, data.x_val, data.x_test):
        assert x.dtype == np.uint8
    for y in (data.y_train, data.y_val, data.y_test):
        assert y.dtype == np.int64
    assert data.name == "synthetic"
    assert data.task == "image_classification"
    assert data.input_shape == (3, 16, 16)
    assert data.num_classes == 4
    assert data.class_names == tuple(f"class_{k}" for k in range(4))
    assert data.vocab_size is None
    assert data.vocabulary is None
    assert data.seed == 1
    assert data.source == "synthetic"
    counts = data.meta["counts"]
    assert (counts["train"], counts["val"], counts["test"]) == (64, 16, 20)
    assert counts["val_per_class"] == [4, 4, 4, 4]
    assert counts["test_per_class"] == [5, 5, 5, 5]
    assert np.bincount(data.y_test).tolist() == [5, 5, 5, 5]
    assert data.meta["splits"]["test"] == "a seeded stratified 20 % carve-out of the pooled data"
    assert set(data.meta["splits"]) == {"train", "val", "test"}
    assert data.meta["format_version"] == fmt.FORMAT_VERSION == 2
    assert data.meta["options"] == {"num_classes": 4, "num_samples": 100}
    # The file round-trips: the loader's arrays, exactly.
    loaded = load_dataset("synthetic", seed=1, num_samples=100, num_classes=4)
    for part in ("train", "val", "test"):
        assert np.array_equal(getattr(data, f"x_{part}"), getattr(loaded, f"x_{part}"))
        assert np.array_equal(getattr(data, f"y_{part}"), getattr(loaded, f"y_{part}"))


def test_text_dataset_records_its_vocabulary(tmp_path: Path) -> None:
    import gzip

    with gzip.open(tmp_path / "imdb.jsonl.gz", "wt", encoding="utf-8") as f:
        for i in range(20):
            f.write(json.dumps({"label": i % 2, "text": f"good film {i} <br />"}) + "\n")
    path = prepare_dataset("imdb", tmp_path, tmp_path / "cache", vocab_size=5, sequence_length=3)
    data = load_prepared(path)
    assert data.task == "text_classification"
    assert data.input_shape == (3,)
    assert data.x_train.dtype == np.int64
    assert data.x_test.dtype == np.int64
    assert data.x_train.shape == (13, 3)  # 20 without splits: 4 test, 3 validation
    assert data.x_test.shape == (4, 3)
    assert data.vocab_size == 5
    assert data.meta["vocab_size"] == 5
    assert data.vocabulary is not None
    assert len(data.vocabulary) == 3
    assert data.vocabulary[:2] == ("film", "good")


def test_second_call_returns_the_cached_file_without_loading(
    tmp_path: Path, counted_loads: list[str]
) -> None:
    write_malaria_npz(tmp_path / "malaria.npz", per_class=10)
    first = prepare_dataset("malaria", tmp_path, tmp_path / "cache", seed=0)
    mtime = first.stat().st_mtime_ns
    again = prepare_dataset("Cell Images", tmp_path, tmp_path / "cache", seed=0)
    assert again == first
    assert again.stat().st_mtime_ns == mtime
    assert counted_loads == ["malaria"]
    # A different seed, limit or source file is a different prepared dataset.
    other_seed = prepare_dataset("malaria", tmp_path, tmp_path / "cache", seed=1)
    limited = prepare_dataset("malaria", tmp_path, tmp_path / "cache", seed=0, max_train=4)
    os.utime(tmp_path / "malaria.npz", ns=(1, 1))
    touched = prepare_dataset("malaria", tmp_path, tmp_path / "cache", seed=0)
    assert len({first, other_seed, limited, touched}) == 4
    assert counted_loads == ["malaria"] * 4


def test_defaults_and_explicit_options_share_the_cache(tmp_path: Path) -> None:
    a = prepare_dataset("synthetic", None, tmp_path)
    b = prepare_dataset("synthetic", None, tmp_path, num_samples=512, num_classes=4)
    assert a == b


def test_limits_subsample_each_part_stratified(tmp_path: Path) -> None:
    options: dict[str, Any] = {"num_samples": 400, "num_classes": 4, "max_train": 40, "max_val": 8}
    data = load_prepared(prepare_dataset("synthetic", None, tmp_path, **options))
    assert np.bincount(data.y_train).tolist() == [10, 10, 10, 10]
    assert np.bincount(data.y_val).tolist() == [2, 2, 2, 2]
    assert data.meta["max_train"] == 40
    assert data.meta["counts"]["train"] == 40
    assert "a seeded stratified subsample of 40 of its 256" in data.meta["splits"]["train"]
    # The test split is never cut: all 80 of the 400.
    assert np.bincount(data.y_test).tolist() == [20, 20, 20, 20]
    assert "subsample" not in data.meta["splits"]["test"]
    again = load_prepared(prepare_dataset("synthetic", None, tmp_path / "b", **options))
    assert np.array_equal(data.x_train, again.x_train)


@pytest.mark.parametrize("bad", [0, -3, True, 2.5])
def test_bad_limits_are_refused(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(InputError, match="max_train"):
        prepare_dataset("synthetic", None, tmp_path, max_train=bad)


def test_interrupted_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail_midway(file: Any, *args: Any, **kwargs: Any) -> None:
        file.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fmt.np, "savez", fail_midway)
    with pytest.raises(OSError, match="No space left"):
        prepare_dataset("synthetic", None, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.undo()
    path = prepare_dataset("synthetic", None, tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [path.name]


def tiny(y_train: list[int]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Arrays and meta of a hand-made two-class file with no test split (as one job writes)."""
    arrays = {
        "x_train": np.zeros((len(y_train), 1, 2, 2), np.uint8),
        "y_train": np.array(y_train),
        "x_val": np.zeros((1, 1, 2, 2), np.uint8),
        "y_val": np.array([0]),
    }
    meta: dict[str, Any] = {"name": "t", "task": "image_classification", "input_shape": [1, 2, 2]}
    meta |= {"num_classes": 2, "class_names": ["a", "b"]}
    return arrays, meta


def test_save_refuses_inconsistent_arrays(tmp_path: Path) -> None:
    arrays, meta = tiny([0, 5])
    with pytest.raises(PreparedDatasetError, match=r"labels outside 0\.\.1"):
        fmt.save_prepared(tmp_path / "t.npz", arrays, meta)
    assert not (tmp_path / "t.npz").exists()


# --- refusing what is not a prepared dataset -------------------------------------------------


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return prepare_dataset("synthetic", None, tmp_path / "cache", num_samples=40, num_classes=2)


def rewrite(src: Path, dst: Path, **changes: Any) -> Path:
    with np.load(src) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays.update(changes)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(dst, **arrays)
    return dst


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PreparedDatasetError, match="does not exist"):
        load_prepared(tmp_path / "nope.npz")


def test_random_bytes(tmp_path: Path) -> None:
    (tmp_path / "x.npz").write_bytes(os.urandom(256))
    with pytest.raises(PreparedDatasetError, match="cannot read"):
        load_prepared(tmp_path / "x.npz")


def test_truncated_archive(tmp_path: Path, good: Path) -> None:
    (tmp_path / "t.npz").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(PreparedDatasetError):
        load_prepared(tmp_path / "t.npz")


def test_damaged_member(tmp_path: Path, good: Path) -> None:
    blob = bytearray(good.read_bytes())
    start = blob.index(b"x_train.npy") + 200  # inside x_train's data: the CRC no longer matches
    blob[start : start + 64] = bytes(64)
    (tmp_path / "d.npz").write_bytes(bytes(blob))
    with pytest.raises(PreparedDatasetError):
        load_prepared(tmp_path / "d.npz")


def test_single_npy_array(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(PreparedDatasetError, match="single array"):
        load_prepared(tmp_path / "a.npy")


def test_foreign_npz(tmp_path: Path) -> None:
    np.savez(tmp_path / "f.npz", images=np.zeros((2, 32, 32, 3), np.uint8), labels=np.zeros(2))
    with pytest.raises(PreparedDatasetError, match=r"missing arrays \['x_train'"):
        load_prepared(tmp_path / "f.npz")


def test_object_array_is_not_unpickled(tmp_path: Path, good: Path) -> None:
    rewrite(good, tmp_path / "o.npz", meta=np.array([{"a": 1}], dtype=object))
    with pytest.raises(PreparedDatasetError, match=r"cannot read|damaged"):
        load_prepared(tmp_path / "o.npz")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"meta": np.array("{not json")}, "not valid JSON"),
        ({"meta": np.array("[1, 2]")}, "not a JSON object"),
        ({"y_train": np.zeros(3, np.int64)}, "x_train has 26 rows, y_train 3"),
        ({"y_val": np.full(6, 7, np.int64)}, "labels outside 0..1"),
        ({"y_val": np.zeros(6, np.int32)}, "y_val must be int64"),
        ({"x_val": np.zeros((6, 3, 16, 16), np.float32)}, "x_val is float32, expected uint8"),
        ({"x_val": np.zeros((6, 3, 8, 8), np.uint8)}, "meta says"),
        ({"y_test": np.full(8, 2, np.int64)}, "y_test has labels outside 0..1"),
        ({"x_test": np.zeros((8, 3, 16, 16), np.float32)}, "x_test is float32, expected uint8"),
        ({"x_test": np.zeros((7, 3, 16, 16), np.uint8)}, "x_test has 7 rows, y_test 8"),
        ({"y_test": None}, "x_test without its pair"),
        ({"x_test": None, "y_test": None}, "meta counts test rows and the file has none"),
        ({"y_test": np.zeros((8, 1), np.int64)}, r"y_test must be int64 \(N,\)"),
    ],
)
def test_inconsistent_contents(
    tmp_path: Path, good: Path, change: dict[str, Any], message: str
) -> None:
    rewrite(good, tmp_path / "c.npz", **change)
    with pytest.raises(PreparedDatasetError, match=message):
        load_prepared(tmp_path / "c.npz")


def test_meta_without_a_field_or_with_another_version(tmp_path: Path, good: Path) -> None:
    with np.load(good) as archive:
        meta = json.loads(str(archive["meta"]))
    rewrite(good, tmp_path / "a.npz", meta=np.array(json.dumps({**meta, "format_version": 99})))
    with pytest.raises(PreparedDatasetError, match="format_version 99"):
        load_prepared(tmp_path / "a.npz")
    del meta["num_classes"]
    rewrite(good, tmp_path / "b.npz", meta=np.array(json.dumps(meta)))
    with pytest.raises(PreparedDatasetError, match="meta has no 'num_classes'"):
        load_prepared(tmp_path / "b.npz")


def test_errors_are_input_errors(tmp_path: Path) -> None:
    assert issubclass(PreparedDatasetError, InputError)
    with zipfile.ZipFile(tmp_path / "z.npz", "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(InputError):
        load_prepared(tmp_path / "z.npz")


SANDBOX_SCRIPT = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"pydantic", "sklearn", "PIL", "torch", "torchvision"}:
            raise ImportError(f"{name} is not in the sandbox")
        return None

sys.meta_path.insert(0, Block())
from archsmith.data.prepared_format import load_prepared, PreparedDatasetError
data = load_prepared(sys.argv[1])
assert PreparedDatasetError.__mro__[1] is ValueError, PreparedDatasetError.__mro__
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"pydantic", "sklearn", "PIL"}
               or m in {"archsmith.data.registry", "archsmith.errors"})
print(data.name, data.x_train.shape, heavy)
"""


def test_reading_needs_only_numpy_and_the_stdlib(good: Path) -> None:
    """The sandbox has numpy and torch only: importing the reader must not need anything else."""
    result = subprocess.run(
        [sys.executable, "-c", SANDBOX_SCRIPT, str(good)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "synthetic (26, 3, 16, 16) []"


@pytest.mark.parametrize("bad", [-1, True, 1.5, "0"])
def test_bad_seed_is_refused(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(InputError, match="seed must be a non-negative integer"):
        prepare_dataset("synthetic", None, tmp_path, seed=bad)


def test_a_changed_image_folder_is_prepared_again(tmp_path: Path) -> None:
    from PIL import Image

    for cls in ("Parasitized", "Uninfected"):
        for i in range(5):
            path = tmp_path / "cell_images" / cls / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (i, 0, 0)).save(path)
    first = prepare_dataset("malaria", tmp_path, tmp_path / "cache")
    assert prepare_dataset("malaria", tmp_path, tmp_path / "cache") == first
    Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / "cell_images" / "Uninfected" / "new.png")
    second = prepare_dataset("malaria", tmp_path, tmp_path / "cache")
    assert second != first
    counts = load_prepared(second).meta["counts"]
    assert (counts["train"], counts["val"], counts["test"]) == (7, 2, 2)  # 11: 2 test, then 8:2


# --- format 1 and the candidate's view ---------------------------------------------------------


def write_format_1(path: Path, source: Path) -> None:
    """What format 1 held: train and validation only, the validation split where test is now."""
    with np.load(source) as archive:
        meta = json.loads(str(archive["meta"]))
        arrays = {k: archive[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    meta["format_version"] = 1
    meta["counts"] = {"train": len(arrays["y_train"]), "val": len(arrays["y_test"])}
    np.savez(
        path,
        x_train=arrays["x_train"],
        y_train=arrays["y_train"],
        x_val=arrays["x_test"],
        y_val=arrays["y_test"],
        meta=np.array(json.dumps(meta)),
    )


def test_a_format_1_file_is_refused_and_prepared_again(
    tmp_path: Path, counted_loads: list[str]
) -> None:
    options: dict[str, Any] = {"num_samples": 60, "num_classes": 3}
    fresh = prepare_dataset("synthetic", None, tmp_path / "fresh", **options)
    cache = tmp_path / "cache"
    cache.mkdir()
    # Where format 1 kept it (its own cache key), and, worse, at the name format 2 would use.
    old_key = {"name": "synthetic", "format": 1, "loaders": 1, "source": "embedded:synthetic v1"}
    old_key |= {"seed": 0, "max_train": None, "max_val": None, "options": options}
    old = cache / f"synthetic-{cache_key(old_key)}.npz"
    write_format_1(old, fresh)
    with pytest.raises(PreparedDatasetError, match="format_version 1 != 2"):
        load_prepared(old)
    write_format_1(cache / fresh.name, fresh)
    counted_loads.clear()
    path = prepare_dataset("synthetic", None, cache, **options)
    assert path.name == fresh.name != old.name
    assert counted_loads == ["synthetic"]  # read from the source again, not reused
    data = load_prepared(path)
    assert data.meta["format_version"] == 2
    assert data.meta["counts"]["test"] == len(data.y_test) == 12
    assert LOADERS_VERSION == 2


def test_the_training_view_holds_no_validation_or_test_rows(tmp_path: Path) -> None:
    path = prepare_dataset("synthetic", None, tmp_path, num_samples=60, num_classes=3)
    full = load_prepared(path)
    view_path = train_view(path)
    assert view_path.name == f"{path.stem}.train.npz"
    with np.load(view_path) as archive:
        members = set(archive.files)
        assert archive["x_val"].shape == (0, 3, 16, 16)
    assert members == {"x_train", "y_train", "x_val", "y_val", "meta"}  # no test arrays at all
    view = load_prepared(view_path)
    assert np.array_equal(view.x_train, full.x_train)
    assert np.array_equal(view.y_train, full.y_train)
    for x, y in ((view.x_val, view.y_val), (view.x_test, view.y_test)):
        assert x.shape == (0, 3, 16, 16)
        assert x.dtype == np.uint8
        assert y.shape == (0,)
        assert y.dtype == np.int64
    assert view.meta["view"] == "train"
    assert set(view.meta["counts"]) == {"train", "train_per_class"}
    assert set(view.meta["splits"]) == {"train"}
    assert train_view(path) == view_path  # written once


def test_a_text_view_has_empty_int64_token_arrays(tmp_path: Path) -> None:
    import gzip

    with gzip.open(tmp_path / "imdb.jsonl.gz", "wt", encoding="utf-8") as f:
        for i in range(20):
            split = "test" if i % 4 == 3 else "train"
            f.write(json.dumps({"label": i % 2, "text": f"a film {i}", "split": split}) + "\n")
    path = prepare_dataset("imdb", tmp_path, tmp_path / "cache", vocab_size=5, sequence_length=3)
    full = load_prepared(path)
    assert full.x_test.shape == (5, 3)
    view = load_prepared(train_view(path))
    assert view.x_test.shape == (0, 3)
    assert view.x_test.dtype == np.int64
    assert view.y_test.dtype == np.int64


def test_files_without_test_arrays_read_as_having_an_empty_test_split(tmp_path: Path) -> None:
    """A file written for one job (no counts, no test pair) still loads; its test split is empty."""
    arrays, meta = tiny([0, 1])
    data = load_prepared(fmt.save_prepared(tmp_path / "t.npz", arrays, meta))
    assert data.x_test.shape == (0, 1, 2, 2)
    assert data.y_test.shape == (0,)
    with pytest.raises(PreparedDatasetError, match="x_test without its pair"):
        fmt.save_prepared(tmp_path / "u.npz", {**arrays, "x_test": arrays["x_val"]}, meta)
    with pytest.raises(PreparedDatasetError, match=r"missing arrays \['y_val'\]"):
        fmt.save_prepared(tmp_path / "v.npz", {k: arrays[k] for k in list(arrays)[:3]}, meta)
