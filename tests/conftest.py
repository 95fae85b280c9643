"""Shared fixtures: paths of the repository and a minimal valid spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def spec_data() -> dict[str, Any]:
    """The smallest valid TaskSpec as JSON data: everything else takes the paper's defaults."""
    return {"dataset": "cifar10", "input_shape": [3, 32, 32], "num_classes": 10}
