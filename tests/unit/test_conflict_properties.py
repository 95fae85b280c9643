"""Property tests of Algorithm 2 (RESOLVE_CONFLICT) over arbitrary instruction weights."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from archsmith.tools.rulebook import default_rulebook, resolve_conflicts

BOOK = default_rulebook()
CODES = [i.code for i in BOOK.instructions]
PARTNER = {i.code: i.conflicts_with for i in BOOK.instructions}

# Few distinct values so that ties, zeros and negatives are common.
weight = st.one_of(
    st.sampled_from([-1.0, -0.1, 0.0, 0.1, 0.25, 0.5, 1.0, 2.0]),
    st.floats(-2.0, 3.0, allow_nan=False),
)
weights_st = st.dictionaries(st.sampled_from(CODES), weight, max_size=len(CODES))


@given(weights_st)
def test_never_both_partners(weights: dict[str, float]) -> None:
    kept = resolve_conflicts(weights).weights()
    for code in kept:
        assert PARTNER[code] not in kept


@given(weights_st)
def test_no_weight_at_or_below_zero(weights: dict[str, float]) -> None:
    assert all(w > 0 for w in resolve_conflicts(weights).weights().values())


@given(weights_st)
def test_idempotent(weights: dict[str, float]) -> None:
    once = resolve_conflicts(weights)
    twice = resolve_conflicts(once.weights())
    assert twice.weights() == once.weights()
    assert list(twice.weights()) == list(once.weights())
    assert twice.dropped == []


@given(weights_st)
def test_keeps_every_positive_instruction_without_a_kept_partner(weights: dict[str, float]) -> None:
    kept = resolve_conflicts(weights).weights()
    for code, w in weights.items():
        if w > 0 and PARTNER[code] not in kept:
            assert code in kept


@given(weights_st)
def test_the_heavier_of_each_pair_wins(weights: dict[str, float]) -> None:
    kept = resolve_conflicts(weights).weights()
    order = BOOK.order
    for a, b in BOOK.conflict_pairs():
        wa, wb = weights.get(a), weights.get(b)
        present = [(c, w) for c, w in ((a, wa), (b, wb)) if w is not None and w > 0]
        if not present:
            assert a not in kept
            assert b not in kept
            continue
        winner = max(present, key=lambda cw: (cw[1], -order[cw[0]]))[0]
        assert winner in kept
        loser = b if winner == a else a
        assert loser not in kept


@given(weights_st)
def test_output_is_sorted_heaviest_first_and_weights_unchanged(weights: dict[str, float]) -> None:
    kept = resolve_conflicts(weights).weights()
    values = list(kept.values())
    assert values == sorted(values, reverse=True)
    for code, w in kept.items():
        assert weights[code] == w


@given(weights_st)
def test_every_input_is_either_kept_or_dropped_once(weights: dict[str, float]) -> None:
    res = resolve_conflicts(weights)
    seen = [i.code for i in res.kept] + [d.code for d in res.dropped]
    assert sorted(seen) == sorted(weights)


@settings(max_examples=50)
@given(weights_st, st.randoms(use_true_random=False))
def test_input_order_does_not_matter(weights: dict[str, float], rnd: random.Random) -> None:
    items = list(weights.items())
    rnd.shuffle(items)
    assert resolve_conflicts(dict(items)) == resolve_conflicts(weights)
