"""The prepared file: its contents, the cache, atomic writes, and clear refusals of other files."""

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

from archsmith.data import PreparedDatasetError, load_prepared, prepare_dataset
from archsmith.data import prepared_format as fmt
from archsmith.data.common import LoadedDataset, Source
from archsmith.data.loaders import LOADERS, DatasetLoader
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
    assert data.x_train.shape == (80, 3, 16, 16)
    assert data.x_train.dtype == np.uint8
    assert data.y_train.dtype == np.int64
    assert data.y_val.dtype == np.int64
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
    assert counts["train"] == 80
    assert counts["val"] == 20
    assert counts["val_per_class"] == [5, 5, 5, 5]
    assert data.meta["options"] == {"num_classes": 4, "num_samples": 100}


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
    assert data.x_train.shape == (16, 3)
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


def test_save_refuses_inconsistent_arrays(tmp_path: Path) -> None:
    arrays = {
        "x_train": np.zeros((2, 1, 2, 2), np.uint8),
        "y_train": np.array([0, 5]),
        "x_val": np.zeros((1, 1, 2, 2), np.uint8),
        "y_val": np.array([0]),
    }
    meta = {"name": "t", "task": "image_classification", "input_shape": [1, 2, 2]}
    meta |= {"num_classes": 2, "class_names": ["a", "b"]}
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
        ({"y_train": np.zeros(3, np.int64)}, "x_train has 32 rows, y_train 3"),
        ({"y_val": np.full(8, 7, np.int64)}, "labels outside 0..1"),
        ({"y_val": np.zeros(8, np.int32)}, "y_val must be int64"),
        ({"x_val": np.zeros((8, 3, 16, 16), np.float32)}, "x_val is float32, expected uint8"),
        ({"x_val": np.zeros((8, 3, 8, 8), np.uint8)}, "meta says"),
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
    assert result.stdout.strip() == "synthetic (32, 3, 16, 16) []"


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
    assert (counts["train"], counts["val"]) == (9, 2)  # 11 images, 8:2
