"""Fixtures of the real benchmark tables, loaded once per module (skipped when absent)."""

from __future__ import annotations

import pytest
from benchdata import shared_file

from archsmith.bench.spaces import MACRO_FILE, NB201_FILE, NasBench201, NasBenchMacro


@pytest.fixture(scope="module")
def macro() -> NasBenchMacro:
    return NasBenchMacro.from_file(shared_file(MACRO_FILE))


@pytest.fixture(scope="module")
def nb201() -> NasBench201:
    return NasBench201.from_file(shared_file(NB201_FILE))
