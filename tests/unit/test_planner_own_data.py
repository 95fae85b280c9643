"""The planner and the user's own data: a path in the request or --dataset becomes the TaskSpec's
dataset (absolute), with shape and classes read from the prepared data and every choice stated."""

from __future__ import annotations

from pathlib import Path

import pytest
from owndata import csv_file, gray_folder, image_folder, jsonl_file, npz_file
from test_planner import ScriptedChat

from archsmith.agents.interfaces import PlanRefusedError
from archsmith.agents.planning.choice import _paths_in
from archsmith.agents.planning.front import plan, plan_offline, plan_with_llm
from archsmith.agents.planning.intent import PlanIntent
from archsmith.errors import InputError
from archsmith.spec import TaskKind


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prepared files go to the test's own home; relative paths are read from tmp_path."""
    monkeypatch.setenv("ARCHSMITH_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("request_text", "paths"),
    [
        ("a classifier for the cell images in ./cells", ["./cells"]),
        ("a classifier for /data/x.npz.", ["/data/x.npz"]),
        ("sentiment of reviews.csv, fast", ["reviews.csv"]),
        ('the photos in "my photos/cats" please', ["my photos/cats"]),
        ("the texts in (~/corpus/t.jsonl)", ["~/corpus/t.jsonl"]),
        ("a 500 frames /s digits model", []),
        ("a speed/accuracy trade-off on cifar-10", []),
        ("the malaria data from https://example.org/x.csv", []),
        ("the user's data, 'not a path' at all", []),
    ],
)
def test_paths_in_a_request(request_text: str, paths: list[str]) -> None:
    assert [p for p, _, _ in _paths_in(request_text)] == paths


def test_a_folder_in_the_request(tmp_path: Path) -> None:
    image_folder(tmp_path / "cells")
    result = plan_offline("a 200-FPS classifier for the cell images in ./cells, 90% accuracy")
    spec = result.spec
    assert spec.dataset == str((tmp_path / "cells").resolve())
    assert (spec.task, spec.input_shape, spec.num_classes) == (
        TaskKind.IMAGE_CLASSIFICATION,
        (3, 25, 25),
        3,
    )
    assert spec.fps_threshold == 200
    assert spec.val_accuracy_threshold == pytest.approx(0.9)
    text = "\n".join(result.assumptions)
    assert "'./cells' in the request names your data." in text
    assert "'cell images' is read as an ordinary word" in text  # not the malaria dataset
    assert "3 classes (gray, green, red)" in text
    assert "the median of the images' shorter sides (25 px), capped at 32 px" in text
    assert "skipped 1 image file that could not be read: red/broken.png" in text
    assert "Prepared once into" in text


@pytest.mark.parametrize(
    ("write", "request_text", "task", "shape", "classes"),
    [
        (lambda d: npz_file(d / "x.npz"), "a classifier for x.npz", "image", (1, 16, 16), 3),
        (lambda d: csv_file(d / "r.csv"), "sentiment of r.csv", "text", (6,), 2),
        (lambda d: jsonl_file(d / "r.jsonl"), "classify r.jsonl", "text", (6,), 2),
    ],
)
def test_a_file_in_the_request(
    tmp_path: Path,
    write: object,
    request_text: str,
    task: str,
    shape: tuple[int, ...],
    classes: int,
) -> None:
    path = write(tmp_path)  # type: ignore[operator]
    spec = plan_offline(request_text).spec
    assert spec.dataset == str(path.resolve())
    assert spec.task.value.startswith(task)
    assert (spec.input_shape, spec.num_classes) == (shape, classes)


def test_dataset_option_and_image_size(tmp_path: Path) -> None:
    gray_folder(tmp_path / "g")
    result = plan("a fast model for cell images", None, dataset="g", image_size=8)
    assert result.spec.dataset == f"{(tmp_path / 'g').resolve()}?image_size=8"
    assert result.spec.input_shape == (1, 8, 8)
    assert "Images resized to 8x8 px, as --image-size asked." in result.assumptions
    assert plan("a model", None, dataset="digits").spec.dataset == "digits"


@pytest.mark.parametrize(
    ("request_text", "kwargs", "message"),
    [
        ("the images in ./g and ./h", {}, "names 2 paths (./g, ./h)"),
        ("the images in ./g", {"dataset": "digits"}, "names ./g and --dataset names digits"),
        ("the images in ./nowhere", {}, "there is no file or folder"),
        ("a digits model", {"image_size": 8}, "--image-size applies to your own image data"),
        ("classify r.csv", {"image_size": 8}, "--image-size applies to images"),
    ],
)
def test_refusals(
    tmp_path: Path, request_text: str, kwargs: dict[str, object], message: str
) -> None:
    gray_folder(tmp_path / "g")
    gray_folder(tmp_path / "h")
    csv_file(tmp_path / "r.csv")
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_offline(request_text, **kwargs)  # type: ignore[arg-type]


def test_bad_data_stops_the_plan(tmp_path: Path) -> None:
    gray_folder(tmp_path / "g", per_class=4)
    with pytest.raises(InputError, match="every class needs at least 10 examples"):
        plan_offline("the images in ./g")


def test_the_llm_planner_gets_the_same_data(tmp_path: Path) -> None:
    """The path in the request decides, whatever the LLM names; the LLM still reads targets."""
    image_folder(tmp_path / "cells")
    llm = ScriptedChat(answers=[PlanIntent(dataset="cell images", fps_threshold=300)])
    result = plan_with_llm("a 300-FPS classifier for the cell images in ./cells", llm)
    assert result.spec.dataset == str((tmp_path / "cells").resolve())
    assert result.spec.input_shape == (3, 25, 25)
    assert result.spec.fps_threshold == 300
    assert "The LLM named the dataset 'cell images'" in "\n".join(result.assumptions)


def test_an_llm_that_answers_with_a_path_has_it_read(tmp_path: Path) -> None:
    npz_file(tmp_path / "data" / "x.npz")
    llm = ScriptedChat(answers=[PlanIntent(dataset="data/x.npz")])
    result = plan_with_llm("a classifier for the npz in my data folder", llm)
    assert result.spec.dataset == str((tmp_path / "data" / "x.npz").resolve())


def test_bad_data_stops_before_the_llm_is_asked(tmp_path: Path) -> None:
    gray_folder(tmp_path / "g", per_class=4)
    llm = ScriptedChat(answers=[])
    with pytest.raises(InputError, match="'dark' has 4"):
        plan_with_llm("the images in ./g", llm)
    assert llm.received == []


def test_a_missing_path_from_the_llm_is_sent_back(tmp_path: Path) -> None:
    llm = ScriptedChat(answers=[PlanIntent(dataset="./nowhere.npz"), PlanIntent(dataset="digits")])
    assert plan_with_llm("a classifier", llm).spec.dataset == "digits"
    assert "there is no file or folder" in str(llm.received[1][-1].content)


def test_without_data_the_refusal_says_how_to_name_your_own() -> None:
    with pytest.raises(PlanRefusedError, match="Or your own data, by its path in the request"):
        plan_offline("a classifier for my cat photos")
