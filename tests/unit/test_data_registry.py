"""The dataset registry: names people type, clear refusals, and where the data folder comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from archsmith.data.loaders import LOADERS
from archsmith.data.registry import (
    DATA_DIR_ENV,
    REGISTRY,
    DatasetNotFoundError,
    find_data_dir,
    resolve_dataset,
)
from archsmith.errors import InputError
from archsmith.spec import TaskKind


@pytest.mark.parametrize(
    ("typed", "name"),
    [
        ("malaria", "malaria"),
        ("Cell Images", "malaria"),
        ("malaria_cells", "malaria"),
        ("PARASITE", "malaria"),
        ("digits", "digits"),
        ("MNIST-like digits", "digits"),
        ("handwritten digits", "digits"),
        ("CIFAR-10", "cifar10"),
        ("cifar 10", "cifar10"),
        ("cifar_10", "cifar10"),
        ("cifar10", "cifar10"),
        ("Cifar-100", "cifar100"),
        ("movie reviews", "imdb"),
        ("IMDB reviews", "imdb"),
        ("sentiment", "imdb"),
        ("satellite", "eurosat"),
        ("land use", "eurosat"),
        ("ImageNet16", "imagenet16-120"),
        ("imagenet 16", "imagenet16-120"),
        ("ImageNet16-120", "imagenet16-120"),
        ("  synthetic ", "synthetic"),
    ],
)
def test_names_and_aliases_resolve(typed: str, name: str) -> None:
    assert resolve_dataset(typed).name == name


def test_registry_entries_are_consistent() -> None:
    assert set(REGISTRY) == set(LOADERS)
    for key, info in REGISTRY.items():
        assert info.name == key
        assert all(a == a.lower() for a in info.aliases), key
        assert info.num_classes >= 2
        assert info.how_to_get
        assert info.description
        assert "test" in info.splits, key  # every dataset says where its test split comes from
        if info.task is TaskKind.TEXT_CLASSIFICATION:
            assert len(info.input_shape) == 1
        else:
            assert len(info.input_shape) == 3
            assert info.input_shape[0] in (1, 3)
    assert {k for k, v in REGISTRY.items() if v.embedded} == {"digits", "synthetic"}
    assert REGISTRY["digits"].input_shape == (1, 8, 8)
    assert REGISTRY["synthetic"].input_shape == (3, 16, 16)
    assert REGISTRY["malaria"].input_shape == (3, 32, 32)
    assert REGISTRY["imagenet16-120"].num_classes == 120
    assert REGISTRY["imdb"].task is TaskKind.TEXT_CLASSIFICATION


def test_unknown_name_lists_every_dataset_and_alias() -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_dataset("mnist fashion")
    message = str(info.value)
    assert "'mnist fashion'" in message
    for entry in REGISTRY.values():
        assert entry.name in message
        for alias in entry.aliases:
            assert repr(alias) in message
    assert isinstance(info.value, InputError)


def test_near_miss_suggests_the_dataset() -> None:
    with pytest.raises(DatasetNotFoundError, match="Did you mean 'malaria'"):
        resolve_dataset("malria")


def test_empty_name_is_unknown() -> None:
    with pytest.raises(DatasetNotFoundError):
        resolve_dataset("  ")


def test_data_dir_argument_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert find_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert find_data_dir(None) == tmp_path / "env"
    monkeypatch.setenv(DATA_DIR_ENV, "  ")
    assert find_data_dir(None) is None
    monkeypatch.delenv(DATA_DIR_ENV)
    assert find_data_dir(None) is None
    monkeypatch.setenv("HOME", str(tmp_path))
    assert find_data_dir(Path("~/data")) == tmp_path / "data"
