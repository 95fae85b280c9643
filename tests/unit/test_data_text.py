"""The paper's text handling: cleaning, whitespace tokens, a train-only vocabulary, fixed length."""

from __future__ import annotations

import numpy as np
import pytest

from archsmith.data.text import OOV_ID, PAD_ID, build_vocabulary, clean_text, encode, tokenize
from archsmith.errors import InputError


def test_cleaning_removes_urls_tags_hashtags_mentions_and_specials() -> None:
    raw = (
        "Check https://example.com/a?b=1 and www.site.org/page!<br /><br />"
        "GREAT #MustSee movie, @bob_99 said: it's 10/10 <i>really</i>... café"
    )
    tokens = tokenize(raw)
    assert " ".join(tokens) == "check and great movie said its 10 10 really caf"
    for junk in ("https", "example", "www", "site", "br", "mustsee", "bob", "i"):
        assert junk not in tokens
    assert clean_text("A<b>B</b>C").split() == ["a", "b", "c"]


def test_vocabulary_is_by_frequency_then_alphabetical() -> None:
    docs = ["b a a", "c b a", "d"]
    assert build_vocabulary(docs, 2 + 10) == ["a", "b", "c", "d"]
    assert build_vocabulary(docs, 2 + 2) == ["a", "b"]
    with pytest.raises(InputError, match="at least 3"):
        build_vocabulary(docs, 2)


def test_encode_pads_truncates_and_marks_unknown_words() -> None:
    ids = encode(["a b zzz", "b b b b b b"], ["a", "b"], 4)
    assert ids.dtype == np.int64
    assert ids.tolist() == [[2, 3, OOV_ID, PAD_ID], [3, 3, 3, 3]]
    assert encode([], ["a"], 3).shape == (0, 3)
