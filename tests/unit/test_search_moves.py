"""The instruction-to-edit mapping derived from a space's capacity order and roles."""

from __future__ import annotations

import itertools

import pytest

from archsmith.bench.spaces import NasBench201, NasBenchMacro
from archsmith.errors import InputError
from archsmith.search.moves import SPACE_INSTRUCTIONS, CapacityMoves, capacity_moves
from archsmith.tools.rulebook import default_rulebook

NB201 = capacity_moves(NasBench201.choices, NasBench201.capacity, NasBench201.roles)
MACRO = capacity_moves(NasBenchMacro.choices, NasBenchMacro.capacity, NasBenchMacro.roles)


def test_nb201_edits_follow_its_capacity_order() -> None:
    assert NB201.describe() == {
        "ASC": [
            "none -> skip_connect",
            "avg_pool_3x3 -> skip_connect",
            "nor_conv_1x1 -> skip_connect",
            "nor_conv_3x3 -> skip_connect",
        ],
        "ACL": [
            "none -> avg_pool_3x3",
            "none -> nor_conv_1x1",
            "none -> nor_conv_3x3",
            "skip_connect -> avg_pool_3x3",
            "skip_connect -> nor_conv_1x1",
            "skip_connect -> nor_conv_3x3",
        ],
        "RSC": ["skip_connect -> none"],
        "RCL": ["avg_pool_3x3 -> none", "nor_conv_1x1 -> none", "nor_conv_3x3 -> none"],
        "AMK": [
            "avg_pool_3x3 -> nor_conv_1x1",
            "avg_pool_3x3 -> nor_conv_3x3",
            "nor_conv_1x1 -> nor_conv_3x3",
        ],
        "RK": [
            "nor_conv_1x1 -> avg_pool_3x3",
            "nor_conv_3x3 -> avg_pool_3x3",
            "nor_conv_3x3 -> nor_conv_1x1",
        ],
    }


def test_macro_edits_follow_its_capacity_order() -> None:
    assert MACRO.describe() == {
        "ACL": ["Identity -> MB3_K3", "Identity -> MB6_K5"],
        "RCL": ["MB3_K3 -> Identity", "MB6_K5 -> Identity"],
        "AMK": ["MB3_K3 -> MB6_K5"],
        "RK": ["MB6_K5 -> MB3_K3"],
    }


@pytest.mark.parametrize("moves", [NB201, MACRO], ids=["nb201", "macro"])
def test_every_change_is_exactly_one_instruction_and_reverses(moves: CapacityMoves) -> None:
    reverse = {"ACL": "RCL", "RCL": "ACL", "AMK": "RK", "RK": "AMK", "ASC": "RSC", "RSC": "ASC"}
    book = default_rulebook().by_code
    n = len(moves.choices)
    for src, dst in itertools.permutations(range(n), 2):
        code = moves.instruction(src, dst)
        assert code in SPACE_INSTRUCTIONS
        assert code in book
        back = moves.instruction(dst, src)
        # Up and down the order are the two sides of a conflicting pair, except for a skip that
        # replaces a layer (ASC) whose way back adds the layer (ACL).
        assert back == reverse[code] or (code, back) in {("ASC", "ACL"), ("ACL", "ASC")}


def test_moves_lists_every_position_an_instruction_applies_to() -> None:
    arch = (3, 3, 1, 0, 2, 4)  # 3x3, 3x3, skip, none, 1x1, avg pool
    assert NB201.moves(arch, "RSC") == [(2, 0)]
    assert NB201.moves(arch, "ASC") == [(0, 1), (1, 1), (3, 1), (4, 1), (5, 1)]
    assert sorted(NB201.moves(arch, "AMK")) == [(4, 3), (5, 2), (5, 3)]
    assert NB201.moves(arch, "AWI") == []


def test_without_roles_every_choice_is_a_layer() -> None:
    plain = capacity_moves(("small", "medium", "large"))
    assert plain.instruction(0, 2) == "AMK"
    assert plain.instruction(2, 1) == "RK"
    assert plain.lowest() == 0
    assert plain.highest() == 2
    assert plain.role_choice("skip") is None


def test_identity_after_none_is_a_skip() -> None:
    both = capacity_moves(("none", "identity", "conv"), None, {0: "none", 1: "identity"})
    assert both.instruction(0, 1) == "ASC"
    assert both.instruction(1, 0) == "RSC"
    assert both.instruction(2, 1) == "RCL"
    assert both.instruction(1, 2) == "ACL"


@pytest.mark.parametrize(
    ("capacity", "roles", "message"),
    [
        ((0, 1, 1), {}, "capacity order"),
        ((0, 1), {}, "capacity order"),
        ((0, 1, 2), {0: "none", 1: "none"}, "one choice only"),
        ((0, 1, 2), {0: "cut"}, "unknown role"),
        ((0, 1, 2), {5: "none"}, "not in 0..2"),
        ((0, 1, 2), {0: "none", 1: "skip", 2: "identity"}, "at least one choice must be a layer"),
    ],
)
def test_bad_orders_and_roles_say_what_is_wrong(
    capacity: tuple[int, ...], roles: dict[int, str], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        CapacityMoves(("a", "b", "c"), capacity, roles)  # type: ignore[arg-type]
